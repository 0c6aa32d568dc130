#!/usr/bin/env bash
# Creates or updates the Python tool environment of the tests and benchmarks (installing
# Debian's PyTorch first with scripts/deps.sh --test):
#     bash scripts/venv.sh            # .venv/ (or $MEDEMBED_VENV) from requirements-dev.txt
# and, apart, .venv-schemathesis/ (or $MEDEMBED_ST_VENV) from requirements-schemathesis.txt:
# schemathesis needs a newer pytest than Debian's, so it gets an isolated venv of its own.
# The venv is built on Debian's /usr/bin/python3 with --system-site-packages, so it sees
# Debian's python3-torch, numpy, pytest, pandas and dask (scripts/deps.sh installs them),
# and pip adds the exact versions of requirements-dev.txt. It is reused while the stamp
# (the requirements' sha256) matches, so a second run costs nothing.
#
# Where PyPI cannot be reached (a user's offline machine) it prints a SKIP line and exits
# 0 without a venv: the tests that need its packages then skip visibly. With CI=true (or
# MEDEMBED_REQUIRE_PEERS=1) that is an error instead, since CI must run every test.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${MEDEMBED_VENV:-$root/.venv}
req=$root/requirements-dev.txt
base=${MEDEMBED_VENV_PYTHON:-/usr/bin/python3}
strict=0
[ "${CI:-}" = "true" ] || [ "${MEDEMBED_REQUIRE_PEERS:-}" = "1" ] && strict=1

# The schemathesis environment: isolated (no system site packages), same stamp scheme.
st_venv=${MEDEMBED_ST_VENV:-$root/.venv-schemathesis}
st_req=$root/requirements-schemathesis.txt
st_want=$( (sha256sum "$st_req"; "$base" --version 2>&1) | sha256sum | cut -c1-64)
if [ ! -x "$st_venv/bin/schemathesis" ] ||
   [ "$(cat "$st_venv/.medembed-stamp" 2>/dev/null)" != "$st_want" ]; then
    echo "venv: creating $st_venv from requirements-schemathesis.txt" >&2
    st_log=$(mktemp)
    if "$base" -m venv "$st_venv" >"$st_log" 2>&1 &&
       PIP_DISABLE_PIP_VERSION_CHECK=1 "$st_venv/bin/pip" install -q --timeout 60 \
           -r "$st_req" >>"$st_log" 2>&1 &&
       "$st_venv/bin/schemathesis" --version >>"$st_log" 2>&1; then
        echo "$st_want" >"$st_venv/.medembed-stamp"
    else
        tail -5 "$st_log" >&2
        rm -rf "$st_venv"
        if [ $strict = 1 ]; then
            rm -f "$st_log"
            echo "venv: FAILED: pip could not install requirements-schemathesis.txt" >&2
            exit 1
        fi
        echo "SKIP: $st_venv: pip could not install requirements-schemathesis.txt;" \
             "the schemathesis test will skip" >&2
    fi
    rm -f "$st_log"
fi

want=$( (sha256sum "$req"; "$base" --version 2>&1) | sha256sum | cut -c1-64)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.medembed-stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi

fail() {
    if [ $strict = 1 ]; then
        echo "venv: FAILED: $1" >&2
        exit 1
    fi
    echo "SKIP: the Python tool environment ($venv): $1; tests that need" \
         "sentence-transformers, tokenizers, onnxruntime, openvino, openai or pyspark" \
         "will skip" >&2
    rm -rf "$venv"
    exit 0
}

bash "$root/scripts/deps.sh" --test >&2 ||
    fail "Debian's python3-torch and libopenblas0-pthread could not be installed"
command -v "$base" >/dev/null || fail "$base not found (apt-get install python3 python3-venv)"
echo "venv: creating $venv from requirements-dev.txt" >&2
if [ ! -x "$venv/bin/python" ]; then
    "$base" -m venv --system-site-packages "$venv" >&2 ||
        fail "'$base -m venv' failed (apt-get install python3-venv)"
fi
log=$(mktemp)
if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q --timeout 60 -r "$req" >"$log" 2>&1; then
    tail -5 "$log" >&2
    rm -f "$log"
    fail "pip could not install requirements-dev.txt (is PyPI reachable?)"
fi
rm -f "$log"
"$venv/bin/python" -c 'import torch, sentence_transformers, tokenizers, onnxruntime, openai
import pyspark, pyarrow' 2>&1 |
    tail -3 >&2
[ "${PIPESTATUS[0]}" = 0 ] || fail "the installed packages do not import (python3-torch missing?)"
echo "$want" >"$venv/.medembed-stamp"
echo "venv: ready ($("$venv/bin/python" -c 'import sentence_transformers as s, tokenizers as t, torch; print("sentence-transformers", s.__version__, "tokenizers", t.__version__, "torch", torch.__version__)'))" >&2
