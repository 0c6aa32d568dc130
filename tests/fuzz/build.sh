#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c as a libFuzzer binary in build-fuzz/
# (clang, ASan + UBSan). The library is built once with coverage
# instrumentation through the Makefile, so ISA files keep their flags.
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
make -s BUILD=build-fuzz CC="$CC" OPT=-O1 CFLAGS="-fsanitize=fuzzer-no-link $SAN" build-fuzz/libmedembed.a
PK_CFLAGS=$(pkg-config --cflags libutf8proc jansson sqlite3)
PK_LIBS=$(pkg-config --libs libutf8proc jansson sqlite3)
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    "$CC" -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer $SAN -Iinclude -Isrc $PK_CFLAGS \
        "$src" build-fuzz/libmedembed.a $PK_LIBS -lpthread -lm -o "build-fuzz/$name"
    echo "built build-fuzz/$name"
done
