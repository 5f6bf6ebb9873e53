# SPDX-License-Identifier: Apache-2.0
# Sourced by bench/run and bench/smoke: starts a throwaway PostgreSQL 15 (and optionally a
# Redis) on free loopback ports, the way scripts/with-postgres does, but with settings for a
# benchmark and a known server log (the benchmark reads sqlock's statements from it).
# fsync and synchronous_commit stay ON: commits cost what they cost in production.
#
# After bench_start_postgres:  BENCH_PG_URL, BENCH_PG_ADMIN_URL, BENCH_PG_CAPTURE_URL,
#                              BENCH_PG_LOG, BENCH_PGBENCH, PGPASSFILE
# After bench_start_redis:     BENCH_REDIS (host:port)
# After bench_start_etcd:      BENCH_ETCD (host:port of the client URL)
# After bench_start_mariadb:   BENCH_MARIADB_URL, SQLOCK_MARIADB_PASSFILE (exported: sqlock and
#                              the bare Connector/C loop read the password from it)
# bench_stop (installed as the EXIT trap by bench_servers_init) stops what was started.

PGBIN=${SQLOCK_PGBIN:-/usr/lib/postgresql/15/bin}
bench_tmp=
bench_pg_started=0
bench_redis_pid=
bench_etcd_pid=
bench_mariadb_pid=

bench_as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

bench_stop() {
  local status=$?
  set +e
  if [ -n "$bench_redis_pid" ]; then
    kill "$bench_redis_pid" 2>/dev/null
    wait "$bench_redis_pid" 2>/dev/null
  fi
  if [ -n "$bench_etcd_pid" ]; then
    kill "$bench_etcd_pid" 2>/dev/null
    wait "$bench_etcd_pid" 2>/dev/null
  fi
  if [ -n "$bench_mariadb_pid" ]; then
    kill "$bench_mariadb_pid" 2>/dev/null
    # The data is thrown away: a clean shutdown need not be waited for long.
    for _ in $(seq 1 50); do kill -0 "$bench_mariadb_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$bench_mariadb_pid" 2>/dev/null
    wait "$bench_mariadb_pid" 2>/dev/null
  fi
  if [ "$bench_pg_started" = 1 ]; then
    bench_as_postgres "$PGBIN/pg_ctl" -D "$bench_tmp/data" -m immediate -w stop >/dev/null 2>&1
  fi
  [ -n "$bench_tmp" ] && rm -rf "$bench_tmp"
  exit "$status"
}

bench_servers_init() {
  bench_tmp=$(mktemp -d "${TMPDIR:-/tmp}/sqlock-bench.XXXXXX")
  chmod 711 "$bench_tmp"
  trap bench_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "bench: no free port found" >&2
  return 1
}

bench_secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

bench_fail_with_log() {
  echo "bench: $1" >&2
  [ -f "$2" ] && { echo "---- $2" >&2; tail -n 50 "$2" >&2; }
  exit 1
}

