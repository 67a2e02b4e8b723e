#!/usr/bin/env bash
# Bring up what the appealflow test suite needs, idempotently:
#   * PostgreSQL on 127.0.0.1:5432 (Debian cluster; installed with apt-get and
#     started when missing/down; a trust line for 127.0.0.1/32 is added to
#     pg_hba.conf if the server asks for a password there),
#   * a Kafka-protocol broker (tansu 0.6.0, SQLite storage) on 127.0.0.1:19092,
#     built once with `cargo install` into ~/.cache/appealflow/tansu,
#   * Chromium and its WebDriver (Debian: chromium, chromium-driver) for the
#     console's browser test, installed with apt-get when missing,
#   * a throwaway PostgreSQL cluster that accepts TLS connections only
#     (ssl = on, `hostssl` lines only in pg_hba.conf) on 127.0.0.1:55433, with a
#     CA and a server certificate made with openssl at every start, plus a
#     second CA that signed nothing (the wrong-CA tests).
#
# Usage:
#   scripts/test-env.sh [start]   bring services up; print `export` lines on
#                                 stdout (status lines go to stderr) and write
#                                 them to .test-env/env as well:
#                                     eval "$(scripts/test-env.sh)"
#                                     # or: scripts/test-env.sh && . .test-env/env
#   scripts/test-env.sh stop      stop the broker this script started (if any)
#   scripts/test-env.sh deps      only install what building needs (OpenSSL headers)
#
# Environment knobs (all optional):
#   APPEALFLOW_TEST_PG_URL     use this database instead of managing the local one
#   APPEALFLOW_TEST_KAFKA      use this broker instead of starting tansu
#                              (either one set to the default value printed
#                              below is ignored: the local service is managed)
#   APPEALFLOW_TEST_PG_PORT    local PostgreSQL port (default 5432)
#   APPEALFLOW_TEST_PG_TLS_PORT  port of the TLS-only cluster (default 55433)
#   APPEALFLOW_TANSU_ROOT      cargo install root   (default ~/.cache/appealflow/tansu)
#   APPEALFLOW_TANSU_BUILD_WAIT  max seconds to wait for a tansu build (default 1800)
#   APPEALFLOW_TANSU_KEEP_STATE=1  keep the broker's SQLite file across fresh starts
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
env_dir="$repo/.test-env"
state_dir="$env_dir/tansu"
pid_file="$env_dir/tansu.pid"
log_file="$state_dir/tansu.log"
env_file="$env_dir/env"

pg_host=127.0.0.1
pg_port=${APPEALFLOW_TEST_PG_PORT:-5432}
pg_user=postgres
kafka_host=127.0.0.1
kafka_port=19092

cache_dir="$HOME/.cache/appealflow"
tansu_root=${APPEALFLOW_TANSU_ROOT:-$HOME/.cache/appealflow/tansu}
tansu_bin="$tansu_root/bin/tansu"
tansu_version=0.6.0
build_wait=${APPEALFLOW_TANSU_BUILD_WAIT:-1800}

