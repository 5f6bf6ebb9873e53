# SPDX-License-Identifier: Apache-2.0
"""Scenarios 10-12 and the broken-build check: bad input, hostile roles, the sanitizer builds,
and a deliberately broken copy that the checker must catch."""
import os
import re
import subprocess
import time

import check
from harness import HERE


class AdversarialScenarios:
    """Scenarios 10-12 and the broken-build check; mixed into the harness by driver.py."""

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
        # The grants of a runtime role (docs/postgresql.md's list): schema 3 revokes EXECUTE on sqlock's
        # functions from PUBLIC, so the grant function (it runs as its caller) needs its own.
        for g in ("GRANT USAGE ON SCHEMA %s TO sqlock_runtime" % q,
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON %s.sqlock_locks, "
                  "%s.sqlock_lock_waiters TO sqlock_runtime" % (q, q),
                  "GRANT SELECT ON %s.sqlock_schema_version TO sqlock_runtime" % q,
                  "GRANT USAGE ON SEQUENCE %s.sqlock_token_seq TO sqlock_runtime" % q,
                  "GRANT SELECT, INSERT, UPDATE, DELETE ON %s.sqlock_semaphores, "
                  "%s.sqlock_semaphore_holders, %s.sqlock_semaphore_tickets TO sqlock_runtime"
                  % (q, q, q),
                  "GRANT EXECUTE ON FUNCTION %s.sqlock_assert_held(text, bigint), "
                  "%s.sqlock_semaphore_assert_held(text, bigint), "
                  "%s.sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, "
                  "boolean, boolean, bigint, text), "
                  "%s.sqlock_semaphore_attempt(text, bigint, bigint, text, text, text, bigint, "
                  "boolean, boolean, bigint, text, bigint, bigint, text), "
                  "%s.sqlock_semaphore_release(text, text, bigint, text, text, boolean) "
                  "TO sqlock_runtime" % (q, q, q, q, q)):
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
        sem_statements = sum(1 for x in statements if "sqlock_semaphore_attempt(" in x)
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
