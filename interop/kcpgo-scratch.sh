#!/usr/bin/env bash
# Copies Debian's kcp-go v5.6.1 package (its non-test .go files) into DEST, so that a test or
# benchmark of ours can be compiled inside the package and reach unexported code. Used by
# bench-engine.sh, bench-fec.sh and fec-vectors/run.sh; nothing of kcp-go is kept in the repo.
# Usage: interop/kcpgo-scratch.sh DEST
set -euo pipefail
deb=/usr/share/gocode/src/github.com/xtaci/kcp-go
[ -f "$deb/kcp.go" ] || { echo "kcp-go not found at $deb: run .ci/setup.sh" >&2; exit 2; }
mkdir -p "$1"
for f in "$deb"/*.go; do
    case "$f" in *_test.go) continue ;; esac
    cp "$f" "$1/"
done
