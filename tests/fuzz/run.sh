#!/usr/bin/env bash
# Runs each fuzz target for N seconds (default 20) from its seed corpus,
# copying the corpus so new inputs do not land in the repository. A crash
# leaves its input in build-fuzz/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
fail=0
for bin in build-fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin"); name=${name#fuzz_}
    work=$(mktemp -d)
    [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
    if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 \
        -artifact_prefix=build-fuzz/crash-"$name"- "$work" >"build-fuzz/$name.log" 2>&1; then
        echo "fuzz $name: ok ($(grep -c . "build-fuzz/$name.log") log lines, ${secs}s)"
    else
        echo "fuzz $name: FAILED, see build-fuzz/$name.log"; tail -30 "build-fuzz/$name.log"; fail=1
    fi
    rm -rf "$work"
done
exit $fail
