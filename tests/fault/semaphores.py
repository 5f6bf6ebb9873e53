# SPDX-License-Identifier: Apache-2.0
"""The semaphore scenarios 13-18: units of a semaphore of limit N instead of a lock, under
the same faults as the lock scenarios."""
import time

import check
from harness import MS, now


class SemaphoreScenarios:
    """Scenarios 13-18; mixed into the harness by driver.py."""

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
