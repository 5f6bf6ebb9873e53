# SPDX-License-Identifier: Apache-2.0
"""Scenario 21: PostgreSQL crashed hard (SIGKILL of every server process) right after lock
releases. Since schema 4 a release that hands nothing over commits unflushed
(synchronous_commit off for that transaction alone: only grants are durable), so a crash right
after it can lose it. The promise (issue 14): that loses nothing but time. The row stays held
by the old holder until it expires; no overlap, and no token goes back.

Every timestamp is time.monotonic_ns() (CLOCK_MONOTONIC), the workers' timeline. The server's
clock is CLOCK_REALTIME of the same host, converted with one offset read by the driver.
"""
import collections
import json
import os
import random
import signal
import subprocess
import time

import check
from harness import MS, now, Fail, PGBIN

# A release's "released" line is written after its statement returned, so a release that took
# effect left expires_at = its transaction's now(), before that line; a lost one left the
# lease's own expiry, about a ttl later. SLACK_NS absorbs the realtime/monotonic conversion.
SLACK_NS = 50 * MS


def lost_releases(leases, events, crashes):
    """The releases the crashes lost, and the grants they lost, from the histories and the
    rows read right after each restart. `crashes`: dicts with t_kill, t_up and rows
    {name: (token, expires_mono_ns)}.

    A release is lost when, after the restart, the row of its name still carries its lease's
    token with an expiry later than the moment its holder had been told it was released (a
    release that took effect sets expires_at to its own start, and keeps the token). A grant is
    lost when the row's token after the restart is below a token granted (returned to its
    holder) before the crash. Returns (lost, grants_lost, notes); each lost release is a dict
    (crash, name, token, lease, released, expires)."""
    released = {}  # lease id -> time its holder logged "released"
    for t, wid, ev, f in events:
        if ev == "released" and len(f) >= 3 and f[2] in leases:
            released.setdefault(f[2], t)
    by_name_token = {(l.name, l.token): l for l in leases.values()}
    lost, grants_lost, notes = [], 0, []
    for k, c in enumerate(crashes):
        granted_before = collections.defaultdict(int)
        for l in leases.values():
            if l.grant < c["t_kill"]:
                granted_before[l.name] = max(granted_before[l.name], l.token)
        for name, top in granted_before.items():
            row = c["rows"].get(name)
            if row is None or row[0] < top:
                grants_lost += 1
                notes.append("crash %d lost a grant of %s: row token %s after the restart, "
                             "token %d granted before the crash" %
                             (k + 1, name, row[0] if row else "none", top))
        for name, (token, expires) in c["rows"].items():
            l = by_name_token.get((name, token))
            t_rel = released.get(l.id) if l else None
            if t_rel is not None and t_rel < c["t_kill"] and expires > t_rel + SLACK_NS:
                lost.append({"crash": k + 1, "name": name, "token": token, "lease": l.id,
                             "released": t_rel, "expires": expires})
    return lost, grants_lost, notes


