# SPDX-License-Identifier: Apache-2.0
"""The lock scenarios 1-9: soak, thundering herd, kill, stop, restart, proxy stall,
PgBouncer, SQLite and clock skew."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import check
from harness import MS, now, Fail, PGBIN


class LockScenarios:
    """Scenarios 1-9; mixed into the harness by driver.py."""

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
