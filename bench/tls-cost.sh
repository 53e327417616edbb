#!/usr/bin/env bash
# The cost of TLS (issue 18): put and linearizable range at 100 clients on
# a 3-node loopback cluster (release build), plain TCP against TLS on the
# client port with client certificates and mutual TLS on the peer port,
# fresh clusters in turns, ROUNDS rounds (default 2). Certificates are made
# here with openssl. Ports 5x379-5x381.
# Usage: bench/tls-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
. bench/lib.sh
rounds=${1:-2}

pki=$run/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
issue() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$pki/$1.ext"
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
        -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>/dev/null
}
for n in 1 2 3; do issue node$n; done
issue client

cluster="1=127.0.0.1:51380@127.0.0.1:51379,2=127.0.0.1:52380@127.0.0.1:52379,3=127.0.0.1:53380@127.0.0.1:53379"
start() { # start MODE ROUND
    for n in 1 2 3; do
        local tls=()
        if [ "$1" = tls ]; then
            tls=(--cert-file "$pki/node$n.pem" --key-file "$pki/node$n.key" --trusted-ca-file "$pki/ca.pem"
                --client-cert-auth --peer-cert-file "$pki/node$n.pem" --peer-key-file "$pki/node$n.key"
                --peer-trusted-ca-file "$pki/ca.pem" --peer-client-cert-auth)
        fi
        $pc --node-id $n --client-addr 127.0.0.1:5${n}379 --peer-addr 127.0.0.1:5${n}380 \
            --metrics-addr 127.0.0.1:5${n}381 --data-dir "$run/$1-$2/n$n" --initial-cluster "$cluster" \
            --initial-cluster-token bench "${tls[@]}" >"$run/$1-$2-n$n.log" 2>&1 &
        pids+=($!)
    done
    for n in 1 2 3; do until [ "$(curl -s 127.0.0.1:5${n}381/readyz)" = ok ]; do sleep 0.2; done; done
}
measure() { # measure MODE NAME ARGS...
    local mode=$1 name=$2 tls=()
    shift 2
    [ "$mode" = tls ] && tls=(--cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key")
    $bench --endpoints 127.0.0.1:51379,127.0.0.1:52379,127.0.0.1:53379 "${tls[@]}" --json "$@" |
        report "$mode" "$name"
}
compare "$rounds" plain tls