class CrashScenarios:
    """Scenario 21; mixed into the harness by driver.py."""

    def pg_data(self):
        """The server's data directory, log file (as restart_server in locks.py) and lock
        files (postmaster.pid and the Unix socket's)."""
        data = self.psql(self.admin, "SHOW data_directory")
        socks = self.psql(self.admin, "SHOW unix_socket_directories")
        port = self.psql(self.admin, "SHOW port")
        locks = [os.path.join(data, "postmaster.pid")] + [
            os.path.join(s.strip(), ".s.PGSQL.%s.lock" % port) for s in socks.split(",")
            if s.strip()]
        return data, os.path.join(os.path.dirname(data), "bouncer", "postgresql.log"), locks

    @staticmethod
    def server_pids(data):
        """Every live process of the cluster in `data`: its working directory is the data
        directory (the postmaster chdirs there, its children inherit it). The postmaster
        first."""
        with open(os.path.join(data, "postmaster.pid")) as f:
            pm = int(f.readline())
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != pm:
                try:
                    if os.readlink("/proc/%s/cwd" % d) == data:
                        pids.append(int(d))
                except OSError:
                    pass
        return [pm] + pids

    def crash_server(self, data, locks, known):
        """SIGKILL to every process of the cluster: the postmaster first (it forks no more),
        then the processes of `known` (read beforehand, to strike fast), then any other still
        there. Waits until none is left (the postmaster dead or a zombie)."""
        for p in known:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        end = time.monotonic() + 30
        while True:
            left = self.server_pids(data)[1:]
            pm = known[0]
            try:
                with open("/proc/%d/stat" % pm) as f:
                    pm_alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                pm_alive = False
            if not left and not pm_alive:
                # The dead postmaster may stay a zombie (PID 1 here reaps nothing), and its lock
                # files would then name a pid that still "exists": the next start would refuse
                # ("another server might be running"). Every process is gone: remove the lock
                # files that name it.
                for path in locks:
                    try:
                        with open(path) as f:
                            if f.readline().strip() == str(pm):
                                os.remove(path)
                    except FileNotFoundError:
                        pass
                return
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            if time.monotonic() > end:
                raise Fail("PostgreSQL processes survived SIGKILL: %s" % left)
            time.sleep(0.005)

    def start_server(self, data, log):
        r = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PGBIN, "pg_ctl"),
                            "-D", data, "-l", log, "-w", "-t", "60", "start"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            with open(log, errors="replace") as f:
                tail = f.read()[-600:]
            print("    server log: " + tail, flush=True)
            raise Fail("pg_ctl start after the crash failed: %s %s; log: %s" %
                       (r.stdout, r.stderr, tail))

    def rows_now(self, schema):
        """{name: (token, expires_at on the monotonic timeline)} of every lock row."""
        out = self.psql(self.admin, "SELECT name, token, (extract(epoch FROM expires_at) * "
                        "1000000)::bigint FROM %s.sqlock_locks" % schema)
        offset = time.time_ns() - time.monotonic_ns()
        rows = {}
        for line in out.splitlines():
            name, token, exp_us = line.split("|")
            rows[name] = (int(token), int(exp_us) * 1000 - offset)
        return rows

    @staticmethod
    def tail_reader(paths):
        """Reads the lines the histories gained since the last call, in time order."""
        fds = {p: None for p in paths}
        rest = {p: b"" for p in paths}

        def read():
            new = []
            for p in paths:
                if fds[p] is None:
                    try:
                        fds[p] = os.open(p, os.O_RDONLY)
                    except FileNotFoundError:
                        continue
                while True:
                    chunk = os.read(fds[p], 65536)
                    if not chunk:
                        break
                    rest[p] += chunk
                *lines, rest[p] = rest[p].split(b"\n")
                for line in lines:
                    parts = line.decode(errors="replace").split()
                    if len(parts) >= 3 and parts[0].isdigit():
                        new.append((int(parts[0]), parts[1], parts[2], parts[3:]))
            new.sort(key=lambda e: e[0])
            return new

        def close():
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)
        return read, close

    def await_release(self, read, trying, after, uncontended, data, timeout=30):
        """Follows the histories until a "released" line later than `after` (with
        `uncontended`, of a name no other worker was trying to take at that moment: no waiter,
        so that release handed nothing over and committed unflushed); returns at once with
        that line and the cluster's processes (read before, to strike fast: any process forked
        since is found and killed after the postmaster). Polls without sleeping: every
        millisecond counts, since the next durable commit of anyone flushes the release."""
        end = time.monotonic() + timeout
        pids = self.server_pids(data)
        while time.monotonic() < end:
            for t, wid, ev, f in read():
                if ev == "attempt" and f:
                    trying[wid] = f[0]
                elif ev in ("grant", "refused", "error"):
                    trying.pop(wid, None)
                elif ev == "released" and f and t > after:
                    if not uncontended or all(n != f[0] for w, n in trying.items() if w != wid):
                        return (t, wid, f), pids
        raise Fail("no release to crash after within %ds" % timeout)

    def s21_crash_release(self):
        t0 = time.monotonic()
        d = self.dir("crash-release")
        # The checks must flag fabricated violations, or a pass below would mean nothing.
        problems, _, _, _ = self_test(self.dir("crash-release-selftest"))
        if problems:
            raise Fail("the checks missed fabricated violations: " + "; ".join(problems))
        schema = self.schema("crashrel")
        self.migrate(schema)
        data, log, locks = self.pg_data()
        fp, fport, flog = self.fence(d)
        ttl = 3000
        n_crash = 6 if self.quick else 16
        stop = os.path.join(d, "stop")
        names = ["cr-a", "cr-b", "cr-c"]
        # 6 workers on 3 names, short holds and a short pause after each release: some
        # releases find a waiter queued (a handoff, durable) and some do not (unflushed).
        ps, hist = self.workers(d, 6, "soak", lambda i: [
            "--names", ",".join(names), "--ttl-ms", ttl, "--hold-min-ms", 0,
            "--hold-max-ms", 30, "--pause-max-ms", 100, "--wait-ms", 10000,
            "--duration-ms", 600000, "--stop-file", stop, "--fence-port", fport,
            "--op-timeout-ms", 2000, "--seed", random.randint(1, 10 ** 6), "--schema", schema])
        read, close = self.tail_reader(hist)
        trying = {}
        crashes = []
        notes = []
        try:
            t_up = now()
            for k in range(n_crash):
                # A random moment 2-4 s after the server came back (workers have reconnected
                # and lost releases have healed), then the first release after it: odd crashes
                # after any release, even ones after a release nobody waited for.
                time.sleep(random.uniform(2.0, 3.5))
                (t_rel, wid, f), pids = self.await_release(read, trying, now(), k % 2 == 1,
                                                           data)
                t_kill = now()
                self.crash_server(data, locks, pids)
                t_down = now()
                self.start_server(data, log)
                t_up = now()
                rows = self.rows_now(schema)
                crashes.append({"t_rel": t_rel, "t_kill": t_kill, "t_down": t_down,
                                "t_up": t_up, "t_read": now(), "rows": rows,
                                "after": "uncontended" if k % 2 else "any",
                                "release": [wid] + f})
            # Let every lost release heal (its lease expire) and every worker be granted again.
            end = time.monotonic() + ttl / 1000 + 5
            while time.monotonic() < end:
                read()
                got = {h for h in hist if any(int(p[0]) > t_up for p in self.lines(h, "grant"))}
                if len(got) == len(hist):
                    break
                time.sleep(0.2)
            time.sleep(ttl / 1000)
        finally:
            close()
            open(stop, "w").close()
        errs = self.wait_all(ps, 30)
        self.stop(fp)
        fig, violations, leases, events = check.check(hist, flog)
        lost, grants_lost, lnotes = lost_releases(leases, events, crashes)
        with open(os.path.join(d, "crashes.json"), "w") as f:
            json.dump({"crashes": crashes, "lost": lost}, f, indent=1)
        # Every release lost must heal: its name granted again after the crash, once the lost
        # lease had expired (no one is granted over a live row).
        heal, unhealed, early = [], 0, 0
        for x in lost:
            after = [l.grant for l in leases.values()
                     if l.name == x["name"] and l.grant > crashes[x["crash"] - 1]["t_kill"]]
            if not after:
                unhealed += 1
                continue
            heal.append((min(after) - x["released"]) / MS)
            if min(after) < x["expires"] - SLACK_NS:
                early += 1
                lnotes.append("%s granted %.0f ms before the lost lease %s expired" %
                              (x["name"], (x["expires"] - min(after)) / MS, x["lease"]))
        releases = sum(1 for e in events if e[2] == "released")
        handed = sum(1 for e in events if e[2] == "handed")
        recovered = sum(1 for h in hist
                        if any(int(p[0]) > crashes[-1]["t_up"] for p in self.lines(h, "grant")))
        out = {"selftest": "ok", "crashes": len(crashes), "grants": fig["grants"],
               "releases": releases, "handed_over": handed, "lost_releases": len(lost),
               "crashes_losing": len({x["crash"] for x in lost}),
               "overlaps": fig["overlaps"], "token_regressions": fig["token_regressions"],
               "grants_lost": grants_lost, "stale_accepted": fig["stale_accepted"],
               "lost_heal_ms_max": round(max(heal)) if heal else 0,
               "unhealed": unhealed,
               "down_ms_max": round(max((c["t_up"] - c["t_kill"]) / MS for c in crashes)),
               "read_after_kill_ms_max": round(max((c["t_read"] - c["t_kill"]) / MS
                                                   for c in crashes)),
               "kill_after_release_ms_max": round(max((c["t_kill"] - c["t_rel"]) / MS
                                                      for c in crashes), 1),
               "losses": fig["losses"], "errors": fig["errors"],
               "clients_recovered": "%d/%d" % (recovered, len(hist)),
               "error_codes": json.dumps(fig["error_codes"], separators=(",", ":"))}
        ok = (fig["violations"] == 0 and grants_lost == 0 and unhealed == 0 and early == 0 and
              recovered == len(hist) and len(crashes) == n_crash and not errs)
        # In full, 16 crashes (8 right after a release nobody waited for) must have lost some
        # release, or the run did not test what it is for.
        if not self.quick and not lost:
            ok = False
            notes.append("no release was lost in %d crashes: the scenario proved nothing" %
                         len(crashes))
        self.report("21.crash_release", ok, out, t0, violations + lnotes + errs + notes)


