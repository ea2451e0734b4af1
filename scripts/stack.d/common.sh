# shellcheck shell=bash
# Shared helpers for scripts/stack. Sourced, not run.
# Layout under $GALLERY_STACK_DIR:
#   dist/<service>/   downloaded or built artefacts (cached across runs)
#   data/<service>/   service state
#   run/<service>.pid pid of the process this script started
#   log/<service>.log its output
# GALLERY_STACK_DIST moves dist/ elsewhere, so that a second stack (another
# GALLERY_STACK_DIR, e.g. a test's private broker) reuses the downloads of the first.
GALLERY_STACK_DIR="${GALLERY_STACK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gallery/stack}"
STACK_DIST="${GALLERY_STACK_DIST:-$GALLERY_STACK_DIR/dist}"
STACK_DATA="$GALLERY_STACK_DIR/data"
STACK_RUN="$GALLERY_STACK_DIR/run"
STACK_LOG="$GALLERY_STACK_DIR/log"
mkdir -p "$STACK_DIST" "$STACK_DATA" "$STACK_RUN" "$STACK_LOG"

# Ports, overridable from the environment.
GALLERY_KAFKA_PORT="${GALLERY_KAFKA_PORT:-9092}"
GALLERY_KAFKA_CONTROLLER_PORT="${GALLERY_KAFKA_CONTROLLER_PORT:-9093}"
GALLERY_PG_PORT="${GALLERY_PG_PORT:-5432}"
GALLERY_REGISTRY_PORT="${GALLERY_REGISTRY_PORT:-8081}"
GALLERY_CQL_PORT="${GALLERY_CQL_PORT:-9042}"
GALLERY_CASSANDRA_STORAGE_PORT="${GALLERY_CASSANDRA_STORAGE_PORT:-7000}"
# The three-node Kafka cluster (kafka-cluster.sh): clients, then the quorum, one port a node.
# Below the ephemeral range (32768 and up), so no client connection ever holds one.
GALLERY_KAFKA_CLUSTER_PORTS="${GALLERY_KAFKA_CLUSTER_PORTS:-29092,29093,29094}"
GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS="${GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS:-29192,29193,29194}"

