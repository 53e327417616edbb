#!/usr/bin/env bash
# The module dependency picture of one directory of the server: for each of
# its files, the sibling modules it names (`super::x`, `crate::<dir>::x`),
# and who names each module. Usage: ci/module-deps.sh [src/raft]
# (issue 26: no file of src/raft but the ones that build the node may name
# `node`).
set -euo pipefail
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