def self_test(d):
    """Fabricated histories around one crash that the checks must flag: a token handed out again
    after the restart and a lower one (the checker's token regressions), a grant the crash lost,
    a lost release, and an overlap. Writes them to `d`; returns the problems found with the
    checks (none when every fabricated violation was flagged), the checker's figures, what was
    flagged and the lost releases found. Run by the scenario first, and standalone
    (`python3 tests/fault/crash.py`)."""
    w0, w1 = os.path.join(d, "w0.hist"), os.path.join(d, "w1.hist")
    kill, up = 5_000 * MS, 5_300 * MS
    with open(w0, "w") as f:
        f.write("1000000000 w0 attempt cr-a\n1001000000 w0 grant cr-a 10 w0#1\n"
                "1010000000 w0 valid cr-a 10 w0#1 3700000000\n"
                "1020000000 w0 release_begin cr-a 10 w0#1\n1021000000 w0 released cr-a 10 w0#1\n"
                "4900000000 w0 attempt cr-b\n4901000000 w0 grant cr-b 12 w0#2\n"
                "4950000000 w0 release_begin cr-b 12 w0#2\n4951000000 w0 released cr-b 12 w0#2\n")
    with open(w1, "w") as f:
        # After the restart: cr-a granted with token 10 again (a token gone back); cr-b granted
        # while w0's lost release still held it... and held past another grant (an overlap).
        f.write("5400000000 w1 attempt cr-a\n5401000000 w1 grant cr-a 10 w1#1\n"
                "5450000000 w1 valid cr-a 10 w1#1 8000000000\n"
                "5420000000 w1 attempt cr-b\n5421000000 w1 grant cr-b 13 w1#2\n"
                "5500000000 w1 valid cr-b 13 w1#2 8000000000\n")
    with open(w0, "a") as f:
        # ... and cr-a granted again with token 8, below the 10 granted before the crash.
        f.write("5460000000 w0 attempt cr-b\n5461000000 w0 grant cr-b 14 w0#3\n"
                "5470000000 w0 valid cr-b 14 w0#3 8000000000\n"
                "5600000000 w0 attempt cr-a\n5601000000 w0 grant cr-a 8 w0#4\n")
    fig, violations, leases, events = check.check([w0, w1])
    # After the restart the rows show cr-a at token 9 (below the 10 granted before the crash:
    # a lost grant) and cr-b at token 12 expiring a ttl after its grant (its release was lost).
    crashes = [{"t_kill": kill, "t_up": up,
                "rows": {"cr-a": (9, 1_021 * MS), "cr-b": (12, 7_901 * MS)}}]
    lost, grants_lost, notes = lost_releases(leases, events, crashes)
    problems = []
    if fig["token_regressions"] < 2:
        problems.append("the repeated token 10 and the lower 8 were not both flagged: %s" %
                        dict(fig))
    if fig["overlaps"] < 1:
        problems.append("the overlap on cr-b was not flagged: %s" % dict(fig))
    if grants_lost != 1:
        problems.append("the lost grant of cr-a was not flagged (grants_lost=%d)" % grants_lost)
    if [x["lease"] for x in lost] != ["w0#2"]:
        problems.append("the lost release of w0#2 was not found: %s" % lost)
    return problems, fig, violations + notes, lost


if __name__ == "__main__":
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        problems, fig, found, lost = self_test(tmp)
    for v in found:
        print("flagged:", v)
    print("lost releases:", [x["lease"] for x in lost])
    print("FAIL: " + "; ".join(problems) if problems else "self-test ok: every fabricated "
          "violation was flagged")
    sys.exit(1 if problems else 0)
