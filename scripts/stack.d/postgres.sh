# shellcheck shell=bash
# PostgreSQL from Debian's packages, as a private cluster of our own (initdb) on
# 127.0.0.1:$GALLERY_PG_PORT with role and database "gallery" (password "gallery").
# Debian's own cluster, if any, is left alone. Sourced by scripts/stack.

# PostgreSQL refuses to run as root, so as root the server runs as the "postgres" OS user.
# Runs as the current user otherwise.
pg_owner_is_postgres() { [[ $(id -u) -eq 0 ]]; }

# pg_as_owner CMD...: run a short-lived command as the cluster's OS user (from /, which
# that user can always enter).
pg_as_owner() {
  if pg_owner_is_postgres; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# pg_resolve_data: sets PG_DATA, the cluster directory (once). Normally data/postgres. As
# root the stack directory usually lies under /root, which the postgres user cannot
# traverse; then the cluster lives in /var/lib/gallery/<hash of GALLERY_STACK_DIR>/postgres,
# one per stack directory, and data/postgres is a symlink to it. That directory outlives a
# deleted stack directory and is reused by a new one at the same path. Left empty while the
# postgres user does not exist yet (before the package is installed).
PG_DATA=""
pg_resolve_data() {
  [[ -z "$PG_DATA" ]] || return 0
  if ! pg_owner_is_postgres; then
    PG_DATA="$STACK_DATA/postgres"
  elif ! id -u postgres >/dev/null 2>&1; then
    return 0
  elif runuser -u postgres -- test -x "$STACK_DATA" 2>/dev/null; then
    PG_DATA="$STACK_DATA/postgres"
  else
    PG_DATA="/var/lib/gallery/$(printf '%s' "$GALLERY_STACK_DIR" | sha256sum | cut -c1-12)/postgres"
  fi
}

# pg_bin: the bin directory of the server that owns the cluster (its PG_VERSION), or else of
# the newest installed one.
pg_bin() {
  local version="" dir best=""
  pg_resolve_data
  [[ -z "$PG_DATA" ]] || version="$(cat "$PG_DATA/PG_VERSION" 2>/dev/null || true)"
  if [[ -n "$version" && -x "/usr/lib/postgresql/$version/bin/postgres" ]]; then
    echo "/usr/lib/postgresql/$version/bin"
    return 0
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/postgres" ]] || continue
    if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n 1)" == "$dir" ]]; then
      best="$dir"
    fi
  done
  [[ -n "$best" ]] || return 1
  echo "$best"
}

svc_postgres_install() {
  pg_resolve_data
  pg_bin >/dev/null || apt_install postgresql
  pg_bin >/dev/null || die "postgres: no server found under /usr/lib/postgresql/*/bin"
}

# Creates the cluster once: peer auth on the unix socket (for the bootstrap below), and
# password (scram-sha-256) auth for TCP connections from this machine.
pg_init_cluster() {
  local data="$PG_DATA"
  if [[ "$data" != "$STACK_DATA/postgres" ]]; then
    # Only the cluster directory itself is the postgres user's; its parents stay root's.
    mkdir -p "$(dirname "$data")"
    chmod 755 "$(dirname "$(dirname "$data")")" "$(dirname "$data")"
    ln -sfn "$data" "$STACK_DATA/postgres"
  fi
  [[ -f "$data/PG_VERSION" ]] && return 0
  mkdir -p "$data"
  chmod 700 "$data"
  pg_owner_is_postgres && chown postgres: "$data"
  log "postgres: creating a cluster in $data"
  pg_as_owner "$(pg_bin)/initdb" -D "$data" -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >>"$STACK_LOG/postgres.log" 2>&1 \
    || die "postgres: initdb failed (log: $STACK_LOG/postgres.log)"
}

