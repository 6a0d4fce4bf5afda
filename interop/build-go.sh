#!/usr/bin/env bash
# Builds the kcp-perf Go peer (interop/kcpperf-go) against Debian's kcp-go v5.6.1
# into interop/bin/kcp-perf-go. Idempotent: does nothing if the binary is newer
# than every source file (and this script). Prints the binary's path on stdout.
# Usage: interop/build-go.sh [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/kcpperf-go"
out="$here/bin/kcp-perf-go"

GO=${GO:-$(command -v go || true)}
[ -n "$GO" ] || [ ! -x /usr/bin/go ] || GO=/usr/bin/go
if [ -z "$GO" ] || ! "$GO" version >/dev/null 2>&1; then
    echo "build-go.sh: go not found (install golang-go, Go >= 1.19)" >&2; exit 1
fi
if [ ! -d /usr/share/gocode/src/github.com/xtaci/kcp-go ]; then
    echo "build-go.sh: kcp-go missing: /usr/share/gocode/src/github.com/xtaci/kcp-go (install golang-github-xtaci-kcp-go-dev)" >&2; exit 1
fi
if [ ! -d /usr/share/gocode/src/golang.org/x/crypto/pbkdf2 ]; then
    echo "build-go.sh: golang.org/x/crypto missing (install golang-golang-x-crypto-dev)" >&2; exit 1
fi

if [ "${1:-}" != --force ] && [ -x "$out" ] \
   && [ -z "$(find "$src" "$here/build-go.sh" -newer "$out" -print -quit)" ]; then
    echo "$out"; exit 0
fi

GOPATH=$("$here/gopath.sh")
export GOPATH GO111MODULE=off GOFLAGS=
mkdir -p "$here/bin"
# Build to a temporary name and rename, so a concurrent user never runs half a file.
( cd "$src" && "$GO" build -o "$out.tmp.$$" . ) || { rm -f "$out.tmp.$$"; echo "build-go.sh: go build failed" >&2; exit 1; }
mv -f "$out.tmp.$$" "$out"
echo "$out"