say() { printf '%s\n' "$*" >&2; }
die() { printf 'test-env: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

# True when something accepts TCP connections on host:port.
port_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- PostgreSQL

pg_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Prints "VERSION CLUSTER" of the cluster configured for $pg_port, or nothing.
pg_cluster() {
    local ver name port rest
    while read -r ver name port rest; do
        if [[ ${port:-} == "$pg_port" ]]; then
            printf '%s %s\n' "$ver" "$name"
            return 0
        fi
    done < <(pg_lsclusters -h 2>/dev/null | sort -V)
    return 0
}

pg_log_tail() {
    local ver=$1 name=$2
    tail -n 20 "/var/log/postgresql/postgresql-$ver-$name.log" 2>/dev/null >&2 || true
}

# psql as the exported user over TCP, never prompting and ignoring any
# password files, so that "works" really means "works without a password".
pg_try() {
    # shellcheck disable=SC2069 # on purpose: capture stderr only, drop stdout
    env -u PGPASSWORD PGPASSFILE=/dev/null PGCONNECT_TIMEOUT=5 \
        psql -w -X -q -At -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres \
        -c 'select 1' 2>&1 >/dev/null
}

pg_ensure_trust() {
    local ver=$1 name=$2 err hba
    if err=$(pg_try); then
        return 0
    fi
    case $err in
        *password*) ;;
        *) die "postgres: cannot connect as $pg_user to $pg_host:$pg_port: $err" ;;
    esac
    hba=$(as_root runuser -u postgres -- psql -X -At -p "$pg_port" -c 'show hba_file' 2>/dev/null) ||
        hba="/etc/postgresql/$ver/$name/pg_hba.conf"
    [[ -f $hba ]] || die "postgres: pg_hba.conf not found (tried $hba)"
    say "postgres: $hba asks for a password on $pg_host; adding 'host all all 127.0.0.1/32 trust' at its top and reloading"
    [[ -f $hba.appealflow.bak ]] || as_root cp -p "$hba" "$hba.appealflow.bak"
    local tmp
    tmp=$(mktemp)
    {
        echo '# added by appealflow scripts/test-env.sh: password-less TCP on 127.0.0.1 for tests'
        echo 'host    all             all             127.0.0.1/32            trust'
        cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
    local i
    for ((i = 0; i < 20; i++)); do
        if err=$(pg_try); then
            return 0
        fi
        sleep 0.5
    done
    die "postgres: still cannot connect without a password after editing $hba: $err"
}

ensure_postgres() {
    # An override equal to what this script manages (e.g. left in the shell
    # by an earlier `eval`) is not an override: manage the local server.
    if [[ -n ${APPEALFLOW_TEST_PG_URL:-} &&
        $APPEALFLOW_TEST_PG_URL != "postgres://$pg_user@$pg_host:$pg_port/postgres" ]]; then
        env -u PGPASSFILE PGCONNECT_TIMEOUT=5 psql -w -X -q "$APPEALFLOW_TEST_PG_URL" -c 'select 1' >/dev/null ||
            die "postgres: APPEALFLOW_TEST_PG_URL from the environment does not answer"
        say "postgres: using APPEALFLOW_TEST_PG_URL from the environment"
        pg_url=$APPEALFLOW_TEST_PG_URL
        return 0
    fi
    pg_url="postgres://$pg_user@$pg_host:$pg_port/postgres"

    local t0=$SECONDS cluster ver name what
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$pg_host" -p "$pg_port" -t 3; then
        what="already running on $pg_host:$pg_port"
        cluster=$(pg_cluster)
    else
        if ! pg_installed; then
            say "postgres: not installed; apt-get update && apt-get install -y postgresql"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
            what="installed and started on $pg_host:$pg_port"
        else
            what="started on $pg_host:$pg_port"
        fi
        cluster=$(pg_cluster)
        if [[ -z $cluster ]]; then
            ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
            [[ -n $ver ]] || die "postgres: no server version under /usr/lib/postgresql"
            name=main
            if [[ -d /etc/postgresql/$ver/main ]]; then name=appealflow; fi
            say "postgres: no cluster on port $pg_port; pg_createcluster $ver $name -p $pg_port"
            as_root pg_createcluster "$ver" "$name" -p "$pg_port" >&2
            cluster="$ver $name"
        fi
        read -r ver name <<<"$cluster"
        # A cluster that is already "online" but does not answer on TCP is left
        # to the checks below; "start" on an online cluster is an error.
        if ! pg_lsclusters -h "$ver" "$name" 2>/dev/null | grep -q online; then
            as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 || {
                pg_log_tail "$ver" "$name"
                die "postgres: pg_ctlcluster $ver $name start failed"
            }
        fi
        local i
        for ((i = 0; i < 60; i++)); do
            if pg_isready -q -h "$pg_host" -p "$pg_port" -t 1; then break; fi
            sleep 1
        done
        if ! pg_isready -q -h "$pg_host" -p "$pg_port" -t 1; then
            pg_log_tail "$ver" "$name"
            die "postgres: not ready on $pg_host:$pg_port after 60 s"
        fi
    fi
    if [[ -n $cluster ]]; then
        read -r ver name <<<"$cluster"
        pg_ensure_trust "$ver" "$name"
    else
        local err
        err=$(pg_try) || die "postgres: cannot connect as $pg_user to $pg_host:$pg_port: $err"
    fi
    if [[ $what == already* ]]; then
        say "postgres: $what"
    else
        say "postgres: $what ($((SECONDS - t0)) s)"
    fi
}

