#!/usr/bin/env bash
# Starts (or stops) a real Kafka-protocol broker on this machine for the Kafka tests and examples:
# tansu 0.6 from crates.io with its SQLite storage, listening on 127.0.0.1 only. Optional: the
# test suite uses librdkafka's mock cluster unless SLUICE_KAFKA_BOOTSTRAP names a broker.
#
#   scripts/kafka-broker.sh [--port PORT] [--dir DIR]          start in the background
#   scripts/kafka-broker.sh --stop [--port PORT] [--dir DIR]   stop the one started so
#
# PORT defaults to 9092, DIR (the SQLite file, the log, the pid file) to
# ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka-broker-PORT. When no `tansu` is on PATH nor in
# ${CARGO_HOME:-$HOME/.cargo}/bin, it is first built and installed there with
# `cargo install tansu --version 0.6.0 --features libsql --locked` (about 16 minutes on two cores;
# under `flock /tmp/cargo.lock` when flock exists, CARGO_TARGET_DIR defaulting to
# ${XDG_CACHE_HOME:-$HOME/.cache}/tansu-target). TANSU=/path/to/tansu picks another binary.
#
# On start it prints the SLUICE_KAFKA_BOOTSTRAP=127.0.0.1:PORT line to use and the pid. Exit
# codes: 0 done (also: already running, or already stopped), 1 the broker did not start or stop
# (its log's last lines are printed), 2 bad arguments, 3 the install failed, 4 the port is taken
# by another process.
set -euo pipefail

TANSU_VERSION=0.6.0
port=9092
dir=""
action=start

# Prints the comment above and exits with $1 (2 unless told).
usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --port) [ $# -ge 2 ] || usage; port=$2; shift 2 ;;
        --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
        --stop) action=stop; shift ;;
        -h|--help) usage 0 ;;
        *) echo "kafka-broker.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "kafka-broker.sh: --port must be a number in 1..65535, not '$port'" >&2
    exit 2
fi
[ -n "$dir" ] || dir="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka-broker-$port"
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
pidfile="$dir/tansu.pid"
log="$dir/tansu.log"

# True when something accepts TCP connections on 127.0.0.1:$port.
port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# The pid in the pid file when that process still runs, else nothing.
running_pid() {
    local pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

log_tail() {
    echo "--- last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
}

if [ "$action" = stop ]; then
    pid=$(running_pid)
    if [ -z "$pid" ]; then
        echo "no broker started by this script runs for $dir"
        rm -f "$pidfile"
        exit 0
    fi
    kill "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "stopped broker pid $pid"; exit 0; }
        sleep 0.1
    done
    echo "kafka-broker.sh: broker pid $pid still runs 10 s after SIGTERM; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    exit 1
fi

pid=$(running_pid)
if [ -n "$pid" ]; then
    echo "broker already running: pid $pid, data in $dir"
    echo "SLUICE_KAFKA_BOOTSTRAP=127.0.0.1:$port"
    exit 0
fi
if port_answers; then
    echo "kafka-broker.sh: port $port on 127.0.0.1 is taken by another process; pick one with --port" >&2
    exit 4
fi

# The tansu binary: $TANSU, else on PATH, else in cargo's bin directory, else installed there.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
tansu="${TANSU:-}"
if [ -z "$tansu" ]; then
    tansu=$(command -v tansu || true)
fi
if [ -z "$tansu" ] && [ -x "$cargo_bin/tansu" ]; then
    tansu="$cargo_bin/tansu"
fi
if [ -z "$tansu" ]; then
    echo "tansu not found: installing tansu $TANSU_VERSION into $cargo_bin (about 16 minutes)" >&2
    command -v cargo >/dev/null || { echo "kafka-broker.sh: cargo is needed to install tansu" >&2; exit 3; }
    lock=()
    if command -v flock >/dev/null; then
        lock=(flock /tmp/cargo.lock)
        echo "(under flock /tmp/cargo.lock: waits while another cargo build holds it)" >&2
    fi
    started=$(date +%s)
    if ! CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tansu-target}" \
        "${lock[@]}" cargo install tansu --version "$TANSU_VERSION" --features libsql --locked; then
        echo "kafka-broker.sh: cargo install tansu $TANSU_VERSION failed (see above)" >&2
        exit 3
    fi
    echo "installed tansu in $(( $(date +%s) - started )) s" >&2
    tansu="$cargo_bin/tansu"
fi
[ -x "$tansu" ] || { echo "kafka-broker.sh: '$tansu' is not an executable" >&2; exit 3; }
version=$("$tansu" --version 2>/dev/null | awk '{print $NF}')
case "$version" in
    0.6.*) ;;
    *) echo "kafka-broker.sh: warning: $tansu is tansu '$version', not $TANSU_VERSION: its flags or features may differ" >&2 ;;
esac

mkdir -p "$dir"
url="tcp://127.0.0.1:$port"
# setsid: the broker outlives this script and the terminal's Ctrl-C. tansu reads the path of a
# sqlite:// URL as relative to its working directory (even sqlite:///abs), hence the cd.
(
    cd "$dir"
    exec env NO_COLOR=1 setsid "$tansu" broker \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine "sqlite://tansu.db" \
        >"$log" 2>&1 </dev/null
) &
pid=$!
echo "$pid" >"$pidfile"

for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "kafka-broker.sh: the broker exited at start" >&2
        log_tail
        rm -f "$pidfile"
        exit 1
    fi
    if port_answers; then
        echo "tansu $version broker listening on 127.0.0.1:$port, pid $pid, data and log in $dir"
        echo "stop it with: $0 --stop --port $port --dir $dir   (or: kill $pid)"
        echo "SLUICE_KAFKA_BOOTSTRAP=127.0.0.1:$port"
        exit 0
    fi
    sleep 0.1
done
echo "kafka-broker.sh: nothing answers on 127.0.0.1:$port 30 s after the start; stopping pid $pid" >&2
kill "$pid" 2>/dev/null || true
log_tail
rm -f "$pidfile"
exit 1
