#!/usr/bin/env python3
"""The fault suite's scenario driver. Run it through scripts/fault (which builds the fault
build and starts the servers); it needs the environment scripts/with-postgres exports.

usage: driver.py --build DIR --profile quick|full [--only a,b] [--work DIR]
                 [--broken-build DIR] [--asan-build DIR] [--tsan-build DIR]
Prints one line per scenario: "<scenario> PASS|FAIL k=v ... (<seconds>s)"; exits 1 when any
scenario failed.

Every timestamp it takes is time.monotonic_ns() (CLOCK_MONOTONIC), the workers' timeline.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check  # noqa: E402

PGBIN = os.environ.get("SQLOCK_PGBIN", "/usr/lib/postgresql/15/bin")
MS = 1_000_000


def now():
    return time.monotonic_ns()


class Fail(Exception):
    pass


class Suite:
    def __init__(self, a):
        self.a = a
        self.build = os.path.abspath(a.build)
        self.quick = a.profile == "quick"
        self.work = a.work or tempfile.mkdtemp(prefix="sqlock-fault.")
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.url = os.environ["SQLOCK_TEST_POSTGRESQL_URL"]
        self.bouncer = os.environ["SQLOCK_TEST_PGBOUNCER_URL"]
        self.admin = os.environ["SQLOCK_TEST_POSTGRESQL_ADMIN_URL"]
        self.runtime = os.environ["SQLOCK_TEST_POSTGRESQL_RUNTIME_URL"]
        self.procs = []
        self.results = []
        self.baseline = None

    # ---- helpers ----
    def bin(self, name, build=None):
        return os.path.join(build or self.build, "tests", "fault", name)

    def psql(self, url, sql, check_rc=True):
        r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-q", "-At", "-v",
                            "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                           capture_output=True, text=True)
        if check_rc and r.returncode != 0:
            raise Fail("psql failed: %s: %s" % (sql[:80], r.stderr.strip()))
        return r.stdout.strip()

    def dir(self, name):
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def schema(self, tag):
        return "fault_%s_%d_%d" % (tag, os.getpid(), random.randint(0, 99999))

    def spawn(self, args, env_extra=None, url=None, stderr=None, prefix=None, build=None):
        env = dict(os.environ)
        env["SQLOCK_FAULT_URL"] = url or self.url
        env.pop("SQLOCK_FAULT", None)
        if env_extra:
            env.update(env_extra)
        cmd = (prefix or []) + [self.bin("sqlock_fault_worker", build)] + [str(x) for x in args]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                             stderr=stderr if stderr is not None else subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def workers(self, d, n, mode, args_for, tag="w", prefix_for=None, **spawn_kw):
        """Spawns `n` workers of `mode`, ids "<tag>0".. with histories "<d>/<tag>N.hist", each
        with the arguments `args_for(i)`; returns the processes and the histories."""
        ps, hist = [], []
        for i in range(n):
            h = os.path.join(d, "%s%d.hist" % (tag, i))
            hist.append(h)
            ps.append(self.spawn(["--mode", mode, "--id", "%s%d" % (tag, i), "--history", h] +
                                 list(args_for(i)),
                                 prefix=prefix_for(i) if prefix_for else None, **spawn_kw))
        return ps, hist

    def migrate(self, schema, url=None, build=None):
        p = self.spawn(["--mode", "migrate", "--id", "m", "--schema", schema, "--names", "x"],
                       url=url, build=build)
        _, err = p.communicate(timeout=60)
        if p.returncode != 0:
            raise Fail("migrate failed: " + err.strip())

    def wait_all(self, procs, timeout):
        end = time.monotonic() + timeout
        errs = []
        for p in procs:
            try:
                _, err = p.communicate(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                errs.append("worker %d stuck (killed after %ds)" % (p.pid, timeout))
            if p.returncode not in (0, -9) and err is not None:
                errs.append("worker exit %s: %s" % (p.returncode, (err or "").strip()[-300:]))
        return errs

    def fence(self, d):
        port_file = os.path.join(d, "fence.port")
        log = os.path.join(d, "fence.log")
        p = subprocess.Popen([self.bin("sqlock_fault_fence"), "--port-file", port_file,
                              "--log", log])
        self.procs.append(p)
        port = int(self.wait_file(port_file).split()[0])
        return p, port, log

    def proxy(self, d, target_port):
        port_file = os.path.join(d, "proxy.port")
        p = subprocess.Popen([self.bin("sqlock_fault_proxy"), "--target-port", str(target_port),
                              "--port-file", port_file])
        self.procs.append(p)
        port, cport = (int(x) for x in self.wait_file(port_file).split())
        return p, port, cport

    @staticmethod
    def control(cport, cmd):
        with socket.create_connection(("127.0.0.1", cport), timeout=5) as s:
            s.sendall((cmd + "\n").encode())
            reply = b""
            while not reply.endswith(b"\n"):
                part = s.recv(4096)
                if not part:
                    break
                reply += part
            return reply.decode().strip()

    @staticmethod
    def wait_file(path, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if os.path.exists(path):
                with open(path) as f:
                    txt = f.read()
                if txt.strip():
                    return txt
            time.sleep(0.01)
        raise Fail("timed out waiting for " + path)

    @staticmethod
    def wait_line(path, pattern, timeout=30, after=0):
        """The first history line matching `pattern` (a regex) with a timestamp > after."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < end:
            try:
                with open(path) as f:
                    for line in f:
                        p = line.split()
                        if p and int(p[0]) > after and rx.search(line):
                            return line.split()
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        raise Fail("timed out waiting for /%s/ in %s" % (pattern, path))

    @staticmethod
    def lines(path, event):
        out = []
        try:
            with open(path) as f:
                for line in f:
                    p = line.split()
                    if len(p) >= 3 and p[2] == event:
                        out.append(p)
        except FileNotFoundError:
            pass
        return out

    @classmethod
    def loss_times(cls, h):
        """When the holder of history `h` learnt that its lease was lost (declared or noticed)."""
        return [int(p[0]) for p in cls.lines(h, "lost") + cls.lines(h, "noticed_lost")]

    @staticmethod
    def loss_lag(lease):
        """When `lease` was first known lost (None if never) and how long after its safety
        deadline, in ms (-1 if never)."""
        gone = (min(x for x in (lease.lost, lease.noticed) if x is not None)
                if (lease.lost or lease.noticed) else None)
        return gone, (gone - lease.max_safe) / MS if gone else -1

    def sqlite_db(self, d, build=None):
        """A migrated SQLite file in `d`: its path and URL."""
        db = os.path.join(d, "locks.db")
        url = "sqlite:" + db
        self.migrate("", url=url, build=build)
        return db, url

    @staticmethod
    def integrity(db):
        """SQLite's verdict on the file `db`: "ok", or the first problem it found."""
        con = sqlite3.connect(db)
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        return integrity

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
                p.kill()
                p.wait()
        self.procs = []

    def pg_port(self):
        return int(re.search(r":(\d+)/", self.url).group(1))

    def with_port(self, url, port):
        return re.sub(r":\d+/", ":%d/" % port, url, count=1)

    # ---- the common workload ----
    def soak(self, tag, d, procs, duration_ms, schema=None, url=None, extra=(), ttl=1500,
             env_extra=None, prefix_for=None, build=None, fence=True, stderr_check=False):
        """Runs `procs` soak workers on 3 names for `duration_ms`; returns the checker's result
        and the worker errors."""
        if schema is None:
            schema = self.schema(tag)
            self.migrate(schema, url=url, build=build)
        fport, flog = 0, None
        fp = None
        if fence:
            fp, fport, flog = self.fence(d)
        ps, hist = self.workers(d, procs, "soak", lambda i: [
            "--names", "%s-a,%s-b,%s-c" % (tag, tag, tag), "--ttl-ms", ttl, "--hold-min-ms", 0,
            "--hold-max-ms", 30, "--near-ttl-pct", 4, "--wait-ms", 4 * ttl,
            "--duration-ms", duration_ms, "--fence-port", fport, "--seed", i + 1,
            "--schema", schema] + list(extra), prefix_for=prefix_for, url=url,
            env_extra=env_extra, build=build)
        errs = self.wait_all(ps, duration_ms / 1000 + 8 * ttl / 1000 + 60)
        if fp:
            self.stop(fp)
        fig, violations, leases, events = check.check(hist, flog, expect_no_loss=True)
        return fig, violations + errs, schema

    def report(self, name, ok, figures, started, notes=()):
        secs = time.monotonic() - started
        parts = " ".join("%s=%s" % (k, v) for k, v in figures.items())
        line = "%-14s %s %s (%.0fs)" % (name, "PASS" if ok else "FAIL", parts, secs)
        print(line, flush=True)
        for n in notes:
            print("    " + n, flush=True)
        self.results.append((name, ok, line))

    def core(self, fig):
        keys = ["grants", "overlaps", "token_regressions", "stale_accepted", "false_losses",
                "errors"]
        return {k: fig[k] for k in keys}

    # ---- scenarios ----
    def s1_soak(self):
        t0 = time.monotonic()
        d = self.dir("soak")
        dur = 30000 if self.quick else 120000
        fig, notes, _ = self.soak("soak", d, 8, dur)
        out = self.core(fig)
        out["grants_per_s"] = round(fig["grants"] / (dur / 1000), 1)
        out["writes_ok"] = fig["writes_ok"]
        self.baseline = self.core(fig)
        ok = fig["violations"] == 0 and fig["errors"] == 0 and not notes
        self.report("1.soak", ok, out, t0, notes)

    def herd_once(self, d, tag, schema, procs, threads, rounds):
        self.migrate(schema)
        ps, hist = self.workers(d, procs, "herd", lambda i: [
            "--names", tag, "--threads", threads, "--rounds", rounds, "--barrier-dir", d,
            "--ttl-ms", 10000, "--schema", schema] + (["--prepare-expired"] if i == 0 else []),
            tag=tag)
        # Every thread is ready; then release the herd round by round.
        for h in hist:
            end = time.monotonic() + 60
            while len(self.lines(h, "ready")) < threads and time.monotonic() < end:
                time.sleep(0.01)
        for r in range(rounds):
            open(os.path.join(d, "go.%d" % r), "w").close()
            end = time.monotonic() + 60
            while time.monotonic() < end:
                done = sum(1 for h in hist for p in self.lines(h, "herd_done") if p[3] == str(r))
                if done >= procs * threads:
                    break
                time.sleep(0.01)
        open(os.path.join(d, "end"), "w").close()
        errs = self.wait_all(ps, 60)
        fig, violations, _, _ = check.check(hist, herd=True)
        return fig, violations + errs

    def s2_herd(self):
        t0 = time.monotonic()
        d = self.dir("herd")
        procs, threads = (6, 4) if self.quick else (12, 4)
        rounds = 10 if self.quick else 30
        fig, notes = self.herd_once(d, "h", self.schema("herd"), procs, threads, rounds)
        d2 = self.dir("herd-serializable")
        db = re.search(r"/([^/?]+)(\?|$)", self.url).group(1)
        self.psql(self.admin, "ALTER DATABASE %s SET default_transaction_isolation = "
                  "'serializable'" % db)
        try:
            fig2, notes2 = self.herd_once(d2, "hs", self.schema("herds"), procs, threads, rounds)
        finally:
            self.psql(self.admin, "ALTER DATABASE %s RESET default_transaction_isolation" % db)
        out = {"contenders": procs * threads, "rounds": fig["rounds"],
               "rounds_not_one_winner": fig["rounds_without_one_winner"],
               "errors": fig["errors"], "serializable_rounds": fig2["rounds"],
               "serializable_not_one_winner": fig2["rounds_without_one_winner"],
               "serializable_errors": fig2["errors"]}
        ok = (fig["violations"] == 0 and fig2["violations"] == 0 and fig["errors"] == 0 and
              fig2["errors"] == 0 and not notes and not notes2)
        self.report("2.herd", ok, out, t0, notes + notes2 +
                    ["errors: %s / %s" % (fig["error_codes"], fig2["error_codes"])]
                    if not ok else [])

    def holder(self, d, tag, schema, name, hold_ms, ttl, fport, env_extra=None, zombie=0,
               url=None, extra=(), wait_ms=None, build=None):
        h = os.path.join(d, "%s.hist" % tag)
        args = ["--mode", "soak", "--id", tag, "--history", h, "--names", name, "--ttl-ms", ttl,
                "--hold-min-ms", hold_ms, "--hold-max-ms", hold_ms, "--iterations", 1,
                "--wait-ms", wait_ms or 6 * ttl, "--fence-port", fport, "--write-every-ms", 20,
                "--zombie-writes", zombie, "--schema", schema] + list(extra)
        return self.spawn(args, env_extra=env_extra, url=url, build=build), h

    def row(self, schema, name):
        r = self.psql(self.admin, "SELECT token, nonce, (expires_at > clock_timestamp()) FROM "
                      "%s.sqlock_locks WHERE name = '%s'" % (schema, name))
        return r.split("|") if r else None

    def kill_when_waiting(self, v, wh):
        """Kills holder `v` (SIGKILL) 300 ms after the waiter of history `wh` began trying;
        returns the waiter's grant line and how long after the kill it came, in ms."""
        self.wait_line(wh, r" attempt ")
        time.sleep(0.3)
        t_kill = now()
        v.kill()
        g = self.wait_line(wh, r" grant ", timeout=30)
        return g, (int(g[0]) - t_kill) / MS

    def s3_kill(self):
        t0 = time.monotonic()
        d = self.dir("kill")
        schema = self.schema("kill")
        self.migrate(schema)
        fp, fport, flog = self.fence(d)
        ttl = 1500
        bound = 1000 if self.quick else 1000
        out, notes, hist = {}, [], []
        ok = True
        # (a) kill -9 in the critical section.
        v, vh = self.holder(d, "victim-a", schema, "k-a", 60000, ttl, fport)
        self.wait_line(vh, r" grant ")
        w, wh = self.holder(d, "waiter-a", schema, "k-a", 200, ttl, fport)
        g, take_a = self.kill_when_waiting(v, wh)
        vg = self.lines(vh, "grant")[0]
        ok &= int(g[4]) > int(vg[4]) and take_a <= ttl + bound
        out["incs_takeover_ms"] = round(take_a)
        self.wait_all([v, w], 30)
        hist += [vh, wh]
        # (b) killed just after its acquire committed (SQLOCK_FAULT=acquire.granted:crash).
        v, vh = self.holder(d, "victim-b", schema, "k-b", 60000, ttl, fport,
                            env_extra={"SQLOCK_FAULT": "acquire.granted:crash"})
        self.wait_all([v], 30)
        attempt = int(self.lines(vh, "attempt")[0][0])
        crashed_row = self.row(schema, "k-b")
        w, wh = self.holder(d, "waiter-b", schema, "k-b", 200, ttl, fport)
        g = self.wait_line(wh, r" grant ", timeout=30)
        take_b = (int(g[0]) - attempt) / MS
        ok &= v.returncode == -9 and crashed_row is not None and int(g[4]) > int(crashed_row[0])
        ok &= take_b <= ttl + bound
        out["granted_crash_takeover_ms"] = round(take_b)
        self.wait_all([w], 30)
        hist += [vh, wh]
        # (c) killed during its release (SQLOCK_FAULT=release.before:crash).
        v, vh = self.holder(d, "victim-c", schema, "k-c", 300, ttl, fport,
                            env_extra={"SQLOCK_FAULT": "release.before:crash"})
        self.wait_line(vh, r" grant ")
        w, wh = self.holder(d, "waiter-c", schema, "k-c", 200, ttl, fport)
        self.wait_all([v], 30)
        rb = self.lines(vh, "release_begin")
        g = self.wait_line(wh, r" grant ", timeout=30)
        take_c = (int(g[0]) - int(rb[0][0])) / MS if rb else -1
        vg = self.lines(vh, "grant")[0]
        ok &= v.returncode == -9 and bool(rb) and int(g[4]) > int(vg[4]) and take_c <= ttl + bound
        out["release_crash_takeover_ms"] = round(take_c)
        self.wait_all([w], 30)
        hist += [vh, wh]
        self.stop(fp)
        fig, violations, _, _ = check.check(hist, flog)
        ok &= fig["violations"] == 0
        out.update(ttl_ms=ttl, bound_ms=ttl + bound, overlaps=fig["overlaps"],
                   token_regressions=fig["token_regressions"],
                   stale_accepted=fig["stale_accepted"])
        self.report("3.kill9", ok, out, t0, violations)

    def pause_past_ttl(self, v, wh, taken):
        """Pauses holder `v` (SIGSTOP) once the waiter of history `wh` is trying, until the
        waiter's history shows `taken` (a regex), then resumes it; returns when it was paused,
        when resumed, and the waiter's line."""
        self.wait_line(wh, r" attempt ")
        time.sleep(0.1)
        t_stop = now()
        os.kill(v.pid, signal.SIGSTOP)
        g = self.wait_line(wh, taken, timeout=30)
        time.sleep(0.2)
        t_cont = now()
        os.kill(v.pid, signal.SIGCONT)
        return t_stop, t_cont, g

    def pause_briefly(self, s, sh, ttl):
        """Pauses holder `s` (history `sh`) four times, each for 100 ms less than ttl/3, and
        waits for it to end; returns the number of pauses and of losses it learnt of."""
        self.wait_line(sh, r" grant ")
        pauses = 0
        for k in range(4):
            time.sleep(0.6 + 0.17 * k)
            os.kill(s.pid, signal.SIGSTOP)
            time.sleep(ttl / 3 / 1000 - 0.1)
            os.kill(s.pid, signal.SIGCONT)
            pauses += 1
        self.wait_all([s], 30)
        return pauses, len(self.loss_times(sh))

    def s4_stop(self):
        t0 = time.monotonic()
        d = self.dir("stop")
        schema = self.schema("stop")
        self.migrate(schema)
        fp, fport, flog = self.fence(d)
        ttl = 1500
        out, ok = {}, True
        # Paused past its ttl: a waiter takes over and writes; after SIGCONT the victim must
        # learn of the loss promptly and every write it still makes is rejected.
        v, vh = self.holder(d, "victim", schema, "p-a", 30000, ttl, fport, zombie=10)
        self.wait_line(vh, r" renewed ")
        w, wh = self.holder(d, "waiter", schema, "p-a", 1000, ttl, fport)
        t_stop, t_cont, g = self.pause_past_ttl(v, wh, r" write .* ok")
        self.wait_all([v, w], 30)
        lost = self.loss_times(vh)
        lag = (min(lost) - t_cont) / MS if lost else -1
        after = [p for p in self.lines(vh, "write") if int(p[0]) > t_cont]
        accepted_after = sum(1 for p in after if p[6] == "ok")
        ok &= bool(lost) and lag <= 200 and accepted_after == 0 and len(after) >= 10
        out.update(stop_ms=round((t_cont - t_stop) / MS), loss_known_after_resume_ms=round(lag, 1),
                   takeover_ms=round((int(self.lines(wh, "grant")[0][0]) - t_stop) / MS),
                   old_token_writes=len(after), old_token_accepted=accepted_after)
        # Pauses shorter than ttl/3 lose nothing.
        s, sh = self.holder(d, "short", schema, "p-b", 6000, ttl, fport)
        pauses, short_lost = self.pause_briefly(s, sh, ttl)
        short_rejected = sum(1 for p in self.lines(sh, "write") if p[6] != "ok")
        ok &= short_lost == 0 and short_rejected == 0
        self.stop(fp)
        fig, violations, _, _ = check.check([vh, wh, sh], flog)
        ok &= fig["violations"] == 0
        out.update(short_pauses=pauses, short_pause_ms=round(ttl / 3 - 100),
                   short_losses=short_lost, overlaps=fig["overlaps"],
                   stale_accepted=fig["stale_accepted"])
        self.report("4.sigstop", ok, out, t0, violations)

    def restart_server(self, t0, schedule):
        """Restarts PostgreSQL at each (mode, seconds after t0) of schedule; returns
        (mode, start, end) per restart."""
        data = self.psql(self.admin, "SHOW data_directory")
        log = os.path.join(os.path.dirname(data), "bouncer", "postgresql.log")
        restarts = []
        for mode, at in schedule:
            time.sleep(max(0, at - (time.monotonic() - t0)))
            s = now()
            r = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PGBIN, "pg_ctl"),
                                "-D", data, "-l", log, "-w", "-t", "60", "-m", mode, "restart"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise Fail("pg_ctl restart -m %s failed: %s" % (mode, r.stderr))
            restarts.append((mode, s, now()))
        return restarts

    def restart_figures(self, fig, out, hist, restarts, errs):
        """The verdict and figures of a restart scenario: no violation, no worker error, and
        every worker granted again after the last restart."""
        last_up = restarts[-1][2]
        recovered = sum(1 for h in hist if any(int(p[0]) > last_up for p in self.lines(h, "grant")))
        ok = fig["violations"] == 0 and recovered == len(hist) and not errs
        out.pop("false_losses")
        out.update(losses=fig["losses"], restarts=",".join(m for m, _, _ in restarts),
                   down_ms="/".join(str(round((e - s) / MS)) for _, s, e in restarts),
                   clients_recovered="%d/%d" % (recovered, len(hist)),
                   error_codes=json.dumps(fig["error_codes"], separators=(",", ":")))
        return ok, out

    def s5_restart(self):
        t0 = time.monotonic()
        d = self.dir("restart")
        schema = self.schema("restart")
        self.migrate(schema)
        fp, fport, flog = self.fence(d)
        ttl = 2000
        dur = 24000 if self.quick else 45000
        ps, hist = self.workers(d, 6, "soak", lambda i: [
            "--names", "r-a,r-b,r-c", "--ttl-ms", ttl, "--hold-max-ms", 30, "--duration-ms", dur,
            "--fence-port", fport, "--op-timeout-ms", 2000, "--wait-ms", 3000, "--seed", i + 1,
            "--schema", schema])
        restarts = self.restart_server(t0, (("fast", 5), ("immediate", 13)))
        errs = self.wait_all(ps, dur / 1000 + 60)
        self.stop(fp)
        fig, violations, leases, _ = check.check(hist, flog)
        ok, out = self.restart_figures(fig, self.core(fig), hist, restarts, errs)
        self.report("5.restart", ok, out, t0, violations + errs)

    def stall(self, cport, v, wh, ttl, op, notes):
        """Stalls the proxy at `cport` once the waiter of history `wh` is trying: holder `v`,
        behind it, must give up and exit within its safety deadline and a few operation
        timeouts; once the waiter is granted, the stalled bytes (a late renewal?) reach the
        server. Returns when the stall began, how long `v` took to exit (-1: it did not), and
        the waiter's grant line."""
        self.wait_line(wh, r" attempt ")
        t_stall = now()
        self.control(cport, "stall")
        try:
            v.wait(ttl / 1000 + 4 * op / 1000 + 5)
            exited_ms = round((now() - t_stall) / MS)
        except subprocess.TimeoutExpired:
            exited_ms = -1
            notes.append("stalled holder did not exit while the proxy stalled (stuck thread)")
        g = self.wait_line(wh, r" grant ", timeout=30)
        self.control(cport, "pass")  # the stalled bytes (a late renewal?) now reach the server
        time.sleep(0.5)
        return t_stall, exited_ms, g

    def stall_figures(self, fig, leases, vh, t_stall, exited_ms, g):
        """The verdict and figures of a stall: the holder "stalled" (history `vh`) learnt of its
        loss within 100 ms of its safety deadline, exited, and no renewal of it landed after the
        stall; the holder "waiter" lost nothing; no violation."""
        vl = [l for l in leases.values() if l.wid == "stalled"][0]
        gone, lag = self.loss_lag(vl)
        late_renewals = sum(1 for p in self.lines(vh, "renewed") if int(p[0]) > t_stall)
        wl = [l for l in leases.values() if l.wid == "waiter"][0]
        waiter_lost = 1 if (wl.lost or wl.noticed) else 0
        ok = (gone is not None and 0 <= lag <= 100 and exited_ms >= 0 and late_renewals == 0 and
              waiter_lost == 0 and fig["violations"] == 0)
        return ok, dict(stall_loss_lag_ms=round(lag, 1), stalled_exit_ms=exited_ms,
                        takeover_ms=round((int(g[0]) - t_stall) / MS),
                        late_renewals=late_renewals)

    def s6_proxy(self):
        t0 = time.monotonic()
        d = self.dir("proxy")
        schema = self.schema("proxy")
        self.migrate(schema)
        fp, fport, flog = self.fence(d)
        pp, port, cport = self.proxy(d, self.pg_port())
        purl = self.with_port(self.url, port)
        ttl, op = 1500, 1000
        out, ok, notes = {}, True, []
        margin = ttl / 10
        # Stall: the holder must declare the loss at its safety deadline; nothing hangs.
        v, vh = self.holder(d, "stalled", schema, "x-a", 30000, ttl, fport, url=purl,
                            extra=["--op-timeout-ms", op])
        self.wait_line(vh, r" renewed ")
        w, wh = self.holder(d, "waiter", schema, "x-a", 2500, ttl, fport, wait_ms=20000)
        t_stall, exited_ms, g = self.stall(cport, v, wh, ttl, op, notes)
        self.wait_all([v, w], 30)
        fig, violations, leases, _ = check.check([vh, wh], flog)
        stall_ok, stall_out = self.stall_figures(fig, leases, vh, t_stall, exited_ms, g)
        ok &= stall_ok
        out.update(stall_out)
        out.update(overlaps=fig["overlaps"])
        # Drop every connection once: the client reconnects and keeps the lease.
        v, vh = self.holder(d, "dropped", schema, "x-b", 4000, ttl, fport, url=purl,
                            extra=["--op-timeout-ms", op])
        self.wait_line(vh, r" renewed ")
        self.control(cport, "drop")
        self.wait_all([v], 30)
        drop_losses = len(self.loss_times(vh))
        # Drop and refuse reconnection: lost at the safety deadline.
        v, vh = self.holder(d, "refused", schema, "x-c", 30000, ttl, fport, url=purl,
                            extra=["--op-timeout-ms", op])
        self.wait_line(vh, r" renewed ")
        self.control(cport, "refuse")
        self.wait_all([v], ttl / 1000 + 4 * op / 1000 + 10)
        self.control(cport, "pass")
        fig2, violations2, leases2, _ = check.check([vh], flog)
        rgone, rlag = self.loss_lag(list(leases2.values())[0])
        ok &= drop_losses == 0 and rgone is not None and 0 <= rlag <= 100
        out.update(drop_losses=drop_losses, refuse_loss_lag_ms=round(rlag, 1),
                   margin_ms=round(margin))
        self.stop(fp)
        self.stop(pp)
        self.report("6.proxy", ok, out, t0, violations + violations2 + notes)

    def s7_pgbouncer(self):
        t0 = time.monotonic()
        d = self.dir("pgbouncer")
        dur = 20000 if self.quick else 60000
        schema = self.schema("bouncer")
        self.migrate(schema)
        fig, notes, _ = self.soak("pgb", d, 8, dur, schema=schema, url=self.bouncer,
                                  extra=["--pgbouncer"],
                                  env_extra={"SQLOCK_FAULT_LISTEN_URL": self.url})
        out = self.core(fig)
        ok = fig["violations"] == 0 and fig["errors"] == 0 and not notes
        # The same workload with session advisory locks through the same PgBouncer.
        d2 = self.dir("advisory")
        ps, hist = self.workers(d2, 8, "advisory", lambda i: [
            "--names", "adv-a,adv-b,adv-c", "--hold-max-ms", 30, "--duration-ms", dur // 2,
            "--seed", i + 1], tag="a", url=self.bouncer)
        errs = self.wait_all(ps, dur / 1000 + 30)
        afig, _, _, _ = check.check(hist)
        out.update(advisory_grants=afig["grants"], advisory_overlaps=afig["overlaps"],
                   advisory_leaked_unlocks=afig["leaks"])
        self.report("7.pgbouncer", ok, out, t0, notes + errs)

    def sqlite_soak(self, soak, name, tag, quick_ms):
        """`soak` (self.soak or self.sem_soak) by 6 workers on a fresh SQLite file in work dir
        `name`, `quick_ms` long (60 s in full); returns its figures, its notes and the file's
        integrity check."""
        d = self.dir(name)
        db, url = self.sqlite_db(d)
        fig, notes, _ = soak(tag, d, 6, quick_ms if self.quick else 60000, schema="", url=url)
        return fig, notes, self.integrity(db)

    def s8_sqlite(self):
        t0 = time.monotonic()
        fig, notes, integrity = self.sqlite_soak(self.soak, "sqlite", "lite", 20000)
        out = self.core(fig)
        out["integrity_check"] = integrity
        ok = fig["violations"] == 0 and fig["errors"] == 0 and integrity == "ok" and not notes
        self.report("8.sqlite", ok, out, t0, notes)

    def faketime_prefix(self):
        ft = shutil.which("faketime")
        if not ft:
            raise Fail("faketime is not installed (scripts/fault installs it)")
        return lambda i: [ft, "-f", "+5h" if i % 2 == 0 else "-5h"]

    def s9_skew(self, build=None, label="9.clock_skew"):
        t0 = time.monotonic()
        d = self.dir("skew" if build is None else "broken")
        prefix = self.faketime_prefix()
        env = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        # faketime must really move the wall clock and leave the monotonic clock alone.
        skew = int(subprocess.run(prefix(0) + ["date", "+%s"], capture_output=True, text=True,
                                  env=dict(os.environ, **env)).stdout) - int(time.time())
        dur = 20000 if self.quick else 60000
        fig, notes, _ = self.soak("skew", d, 8, dur, env_extra=env, prefix_for=prefix,
                                  build=build)
        starts = []
        for i in range(8):
            st = self.lines(os.path.join(d, "w%d.hist" % i), "start")
            if st:
                starts.append(int(st[0][0]))
        mono_ok = bool(starts) and max(starts) - min(starts) < 10_000 * MS
        out = self.core(fig)
        out.update(client_skew_s="+-%d" % abs(skew), monotonic_unfaked=mono_ok)
        if build is not None:
            return fig, out, notes
        same = self.baseline is None or all(
            out[k] == self.baseline[k] for k in ("overlaps", "token_regressions",
                                                 "stale_accepted", "false_losses"))
        ok = fig["violations"] == 0 and fig["errors"] == 0 and mono_ok and abs(skew) > 17000
        ok &= same and not notes
        out["same_as_unskewed"] = same
        self.report(label, ok, out, t0, notes)

    def s10_inputs(self):
        t0 = time.monotonic()
        exe = self.bin("sqlock_fault_inputs")
        r = subprocess.run([exe, "--schema", self.schema("inputs"), "--sqlite",
                            os.path.join(self.dir("inputs"), "ro.db")],
                           capture_output=True, text=True, timeout=300)
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        summary = lines[-1] if lines else "no output"
        notes = [l for l in lines[:-1] if "FAIL" in l] + ([r.stderr.strip()[-500:]] if r.returncode else [])
        m = dict(kv.split("=", 1) for kv in summary.split() if "=" in kv)
        self.report("10.bad_inputs", r.returncode == 0, m, t0, notes)

    def s11_security(self):
        t0 = time.monotonic()
        d = self.dir("security")
        schema = self.schema("sec")
        self.migrate(schema)
        q = '"%s"' % schema
        # The grants of a runtime role (the README's list): schema 3 revokes EXECUTE on sqlock's
        # functions from PUBLIC, so the grant function (it runs as its caller) needs its own.
        for g in ("GRANT USAGE ON SCHEMA %s TO sqlock_runtime" % q,
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON %s.sqlock_locks TO sqlock_runtime" % q,
                  "GRANT SELECT ON %s.sqlock_schema_version TO sqlock_runtime" % q,
                  "GRANT USAGE ON SEQUENCE %s.sqlock_token_seq TO sqlock_runtime" % q,
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON %s.sqlock_semaphores, "
                  "%s.sqlock_semaphore_holders, %s.sqlock_semaphore_tickets TO sqlock_runtime"
                  % (q, q, q),
                  "GRANT EXECUTE ON FUNCTION %s.sqlock_assert_held(text, bigint), "
                  "%s.sqlock_semaphore_assert_held(text, bigint), "
                  "%s.sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, "
                  "boolean, boolean, bigint, text) TO sqlock_runtime" % (q, q, q)):
            self.psql(self.admin, g)
        # The runtime role's password, put into the URL on purpose: it must never show.
        password = None
        with open(os.environ["PGPASSFILE"]) as f:
            for line in f:
                p = line.strip().split(":")
                if len(p) == 5 and p[3] == "sqlock_runtime":
                    password = p[4]
        url = self.runtime.replace("sqlock_runtime@", "sqlock_runtime:%s@" % password)
        url += ("&" if "?" in url else "?") + "options=-csearch_path%3Dnowhere_at_all"
        self.psql(self.admin, "ALTER ROLE sqlock_runtime SET log_statement = 'all'")
        data = self.psql(self.admin, "SHOW data_directory")
        log = os.path.join(os.path.dirname(data), "bouncer", "postgresql.log")
        log_start = os.path.getsize(log)
        try:
            fp, fport, flog = self.fence(d)
            dur = 8000 if self.quick else 20000
            ps, hist = self.workers(d, 4, "soak", lambda i: [
                "--names", "sec-alpha,sec-beta,sec-gamma", "--ttl-ms", 1337, "--hold-max-ms", 30,
                "--near-ttl-pct", 4, "--duration-ms", dur, "--fence-port", fport, "--seed", i,
                "--schema", schema, "--purge-ms", 987654, "--metadata", "meta-x7q"], url=url)
            # Semaphore workers beside them: the grant function's call carries values too.
            sps, shist = self.workers(d, 2, "semaphore", lambda i: [
                "--names", "sec-delta,sec-epsilon", "--fair-names", "sec-epsilon", "--limit", 2,
                "--ttl-ms", 1337, "--hold-max-ms", 30, "--duration-ms", dur, "--seed", i,
                "--schema", schema, "--purge-ms", 987654, "--metadata", "meta-x7q"], tag="s",
                url=url)
            ps, hist = ps + sps, hist + shist
            time.sleep(1)
            ps_out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            errs = self.wait_all(ps, dur / 1000 + 60)
            self.stop(fp)
            # A failing connection, whose message names the URL.
            bad_hist = os.path.join(d, "bad.hist")
            bad = self.spawn(["--mode", "soak", "--id", "bad", "--names", "x", "--iterations", 1,
                              "--op-timeout-ms", 1000, "--schema", schema, "--history",
                              bad_hist], url=self.with_port(url, 1))
            _, bad_err = bad.communicate(timeout=60)
            bad_errors = self.lines(bad_hist, "error")
        finally:
            self.psql(self.admin, "ALTER ROLE sqlock_runtime RESET log_statement")
        fig, violations, leases, _ = check.check(hist, flog, expect_no_loss=True,
                                                 limits={"sec-delta": 2, "sec-epsilon": 2})
        sem_grants = sum(1 for l in leases.values() if l.name in ("sec-delta", "sec-epsilon"))
        text = "".join(open(h).read() for h in hist + [bad_hist]) + bad_err + "".join(errs)
        pw_in_messages = text.count(password) if password else -1
        pw_in_ps = ps_out.count(password) if password else -1
        with open(log, errors="replace") as f:
            f.seek(log_start)
            server_log = f.read()
        statements = []
        for line in server_log.splitlines():
            m = re.search(r"sqlock_runtime@\S+ LOG:\s+(?:statement|execute [^:]*): (.*)", line)
            if m:
                statements.append(m.group(1))
        values = ["sec-alpha", "sec-beta", "sec-gamma", "sec-delta", "sec-epsilon", "meta-x7q",
                  "1337", "987654", password]
        inlined = [s for s in statements if any(v and v in s for v in values)]
        out = self.core(fig)
        sem_statements = sum(1 for x in statements if "sqlock_semaphore_acquire(" in x)
        out.update(sem_grants=sem_grants, role="sqlock_runtime", search_path="nowhere_at_all",
                   statements_logged=len(statements), semaphore_grant_calls=sem_statements,
                   values_inlined=len(inlined), password_in_messages=pw_in_messages,
                   password_in_ps=pw_in_ps)
        ok = (fig["violations"] == 0 and fig["errors"] == 0 and fig["grants"] > 0 and
              sem_grants > 0 and sem_statements > 0 and
              len(statements) > 0 and not inlined and pw_in_messages == 0 and pw_in_ps == 0 and
              not errs and len(bad_errors) == 1 and bad_errors[0][4] == "unavailable")
        self.report("11.security", ok, out, t0,
                    violations + errs + ["inlined: " + s[:200] for s in inlined[:3]])

    def s12_sanitizers(self):
        t0 = time.monotonic()
        out, ok, notes = {}, True, []
        env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
               "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
               "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1:suppressions=" +
                               os.path.join(HERE, "..", "tsan.supp")}

        def record(key, fig, errs):  # the figures of one soak; True when it is clean
            findings = sum(1 for e in errs if "Sanitizer" in e or "runtime error" in e)
            out[key] = "grants=%d,violations=%d,findings=%d" % (fig["grants"], fig["violations"],
                                                                findings)
            notes.extend(errs[:3])
            return fig["violations"] == 0 and not errs

        for label, build in (("asan_ubsan", self.a.asan_build), ("tsan", self.a.tsan_build)):
            if not build:
                notes.append("%s: no build given" % label)
                ok = False
                continue
            for backend in ("pg", "sqlite"):
                d = self.dir("san-%s-%s" % (label, backend))
                url = None
                schema = None
                if backend == "sqlite":
                    _, url = self.sqlite_db(d, build=build)
                    schema = ""
                fig, errs, _ = self.soak("san", d, 4, 15000, url=url, schema=schema,
                                         env_extra=env, build=build)
                ok &= record("%s_%s" % (label, backend), fig, errs)
            # Semaphores (fair waiting, tickets, the unit sweep) on PostgreSQL, shorter.
            d = self.dir("san-%s-sem" % label)
            fig, errs, _ = self.sem_soak("ssan", d, 4, 10000, env_extra=env, build=build)
            ok &= record("%s_pg_sem" % label, fig, errs)
        self.report("12.sanitizers", ok, out, t0, notes)

    def broken_build_check(self):
        t0 = time.monotonic()
        if not self.a.broken_build:
            self.report("checker.broken", False, {"error": "no broken build given"}, t0)
            return
        fig, out, notes = self.s9_skew(build=self.a.broken_build, label="checker.broken")
        caught = fig["violations"] > 0
        out = {"broken": "client-clock-expires_at", "caught": caught,
               "overlaps": fig["overlaps"], "token_regressions": fig["token_regressions"],
               "stale_accepted": fig["stale_accepted"], "false_losses": fig["false_losses"],
               "grants": fig["grants"]}
        # The same copy's semaphore grant admits one unit over the limit: the semaphore soak's
        # checker must see more units in use than the limit.
        sfig, _, _ = self.sem_soak("bsem", self.dir("broken-sem"), 8, 15000,
                                   build=self.a.broken_build)
        sem_caught = sfig["overlaps"] > 0
        out.update(sem_broken="grant-one-unit-over-limit", sem_caught=sem_caught,
                   sem_over_limit=sfig["overlaps"], sem_max_units=sfig["max_units"],
                   sem_limit=self.SEM_LIMIT, sem_grants=sfig["grants"])
        # The same copy's renewals may shorten a lease: the late-renewal
        # scenario's lock run must see a second holder granted while the first still holds.
        # (Its semaphore run would be caught by the grant break above as well: not used.)
        d = self.dir("broken-late")
        schema = self.schema("blate")
        self.migrate(schema, build=self.a.broken_build)
        fp, fport, flog = self.fence(d)
        pp, port, cport = self.proxy(d, self.pg_port())
        _, lout, lhist, _ = self.late_renewal_once(d, "lock", schema, cport,
                                                   self.with_port(self.url, port), fport,
                                                   build=self.a.broken_build)
        self.stop(fp)
        self.stop(pp)
        lfig, _, _, _ = check.check(lhist, flog)
        late_caught = lfig["overlaps"] > 0
        out.update(late_broken="renew-may-shorten", late_caught=late_caught,
                   late_overlaps=lfig["overlaps"], late_db_left_ms=lout["db_left_ms"],
                   late_holder_left_ms=lout["holder_left_ms"],
                   late_second_granted=lout["second_granted"])
        self.report("checker.broken", caught and sem_caught and late_caught, out, t0)


    # ---- semaphores: units of a semaphore of limit N instead of a lock ----
    SEM_LIMIT = 3

    def sem_core(self, fig):
        return {"grants": fig["grants"], "over_limit": fig["overlaps"],
                "max_units": fig["max_units"], "token_regressions": fig["token_regressions"],
                "false_losses": fig["false_losses"], "errors": fig["errors"]}

    def sem_soak(self, tag, d, procs, duration_ms, schema=None, url=None, ttl=1500, extra=(),
                 env_extra=None, build=None, op_timeout_ms=None, wait_ms=None):
        """`procs` semaphore workers on two semaphores of SEM_LIMIT units, "<tag>-a" (non-fair)
        and "<tag>-f" (fair), each acquisition 1 or 2 units, random holds (some 0.7-1.3 ttl).
        Returns the checker's figures, the violations plus worker errors, and the histories."""
        if schema is None:
            schema = self.schema(tag)
            self.migrate(schema, url=url, build=build)
        names = ["%s-a" % tag, "%s-f" % tag]
        ps, hist = self.workers(d, procs, "semaphore", lambda i: [
            "--names", ",".join(names), "--fair-names", names[1],
            "--limit", self.SEM_LIMIT, "--count", 0, "--count-max", 2,
            "--ttl-ms", ttl, "--hold-min-ms", 0, "--hold-max-ms", 30,
            "--near-ttl-pct", 4, "--wait-ms", wait_ms or 4 * ttl,
            "--duration-ms", duration_ms, "--seed", i + 1, "--schema", schema] +
            (["--op-timeout-ms", op_timeout_ms] if op_timeout_ms else []) + list(extra),
            url=url, env_extra=env_extra, build=build)
        errs = self.wait_all(ps, duration_ms / 1000 + 8 * ttl / 1000 + 60)
        fig, violations, _, _ = check.check(hist, expect_no_loss=True,
                                            limits={n: self.SEM_LIMIT for n in names})
        return fig, violations + errs, hist

    def sem_holder(self, d, tag, schema, name, hold_ms, ttl, limit, count, fair=False,
                   env_extra=None, url=None, extra=(), wait_ms=None, build=None):
        """One semaphore acquisition of `count` units of `limit`, held `hold_ms` (no fence:
        several holders of one semaphore hold different valid tokens at once)."""
        return self.holder(d, tag, schema, name, hold_ms, ttl, 0, env_extra=env_extra, url=url,
                           wait_ms=wait_ms, build=build,
                           extra=["--mode", "semaphore", "--limit", limit, "--count", count] +
                           (["--fair-names", name] if fair else []) + list(extra))

    def s13_sem_soak(self):
        t0 = time.monotonic()
        d = self.dir("sem-soak")
        dur = 20000 if self.quick else 90000
        fig, notes, _ = self.sem_soak("sem", d, 8, dur)
        out = self.sem_core(fig)
        out.update(limit=self.SEM_LIMIT, grants_per_s=round(fig["grants"] / (dur / 1000), 1))
        # The limit must have been reached, or the run proved nothing.
        ok = (fig["violations"] == 0 and fig["errors"] == 0 and not notes and
              fig["max_units"] == self.SEM_LIMIT)
        self.report("13.sem_soak", ok, out, t0, notes)

    def s14_sem_kill(self):
        t0 = time.monotonic()
        d = self.dir("sem-kill")
        schema = self.schema("semkill")
        self.migrate(schema)
        ttl, bound, limit = 1500, 1000, 2
        out, ok, hist, limits = {}, True, [], {}
        # (a) kill -9 of one of two holders in its critical section: the waiter gets the unit
        # within ttl + 1 s, with a token larger than both holders'.
        limits["sk-a"] = limit
        a, ah = self.sem_holder(d, "holder-a", schema, "sk-a", 60000, ttl, limit, 1)
        b, bh = self.sem_holder(d, "holder-b", schema, "sk-a", 60000, ttl, limit, 1)
        self.wait_line(ah, r" grant ")
        self.wait_line(bh, r" grant ")
        w, wh = self.sem_holder(d, "waiter-a", schema, "sk-a", 200, ttl, limit, 1)
        g, take_a = self.kill_when_waiting(a, wh)
        held = max(int(self.lines(h, "grant")[0][4]) for h in (ah, bh))
        ok &= int(g[4]) > held and take_a <= ttl + bound
        out["incs_takeover_ms"] = round(take_a)
        self.wait_all([w], 30)
        b.kill()
        self.wait_all([a, b], 30)
        hist += [ah, bh, wh]
        # (b) killed just after its grant committed (SQLOCK_FAULT=acquire.granted:crash), holding
        # every unit: the waiter gets a unit when the crashed holder's lease expires.
        limits["sk-b"] = limit
        v, vh = self.sem_holder(d, "victim-b", schema, "sk-b", 60000, ttl, limit, limit,
                                env_extra={"SQLOCK_FAULT": "acquire.granted:crash"})
        self.wait_all([v], 30)
        attempt = int(self.lines(vh, "attempt")[0][0])
        crashed = self.psql(self.admin, "SELECT max(token) FROM %s.sqlock_semaphore_holders "
                            "WHERE name = 'sk-b'" % schema)
        w, wh = self.sem_holder(d, "waiter-b", schema, "sk-b", 200, ttl, limit, 1)
        g = self.wait_line(wh, r" grant ", timeout=30)
        take_b = (int(g[0]) - attempt) / MS
        ok &= v.returncode == -9 and bool(crashed) and int(g[4]) > int(crashed or 0)
        ok &= take_b <= ttl + bound
        out["granted_crash_takeover_ms"] = round(take_b)
        self.wait_all([w], 30)
        hist += [vh, wh]
        # (c) a fair waiter killed while queued: the holder of every unit releases just after
        # the kill; the next fair waiter (queued behind the dead one's ticket) must be granted
        # within fair_ticket_ttl (3 s) + 1 s of the kill.
        limits["sk-c"] = limit
        hold = 2500
        h, hh = self.sem_holder(d, "holder-c", schema, "sk-c", hold, ttl, limit, limit, fair=True)
        hg = int(self.wait_line(hh, r" grant ")[0])
        v, vh = self.sem_holder(d, "fair-victim", schema, "sk-c", 200, ttl, limit, 1, fair=True,
                                wait_ms=20000)
        self.wait_line(vh, r" attempt ")
        time.sleep(0.3)  # refused once: it holds a ticket
        w, wh = self.sem_holder(d, "fair-next", schema, "sk-c", 200, ttl, limit, 1, fair=True,
                                wait_ms=20000)
        self.wait_line(wh, r" attempt ")
        time.sleep(max(0.3, (hg + (hold - 300) * MS - now()) / 1e9))
        queued = self.psql(self.admin, "SELECT count(*) FROM %s.sqlock_semaphore_tickets "
                           "WHERE name = 'sk-c' AND expires_at > clock_timestamp()" % schema)
        t_kill = now()
        v.kill()
        g = self.wait_line(wh, r" grant ", timeout=30)
        self.wait_all([h, v, w], 30)
        rel = self.lines(hh, "released")
        blocked = (int(g[0]) - t_kill) / MS
        after_release = (int(g[0]) - int(rel[0][0])) / MS if rel else -1
        ticket_ttl = 3000
        ok &= queued == "2" and bool(rel) and blocked <= ticket_ttl + bound
        out.update(fair_tickets_queued=queued, fair_dead_waiter_block_ms=round(blocked),
                   fair_grant_after_release_ms=round(after_release),
                   fair_bound_ms=ticket_ttl + bound)
        hist += [hh, vh, wh]
        fig, violations, _, _ = check.check(hist, limits=limits)
        ok &= fig["violations"] == 0
        out.update(ttl_ms=ttl, bound_ms=ttl + bound, over_limit=fig["overlaps"],
                   token_regressions=fig["token_regressions"])
        self.report("14.sem_kill9", ok, out, t0, violations)

    def s15_sem_stop(self):
        t0 = time.monotonic()
        d = self.dir("sem-stop")
        schema = self.schema("semstop")
        self.migrate(schema)
        ttl, limit = 1500, 2
        out, ok = {}, True
        # Two holders hold both units; one is paused past its ttl. The waiter gets that unit;
        # after SIGCONT the paused holder must learn of the loss promptly, and at no instant
        # were more than 2 units held by leases their holders had validated.
        a, ah = self.sem_holder(d, "victim", schema, "sp-a", 30000, ttl, limit, 1)
        b, bh = self.sem_holder(d, "other", schema, "sp-a", 8000, ttl, limit, 1)
        self.wait_line(ah, r" renewed ")
        self.wait_line(bh, r" grant ")
        w, wh = self.sem_holder(d, "waiter", schema, "sp-a", 1000, ttl, limit, 1)
        t_stop, t_cont, g = self.pause_past_ttl(a, wh, r" grant ")
        self.wait_all([a, b, w], 40)
        lost = self.loss_times(ah)
        lag = (min(lost) - t_cont) / MS if lost else -1
        valid_after = sum(1 for p in self.lines(ah, "valid") if int(p[0]) > t_stop)
        ok &= bool(lost) and 0 <= lag <= 200
        out.update(stop_ms=round((t_cont - t_stop) / MS), loss_known_after_resume_ms=round(lag, 1),
                   takeover_ms=round((int(g[0]) - t_stop) / MS),
                   valid_claims_after_stop=valid_after)
        # Pauses shorter than ttl/3 lose nothing.
        s, sh = self.sem_holder(d, "short", schema, "sp-b", 6000, ttl, limit, 1)
        pauses, short_lost = self.pause_briefly(s, sh, ttl)
        ok &= short_lost == 0
        fig, violations, _, _ = check.check([ah, bh, wh, sh], limits={"sp-a": limit,
                                                                       "sp-b": limit})
        ok &= fig["violations"] == 0 and fig["max_units"] == limit
        out.update(short_pauses=pauses, short_pause_ms=round(ttl / 3 - 100),
                   short_losses=short_lost, over_limit=fig["overlaps"],
                   max_units=fig["max_units"], token_regressions=fig["token_regressions"])
        self.report("15.sem_sigstop", ok, out, t0, violations)

    def s16_sem_restart(self):
        t0 = time.monotonic()
        d = self.dir("sem-restart")
        schema = self.schema("semrestart")
        self.migrate(schema)
        ttl = 2000
        dur = 30000
        names = ["sr-a", "sr-f"]
        ps, hist = self.workers(d, 6, "semaphore", lambda i: [
            "--names", ",".join(names), "--fair-names", names[1], "--limit", self.SEM_LIMIT,
            "--count", 0, "--count-max", 2, "--ttl-ms", ttl, "--hold-max-ms", 30,
            "--duration-ms", dur, "--op-timeout-ms", 2000, "--wait-ms", 3000, "--seed", i + 1,
            "--schema", schema])
        restarts = self.restart_server(t0, (("fast", 6), ("immediate", 15)))
        errs = self.wait_all(ps, dur / 1000 + 60)
        fig, violations, _, _ = check.check(hist, limits={n: self.SEM_LIMIT for n in names})
        ok, out = self.restart_figures(fig, self.sem_core(fig), hist, restarts, errs)
        self.report("16.sem_restart", ok, out, t0, violations + errs)

    def s17_sem_proxy(self):
        t0 = time.monotonic()
        d = self.dir("sem-proxy")
        schema = self.schema("semproxy")
        self.migrate(schema)
        pp, port, cport = self.proxy(d, self.pg_port())
        purl = self.with_port(self.url, port)
        ttl, op, limit = 1500, 1000, 2
        out, ok, notes = {}, True, []
        # One holder through the proxy, one direct; both units held. The proxy stalls: the
        # stalled holder must declare its loss at its safety deadline and exit while the proxy
        # still stalls; the waiter gets the unit; the stalled renewal, delivered late, is refused.
        other, oh = self.sem_holder(d, "other", schema, "sx-a", 6000, ttl, limit, 1)
        self.wait_line(oh, r" grant ")
        v, vh = self.sem_holder(d, "stalled", schema, "sx-a", 30000, ttl, limit, 1, url=purl,
                                extra=["--op-timeout-ms", op])
        self.wait_line(vh, r" renewed ")
        w, wh = self.sem_holder(d, "waiter", schema, "sx-a", 1500, ttl, limit, 1, wait_ms=20000)
        t_stall, exited_ms, g = self.stall(cport, v, wh, ttl, op, notes)
        self.wait_all([v, w, other], 30)
        fig, violations, leases, _ = check.check([vh, wh, oh], limits={"sx-a": limit})
        stall_ok, stall_out = self.stall_figures(fig, leases, vh, t_stall, exited_ms, g)
        ok &= stall_ok
        out.update(stall_out)
        out.update(over_limit=fig["overlaps"], max_units=fig["max_units"],
                   token_regressions=fig["token_regressions"])
        self.stop(pp)
        self.report("17.sem_proxy", ok, out, t0, violations + notes)

    def s18_sem_sqlite(self):
        t0 = time.monotonic()
        fig, notes, integrity = self.sqlite_soak(self.sem_soak, "sem-sqlite", "lsem", 12000)
        out = self.sem_core(fig)
        out.update(limit=self.SEM_LIMIT, integrity_check=integrity)
        ok = (fig["violations"] == 0 and fig["errors"] == 0 and integrity == "ok" and not notes
              and fig["max_units"] == self.SEM_LIMIT)
        self.report("18.sem_sqlite", ok, out, t0, notes)

    # ---- late statements and the nemesis ----
    @staticmethod
    def proxy_stats(cport):
        reply = Suite.control(cport, "stats").split()
        return {k: int(v) for k, v in (x.split("=", 1) for x in reply[1:])}

    def late_renewal_once(self, d, tag, schema, cport, purl, fport, limit=None, build=None):
        """Issue 12, item 1: a 30 s lease (a lock, or every unit of a semaphore of `limit`)
        through the proxy; renew(1s) is held back by the proxy and times out; a plain renew()
        through a fresh connection succeeds; only then is the held renew(1s) delivered. A
        second client tries 1.5 s later. Returns (ok, figures, histories, notes)."""
        name = "lr-" + tag
        bar = os.path.join(d, "bar-" + tag)
        os.makedirs(bar)
        h = os.path.join(d, tag + "-holder.hist")
        args = ["--mode", "late_renewal", "--id", tag + "-holder", "--history", h,
                "--names", name, "--ttl-ms", 30000, "--hold-max-ms", 6000,
                "--op-timeout-ms", 1000, "--short-ttl-ms", 1000, "--barrier-dir", bar,
                "--fence-port", fport if limit is None else 0, "--write-every-ms", 20,
                "--wait-ms", 5000, "--schema", schema]
        if limit is not None:
            args += ["--limit", limit, "--count", limit]
        v = self.spawn(args, url=purl, build=build)
        self.wait_line(h, r" ready\s*$")
        before = self.proxy_stats(cport)
        # Only the renewal is held: other traffic of the client (its keepalive's, a pool
        # connection's) may cross the proxy at the same moment.
        self.control(cport, "hold sqlock_renew")
        open(os.path.join(bar, "renew_short"), "w").close()
        short = self.wait_line(h, r" renew_short ")
        again = self.wait_line(h, r" renew_again .*ok")
        held = int(self.control(cport, "flush").split()[1])
        t_flush = now()
        # The held statement reached the server after its client had gone, and was answered.
        end = time.monotonic() + 5
        st = self.proxy_stats(cport)
        while st["late_reply_bytes"] <= before["late_reply_bytes"] and time.monotonic() < end:
            time.sleep(0.02)
            st = self.proxy_stats(cport)
        landed = st["late_reply_bytes"] - before["late_reply_bytes"]
        time.sleep(max(0, 1.5 - (now() - t_flush) / 1e9))
        # The invariant, read directly: the holder never believes in more time than the row.
        table = "sqlock_locks" if limit is None else "sqlock_semaphore_holders"
        db_left = self.psql(self.admin, "SELECT round(1000 * extract(epoch FROM max(expires_at) "
                            "- clock_timestamp())) FROM %s.%s WHERE name = '%s'" %
                            (schema, table, name))
        t_db = now()
        valid = self.lines(h, "valid")
        holder_left = (int(valid[-1][6]) - t_db) / MS if valid else -1
        db_left = float(db_left) if db_left else -1
        if limit is None:
            w, wh = self.holder(d, tag + "-second", schema, name, 1000, 1500, fport,
                                wait_ms=1000, build=build)
        else:
            w, wh = self.sem_holder(d, tag + "-second", schema, name, 1000, 1500, limit, 1,
                                    wait_ms=1000, build=build)
        notes = self.wait_all([v, w], 30)
        second_granted = len(self.lines(wh, "grant"))
        race_set_up = short[4] == "err" and held > 0 and landed > 0
        if not race_set_up:
            notes.append("%s: the race was not set up: renew_short=%s held_bytes=%d "
                         "late_reply_bytes=%d" % (tag, " ".join(short[4:]), held, landed))
        out = {"renew_short": short[5] if short[4] == "err" else short[4], "held_bytes": held,
               "late_reply_bytes": landed, "db_left_ms": round(db_left),
               "holder_left_ms": round(holder_left), "second_granted": second_granted}
        # A holder's deadline is (renewal sent) + ttl - margin, so it is below the row's expiry.
        ok = (race_set_up and again[4] == "ok" and second_granted == 0 and db_left >= 0 and
              holder_left <= db_left and not notes)
        return ok, out, [h, wh], notes

    def s19_late_renewal(self):
        t0 = time.monotonic()
        d = self.dir("late-renewal")
        schema = self.schema("late")
        self.migrate(schema)
        fp, fport, flog = self.fence(d)
        pp, port, cport = self.proxy(d, self.pg_port())
        purl = self.with_port(self.url, port)
        lok, lout, lhist, lnotes = self.late_renewal_once(d, "lock", schema, cport, purl, fport)
        sok, sout, shist, snotes = self.late_renewal_once(d, "sem", schema, cport, purl, fport,
                                                         limit=1)
        self.stop(fp)
        self.stop(pp)
        lfig, lviol, _, _ = check.check(lhist, flog)
        sfig, sviol, _, _ = check.check(shist, limits={"lr-sem": 1})
        out = {"lock_" + k: v for k, v in lout.items()}
        out.update(lock_overlaps=lfig["overlaps"], lock_stale_accepted=lfig["stale_accepted"])
        out.update({"sem_" + k: v for k, v in sout.items()})
        out.update(sem_over_limit=sfig["overlaps"])
        ok = lok and sok and lfig["violations"] == 0 and sfig["violations"] == 0
        self.report("19.late_renewal", ok, out, t0, lnotes + snotes + lviol + sviol)

    def s20_nemesis(self):
        t0 = time.monotonic()
        d = self.dir("nemesis")
        schema = self.schema("nemesis")
        self.migrate(schema)
        fp, fport, flog = self.fence(d)
        pp, port, cport = self.proxy(d, self.pg_port())
        purl = self.with_port(self.url, port)
        seed = random.randint(1, 999999)
        # Per mille of chunks: held back (client->server), delayed (server->client), cut;
        # held and delayed for 1.25-2.5 s, past the clients' 1 s operation timeout.
        rates = (15, 15, 5, 2500, 2500)
        self.control(cport, "nemesis %d %d %d %d %d %d" % ((seed,) + rates))
        dur = 20000 if self.quick else 120000
        ttl, op = 3000, 1000
        locks, sem, limit = ["nm-a", "nm-b"], "nm-s", 2
        common = ["--ttl-ms", ttl, "--hold-max-ms", 30, "--near-ttl-pct", 4,
                  "--wait-ms", 2 * ttl, "--duration-ms", dur, "--op-timeout-ms", op,
                  "--schema", schema]
        ps, hist = self.workers(d, 4, "soak", lambda i: [
            "--names", ",".join(locks), "--fence-port", fport, "--seed", seed + i] + common,
            url=purl)
        sps, shist = self.workers(d, 2, "semaphore", lambda i: [
            "--names", sem, "--fair-names", sem, "--limit", limit, "--count", 0,
            "--count-max", 2, "--seed", seed + 10 + i] + common, tag="s", url=purl)
        ps, hist = ps + sps, hist + shist
        errs = self.wait_all(ps, dur / 1000 + 8 * ttl / 1000 + 60)
        st = self.proxy_stats(cport)
        self.stop(fp)
        self.stop(pp)
        fig, violations, leases, _ = check.check(hist, flog, limits={sem: limit})
        lock_grants = sum(1 for l in leases.values() if l.name in locks)
        sem_grants = sum(1 for l in leases.values() if l.name == sem)
        out = {"seed": seed, "lock_grants": lock_grants, "sem_grants": sem_grants,
               "overlaps": fig["overlaps"], "max_units": fig["max_units"],
               "token_regressions": fig["token_regressions"],
               "stale_accepted": fig["stale_accepted"], "writes_ok": fig["writes_ok"],
               "losses": fig["losses"]}
        out.update({k: st[k] for k in ("connections", "chunks", "hold", "delay", "cut",
                                       "late_after_close", "listen_connections",
                                       "listen_actions")})
        out["error_codes"] = json.dumps(fig["error_codes"], separators=(",", ":"))
        # A run without grants, or in which an action never fired, proves nothing.
        ok = (fig["violations"] == 0 and not errs and lock_grants > 0 and sem_grants > 0 and
              all(st[k] > 0 for k in ("hold", "delay", "cut", "late_after_close",
                                      "listen_connections")))
        self.report("20.nemesis", ok, out, t0, violations + errs)