bench_start_postgres() {
  for bin in initdb pg_ctl psql pgbench; do
    [ -x "$PGBIN/$bin" ] || { echo "bench: $PGBIN/$bin not found (scripts/deps all)" >&2; exit 69; }
  done
  id postgres >/dev/null 2>&1 || { echo "bench: no 'postgres' OS user (scripts/deps all)" >&2; exit 69; }
  mkdir -p "$bench_tmp/data" "$bench_tmp/sock" "$bench_tmp/log"
  chown postgres "$bench_tmp/data" "$bench_tmp/sock" "$bench_tmp/log"
  chmod 700 "$bench_tmp/data"
  chmod 755 "$bench_tmp/log"
  local port
  port=$(bench_free_port)
  if ! bench_as_postgres "$PGBIN/initdb" -D "$bench_tmp/data" -U postgres --auth-local=peer \
         --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$bench_tmp/initdb.log" 2>&1; then
    bench_fail_with_log "initdb failed" "$bench_tmp/initdb.log"
  fi
  cat >>"$bench_tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$bench_tmp/sock'
max_connections = 200
shared_buffers = 512MB
fsync = on
synchronous_commit = on
max_wal_size = 4GB
checkpoint_timeout = 30min
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 10000
track_activity_query_size = 8192
password_encryption = 'scram-sha-256'
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
EOF
  BENCH_PG_LOG=$bench_tmp/log/postgresql.log
  if ! bench_as_postgres "$PGBIN/pg_ctl" -D "$bench_tmp/data" -l "$BENCH_PG_LOG" -w -t 60 \
         start >"$bench_tmp/pg_ctl.log" 2>&1; then
    cat "$bench_tmp/pg_ctl.log" >&2
    bench_fail_with_log "PostgreSQL did not start" "$BENCH_PG_LOG"
  fi
  bench_pg_started=1
  chmod 644 "$BENCH_PG_LOG"
  local pw_bench pw_admin pw_capture
  pw_bench=$(bench_secret)
  pw_admin=$(bench_secret)
  pw_capture=$(bench_secret)
  # Passwords go through stdin, never argv. The capture role logs every statement it runs: the
  # benchmark reads sqlock's exact statements from the log to feed its baselines.
  if ! bench_as_postgres "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$bench_tmp/sock" -p "$port" \
         -U postgres -d postgres >"$bench_tmp/setup.log" 2>&1 <<EOF
CREATE ROLE sqlock_bench_admin LOGIN SUPERUSER PASSWORD '$pw_admin';
CREATE ROLE sqlock_bench LOGIN PASSWORD '$pw_bench';
CREATE ROLE sqlock_bench_capture LOGIN PASSWORD '$pw_capture' IN ROLE sqlock_bench;
ALTER ROLE sqlock_bench_capture SET log_statement = 'all';
CREATE DATABASE sqlock_bench OWNER sqlock_bench;
\\c sqlock_bench
CREATE EXTENSION pg_stat_statements;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT ALL ON SCHEMA public TO sqlock_bench;
EOF
  then
    bench_fail_with_log "setting up roles failed" "$bench_tmp/setup.log"
  fi
  umask 077
  cat >"$bench_tmp/pgpass" <<EOF
127.0.0.1:$port:*:sqlock_bench:$pw_bench
127.0.0.1:$port:*:sqlock_bench_admin:$pw_admin
127.0.0.1:$port:*:sqlock_bench_capture:$pw_capture
EOF
  umask 022
  export PGPASSFILE=$bench_tmp/pgpass
  BENCH_PG_URL="postgresql://sqlock_bench@127.0.0.1:$port/sqlock_bench"
  BENCH_PG_ADMIN_URL="postgresql://sqlock_bench_admin@127.0.0.1:$port/sqlock_bench"
  BENCH_PG_CAPTURE_URL="postgresql://sqlock_bench_capture@127.0.0.1:$port/sqlock_bench"
  BENCH_PGBENCH=$PGBIN/pgbench
  echo "bench: PostgreSQL 15 on 127.0.0.1:$port (data and log in $bench_tmp)" >&2
}

bench_start_redis() {
  command -v redis-server >/dev/null || { echo "bench: redis-server not found" >&2; exit 69; }
  local port
  port=$(bench_free_port)
  mkdir -p "$bench_tmp/redis"
  # No persistence (Debian's default config would snapshot): replies come from memory.
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$bench_tmp/redis" --logfile "$bench_tmp/redis/redis.log" --daemonize no &
  bench_redis_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      BENCH_REDIS=127.0.0.1:$port
      echo "bench: Redis on $BENCH_REDIS" >&2
      return 0
    fi
    sleep 0.1
  done
  bench_fail_with_log "Redis did not start" "$bench_tmp/redis/redis.log"
}

bench_start_etcd() {
  command -v etcd >/dev/null || { echo "bench: etcd not found (Debian: etcd-server)" >&2; exit 69; }
  local cport pport
  cport=$(bench_free_port)
  pport=$(bench_free_port)
  while [ "$pport" = "$cport" ]; do pport=$(bench_free_port); done
  mkdir -p "$bench_tmp/etcd"
  # One node, etcd's defaults otherwise: the WAL is fsync'd on every commit (no
  # --unsafe-no-fsync), so a grant costs a disk flush, as a PostgreSQL commit does.
  etcd --name sqlock-bench --data-dir "$bench_tmp/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$cport" \
    --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "sqlock-bench=http://127.0.0.1:$pport" \
    --initial-cluster-state new >"$bench_tmp/etcd/etcd.log" 2>&1 &
  bench_etcd_pid=$!
  local reply
  for _ in $(seq 1 150); do
    # /health answers {"health":"true"} once the node has a leader and serves requests.
    reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$cport" &&
              printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
              timeout 2 cat <&3) 2>/dev/null || true)
    if [[ $reply == *'"health":"true"'* ]]; then
      BENCH_ETCD=127.0.0.1:$cport
      echo "bench: etcd $(etcd --version | sed -n 's/^etcd Version: //p') on $BENCH_ETCD" \
           "(one node, data in $bench_tmp/etcd)" >&2
      return 0
    fi
    kill -0 "$bench_etcd_pid" 2>/dev/null || break
    sleep 0.2
  done
  bench_fail_with_log "etcd did not become healthy" "$bench_tmp/etcd/etcd.log"
}