# Idempotent: ensures role and database exist with the expected attributes and password.
pg_bootstrap() {
  pg_as_owner "$(pg_bin)/psql" -X -h "$PG_DATA" -p "$GALLERY_PG_PORT" -d postgres \
    -v ON_ERROR_STOP=1 -qAt >/dev/null <<'SQL'
SELECT 'CREATE ROLE gallery' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gallery')
\gexec
ALTER ROLE gallery LOGIN CREATEDB PASSWORD 'gallery';
SELECT 'CREATE DATABASE gallery OWNER gallery'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'gallery')
\gexec
SQL
}

svc_postgres_start() {
  local data bin pid
  pg_resolve_data
  [[ -n "$PG_DATA" ]] || die "postgres: no 'postgres' OS user to run the server as"
  data="$PG_DATA"
  bin="$(pg_bin)"
  forget_stale_pid postgres 'bin/postgres '
  if pid_alive postgres; then
    pid="$(cat "$STACK_RUN/postgres.pid")"
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *" port=$GALLERY_PG_PORT "* ]] \
      || die "postgres: already running on another port (pid $pid); run 'scripts/stack down postgres' first"
    log "postgres: already started (pid $pid)"
  else
    port_open "$GALLERY_PG_PORT" && die "postgres: 127.0.0.1:$GALLERY_PG_PORT is taken by a process this script did not start (Debian's own cluster? see pg_lsclusters); stop it or set GALLERY_PG_PORT"
    pg_init_cluster
    # Settings on the command line rather than in postgresql.conf, so that a changed port
    # applies to an existing cluster. The socket goes into the cluster directory, since
    # /var/run/postgresql may not exist. Tests open many connections at once.
    local args=(-D "$data" -c listen_addresses=127.0.0.1 -c port="$GALLERY_PG_PORT"
      -c unix_socket_directories="$data" -c max_connections=300 -c shared_buffers=128MB)
    if pg_owner_is_postgres; then
      # setpriv execs the server (unlike runuser, which stays as its parent), so the pid
      # file names the postmaster itself and stopping it is a clean shutdown.
      start_bg postgres setpriv --reuid=postgres --regid=postgres --init-groups -- \
        "$bin/postgres" "${args[@]}"
    else
      start_bg postgres "$bin/postgres" "${args[@]}"
    fi
  fi
  # Role and database need a running server: wait for the socket, then create them. After an
  # unclean stop the server first syncs and replays its data directory, which can take minutes
  # on a slow disk: as long as the stack's timeout.
  pid="$(cat "$STACK_RUN/postgres.pid")"
  for _ in $(seq 1 $((2 * ${STACK_TIMEOUT:-180}))); do
    "$bin/pg_isready" -q -h "$data" -p "$GALLERY_PG_PORT" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! "$bin/pg_isready" -q -h "$data" -p "$GALLERY_PG_PORT"; then
    tail -n 20 "$STACK_LOG/postgres.log" >&2 || true
    die "postgres: server did not come up (log: $STACK_LOG/postgres.log)"
  fi
  pg_bootstrap || die "postgres: could not create role/database gallery"
}

svc_postgres_ready() {
  pid_alive postgres || return 1
  local bin
  pg_resolve_data
  bin="$(pg_bin)" || return 1
  # What the application does: a password login over TCP into its database (stronger than
  # pg_isready, which also passes before the role exists).
  PGPASSWORD=gallery PGCONNECT_TIMEOUT=3 "$bin/psql" -X -h 127.0.0.1 -p "$GALLERY_PG_PORT" \
    -U gallery -d gallery -qAtc 'SELECT 1' >/dev/null 2>&1
}

svc_postgres_stop() {
  forget_stale_pid postgres 'bin/postgres '
  # INT is PostgreSQL's "fast" shutdown: it ends open sessions instead of waiting for them.
  stop_pid postgres INT
}

svc_postgres_where() {
  echo "postgres: postgres://gallery:gallery@127.0.0.1:$GALLERY_PG_PORT/gallery"
}
