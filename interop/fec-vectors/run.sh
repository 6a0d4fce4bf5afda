#!/usr/bin/env bash
# Prints FEC vectors from kcp-go v5.6.1's own encoder (format: see main.go).
#
# kcp-go's encoder is unexported, so this builds main.go against a scratch copy of Debian's
# kcp-go package (its non-test .go files) plus kcpshim/*.go, in a temporary GOPATH entry that
# is removed afterwards. Nothing of kcp-go is kept in the repository.
# Needs Debian's golang-go and golang-github-xtaci-kcp-dev (installed by .ci/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
deb=/usr/share/gocode/src/github.com/xtaci/kcp-go
command -v go >/dev/null 2>&1 || { echo "fec-vectors: 'go' not found: run .ci/setup.sh (Debian golang-go)" >&2; exit 2; }
[ -f "$deb/fec.go" ] || { echo "fec-vectors: kcp-go not found at $deb: run .ci/setup.sh (golang-github-xtaci-kcp-dev)" >&2; exit 2; }
base_gopath=$("$here/../gopath.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pkg="$tmp/src/kcpfecscratch"
"$here/../kcpgo-scratch.sh" "$pkg/kcp"
cp "$here"/kcpshim/*.go "$pkg/kcp/"
cp "$here/main.go" "$pkg/"
cd "$pkg"
GOPATH="$tmp:$base_gopath" GO111MODULE=off GOFLAGS= go build -o "$tmp/fec-vectors" .
"$tmp/fec-vectors"
