# SPDX-License-Identifier: Apache-2.0
"""The fault suite's harness: the servers' URLs, worker processes, the proxy and fence
server, files and lines the workers write, the common soak workload and the report lines.
The scenarios (locks.py, adversarial.py, semaphores.py, late.py) are mixed into it by driver.py.

Every timestamp it takes is time.monotonic_ns() (CLOCK_MONOTONIC), the workers' timeline.
"""
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

import check

HERE = os.path.dirname(os.path.abspath(__file__))

PGBIN = os.environ.get("SQLOCK_PGBIN", "/usr/lib/postgresql/15/bin")
MS = 1_000_000


def now():
    return time.monotonic_ns()


class Fail(Exception):
    pass


class Harness:
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
