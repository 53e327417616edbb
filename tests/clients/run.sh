#!/usr/bin/env bash
# Clients against a 3-node Placement Center cluster: the Python `etcd3`
# package (PyPI) and the Node `etcd3` package (npm), at the versions pinned in
# requirements.txt and package-lock.json, and our broker example
# (examples/broker, on placement-client alone).
#   bash tests/clients/run.sh [--bin target/debug/placement-center]
#        [--broker target/debug/broker] [--ctl target/debug/placement-ctl] [python|node|broker ...]
# Installs the clients (a venv under target/clients, node_modules here), starts
# three members on 127.0.0.1:2379x with data in a temporary directory, runs the
# tests, and stops the members and removes their data also when a test fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/target/debug/placement-center
broker=$root/target/debug/broker
ctl=$root/target/debug/placement-ctl
suites=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) bin=$(realpath "$2"); shift 2 ;;
    --broker) broker=$(realpath "$2"); shift 2 ;;
    --ctl) ctl=$(realpath "$2"); shift 2 ;;
    python | node | broker) suites+=("$1"); shift ;;
    *) echo "usage: $0 [--bin PATH] [--broker PATH] [--ctl PATH] [python|node|broker ...]" >&2; exit 2 ;;
    esac
done
[ ${#suites[@]} -gt 0 ] || suites=(python node broker)
[ -x "$bin" ] || { echo "no server binary at $bin (cargo build first)" >&2; exit 2; }

for s in "${suites[@]}"; do
    case "$s" in
    python)
        venv=$root/target/clients/venv
        if ! "$venv/bin/python" -c 'import etcd3' 2>/dev/null; then
            python3 -m venv "$venv"
            "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
        fi ;;
    node)
        command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) ;;
    broker)
        [ -x "$broker" ] || { echo "no broker example at $broker (cargo build -p placement-broker-example)" >&2; exit 2; }
        [ -x "$ctl" ] || { echo "no placement-ctl at $ctl (cargo build -p placement-ctl)" >&2; exit 2; } ;;
    esac
done

data=$(mktemp -d /tmp/pc-clients.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${failed:-0}" = 1 ]; then
        for n in 1 2 3; do echo "--- member $n's log (last 30 lines)"; tail -30 "$data/node$n.log" || true; done
    fi
    rm -rf "$data"
}
trap cleanup EXIT

# Ports 23791..23799: clear of etcd's defaults and of the examples' clusters.
client_port() { echo $((23790 + 3 * $1 - 2)); }
peer_port() { echo $((23790 + 3 * $1 - 1)); }
metrics_port() { echo $((23790 + 3 * $1)); }
endpoints=""
for n in 1 2 3; do
    {
        echo "node_id = $n"
        echo "client_addr = \"127.0.0.1:$(client_port $n)\""
        echo "peer_addr = \"127.0.0.1:$(peer_port $n)\""
        echo "metrics_addr = \"127.0.0.1:$(metrics_port $n)\""
        echo "data_dir = \"$data/node$n\""
        echo "initial_cluster_token = \"client-tests\""
        for m in 1 2 3; do
            echo "[initial_members.$m]"
            echo "peer_addr = \"127.0.0.1:$(peer_port $m)\""
            echo "client_addr = \"127.0.0.1:$(client_port $m)\""
        done
    } >"$data/node$n.toml"
    endpoints+="${endpoints:+,}127.0.0.1:$(client_port $n)"
done
for n in 1 2 3; do
    "$bin" --config "$data/node$n.toml" >"$data/node$n.log" 2>&1 &
    pids+=($!)
done

# Ready when every member says so on /readyz: in touch with a quorum, and
# published (its client URL is in the member list).
ready=0
for _ in $(seq 1 100); do
    n_ready=$(for n in 1 2 3; do curl -sf "http://127.0.0.1:$(metrics_port $n)/readyz" || true; done | grep -c '^ok$' || true)
    if [ "$n_ready" = 3 ]; then ready=1; break; fi
    sleep 0.2
done
[ $ready = 1 ] || { failed=1; echo "the cluster did not elect a leader in 20 s" >&2; exit 1; }

# Waits up to 20 s for a line matching $2 in file $1.
wait_for_line() {
    for _ in $(seq 1 100); do
        grep -qE "$2" "$1" && return 0
        sleep 0.2
    done
    echo "no line matching '$2' in $1:" >&2
    cat "$1" >&2
    return 1
}

# Two brokers of cluster "mqtt": the first sees the second join and, once it
# is stopped (and unregisters), leave; each unregisters its own epoch on exit.
broker_suite() {
    local out=$data/broker
    "$broker" "$endpoints" mqtt 1 mqtt=127.0.0.1:1883 >"$out.1" 2>&1 &
    local b1=$!
    pids+=("$b1")
    wait_for_line "$out.1" '^registered node 1 epoch [0-9]+ mqtt=127.0.0.1:1883 ' || return 1
    "$broker" "$endpoints" mqtt 2 mqtt=127.0.0.1:1884 grpc=127.0.0.1:1228 >"$out.2" 2>&1 &
    local b2=$!
    pids+=("$b2")
    wait_for_line "$out.1" '^joined node 2 epoch [0-9]+ grpc=127.0.0.1:1228 mqtt=127.0.0.1:1884$' || return 1
    # A topic of two shards, one replica each: each broker is told to lead one.
    "$ctl" --endpoints "$endpoints" topic create --cluster mqtt orders --shards 2 >/dev/null || return 1
    wait_for_line "$out.1" '^lead orders/[01] leader epoch 1$' || return 1
    wait_for_line "$out.2" '^lead orders/[01] leader epoch 1$' || return 1
    kill -INT "$b2"
    wait "$b2" || { echo "broker 2 exited with $?" >&2; cat "$out.2" >&2; return 1; }
    wait_for_line "$out.2" '^unregistered node 2 epoch [0-9]+ \(removed: true\)$' || return 1
    wait_for_line "$out.1" '^left node 2 ' || return 1
    kill -TERM "$b1"
    wait "$b1" || { echo "broker 1 exited with $?" >&2; cat "$out.1" >&2; return 1; }
    wait_for_line "$out.1" '^unregistered node 1 epoch [0-9]+ \(removed: true\)$' || return 1
    # Bad arguments: exit 2 with the usage, before any connection.
    local rc=0
    "$broker" "$endpoints" mqtt not-a-number >"$out.bad" 2>&1 || rc=$?
    [ "$rc" = 2 ] && grep -q 'NODE_ID "not-a-number" is not a number' "$out.bad" || { cat "$out.bad" >&2; return 1; }
    echo "broker example: registered, saw the other join and leave, led a shard, unregistered"
}

export PC_ENDPOINTS=$endpoints
for s in "${suites[@]}"; do
    echo "--- $s client against $endpoints"
    case "$s" in
    python) (cd "$here" && timeout 300 "$root/target/clients/venv/bin/python" test_python_etcd3.py) || failed=1 ;;
    node) (cd "$here" && timeout 300 node --test --test-reporter=spec node_etcd3.test.mjs) || failed=1 ;;
    broker) broker_suite || failed=1 ;;
    esac
done
[ "${failed:-0}" = 0 ] || { echo "client tests failed" >&2; exit 1; }
echo "client tests: ok (${suites[*]})"
