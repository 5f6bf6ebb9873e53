#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# One job queue, one lock, two languages: a Python worker (job_worker.py, sqlock's SQL
# functions through psycopg) and a C++ worker (job_worker.cpp, sqlock::client) work through the
# same jobs at once. Each marks a job done and releases the lock in one transaction; the check
# then shows every job done exactly once, under tokens that increase across both workers.
#
# usage: job_queue.sh DATABASE_URL JOB_WORKER [JOBS]   (a scratch schema, dropped at the end)
set -eu
url=$1 worker=$2 jobs=${3:-40}
here=$(dirname "$0")
schema=sqlock_jobs_$$
# Debian's psycopg is python3-psycopg, for the system's python3.
py=python3
"$py" -c 'import psycopg' 2>/dev/null || py=/usr/bin/python3

"$worker" "$url" "$schema" setup "$jobs"
"$py" "$here/job_worker.py" "$url" "$schema" python-worker & py_pid=$!
"$worker" "$url" "$schema" work cpp-worker & cpp_pid=$!
status=0
wait "$py_pid" || status=$?
wait "$cpp_pid" || status=$?
"$worker" "$url" "$schema" check "$jobs" || status=$?
exit "$status"
