# SPDX-License-Identifier: Apache-2.0
"""Late statements, scenarios 19-20: a renewal delivered after its client gave up, and the
nemesis proxy that holds, delays and cuts at random."""
import json
import os
import random
import time

import check
from harness import MS, now, Harness


class LateScenarios:
    """Scenarios 19-20; mixed into the harness by driver.py."""

    @staticmethod
    def proxy_stats(cport):
        reply = Harness.control(cport, "stats").split()
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
