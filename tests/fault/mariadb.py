# SPDX-License-Identifier: Apache-2.0
"""The MariaDB scenarios 28-32: the lock and semaphore soaks, kill -9, server restarts and the
nemesis proxy, against the server scripts/with-mariadb starts (scripts/fault wraps the driver
in it). Each scenario migrates a fresh database `sqlock_f_<tag>_...`, which the test user may
create (it has ALL on `sqlock\\_%`); the workers take its mariadb:// URL and read the password
from SQLOCK_MARIADB_PASSFILE, as an application would.
"""
import json
import os
import random
import re
import subprocess
import time

import check
from harness import MS, now, Fail

CLIENT = os.environ.get("SQLOCK_MARIADB_CLIENT", "/usr/bin/mariadb")


class MariaDBScenarios:
    """Scenarios 28-32; mixed into the harness by driver.py."""

    def maria_url(self):
        url = os.environ.get("SQLOCK_TEST_MARIADB_URL")
        if not url or not os.environ.get("SQLOCK_MARIADB_PASSFILE"):
            raise Fail("no MariaDB server: run the driver through scripts/with-mariadb "
                       "(scripts/fault does)")
        return url

    def maria_port(self):
        return int(re.match(r"mariadb://[^@/]+@[^:/]+:(\d+)/", self.maria_url()).group(1))

    def maria_cnf(self):
        """A client option file (0600, in the work dir) for the test user: its password is read
        from the passfile and never put on a command line."""
        path = os.path.join(self.work, "mariadb-client.cnf")
        if os.path.exists(path):
            return path
        m = re.match(r"mariadb://([^@/]+)@([^:/]+):(\d+)/", self.maria_url())
        user, host, port = m.groups()
        pw = None
        with open(os.environ["SQLOCK_MARIADB_PASSFILE"]) as f:
            for line in f:
                if line.count(":") < 3:
                    continue
                h, p, u, secret = line.rstrip("\n").split(":", 3)
                if h in (host, "*") and p in (port, "*") and u in (user, "*"):
                    pw = secret
                    break
        if pw is None:
            raise Fail("no password for %s@%s:%s in SQLOCK_MARIADB_PASSFILE" % (user, host, port))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("[client]\nuser = %s\npassword = \"%s\"\nhost = %s\nport = %s\n"
                    "protocol = TCP\nconnect-timeout = 10\n" % (user, pw, host, port))
        return path

    def maria_sql(self, sql, db=None):
        """Runs `sql` (on stdin) as the test user; returns the output, tab-separated."""
        r = subprocess.run([CLIENT, "--defaults-file=" + self.maria_cnf(), "-N", "-B"] +
                           ([db] if db else []), input=sql, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise Fail("mariadb failed: %s: %s" % (sql[:80], r.stderr.strip()))
        return r.stdout.strip()

    def maria_db(self, tag):
        """A fresh, migrated database: its name and URL."""
        db = "sqlock_f_%s_%d_%d" % (tag, os.getpid(), random.randint(0, 99999))
        self.maria_sql("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % db)
        url = re.sub(r"/[^/?]*(\?|$)", "/" + db + r"\1", self.maria_url(), count=1)
        self.migrate("", url=url)
        return db, url

    def maria_lock_token(self, db, name):
        """The token of the row of lock `name` (None when there is none)."""
        r = self.maria_sql("SELECT token FROM sqlock_locks WHERE name = '%s'" % name, db)
        return int(r) if r else None

    def maria_restart(self, t0, schedule):
        """Restarts MariaDB at each (mode, seconds after t0) of schedule, mode "term" (a clean
        shutdown) or "kill" (kill -9: InnoDB recovers at start); returns (mode, start, end)
        per restart, end when the server serves again."""
        cmd = os.environ.get("SQLOCK_TEST_MARIADB_RESTART")
        if not cmd:
            raise Fail("SQLOCK_TEST_MARIADB_RESTART is not set (scripts/with-mariadb sets it)")
        restarts = []
        for mode, at in schedule:
            time.sleep(max(0, at - (time.monotonic() - t0)))
            s = now()
            r = subprocess.run([cmd, mode], capture_output=True, text=True, timeout=150)
            if r.returncode != 0:
                raise Fail("MariaDB restart (%s) failed: %s" % (mode, r.stderr.strip()[-400:]))
            restarts.append((mode, s, now()))
        return restarts

    # ---- the scenarios ----
    def s28_mariadb(self):
        t0 = time.monotonic()
        d = self.dir("mariadb")
        _, url = self.maria_db("soak")
        dur = 12000 if self.quick else 120000
        fig, notes, _ = self.soak("mdb", d, 8, dur, schema="", url=url)
        out = self.core(fig)
        out["grants_per_s"] = round(fig["grants"] / (dur / 1000), 1)
        out["writes_ok"] = fig["writes_ok"]
        ok = fig["violations"] == 0 and fig["errors"] == 0 and not notes and fig["grants"] > 0
        self.report("28.mariadb", ok, out, t0, notes)

    def s29_sem_mariadb(self):
        t0 = time.monotonic()
        d = self.dir("sem-mariadb")
        _, url = self.maria_db("sem")
        dur = 8000 if self.quick else 90000
        fig, notes, _ = self.sem_soak("msem", d, 8, dur, schema="", url=url)
        out = self.sem_core(fig)
        out.update(limit=self.SEM_LIMIT, grants_per_s=round(fig["grants"] / (dur / 1000), 1))
        ok = (fig["violations"] == 0 and fig["errors"] == 0 and not notes and
              fig["max_units"] == self.SEM_LIMIT)
        self.report("29.sem_mariadb", ok, out, t0, notes)

    def kill_holders_in_soak(self, d, url, fport, ttl, dur, kills):
        """A soak of 6 workers on 3 names with holds of 200-600 ms; every dur/(kills+1) ms one
        worker that holds a lease at that moment is killed (kill -9) and a fresh worker takes
        its place for the rest of the run. Returns the histories, the worker errors and per
        kill (time, worker, name, token, lease)."""
        def args(left_ms, seed):
            return ["--names", "mk-a,mk-b,mk-c", "--ttl-ms", ttl, "--hold-min-ms", 200,
                    "--hold-max-ms", 600, "--wait-ms", 4 * ttl, "--duration-ms", left_ms,
                    "--fence-port", fport, "--seed", seed]
        ps, hist = self.workers(d, 6, "soak", lambda i: args(dur, i + 1), tag="s", url=url)
        killed, done, done_hist = [], [], []
        t0 = time.monotonic()
        for k in range(kills):
            time.sleep(max(0, (k + 1) * dur / (kills + 1) / 1000 - (time.monotonic() - t0)))
            end = time.monotonic() + 3
            victim = None
            while victim is None and time.monotonic() < end:
                for i, (p, h) in enumerate(zip(ps, hist)):
                    if p.poll() is not None:
                        continue
                    held = {}  # lease -> (name, token): granted, not released nor lost
                    with open(h) as f:
                        for line in f:
                            x = line.split()
                            if len(x) >= 6 and x[2] == "grant":
                                held[x[5]] = (x[3], int(x[4]))
                            elif len(x) >= 6 and x[2] in ("release_begin", "released",
                                                          "noticed_lost"):
                                held.pop(x[5], None)
                            elif len(x) >= 5 and x[2] == "lost":
                                held = {k: v for k, v in held.items()
                                        if v != (x[3], int(x[4]))}
                    if held:
                        lease, (name, token) = next(iter(held.items()))
                        t = now()
                        p.kill()
                        victim = (t, h, name, token, lease)
                        left = int(dur - (time.monotonic() - t0) * 1000)
                        rp, rh = self.workers(d, 1, "soak", lambda _: args(left, 100 + k),
                                              tag="r%d-" % k, url=url)
                        done.append(ps[i])
                        ps[i], hist[i] = rp[0], rh[0]
                        done_hist.append(h)
                        break
                if victim is None:
                    time.sleep(0.01)
            if victim is None:
                raise Fail("no worker held a lease to kill within 3 s")
            killed.append(victim)
        errs = self.wait_all(ps + done, dur / 1000 + 8 * ttl / 1000 + 30)
        return hist + done_hist, errs, killed

    def s30_mariadb_kill(self):
        t0 = time.monotonic()
        db, url = self.maria_db("kill")
        d = self.dir("mariadb-kill")
        fp, fport, flog = self.fence(d)
        ttl, bound = 1500, 1000
        out, ok, hist, notes = {}, True, [], []
        # (a) kill -9 in the critical section; (b) just after the grant committed
        # (acquire.granted:crash); (c) during the release (release.before:crash): as scenario 3.
        v, vh = self.holder(d, "victim-a", "", "k-a", 60000, ttl, fport, url=url)
        self.wait_line(vh, r" grant ")
        w, wh = self.holder(d, "waiter-a", "", "k-a", 200, ttl, fport, url=url)
        g, take_a = self.kill_when_waiting(v, wh)
        ok &= int(g[4]) > int(self.lines(vh, "grant")[0][4]) and take_a <= ttl + bound
        self.wait_all([v, w], 30)
        hist += [vh, wh]
        v, vh = self.holder(d, "victim-b", "", "k-b", 60000, ttl, fport, url=url,
                            env_extra={"SQLOCK_FAULT": "acquire.granted:crash"})
        self.wait_all([v], 30)
        attempt = int(self.lines(vh, "attempt")[0][0])
        crashed = self.maria_lock_token(db, "k-b")
        w, wh = self.holder(d, "waiter-b", "", "k-b", 200, ttl, fport, url=url)
        g = self.wait_line(wh, r" grant ", timeout=30)
        take_b = (int(g[0]) - attempt) / MS
        ok &= (v.returncode == -9 and crashed is not None and int(g[4]) > crashed and
               take_b <= ttl + bound)
        self.wait_all([w], 30)
        hist += [vh, wh]
        v, vh = self.holder(d, "victim-c", "", "k-c", 300, ttl, fport, url=url,
                            env_extra={"SQLOCK_FAULT": "release.before:crash"})
        self.wait_line(vh, r" grant ")
        w, wh = self.holder(d, "waiter-c", "", "k-c", 200, ttl, fport, url=url)
        self.wait_all([v], 30)
        rb = self.lines(vh, "release_begin")
        g = self.wait_line(wh, r" grant ", timeout=30)
        take_c = (int(g[0]) - int(rb[0][0])) / MS if rb else -1
        ok &= (v.returncode == -9 and bool(rb) and
               int(g[4]) > int(self.lines(vh, "grant")[0][4]) and 0 <= take_c <= ttl + bound)
        self.wait_all([w], 30)
        hist += [vh, wh]
        out.update(incs_takeover_ms=round(take_a), granted_crash_takeover_ms=round(take_b),
                   release_crash_takeover_ms=round(take_c))
        # (d) holders killed mid-lease during a soak (6 workers, each killed one replaced): each
        # killed lease's name is granted again, with a larger token, within ttl + 1 s of the kill
        # (or of the first attempt after it, when nobody was trying to take that name).
        sd = self.dir("mariadb-kill-soak")
        shist, errs, killed = self.kill_holders_in_soak(sd, url, fport, ttl,
                                                        4000 if self.quick else 30000,
                                                        3 if self.quick else 12)
        leases, _ = check.load_histories(shist)
        regrant = []
        for t, wid, name, token, lease in killed:
            after = sorted((l.grant, l.token, l.attempt) for l in leases.values()
                           if l.name == name and l.grant > t)
            if not after or after[0][1] <= token:
                notes.append("%s (token %d, %s) killed: %s" % (name, token, lease,
                             "never granted again" if not after else
                             "granted again with token %d" % after[0][1]))
                regrant.append(-1)
                continue
            # From the kill, or from the attempt that got it when nobody wanted the name then.
            regrant.append((after[0][0] - max(t, after[0][2])) / MS)
        ok &= all(0 <= r <= ttl + bound for r in regrant) and not errs
        self.stop(fp)
        fig, violations, _, _ = check.check(hist + shist, flog)
        ok &= fig["violations"] == 0
        out.update(soak_kills=len(killed),
                   soak_regrant_ms_max=round(max(regrant)) if regrant else -1,
                   ttl_ms=ttl, bound_ms=ttl + bound, grants=fig["grants"],
                   overlaps=fig["overlaps"], token_regressions=fig["token_regressions"],
                   stale_accepted=fig["stale_accepted"])
        self.report("30.mariadb_kill9", ok, out, t0, violations + notes + errs)

    def s31_mariadb_restart(self):
        t0 = time.monotonic()
        d = self.dir("mariadb-restart")
        _, url = self.maria_db("restart")
        fp, fport, flog = self.fence(d)
        ttl = 2000
        if self.quick:
            dur, schedule = 8000, (("kill", 3.5),)
        else:
            dur, schedule = 45000, (("term", 5), ("kill", 13), ("term", 22), ("kill", 31))
        ps, hist = self.workers(d, 6, "soak", lambda i: [
            "--names", "mr-a,mr-b,mr-c", "--ttl-ms", ttl, "--hold-max-ms", 30,
            "--duration-ms", dur, "--fence-port", fport, "--op-timeout-ms", 2000,
            "--wait-ms", 3000, "--seed", i + 1], url=url)
        restarts = self.maria_restart(t0, schedule)
        errs = self.wait_all(ps, dur / 1000 + 60)
        self.stop(fp)
        fig, violations, _, _ = check.check(hist, flog)
        ok, out = self.restart_figures(fig, self.core(fig), hist, restarts, errs)
        out["stale_accepted"] = fig["stale_accepted"]
        self.report("31.mariadb_restart", ok, out, t0, violations + errs)

    def s32_mariadb_nemesis(self):
        t0 = time.monotonic()
        d = self.dir("mariadb-nemesis")
        _, url = self.maria_db("nemesis")
        fp, fport, flog = self.fence(d)
        pp, port, cport = self.proxy(d, self.maria_port())
        purl = self.with_port(url, port)
        seed = random.randint(1, 999999)
        # As scenario 20: per mille of chunks held back, delayed, cut; held and delayed for
        # 1.25-2.5 s, past the clients' 1 s operation timeout. A held transaction that holds the
        # token counter's row lock stalls every writer of the database until it ends, so grants
        # are much rarer than on PostgreSQL: the short run of `quick` halves the rates (and
        # waits ttl, not 2 ttl) so that both the locks and the semaphore are granted.
        rates = (8, 8, 3, 2500, 2500) if self.quick else (15, 15, 5, 2500, 2500)
        self.control(cport, "nemesis %d %d %d %d %d %d" % ((seed,) + rates))
        dur = 10000 if self.quick else 120000
        ttl, op = 3000, 1000
        locks, sem, limit = ["mn-a", "mn-b"], "mn-s", 2
        common = ["--ttl-ms", ttl, "--hold-max-ms", 30, "--near-ttl-pct", 4,
                  "--wait-ms", ttl if self.quick else 2 * ttl, "--duration-ms", dur,
                  "--op-timeout-ms", op]
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
                                       "late_after_close")})
        out["error_codes"] = json.dumps(fig["error_codes"], separators=(",", ":"))
        # A run without grants, or in which an action never fired, proves nothing.
        ok = (fig["violations"] == 0 and not errs and lock_grants > 0 and sem_grants > 0 and
              all(st[k] > 0 for k in ("hold", "delay", "cut")) and
              (self.quick or st["late_after_close"] > 0))
        self.report("32.mariadb_nemesis", ok, out, t0, violations + errs)