# with_lock FILE CMD...: run CMD holding an exclusive lock on FILE, so that stacks sharing
# one GALLERY_STACK_DIST never download into it at the same time.
with_lock() {
  local file="$1"; shift
  mkdir -p "$(dirname "$file")"
  (
    flock 9 || exit 1
    "$@"
  ) 9>"$file"
}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# as_root CMD...: run as root (directly, or through sudo when not root).
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: install Debian packages that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive NAME: true when run/NAME.pid names a live process.
pid_alive() {
  local f="$STACK_RUN/$1.pid"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_bg NAME CMD...: start CMD detached, output to log/NAME.log, pid to run/NAME.pid, and
# where this run's output starts in the log to run/NAME.logpos (see log_of_this_run).
start_bg() {
  local name="$1"; shift
  log "$name: starting (log: $STACK_LOG/$name.log)"
  stat -c %s "$STACK_LOG/$name.log" 2>/dev/null >"$STACK_RUN/$name.logpos" || echo 0 >"$STACK_RUN/$name.logpos"
  # Without the lock of `scripts/stack up` (fd 8), which a server would otherwise hold for life.
  setsid nohup "$@" >>"$STACK_LOG/$name.log" 2>&1 </dev/null 8>&- &
  echo $! >"$STACK_RUN/$name.pid"
}

# forget_stale_pid NAME PATTERN: drop run/NAME.pid when its process is gone or its command
# line does not match the extended regex PATTERN (the pid was reused, e.g. after a reboot),
# so that nobody else's process is waited for or stopped. Call it before starting or
# stopping, not right after start_bg: until the exec the pid still shows this script's line.
forget_stale_pid() {
  local f="$STACK_RUN/$1.pid" pattern="$2" pid cmdline
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" =~ $pattern ]] && return 0
  fi
  rm -f "$f"
}

# stop_pid NAME [SIGNAL]: stop the process named by run/NAME.pid (SIGNAL, default TERM,
# then KILL after 30 s).
stop_pid() {
  local name="$1" f="$STACK_RUN/$1.pid" sig="${2:-TERM}" pid
  if ! pid_alive "$name"; then
    rm -f "$f"
    log "$name: not running (started by this script)"
    return 0
  fi
  pid="$(cat "$f")"
  log "$name: stopping pid $pid"
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    sleep 0.5
  done
  log "$name: still alive after 30 s, sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

# log_of_this_run NAME: what the process last started by start_bg NAME has written to its log,
# so that no check trusts (or blames) an older run's lines.
log_of_this_run() {
  local pos
  pos="$(cat "$STACK_RUN/$1.logpos" 2>/dev/null || echo 0)"
  tail -c "+$((pos + 1))" "$STACK_LOG/$1.log" 2>/dev/null
}

# exited NAME: true when a process started for NAME has exited: the one of run/NAME.pid, or
# for a service of several processes (kafka-cluster) one of run/NAME-<n>.pid.
exited() {
  local f
  for f in "$STACK_RUN/$1.pid" "$STACK_RUN/$1"-[0-9]*.pid; do
    [[ -f "$f" ]] && ! pid_alive "$(basename "$f" .pid)" && return 0
  done
  return 1
}

# wait_ready NAME CHECK_FN TIMEOUT_SECONDS: wait until CHECK_FN succeeds. Fails (printing the
# log's end) after the timeout, or at once when a process started for NAME has exited.
wait_ready() {
  local name="$1" check="$2" timeout="$3" waited=0 why
  until "$check"; do
    why=""
    if (( waited >= timeout )); then
      why="did not answer within ${timeout}s"
    elif exited "$name"; then
      why="exited during its start"
    fi
    if [[ -n "$why" ]]; then
      # A service of several processes (kafka-cluster) logs to NAME-1.log, NAME-2.log, ...
      tail -n 40 "$STACK_LOG/$name.log" "$STACK_LOG/$name"-[0-9]*.log >&2 2>/dev/null || true
      log "$name $why (log: $STACK_LOG/$name.log)"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "$name: ready after ${waited}s"
}

# maven_libs NAME POM LIBS: make LIBS hold the runtime jars of POM (from Maven Central), once.
# A marker with the pom's checksum is written last, so a half-finished download is never taken
# for a complete one and a changed pom fetches again; stacks sharing the download cache take
# turns under a lock.
maven_libs() {
  local name="$1" pom="$2" libs="$3"
  maven_libs_current "$pom" "$libs" && return 0
  with_lock "$STACK_DIST/$name.lock" maven_fetch_libs "$name" "$pom" "$libs"
}

maven_libs_current() {
  [[ -d "$2" && "$(cat "$2.complete" 2>/dev/null)" == "$(sha256sum <"$1" | cut -d' ' -f1)" ]]
}

# Run under the lock; another stack may have fetched the libs while we waited.
maven_fetch_libs() {
  local name="$1" pom="$2" libs="$3" want mvn_log="$STACK_LOG/$1-install.log"
  maven_libs_current "$pom" "$libs" && return 0
  want="$(sha256sum <"$pom" | cut -d' ' -f1)"
  command -v mvn >/dev/null || apt_install maven
  log "$name: fetching jars from Maven Central into $libs (log: $mvn_log)"
  rm -rf "$libs.tmp" "$libs.complete"
  if ! mvn -B -ntp -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >"$mvn_log" 2>&1; then
    grep -E '^\[(ERROR|WARNING)\]' "$mvn_log" | head -n 20 >&2 || true
    die "$name: mvn could not fetch the jars (log: $mvn_log)"
  fi
  rm -rf "$libs"
  mv "$libs.tmp" "$libs"
  echo "$want" >"$libs.complete"
}

# java_versions [EXTRA_HOME...]: print "MAJOR PATH-TO-JAVA" for every Java found, in the order
# JAVA_HOME, the java on PATH, the JDKs under /usr/lib/jvm, then EXTRA_HOMEs.
java_versions() {
  local homes=("${JAVA_HOME:-}") home major onpath
  onpath="$(command -v java 2>/dev/null || true)"
  [[ -n "$onpath" ]] && homes+=("$(dirname "$(dirname "$(readlink -f "$onpath")")")")
  homes+=(/usr/lib/jvm/* "$@")
  for home in "${homes[@]}"; do
    [[ -n "$home" && -x "$home/bin/java" && -f "$home/release" ]] || continue
    major="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")"
    [[ -n "$major" ]] && echo "$major $home/bin/java"
  done
  return 0
}
