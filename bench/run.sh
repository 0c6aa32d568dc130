#!/usr/bin/env bash
# `make bench`: medembed side by side with ONNX Runtime and OpenVINO (bench/peers.sh) with
# its defaults; see that script for the knobs.
exec bash "$(dirname "$0")/peers.sh" "$@"
