#!/usr/bin/env bash
# `make test-arm64`: the unit and golden-embedding tests of an ARM64 build
# ($1, cross-compiled by the Makefile) under qemu-aarch64 (Debian's
# qemu-user), twice:
#   -cpu max         every optional extension: the NEON level with smmla
#                    (FEAT_I8MM) and bfmmla (FEAT_BF16), test_neon checking them
#                    and, with them hidden, sdot and smull;
#   -cpu cortex-a57  Armv8.0-A without any: the fallbacks (int8 in smull/sadalp,
#                    bf16 in fmla).
# Within CI's budget: under emulation an encoder forward pass is slow, so the
# golden and level tests use the generated set ($1/golden, float64
# references) at the NEON level only (the scalar level is tested natively,
# and is ARM64's oracle in test_kernels), and ../shared's larger sets skip
# visibly. test_determinism (whole embeddings across thread counts and
# batch mixes) runs natively only; the NEON level's determinism is checked
# here by test_kernels and test_neon (each row alone, and 1 or 3 threads,
# bit-identical) and test_levels. The second CPU runs the kernel tests: only
# the int8 and bf16 tiles change there.
# Speed is not measured here: emulation says nothing about it (docs/ARM64.md).
set -u
build=$1
here=$(cd "$(dirname "$0")" && pwd)
qemu=${QEMU_AARCH64:-qemu-aarch64}
if ! command -v "$qemu" >/dev/null; then
    echo "test-arm64: $qemu not found (Debian: apt-get install qemu-user)" >&2
    exit 1
fi
all=() fwd=()
for t in "$build"/tests/test_*; do
    case "${t##*/}" in
        test_golden | test_levels) fwd+=("$t") ;;
        test_determinism) ;; # natively only: over 3 minutes emulated
        *) all+=("$t") ;;
    esac
done
rc=0
echo "== ARM64 under $qemu -cpu max: unit tests =="
MEDEMBED_TEST_RUNNER="$qemu -cpu max" bash "$here/run_unit.sh" "$build" "${all[@]}" || rc=1
echo "== ARM64 under $qemu -cpu max: golden and level tests (generated set, neon level) =="
MEDEMBED_SHARED=/nonexistent/shared-skipped-under-emulation MEDEMBED_TEST_HIDE_LEVELS=scalar \
    MEDEMBED_TEST_RUNNER="$qemu -cpu max" bash "$here/run_unit.sh" "$build" "${fwd[@]}" || rc=1
echo "== ARM64 under $qemu -cpu cortex-a57 (no dot product, BF16 or I8MM): kernel tests =="
MEDEMBED_TEST_RUNNER="$qemu -cpu cortex-a57" bash "$here/run_unit.sh" "$build" \
    "$build/tests/test_kernels" || rc=1
exit $rc
