#!/usr/bin/env bash
# Prints (and creates) a GOPATH in which Debian's kcp-go v5.6.1 builds in GOPATH mode:
# its src mirrors Debian's Go source tree (/usr/share/gocode/src), with the import path
# github.com/xtaci/kcp-go/v5 linked to Debian's kcp-go folder.
# Usage: export GOPATH=$(interop/gopath.sh) GO111MODULE=off
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gp="$here/.gopath"
deb=/usr/share/gocode/src
[ -d "$deb/github.com/xtaci/kcp-go" ] || { echo "kcp-go missing: run .ci/setup.sh" >&2; exit 1; }
mkdir -p "$gp/src"
# Mirror every top-level entry of Debian's tree (symlinks), then add the /v5 import path.
for d in "$deb"/*; do
    name=$(basename "$d")
    [ "$name" = github.com ] && continue
    ln -sfn "$d" "$gp/src/$name"
done
mkdir -p "$gp/src/github.com"
for d in "$deb"/github.com/*; do
    name=$(basename "$d")
    [ "$name" = xtaci ] && continue
    ln -sfn "$d" "$gp/src/github.com/$name"
done
mkdir -p "$gp/src/github.com/xtaci"
for d in "$deb"/github.com/xtaci/*; do
    name=$(basename "$d")
    [ "$name" = kcp-go ] && continue
    ln -sfn "$d" "$gp/src/github.com/xtaci/$name"
done
# A real folder, so that the /v5 link does not land inside Debian's tree.
[ -L "$gp/src/github.com/xtaci/kcp-go" ] && rm "$gp/src/github.com/xtaci/kcp-go"
mkdir -p "$gp/src/github.com/xtaci/kcp-go"
ln -sfn "$deb/github.com/xtaci/kcp-go" "$gp/src/github.com/xtaci/kcp-go/v5"
echo "$gp"
