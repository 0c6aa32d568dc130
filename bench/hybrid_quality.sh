#!/bin/sh
# Retrieval quality and latency of the search modes (docs/SEARCH.md, "Quality"):
# medembed eval over all PubMedQA queries for dense, bm25, hybrid RRF and hybrid
# weighted fusion, one JSON line per mode, and dense + cross-encoder rerank when a
# cross-encoder folder is given. Usage:
#   bench/hybrid_quality.sh [MODEL_DIR] [BEIR_DIR] [ALPHA] [CROSS_ENCODER_DIR [RERANK_TOP]]
# Defaults: the all-MiniLM-L6-v2 folder of scripts/real_models.py, ../shared/data/pubmedqa,
# alpha 0.5, no reranking (rerank top 100, all the hits eval scores).
# Set MEDEMBED_BIN to use another binary (default build/medembed).
set -eu
bin=${MEDEMBED_BIN:-build/medembed}
model=${1:-$(.venv/bin/python scripts/real_models.py | awk '$1 == "all-MiniLM-L6-v2" {print $2}')}
beir=${2:-../shared/data/pubmedqa}
alpha=${3:-0.5}
ce=${4:-}
top=${5:-100}
grep -m1 'model name' /proc/cpuinfo || true
echo "threads: $(nproc)"
for mode in dense bm25 hybrid "hybrid --alpha $alpha"; do
    # shellcheck disable=SC2086
    "$bin" eval -m "$model" --beir "$beir" --json --mode $mode
done
if [ -n "$ce" ]; then
    "$bin" eval -m "$model" --beir "$beir" --json --mode dense --rerank "$ce" --rerank-top "$top"
fi
