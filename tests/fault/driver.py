#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The fault suite's scenario driver. Run it through scripts/fault (which builds the fault
build and starts the servers); it needs the environment scripts/with-postgres and
scripts/with-mariadb export.

usage: driver.py --build DIR --profile quick|full [--only a,b] [--work DIR]
                 [--broken-build DIR] [--asan-build DIR] [--tsan-build DIR]
Prints one line per scenario: "<scenario> PASS|FAIL k=v ... (<seconds>s)"; exits 1 when any
scenario failed.

Every timestamp it takes is time.monotonic_ns() (CLOCK_MONOTONIC), the workers' timeline.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adversarial import AdversarialScenarios  # noqa: E402
from crash import CrashScenarios  # noqa: E402
from ha import HAScenarios  # noqa: E402
from harness import Harness  # noqa: E402
from late import LateScenarios  # noqa: E402
from locks import LockScenarios  # noqa: E402
from mariadb import MariaDBScenarios  # noqa: E402
from semaphores import SemaphoreScenarios  # noqa: E402


class Suite(Harness, LockScenarios, AdversarialScenarios, SemaphoreScenarios, LateScenarios,
            CrashScenarios, HAScenarios, MariaDBScenarios):
    pass


SCENARIOS = [("soak", "s1_soak"), ("herd", "s2_herd"), ("kill", "s3_kill"), ("stop", "s4_stop"),
             ("proxy", "s6_proxy"), ("pgbouncer", "s7_pgbouncer"), ("sqlite", "s8_sqlite"),
             ("skew", "s9_skew"), ("inputs", "s10_inputs"), ("security", "s11_security"),
             ("restart", "s5_restart"), ("crash_release", "s21_crash_release"),
             ("sem_soak", "s13_sem_soak"),
             ("sem_kill", "s14_sem_kill"), ("sem_stop", "s15_sem_stop"),
             ("sem_restart", "s16_sem_restart"), ("sem_proxy", "s17_sem_proxy"),
             ("sem_sqlite", "s18_sem_sqlite"), ("late_renewal", "s19_late_renewal"),
             ("nemesis", "s20_nemesis"), ("ha_kill", "s22_ha_kill"),
             ("ha_switchover", "s23_ha_switchover"), ("ha_freeze", "s24_ha_freeze"),
             ("ha_standby", "s25_ha_standby_lost"), ("ha_etcd", "s26_ha_etcd_restart"),
             ("ha_async", "s27_ha_async"), ("mariadb", "s28_mariadb"),
             ("sem_mariadb", "s29_sem_mariadb"), ("mariadb_kill", "s30_mariadb_kill"),
             ("mariadb_restart", "s31_mariadb_restart"),
             ("mariadb_nemesis", "s32_mariadb_nemesis"), ("sanitizers", "s12_sanitizers"),
             ("broken", "broken_build_check")]
QUICK = ["soak", "herd", "kill", "stop", "proxy", "pgbouncer", "sqlite", "skew", "inputs",
         "security", "restart", "crash_release", "sem_soak", "sem_kill", "sem_sqlite",
         "late_renewal", "nemesis", "ha_kill", "mariadb", "sem_mariadb", "mariadb_kill",
         "mariadb_restart", "mariadb_nemesis"]


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
