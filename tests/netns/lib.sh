# Network namespaces as separate hosts, for tests of real processes (the
# multi-host test here; the robustness suite can source it too). Needs root
# and iproute2. Every host is a namespace with its own address in
# 198.18.0.0/24 (198.18.0.0/15 is reserved for network tests), on a bridge
# that lives in a namespace of its own: nothing of the machine's own
# network is touched. Processes run with a private mount namespace whose
# /etc/hosts names every host.
#
#   . tests/netns/lib.sh
#   netns_up pc 3           # hosts pc-1..pc-3 (198.18.0.11-13) and client pc-c (198.18.0.100)
#   netns_run pc-1 cmd ...  # runs cmd on host pc-1, names resolved by the hosts file
#   netns_spawn pc-1 log cmd ...  # the same in the background; its pid in NETNS_PID
#   netns_down              # removes everything netns_up made (also from an EXIT trap)

NETNS_PREFIX=""
NETNS_HOSTS_FILE=""
NETNS_LIST=()

# netns_ns HOST: the namespace of HOST (unique to this run).
netns_ns() { echo "$1-$$"; }

# netns_addr HOST: the address of HOST (pc-N: 198.18.0.(10+N); the client: .100).
netns_addr() {
    case "$1" in
        *-c) echo 198.18.0.100 ;;
        *) echo "198.18.0.$((10 + ${1##*-}))" ;;
    esac
}

# netns_up PREFIX N: N member hosts PREFIX-1..PREFIX-N and the client PREFIX-c.
netns_up() {
    NETNS_PREFIX=$1
    local n=$2 sw host ns i
    sw=$(netns_ns "$NETNS_PREFIX-sw")
    ip netns add "$sw"
    NETNS_LIST+=("$sw")
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    NETNS_HOSTS_FILE=$(mktemp)
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$NETNS_HOSTS_FILE"
    local hosts=()
    for i in $(seq "$n"); do hosts+=("$NETNS_PREFIX-$i"); done
    hosts+=("$NETNS_PREFIX-c")
    i=0
    for host in "${hosts[@]}"; do
        i=$((i + 1))
        ns=$(netns_ns "$host")
        ip netns add "$ns"
        NETNS_LIST+=("$ns")
        # The pair is made inside the switch's namespace, its far end moved
        # straight into the host's: never in the machine's own.
        ip -n "$sw" link add "v$i" type veth peer name eth0 netns "$ns"
        ip -n "$sw" link set "v$i" master br0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(netns_addr "$host")/24" dev eth0
        ip -n "$ns" link set eth0 up
        echo "$(netns_addr "$host") $host" >>"$NETNS_HOSTS_FILE"
    done
}

# netns_run HOST CMD...: CMD on HOST, with the hosts file as /etc/hosts.
netns_run() {
    local ns
    ns=$(netns_ns "$1")
    shift
    ip netns exec "$ns" unshare --mount --propagation private \
        sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$NETNS_HOSTS_FILE" "$@"
}

# netns_spawn HOST LOG CMD...: CMD on HOST in the background, its output
# appended to LOG; NETNS_PID is its pid (every step execs, so it is CMD's
# own: a signal to it reaches CMD).
NETNS_PID=""
netns_spawn() {
    local ns log
    ns=$(netns_ns "$1")
    log=$2
    shift 2
    ip netns exec "$ns" unshare --mount --propagation private \
        sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$NETNS_HOSTS_FILE" "$@" >>"$log" 2>&1 &
    NETNS_PID=$!
}

# netns_down: kills what still runs in the namespaces, deletes them.
netns_down() {
    local ns pid
    for ns in "${NETNS_LIST[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for ns in "${NETNS_LIST[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NETNS_LIST=()
    [ -n "$NETNS_HOSTS_FILE" ] && rm -f "$NETNS_HOSTS_FILE"
    NETNS_HOSTS_FILE=""
}
