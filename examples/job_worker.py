#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# A Python worker of the shared job queue (examples/job_queue.sh): the same lock as the C++
# worker (job_worker.cpp), taken through sqlock's SQL functions (docs/sql.md) with psycopg 3
# (Debian: python3-psycopg). Each round: take the lock "jobs", then in ONE transaction pick the
# next job, check the lease (fencing), record the run, mark the job done and release the lock.
# A crash anywhere before COMMIT undoes the run, the mark and the release together.
#
# usage: job_worker.py DATABASE_URL SCHEMA WORKER_NAME
import sys
import time

import psycopg
from psycopg import sql

url, schema, worker = sys.argv[1:4]
done = 0
with psycopg.connect(url, autocommit=True) as conn:
    # sqlock's functions and the job tables are in SCHEMA.
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    while True:
        token = conn.execute(
            "SELECT sqlock_try_acquire('jobs', interval '10 seconds', %s)", [worker]
        ).fetchone()[0]
        if token is None:  # the C++ worker holds it
            time.sleep(0.002)
            continue
        with conn.transaction():
            job = conn.execute(
                "SELECT id FROM jobs WHERE done_by IS NULL ORDER BY id LIMIT 1"
            ).fetchone()
            if job is not None:
                conn.execute("SELECT sqlock_assert_held('jobs', %s)", [token])
                conn.execute(
                    "INSERT INTO job_runs (job, worker, token) VALUES (%s, %s, %s)",
                    [job[0], worker, token],
                )
                time.sleep(0.005)  # the work
                conn.execute("UPDATE jobs SET done_by = %s WHERE id = %s", [worker, job[0]])
            conn.execute("SELECT sqlock_release('jobs', %s)", [token])
        if job is None:
            break
        done += 1
print(f"{worker}: {done} jobs")
