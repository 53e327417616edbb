#!/usr/bin/env bash
# Starts one Placement Center node (README's first command). With no arguments:
# a single-node cluster, data in ./default.placement, clients on 127.0.0.1:2379.
# Extra arguments go to the server (see --help). Installs build needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/setup.sh
exec cargo run --quiet --bin placement-center -- "$@"
