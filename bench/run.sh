#!/usr/bin/env bash
# `make bench`: the ONNX Runtime comparison (bench/ort_compare.sh) with its
# defaults; see that script for the knobs.
exec bash "$(dirname "$0")/ort_compare.sh" "$@"
