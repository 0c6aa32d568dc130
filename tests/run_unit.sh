#!/usr/bin/env bash
# Runs every cmocka unit-test binary given on the command line and prints a
# closing "N passed, N failed, N skipped" line. Exit status is non-zero if any
# binary fails. MEDEMBED_TEST_RUNNER, when set, runs each binary (for example
# "qemu-aarch64 -cpu max" for an ARM64 build: `make test-arm64`).
set -u
build=$1; shift
pass=0; fail=0; skipn=0; bad=()
for t in "$@"; do
    # shellcheck disable=SC2086 # the runner is a command and its options
    out=$(${MEDEMBED_TEST_RUNNER:-} "$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|^SKIP|^\[  ERROR   \]|FAILED|ERROR' | sed "s|^|$(basename "$t"): |"
    p=$(printf '%s\n' "$out" | grep -E '^\[  PASSED  \] [0-9]+ test' | awk '{s+=$4} END{print s+0}')
    f=$(printf '%s\n' "$out" | grep -E '^\[  FAILED  \] [0-9]+ test' | awk '{s+=$4} END{print s+0}')
    s=$(printf '%s\n' "$out" | grep -E '^\[  SKIPPED \] [0-9]+ test' | awk '{s+=$4} END{print s+0}')
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0})); skipn=$((skipn + ${s:-0}))
    if [ $rc -ne 0 ]; then
        bad+=("$t")
        [ "${f:-0}" = 0 ] && fail=$((fail + 1))
        printf '%s\n' "$out" | tail -30
    fi
done
echo "unit: $pass passed, $fail failed, $skipn skipped"
[ ${#bad[@]} -eq 0 ]