SCENARIOS = [("soak", "s1_soak"), ("herd", "s2_herd"), ("kill", "s3_kill"), ("stop", "s4_stop"),
             ("proxy", "s6_proxy"), ("pgbouncer", "s7_pgbouncer"), ("sqlite", "s8_sqlite"),
             ("skew", "s9_skew"), ("inputs", "s10_inputs"), ("security", "s11_security"),
             ("restart", "s5_restart"), ("sem_soak", "s13_sem_soak"),
             ("sem_kill", "s14_sem_kill"), ("sem_stop", "s15_sem_stop"),
             ("sem_restart", "s16_sem_restart"), ("sem_proxy", "s17_sem_proxy"),
             ("sem_sqlite", "s18_sem_sqlite"), ("late_renewal", "s19_late_renewal"),
             ("nemesis", "s20_nemesis"), ("sanitizers", "s12_sanitizers"),
             ("broken", "broken_build_check")]
QUICK = ["soak", "herd", "kill", "stop", "proxy", "pgbouncer", "sqlite", "skew", "inputs",
         "security", "restart", "sem_soak", "sem_kill", "sem_sqlite", "late_renewal", "nemesis"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--profile", choices=["quick", "full"], default="quick")
    ap.add_argument("--only")
    ap.add_argument("--work")
    ap.add_argument("--broken-build")
    ap.add_argument("--asan-build")
    ap.add_argument("--tsan-build")
    a = ap.parse_args()
    s = Suite(a)
    wanted = a.only.split(",") if a.only else (QUICK if a.profile == "quick" else
                                               [n for n, _ in SCENARIOS])
    t0 = time.monotonic()
    for name, fn in SCENARIOS:
        if name not in wanted:
            continue
        started = time.monotonic()
        try:
            getattr(s, fn)()
        except Exception as e:  # a scenario that cannot run FAILS, it is never skipped
            s.report(name, False, {"error": repr(e)[:300]}, started)
        finally:
            s.cleanup()
    failed = [r for r in s.results if not r[1]]
    print("fault %s: %d scenarios, %d failed, %.0fs" % (a.profile, len(s.results), len(failed),
                                                       time.monotonic() - t0), flush=True)
    if not failed and not a.work:
        shutil.rmtree(s.work, ignore_errors=True)
    elif failed:
        print("histories kept in " + s.work, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
