#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Makes a deliberately broken copy of sqlock, to show that the checker catches a real
violation. The copy is made OUTSIDE the repository; the repository is never touched.

usage: make_broken.py SOURCE_DIR DEST_DIR

The break: a client clock in the row. The PostgreSQL acquire writes
expires_at = to_timestamp(<client's system_clock + ttl>) instead of the server's
now() + ttl (ShedLock's classic bug). The expiry check stays on the server clock, so a client
whose clock is behind writes a lease that is already expired and another client takes the lock
while the first still holds it. The clock-skew scenario's workload (faketime +-5h) then shows
overlapping critical sections.

A second break, for semaphores: the PostgreSQL grant function and the release's handoff
(006_semaphore_handoff.up.sql, embedded in the library at build time) admit one unit more than
the limit. The semaphore soak's
workload then shows more units in use at once than the limit.

A third break: the PostgreSQL renew statements set
expires_at = now() + ttl without the never-shorten rule (GREATEST(expires_at, ...)), so a
renew(1s) delivered late, after a 30 s renewal, ends the lease behind its holder's back. The
late-renewal scenario (19) then grants a second holder while the first still holds.

Fails loudly if the source no longer has the expected text, so the check cannot go stale
silently.
"""
import os
import shutil
import sys

src, dst = sys.argv[1], sys.argv[2]
shutil.rmtree(dst, ignore_errors=True)
ignore = shutil.ignore_patterns("build*", ".git")
os.makedirs(dst)
for entry in ("CMakeLists.txt", "cmake", "include", "src", "migrations", "tests"):
    p = os.path.join(src, entry)
    if os.path.isdir(p):
        shutil.copytree(p, os.path.join(dst, entry), ignore=ignore)
    elif os.path.exists(p):
        shutil.copy2(p, os.path.join(dst, entry))

pg = os.path.join("src", "backends", "postgresql")


def patch(name, edits):
    """Applies (old, new, times) edits to one file of the copy (a path relative to its root);
    each old text must occur exactly `times` times."""
    target = os.path.join(dst, name)
    text = open(target).read()
    for old, new, times in edits:
        if text.count(old) != times:
            sys.exit("make_broken.py: expected %d of %r in %s" % (times, old, target))
        text = text.replace(old, new)
    open(target, "w").write(text)


# The acquire statement takes its expiry from a parameter the client computes from its clock.
patch(os.path.join(pg, "statements.cpp"), [
    ("\"now() + $5::bigint * interval '1 millisecond', $4::text \"",
     "\"to_timestamp($5::bigint / 1000.0), $4::text \"", 1),
    # Renewals may shorten the lease again (the lock statements renew and renew_mixed, the
    # semaphore holder in renew_mixed).
    ("GREATEST(l.expires_at, now() + ", "(now() + ", 2),
    ("GREATEST(h.expires_at, now() + ", "(now() + ", 1),
])
patch(os.path.join(pg, "locks.cpp"), [
    ("{r.name, r.owner, r.nonce, r.metadata, std::to_string(r.ttl.count()),",
     "{r.name, r.owner, r.nonce, r.metadata, "
     "std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>("
     "std::chrono::system_clock::now().time_since_epoch()).count() + r.ttl.count()),", 1),
])

# The semaphore grant admits one unit over the limit.
# (The grant function since schema 6; a release's handoff may overfill too.)
patch(os.path.join("migrations", "postgresql", "006_semaphore_handoff.up.sql"), [
    ("EXIT WHEN used + p_units > p_limit OR", "EXIT WHEN used + p_units > p_limit + 1 OR", 1),
    ("EXIT WHEN used + t.units > sem_limit;", "EXIT WHEN used + t.units > sem_limit + 1;", 1),
])
print("broken copy (client clock in expires_at; semaphore grants one unit over the limit; "
      "renewals may shorten a lease) in " + dst)