# MariaDB 10.11 (Debian's mariadb-server), started as scripts/with-mariadb starts it (its own
# config file only, loopback TCP, the server as `mysql` when we are root), but durable: every
# commit flushes InnoDB's redo log (innodb_flush_log_at_trx_commit = 1), as PostgreSQL's
# synchronous_commit = on flushes its WAL; no binary log (so sync_binlog does not apply), as a
# single server without replicas runs. The buffer pool holds the benchmark's rows.
bench_start_mariadb() {
  local mariadbd=${SQLOCK_MARIADBD:-/usr/sbin/mariadbd}
  local install_db=${SQLOCK_MARIADB_INSTALL_DB:-/usr/bin/mariadb-install-db}
  local client=${SQLOCK_MARIADB_CLIENT:-/usr/bin/mariadb}
  for bin in "$mariadbd" "$install_db" "$client"; do
    [ -x "$bin" ] || { echo "bench: $bin not found (scripts/deps all)" >&2; exit 69; }
  done
  local as_user=() root=0
  [ "$(id -u)" -eq 0 ] && root=1
  if [ "$root" = 1 ]; then
    id mysql >/dev/null 2>&1 || { echo "bench: no 'mysql' OS user (scripts/deps all)" >&2; exit 69; }
    as_user=(--user=mysql)
  fi
  local dir=$bench_tmp/mariadb
  mkdir -p "$dir/data" "$dir/run"
  chmod 700 "$dir/data" "$dir/run"
  [ "$root" = 1 ] && chown mysql "$dir/data" "$dir/run"
  local port sock=$dir/run/mysqld.sock log=$dir/run/error.log
  port=$(bench_free_port)
  cat >"$dir/my.cnf" <<EOF
[mysqld]
datadir = $dir/data
socket = $sock
pid-file = $dir/run/mysqld.pid
log-error = $log
port = $port
bind-address = 127.0.0.1
skip-name-resolve
skip-log-bin
character-set-server = utf8mb4
innodb_flush_log_at_trx_commit = 1
innodb_buffer_pool_size = 256M
innodb_log_file_size = 512M
performance_schema = OFF
max_connections = 200
EOF
  chmod 644 "$dir/my.cnf"
  if ! "$install_db" --defaults-file="$dir/my.cnf" "${as_user[@]}" --skip-name-resolve \
         --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1; then
    bench_fail_with_log "mariadb-install-db failed" "$dir/install.log"
  fi
  local pw_root pw_bench
  pw_root=$(bench_secret)
  pw_bench=$(bench_secret)
  umask 077
  # Run by the server before it serves any connection, deleted once it is up: no password is
  # on a command line.
  cat >"$dir/run/init.sql" <<EOF
DELETE FROM mysql.global_priv WHERE User IN ('root', '') AND Host <> 'localhost';
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw_root';
CREATE DATABASE sqlock_bench CHARACTER SET utf8mb4;
CREATE USER 'sqlock_bench'@'127.0.0.1' IDENTIFIED BY '$pw_bench';
GRANT ALL ON sqlock_bench.* TO 'sqlock_bench'@'127.0.0.1';
EOF
  cat >"$dir/root.cnf" <<EOF
[client]
user = root
password = $pw_root
socket = $sock
connect-timeout = 5
EOF
  echo "127.0.0.1:$port:sqlock_bench:$pw_bench" >"$dir/passfile"
  umask 022
  [ "$root" = 1 ] && chown mysql "$dir/run/init.sql"
  "$mariadbd" --defaults-file="$dir/my.cnf" "${as_user[@]}" --init-file="$dir/run/init.sql" \
    >"$dir/mariadbd.out" 2>&1 </dev/null &
  bench_mariadb_pid=$!
  for _ in $(seq 1 300); do
    kill -0 "$bench_mariadb_pid" 2>/dev/null || bench_fail_with_log "MariaDB did not start" "$log"
    if [ -S "$sock" ] &&
       "$client" --defaults-file="$dir/root.cnf" -N -B -e 'SELECT 1' >/dev/null 2>&1; then
      rm -f "$dir/run/init.sql"
      export SQLOCK_MARIADB_PASSFILE=$dir/passfile
      BENCH_MARIADB_URL="mariadb://sqlock_bench@127.0.0.1:$port/sqlock_bench"
      echo "bench: MariaDB on 127.0.0.1:$port (innodb_flush_log_at_trx_commit = 1, no binlog;" \
           "data in $dir)" >&2
      return 0
    fi
    sleep 0.2
  done
  bench_fail_with_log "MariaDB did not become ready within 60 s" "$log"
}
