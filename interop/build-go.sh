#!/usr/bin/env bash
# Builds the Go peers in GOPATH mode against Debian's Go packages into interop/bin/:
#   kcp-perf-go (interop/kcpperf-go, kcp-go v5.6.1) and
#   smux-peer   (interop/smux-peer, smux 1.5.16 over golang/snappy 0.0.2 framing).
# Idempotent: a binary is rebuilt only if a source file (or this script) is newer.
# Prints the path of the requested binary on stdout (kcp-perf-go by default).
# Usage: interop/build-go.sh [--force] [kcp-perf-go|smux-peer]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

force=
want=kcp-perf-go
for a in "$@"; do
    case "$a" in
        --force) force=1 ;;
        kcp-perf-go|smux-peer) want=$a ;;
        *) echo "build-go.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

GO=${GO:-$(command -v go || true)}
[ -n "$GO" ] || [ ! -x /usr/bin/go ] || GO=/usr/bin/go
if [ -z "$GO" ] || ! "$GO" version >/dev/null 2>&1; then
    echo "build-go.sh: go not found (install golang-go, Go >= 1.19)" >&2; exit 1
fi
need() {
    [ -d "/usr/share/gocode/src/$1" ] || { echo "build-go.sh: $1 missing (install $2, or run .ci/setup.sh)" >&2; exit 1; }
}
need github.com/xtaci/kcp-go golang-github-xtaci-kcp-dev
need golang.org/x/crypto/pbkdf2 golang-golang-x-crypto-dev
need github.com/xtaci/smux golang-github-xtaci-smux-dev
need github.com/golang/snappy golang-github-golang-snappy-dev

GOPATH=$("$here/gopath.sh")
export GOPATH GO111MODULE=off GOFLAGS=
mkdir -p "$here/bin"

# build SOURCE_DIR OUTPUT
build() {
    local src=$1 out=$2
    if [ -z "$force" ] && [ -x "$out" ] \
       && [ -z "$(find "$src" "$here/build-go.sh" -newer "$out" -print -quit)" ]; then
        return 0
    fi
    # Build to a temporary name and rename, so a concurrent user never runs half a file.
    ( cd "$src" && "$GO" build -o "$out.tmp.$$" . ) \
        || { rm -f "$out.tmp.$$"; echo "build-go.sh: go build of $src failed" >&2; exit 1; }
    mv -f "$out.tmp.$$" "$out"
}
build "$here/kcpperf-go" "$here/bin/kcp-perf-go"
build "$here/smux-peer" "$here/bin/smux-peer"
echo "$here/bin/$want"
