#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The fault suite's checker: reads worker histories (and the fenced resource's log) and
reports every violation of sqlock's guarantees.

usage: check.py [--fence LOG] [--expect-no-loss] [--herd] [--limit NAME=N ...] HISTORY...
Exits 1 when there is a violation; prints the figures as one JSON object.

All timestamps are CLOCK_MONOTONIC nanoseconds of one host (see common.hpp), so intervals of
different processes compare directly.

Violations:
  overlap          two leases of one name whose critical sections intersect. A critical
                   section runs from the moment the acquire call returned ("grant") to the last
                   instant the holder had validated its lease ("valid": the timestamp is taken
                   BEFORE the validity check, so the lease was held then).
                   For a semaphore (a name given a limit): an instant at which the critical
                   sections in progress hold more units than the limit (each grant that brings
                   the sum above it counts once).
  token_regression for one name, a grant whose attempt started after another grant had been
                   returned, yet carries a token not larger than it (duplicates included).
  stale_accepted   the resource accepted a write with a token below the highest it had
                   accepted, or a token already used by a different lease; or accepted a write a
                   holder made after it had been told (or had noticed) that its lease was lost.
  false_loss       (with --expect-no-loss) any loss where no fault was injected.
  internal_error   an error with errc::internal surfaced to the application.
  herd             (with --herd) a round (name) without exactly one winner.
