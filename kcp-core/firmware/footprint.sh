#!/usr/bin/env bash
# Code size of kcp-core's no-allocator engine on thumbv7em-none-eabihf at opt-level "z" (LTO,
# panic=abort): .text of size_engine (every engine call an application makes) minus .text of
# size_baseline (same runtime, no engine). Also prints the part that is compiler-builtins'
# memcpy/memset (a C build takes those from libc, outside ikcp.o).
# With IKCP_C=path/to/ikcp.c and clang (Debian: clang-14), also compiles ikcp.c for the same
# core (-Oz and -Os, -mcpu=cortex-m4 -mfloat-abi=hard, NDEBUG, libc headers stubbed) and prints
# its .text for comparison. ikcp.c ships in the sdist of the PyPI package siokcp (kcp/ikcp.c).
set -euo pipefail
cd "$(dirname "$0")"
size_tool=$(command -v llvm-size || command -v llvm-size-14 || true)
nm_tool=$(command -v llvm-nm || command -v llvm-nm-14 || true)
[ -n "$size_tool" ] && [ -n "$nm_tool" ] || { echo "footprint: needs llvm-size and llvm-nm (Debian: llvm)" >&2; exit 1; }

cargo build -q --locked --profile size --bin size_engine --bin size_baseline
dir=${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/size
text() { "$size_tool" -A "$1" | awk '$1 == ".text" { print $2 }'; }
rodata() { "$size_tool" -A "$1" | awk '$1 == ".rodata" { print $2 }'; }
engine=$(text "$dir/size_engine")
base=$(text "$dir/size_baseline")
mem=$("$nm_tool" -S --size-sort -t d "$dir/size_engine" \
    | awk '$4 ~ /memcpy|memset|memclr|memmove|__aeabi_mem/ { s += $2 } END { print s + 0 }')
echo "kcp-core engine .text (opt-level z, thumbv7em): $((engine - base)) bytes" \
    "($((engine - base - mem)) without compiler-builtins memcpy/memset: $mem bytes);" \
    ".rodata $(rodata "$dir/size_engine") bytes"

if [ -n "${IKCP_C:-}" ]; then
    cc=$(command -v clang || command -v clang-14 || true)
    [ -n "$cc" ] || { echo "footprint: IKCP_C set but no clang (Debian: clang-14)" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/stub"
    printf '#include <stddef.h>\nvoid *malloc(size_t);\nvoid free(void *);\nvoid abort(void);\n' >"$tmp/stub/stdlib.h"
    printf '#include <stddef.h>\nvoid *memcpy(void *, const void *, size_t);\nvoid *memset(void *, int, size_t);\nvoid *memmove(void *, const void *, size_t);\n' >"$tmp/stub/string.h"
    printf '#include <stdarg.h>\nint printf(const char *, ...);\nint vsprintf(char *, const char *, va_list);\n' >"$tmp/stub/stdio.h"
    printf '#define assert(x) ((void)0)\n' >"$tmp/stub/assert.h"
    for opt in Oz Os; do
        "$cc" --target=thumbv7em-none-eabihf -mcpu=cortex-m4 -mfloat-abi=hard "-$opt" -DNDEBUG \
            -ffreestanding -ffunction-sections -I"$tmp/stub" -c "$IKCP_C" -o "$tmp/ikcp-$opt.o"
        secs() { "$size_tool" -A "$1" | awk -v p="$2" 'index($1, p) == 1 { s += $2 } END { print s + 0 }'; }
        echo "ikcp.c .text (-$opt, $("$cc" --version | head -n 1)): $(secs "$tmp/ikcp-$opt.o" .text) bytes;" \
            ".rodata $(secs "$tmp/ikcp-$opt.o" .rodata) bytes"
    done
fi