# --------------------------------------------------------------------- tansu

tansu_building() {
    pgrep -f "cargo install tansu" >/dev/null 2>&1
}

wait_for_foreign_build() {
    local waited=0
    if tansu_building; then
        say "tansu: a 'cargo install tansu' is already running; waiting for it (max ${build_wait} s)"
    fi
    while tansu_building; do
        if ((waited >= build_wait)); then
            die "tansu: 'cargo install tansu' still running after ${build_wait} s"
        fi
        sleep 10
        waited=$((waited + 10))
        if ((waited % 60 == 0)); then
            say "tansu: still waiting for the running build (${waited} s)"
        fi
    done
    return 0
}

ensure_tansu_binary() {
    [[ -x $tansu_bin ]] && return 0
    command -v cargo >/dev/null 2>&1 || die "tansu: cargo not found"
    mkdir -p "$cache_dir"
    local t0=$SECONDS
    # Serialize our own builds across concurrent invocations of this script;
    # builds started some other way are detected with pgrep.
    exec 8>"$cache_dir/tansu-build.lock"
    if ! flock -w "$build_wait" 8; then
        die "tansu: could not get the build lock within ${build_wait} s"
    fi
    wait_for_foreign_build
    if [[ ! -x $tansu_bin ]]; then
        say "tansu: building tansu $tansu_version into $tansu_root (about 10 min on 2 cores)"
        # cargo install honours CARGO_TARGET_DIR: keep the build out of the
        # project's target dir (it then uses and removes a temporary one).
        env -u CARGO_TARGET_DIR cargo install tansu --version "$tansu_version" --locked \
            --features libsql --root "$tansu_root" </dev/null >&2 ||
            die "tansu: cargo install failed"
        [[ -x $tansu_bin ]] || die "tansu: cargo install finished but $tansu_bin is missing"
        say "tansu: built in $((SECONDS - t0)) s"
    else
        say "tansu: binary appeared after waiting $((SECONDS - t0)) s"
    fi
    exec 8>&-
}

# PID from the pid file if it names a live tansu broker, else nothing.
our_tansu_pid() {
    local pid
    [[ -f $pid_file ]] || return 0
    pid=$(<"$pid_file")
    if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'tansu broker'; then
        printf '%s\n' "$pid"
    fi
}

stop_tansu() {
    local pid i
    pid=$(our_tansu_pid)
    if [[ -z $pid ]]; then
        if [[ -f $pid_file ]]; then
            rm -f "$pid_file"
            say "tansu: not running (removed stale $pid_file)"
        else
            say "tansu: nothing to stop (not started by this script)"
        fi
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        say "tansu: stopped (pid $pid, killed after 10 s)"
    else
        say "tansu: stopped (pid $pid)"
    fi
    rm -f "$pid_file"
}

wait_port_closed() {
    local i
    for ((i = 0; i < 50; i++)); do
        port_open "$kafka_host" "$kafka_port" || return 0
        sleep 0.2
    done
    die "tansu: $kafka_host:$kafka_port still accepts connections after stopping our broker"
}