"""
import argparse
import collections
import json
import sys


class Lease:
    __slots__ = ("id", "wid", "name", "token", "attempt", "grant", "last_valid", "max_safe",
                 "lost", "noticed", "released", "writes", "units")

    def __init__(self, lid, wid, name, token, attempt, grant, units=1):
        self.id, self.wid, self.name, self.token = lid, wid, name, token
        self.attempt, self.grant = attempt, grant
        self.units = units    # semaphore units held (1 for a lock)
        self.last_valid = grant
        self.max_safe = 0
        self.lost = None      # on_lost callback time
        self.noticed = None   # the holder's own check saw the loss
        self.released = None
        self.writes = []      # (t, verdict, zombie)


def load_histories(paths):
    """Returns (leases, events) from every history file."""
    leases = {}
    events = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 3 or not parts[0].isdigit():
                        continue
                    events.append((int(parts[0]), parts[1], parts[2], parts[3:]))
        except FileNotFoundError:
            continue
    events.sort(key=lambda e: e[0])
    last_attempt = {}
    by_wid_name_token = {}
    for t, wid, ev, f in events:
        if ev == "attempt":
            last_attempt[wid] = t
        elif ev == "grant" and len(f) >= 3:
            units = int(f[3]) if len(f) >= 4 and f[3].isdigit() else 1
            lease = Lease(f[2], wid, f[0], int(f[1]), last_attempt.get(wid, t), t, units)
            leases[lease.id] = lease
            by_wid_name_token[(wid, f[0], int(f[1]))] = lease
        elif ev == "valid" and len(f) >= 4 and f[2] in leases:
            lease = leases[f[2]]
            lease.last_valid = max(lease.last_valid, t)
            lease.max_safe = max(lease.max_safe, int(f[3]))
        elif ev == "lost" and len(f) >= 2:
            lease = by_wid_name_token.get((wid, f[0], int(f[1])))
            if lease is not None and lease.lost is None:
                lease.lost = t
        elif ev == "noticed_lost" and len(f) >= 3 and f[2] in leases:
            if leases[f[2]].noticed is None:
                leases[f[2]].noticed = t
        elif ev == "released" and len(f) >= 3 and f[2] in leases:
            leases[f[2]].released = t
        elif ev == "write" and len(f) >= 4 and f[2] in leases:
            leases[f[2]].writes.append((t, f[3], len(f) > 4 and f[4] == "zombie"))
    return leases, events


def load_fence(path):
    out = []
    if not path:
        return out
    with open(path, errors="replace") as f:
        for line in f:
            p = line.split()
            if len(p) == 5 and p[0].isdigit():
                out.append((int(p[0]), p[1], int(p[2]), p[3], p[4]))
    return out


def units_over_limit(name, ls, limit, violations, found):
    """Sweeps the critical sections of one semaphore's leases over the monotonic timeline.
    Returns (the number of grants that brought the units in use above `limit`, the most
    units in use at any instant). A section ends at its last validated instant; at equal
    timestamps an end comes before a start (as for locks, touching sections do not overlap)."""
    marks = []
    for l in ls:
        if l.last_valid > l.grant:
            marks.append((l.grant, 1, l))
            marks.append((l.last_valid, 0, l))
    marks.sort(key=lambda m: (m[0], m[1]))
    used, peak, over = 0, 0, 0
    live = {}
    for t, start, l in marks:
        if not start:
            used -= l.units
            live.pop(l.id, None)
            continue
        used += l.units
        live[l.id] = l
        peak = max(peak, used)
        if used > limit:
            over += 1
            if found + over <= 5:
                violations.append(
                    "units over the limit on %s: %d units of %d in use when %s (token %d, %d "
                    "units) was granted; in use: %s" % (
                        name, used, limit, l.id, l.token, l.units,
                        ", ".join("%s(token %d, %d, valid until +%.3f ms)" % (
                            x.id, x.token, x.units, (x.last_valid - t) / 1e6)
                            for x in sorted(live.values(), key=lambda x: x.grant))[:600]))
    return over, peak


def check(paths, fence_log=None, expect_no_loss=False, herd=False, limits=None):
    """`limits`: {name: limit} for names that are semaphores (their leases may overlap up to
    the limit in units), or one int for every name."""
    leases, events = load_histories(paths)
    fig = collections.OrderedDict()
    violations = []
    by_name = collections.defaultdict(list)
    for lease in leases.values():
        by_name[lease.name].append(lease)

    def limit_of(name):
        if isinstance(limits, int):
            return limits
        return (limits or {}).get(name)

    # Overlapping critical sections, on the one monotonic timeline.
    overlaps = 0
    max_units = {}
    for name, ls in by_name.items():
        if limit_of(name) is not None:
            over, peak = units_over_limit(name, ls, limit_of(name), violations, overlaps)
            overlaps += over
            max_units[name] = peak
            continue
        ls = sorted(ls, key=lambda l: l.grant)
        cur = None
        for l in ls:
            if cur is not None and l.grant < cur.last_valid:
                overlaps += 1
                if overlaps <= 5:
                    violations.append(
                        "overlap on %s: %s (token %d) held until %.3f ms after %s (token %d) "
                        "was granted" % (name, cur.id, cur.token, (cur.last_valid - l.grant) / 1e6,
                                         l.id, l.token))
            if cur is None or l.last_valid > cur.last_valid:
                cur = l
    fig["grants"] = len(leases)
    fig["overlaps"] = overlaps
    if limits is not None:
        fig["max_units"] = max(max_units.values()) if max_units else 0
        fig["max_units_by_name"] = max_units

    # Token regressions: a grant that began after another was returned must carry a larger
    # token. Scan tokens from high to low, keeping the earliest grant among higher tokens.
    regressions = 0
    for name, ls in by_name.items():
        if all(l.token == 0 for l in ls):
            continue  # advisory locks carry no token
        tokens = collections.Counter(l.token for l in ls)
        dups = sum(c - 1 for c in tokens.values() if c > 1)
        if dups:
            violations.append("duplicate tokens on %s: %d" % (name, dups))
        regressions += dups
        ls = sorted(ls, key=lambda l: -l.token)
        earliest_higher = None
        i = 0
        while i < len(ls):
            j = i
            while j < len(ls) and ls[j].token == ls[i].token:
                j += 1
            for l in ls[i:j]:
                if earliest_higher is not None and earliest_higher.grant < l.attempt:
                    regressions += 1
                    if regressions <= 5:
                        violations.append(
                            "token regression on %s: %s got %d after %s had got %d" %
                            (name, l.id, l.token, earliest_higher.id, earliest_higher.token))
            for l in ls[i:j]:
                if earliest_higher is None or l.grant < earliest_higher.grant:
                    earliest_higher = l
            i = j
    fig["token_regressions"] = regressions

    # The resource's own log: stale or duplicate tokens accepted.
    stale_accepted = 0
    fence = load_fence(fence_log)
    highest = {}
    owner_of = {}
    writes_ok = writes_stale = 0
    for t, res, token, lid, verdict in fence:
        if verdict != "OK":
            writes_stale += 1
            continue
        writes_ok += 1
        h = highest.get(res, 0)
        if token < h or (token == h and owner_of.get((res, token), lid) != lid):
            stale_accepted += 1
            if stale_accepted <= 5:
                violations.append("resource %s accepted token %d from %s (highest %d, by %s)" %
                                  (res, token, lid, h, owner_of.get((res, token))))
        highest[res] = max(h, token)
        owner_of.setdefault((res, token), lid)
    # Writes a holder made on purpose after it had noticed its lease was gone (a zombie that
    # ignores the loss), once a newer holder had written: the resource must reject them all.
    zombie_writes = zombie_accepted = 0
    for l in leases.values():
        for t, verdict, zombie in l.writes:
            if zombie:
                zombie_writes += 1
                if verdict == "ok":
                    zombie_accepted += 1
    if zombie_accepted:
        violations.append("%d writes accepted from holders that had lost their lease" %
                          zombie_accepted)
    fig["stale_accepted"] = stale_accepted + zombie_accepted
    fig["writes_ok"] = writes_ok
    fig["writes_rejected"] = writes_stale
    fig["zombie_writes"] = zombie_writes
    stale_accepted += zombie_accepted

    losses = sum(1 for l in leases.values() if l.lost is not None or l.noticed is not None)
    fig["losses"] = losses
    fig["false_losses"] = losses if expect_no_loss else 0
    if expect_no_loss and losses:
        for l in [l for l in leases.values() if l.lost or l.noticed][:5]:
            violations.append("false loss: %s (%s token %d)" % (l.id, l.name, l.token))

    errors = collections.Counter()
    for t, wid, ev, f in events:
        if ev == "error" and len(f) >= 2:
            errors[f[1]] += 1
    fig["errors"] = sum(errors.values())
    fig["error_codes"] = dict(errors)
    if errors.get("internal"):
        violations.append("%d internal errors surfaced" % errors["internal"])
    fig["leaks"] = sum(1 for e in events if e[2] == "leak")

    if herd:
        winners = collections.Counter(l.name for l in leases.values())
        attempted = {f[0] for t, wid, ev, f in events if ev == "attempt" and f}
        bad = [n for n in attempted if winners.get(n, 0) != 1]
        fig["rounds"] = len(attempted)
        fig["rounds_without_one_winner"] = len(bad)
        for n in bad[:5]:
            violations.append("herd round %s had %d winners" % (n, winners.get(n, 0)))

    fig["violations"] = (overlaps + regressions + stale_accepted + fig["false_losses"] +
                         errors.get("internal", 0) + fig.get("rounds_without_one_winner", 0))
    return fig, violations, leases, events


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fence")
    ap.add_argument("--expect-no-loss", action="store_true")
    ap.add_argument("--herd", action="store_true")
    ap.add_argument("--limit", action="append", default=[],
                    help="NAME=N: NAME is a semaphore of N units")
    ap.add_argument("histories", nargs="+")
    a = ap.parse_args()
    limits = {k: int(v) for k, v in (x.split("=", 1) for x in a.limit)} if a.limit else None
    fig, violations, _, _ = check(a.histories, a.fence, a.expect_no_loss, a.herd, limits)
    for v in violations:
        print("VIOLATION:", v, file=sys.stderr)
    print(json.dumps(fig))
    return 1 if fig["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
