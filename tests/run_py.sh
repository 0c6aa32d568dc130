#!/usr/bin/env bash
# Runs the Python test suite (tests/py) against BUILD/medembed with interpreter PY:
#     bash tests/run_py.sh BUILD PY        (make py-test does this)
# The suite needs numpy and pytest; tests that read ../shared skip visibly without it.
# pytest exit status 5 (no tests collected) counts as a failure.
set -u
build=${1:-build}
py=${2:-/usr/bin/python3}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

if ! command -v "$py" >/dev/null 2>&1; then
    echo "py-test: interpreter '$py' not found; install Debian's python3 or pass PY=..." >&2
    exit 1
fi
if ! "$py" -c 'import numpy, pytest' >/dev/null 2>&1; then
    echo "py-test: '$py' lacks numpy and/or pytest." >&2
    echo "         Install them with: apt-get install python3-numpy python3-pytest" >&2
    echo "         (or point PY= at an interpreter that has both)" >&2
    exit 1
fi
case "$build" in
    /*) bin="$build/medembed" ;;
    *) bin="$root/$build/medembed" ;;
esac
if [ ! -x "$bin" ]; then
    echo "py-test: $bin not found; run make first" >&2
    exit 1
fi

# A sanitizer build's library needs its runtime loaded first when Python (not
# an instrumented program) loads it through ctypes; leak checking stays with
# the C tests, since the interpreter itself never frees everything.
if ldd "$bin" 2>/dev/null | grep -q libasan; then
    export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi

MEDEMBED_BIN="$bin" "$py" -m pytest -q -rfEs tests/py
rc=$?
if [ $rc -eq 5 ]; then
    echo "py-test: pytest collected no tests" >&2
    exit 1
fi
if [ $rc -ne 0 ]; then
    echo "py-test: FAILED (pytest exit $rc)" >&2
fi
exit $rc