ensure_tansu() {
    tansu_started=0
    if [[ -n ${APPEALFLOW_TEST_KAFKA:-} && $APPEALFLOW_TEST_KAFKA != "$kafka_host:$kafka_port" ]]; then
        local h=${APPEALFLOW_TEST_KAFKA%%,*}
        h=${h#*://}
        port_open "${h%:*}" "${h##*:}" ||
            die "tansu: APPEALFLOW_TEST_KAFKA=$APPEALFLOW_TEST_KAFKA from the environment does not accept connections"
        say "tansu: using APPEALFLOW_TEST_KAFKA=$APPEALFLOW_TEST_KAFKA from the environment"
        kafka_addr=$APPEALFLOW_TEST_KAFKA
        return 0
    fi
    kafka_addr="$kafka_host:$kafka_port"

    local t0=$SECONDS pid
    if port_open "$kafka_host" "$kafka_port"; then
        pid=$(our_tansu_pid)
        if [[ -n $pid && ${APPEALFLOW_TANSU_FRESH:-0} == 1 ]]; then
            # A broker that served earlier runs and benchmarks carries their topics and
            # consumer groups; a long-lived one was seen to stall group rebalances. The
            # test command asks for a fresh one (tests use random topic names anyway).
            say "tansu: restarting the broker of an earlier test-env.sh (pid $pid) with empty state"
            stop_tansu
            wait_port_closed
        elif [[ -n $pid ]]; then
            say "tansu: already running on $kafka_addr (pid $pid, started by an earlier test-env.sh)"
            return 0
        else
            say "tansu: something already listens on $kafka_addr; using it"
            return 0
        fi
    fi
    # A broker of ours that is alive but not listening is broken: replace it.
    if [[ -n $(our_tansu_pid) ]]; then
        say "tansu: pid $(<"$pid_file") is not listening on $kafka_addr; restarting it"
        stop_tansu
    fi
    rm -f "$pid_file"

    ensure_tansu_binary

    mkdir -p "$state_dir"
    if [[ ${APPEALFLOW_TANSU_KEEP_STATE:-0} != 1 ]]; then
        rm -f "$state_dir"/tansu.db "$state_dir"/tansu.db-*
    fi
    : >"$log_file"
    # Without job control a background job stays in our process group, so
    # setsid(1) execs in place and $! is the broker's own PID. Variables tansu
    # would read from the environment are cleared; everything is on the
    # command line.
    (
        cd "$state_dir"
        exec env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u DATA_LAKE \
            setsid "$tansu_bin" broker \
            --listener-url "tcp://$kafka_addr" \
            --advertised-listener-url "tcp://$kafka_addr" \
            --storage-engine sqlite://tansu.db \
            </dev/null >>"$log_file" 2>&1
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$pid_file"
    local i
    for ((i = 0; i < 300; i++)); do
        if port_open "$kafka_host" "$kafka_port"; then
            tansu_started=1
            say "tansu: started (pid $pid) on $kafka_addr, log $log_file ($((SECONDS - t0)) s)"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "tansu: log tail ($log_file):"
    tail -n 30 "$log_file" >&2 || true
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$pid_file"
        die "tansu: not accepting connections on $kafka_addr after 30 s (stopped pid $pid)"
    fi
    rm -f "$pid_file"
    die "tansu: broker exited during start-up"
}

# The console's browser test drives Debian's Chromium through chromedriver.
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        say "chromium: $(chromium --version 2>/dev/null | head -n 1)"
        return 0
    fi
    local t0=$SECONDS
    say "chromium: not installed; apt-get install -y chromium chromium-driver"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2 ||
        die "chromium: apt-get install chromium chromium-driver failed"
    say "chromium: installed ($((SECONDS - t0)) s)"
}

# ------------------------------------------------- TLS: certificates, PostgreSQL

pg_tls_port=${APPEALFLOW_TEST_PG_TLS_PORT:-55433}
pki_dir="${TMPDIR:-/tmp}/appealflow-tls-$pg_tls_port"

# A CA, a server certificate it signed for localhost and 127.0.0.1, and a
# second CA that signed nothing. Made fresh at every start: no key is ever kept.
make_pki() {
    local dir=$1 ca
    command -v openssl >/dev/null 2>&1 || die "tls: openssl not found"
    rm -rf "$dir"
    mkdir -p "$dir"
    for ca in ca other-ca; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=appealflow test $ca" -keyout "$dir/$ca.key" -out "$dir/$ca.pem" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            2>/dev/null || die "tls: openssl could not make $ca"
    done
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null || die "tls: openssl req failed"
    printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 30 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null ||
        die "tls: openssl could not sign the server certificate"
    rm -f "$dir/ca.key" "$dir/other-ca.key" "$dir/server.csr" "$dir/ca.srl"
}

# Runs a PostgreSQL tool as the postgres user (the server refuses to run as root).
as_postgres() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stop_pg_tls() {
    local bin=$1
    if [[ -f $pki_dir/data/postmaster.pid ]]; then
        as_postgres "$bin/pg_ctl" -D "$pki_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

ensure_pg_tls() {
    local t0=$SECONDS ver bin
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    bin=/usr/lib/postgresql/$ver/bin
    [[ -x $bin/initdb ]] || die "postgres (TLS): no initdb under /usr/lib/postgresql"
    stop_pg_tls "$bin"
    make_pki "$pki_dir"
    mkdir -p "$pki_dir/data"
    if [[ $EUID -eq 0 ]]; then chown -R postgres: "$pki_dir"; fi
    chmod 600 "$pki_dir/server.key"
    chmod 755 "$pki_dir"
    as_postgres "$bin/initdb" -D "$pki_dir/data" -U postgres --auth=trust -E UTF8 >/dev/null ||
        die "postgres (TLS): initdb failed"
    cat >>"$pki_dir/data/postgresql.conf" <<CONF
port = $pg_tls_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pki_dir'
ssl = on
ssl_cert_file = '$pki_dir/server.pem'
ssl_key_file = '$pki_dir/server.key'
ssl_ca_file = '$pki_dir/ca.pem'
max_connections = 40
shared_buffers = 32MB
fsync = off
CONF
    # TLS or nothing: a plaintext connection finds no line that admits it.
    printf '%s\n' 'hostssl all all 127.0.0.1/32 trust' >"$pki_dir/data/pg_hba.conf"
    as_postgres "$bin/pg_ctl" -D "$pki_dir/data" -l "$pki_dir/postgres.log" -w -t 60 start >/dev/null || {
        tail -n 20 "$pki_dir/postgres.log" >&2 || true
        die "postgres (TLS): pg_ctl start failed"
    }
    say "postgres (TLS only): started on 127.0.0.1:$pg_tls_port, CA $pki_dir/ca.pem ($((SECONDS - t0)) s)"
}

# ------------------------------------------------------------ build libraries

# librdkafka is built with OpenSSL (TLS and SASL SCRAM to brokers): its headers and
# pkg-config must be there before the first `cargo build`.
ensure_build_deps() {
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null; then
        return 0
    fi
    say "build: OpenSSL headers missing; apt-get install -y pkg-config libssl-dev"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q pkg-config libssl-dev >&2 ||
        die "build: apt-get install pkg-config libssl-dev failed"
}

# ---------------------------------------------------------------------- main

cmd=${1:-start}
case $cmd in
    start | up) ;;
    deps)
        ensure_build_deps
        exit 0
        ;;
    stop | down)
        stop_tansu
        stop_pg_tls "/usr/lib/postgresql/$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)/bin"
        exit 0
        ;;
    -h | --help | help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown command '$cmd' (use: start | stop | deps)" ;;
esac

mkdir -p "$env_dir"
ensure_build_deps
ensure_postgres
ensure_pg_tls
ensure_chromium
ensure_tansu

exports=$(
    printf 'export APPEALFLOW_TEST_PG_URL=%q\n' "$pg_url"
    printf 'export APPEALFLOW_TEST_KAFKA=%q\n' "$kafka_addr"
    printf 'export APPEALFLOW_TEST_TLS_DIR=%q\n' "$pki_dir"
    printf 'export APPEALFLOW_TEST_PG_TLS=%q\n' "127.0.0.1:$pg_tls_port"
    if [[ -x $tansu_bin ]]; then printf 'export APPEALFLOW_TEST_TANSU_BIN=%q\n' "$tansu_bin"; fi
)
printf '%s\n' "$exports" >"$env_file"
printf '%s\n' "$exports"
# Not exported and not in the env file: tells scripts/test.sh whether this
# invocation started the broker (and so whether it should stop it).
printf 'APPEALFLOW_TEST_ENV_STARTED_TANSU=%s\n' "$tansu_started"
