#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine, and
# exports the build settings. Source it: `. ci/setup.sh`.
#   protobuf-compiler  protoc for the simulator's build of placement-proto, and placement-proto-codegen
#   libclang-dev       bindgen for librocksdb-sys
#   librocksdb-dev     the system RocksDB 7.8 we link dynamically (no 30-min C++ build)
#   etcd-client        etcdctl for the compatibility tests
#   systemd            systemd-analyze, to verify deploy/systemd's unit
#   iproute2           ip netns and tc, for the multi-host test (tests/netns) and ci/robustness.sh
#   nftables           ci/robustness.sh's partitions and packet loss
#   faketime           libfaketime, ci/robustness.sh's clock fault
#   e2fsprogs          mkfs.ext4, ci/robustness.sh's slow disk (an ext4 image on a loop device)
#   prometheus         promtool, to check and unit-test deploy/monitoring's alert rules
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(faketime)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -e /usr/lib/x86_64-linux-gnu/librocksdb.so ] || [ -e /usr/lib/librocksdb.so ] || need+=(librocksdb-dev)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "ci/setup.sh: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
libdir=/usr/lib/x86_64-linux-gnu
[ -e "$libdir/librocksdb.so" ] || libdir=/usr/lib
export ROCKSDB_LIB_DIR="$libdir" ROCKSDB_INCLUDE_DIR=/usr/include ROCKSDB_DYNAMIC=1
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
