#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A cron job guarded by `sqlock run`: however many hosts fire it at once, one runs the job;
# the others find the lock busy and exit 1 at once (-n). The job gets its fencing token in
# SQLOCK_LOCK_TOKEN and passes it to whatever it writes.
#
# In a crontab, on every host:
#   */5 * * * * SQLOCK_DATABASE_URL=postgresql://app@db/app sqlock run nightly-report -n --ttl 1m -- /usr/local/bin/build-report
#
# usage: cron_job.sh SQLOCK_BINARY DATABASE_URL WORK_DIR   (ctest runs it: three "hosts" at once)
set -eu
sqlock=$1 url=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
export SQLOCK_DATABASE_URL="$url"
"$sqlock" migrate up >/dev/null

job='
  mkdir "$WORK/running" || { echo "OVERLAP"; exit 3; }        # exclusion check
  echo "job ran with token $SQLOCK_LOCK_TOKEN"
  echo "$SQLOCK_LOCK_TOKEN" >> "$WORK/tokens"
  sleep 1
  rmdir "$WORK/running"'

for host in a b c; do
  ( rc=0
    WORK=$work "$sqlock" run nightly-report -n --ttl 10s --kill-grace 2s --metadata "cron on $host" \
      -- sh -c "$job" || rc=$?
    echo "host $host: exit $rc" >> "$work/exits" ) &
done
wait
sort "$work/exits"
ran=$(grep -c ': exit 0' "$work/exits" || true)
busy=$(grep -c ': exit 1' "$work/exits" || true)
echo "ran: $ran, found the lock busy: $busy"
[ "$ran" -ge 1 ] && [ $((ran + busy)) -eq 3 ] || exit 1

# The next run, five minutes later, gets a larger token.
WORK=$work "$sqlock" run nightly-report -n --ttl 10s --kill-grace 2s -- sh -c "$job"
first=$(head -n 1 "$work/tokens") last=$(tail -n 1 "$work/tokens")
[ "$last" -gt "$first" ] || { echo "tokens did not increase: $first then $last"; exit 1; }
"$sqlock" list
