#!/usr/bin/env bash
# The module dependency picture of one directory of the server: for each of
# its files, the sibling modules it names (`super::x`, `crate::<dir>::x`),
# and who names each module. Usage: ci/module-deps.sh [src/raft]
#        ci/module-deps.sh --check
# --check fails if a part of the Raft node (a concern that owns its state:
# see src/raft/node.rs) names `node`: RaftNode composes them, not the reverse.
set -euo pipefail
if [ "${1:-}" = "--check" ]; then
    status=0
    for part in handle error proposals forwards read_index lessor transfer membership contact batch; do
        code=$(sed '/^#\[cfg(test)\]/,$d' "src/raft/$part.rs")
        if grep -qE "(super|crate::raft)::node\b" <<<"$code"; then
            echo "module-deps: src/raft/$part.rs names node.rs; a part of the node must depend on RaftHandle instead" >&2
            status=1
        fi
    done
    exit $status
fi
dir=${1:-src/raft}
parent=$(basename "$dir")
mods=$(for f in "$dir"/*.rs; do basename "$f" .rs; done | grep -vx mod)
echo "# $dir: who names whom (file -> modules it names)"
for f in "$dir"/*.rs; do
    me=$(basename "$f" .rs)
    # Test modules name whatever they test: only the code above them counts.
    code=$(sed '/^#\[cfg(test)\]/,$d' "$f")
    named=$(for m in $mods; do
        [ "$m" = "$me" ] && continue
        if grep -qE "(super|crate::$parent)::(\{[^}]*\b)?$m\b" <<<"$code"; then echo "$m"; fi
    done | tr '\n' ' ')
    printf '%-20s -> %s\n' "$me" "${named:-(none)}"
done
echo
echo "# named by"
for m in $mods; do
    by=$(for f in "$dir"/*.rs; do
        me=$(basename "$f" .rs)
        [ "$me" = "$m" ] && continue
        code=$(sed '/^#\[cfg(test)\]/,$d' "$f")
        if grep -qE "(super|crate::$parent)::(\{[^}]*\b)?$m\b" <<<"$code"; then echo "$me"; fi
    done | tr '\n' ' ')
    printf '%-20s <- %s\n' "$m" "${by:-(none)}"
done
