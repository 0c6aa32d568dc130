#!/usr/bin/env bash
# bench/ort_compare.sh - medembed against ONNX Runtime (fp32, the onnxruntime
# of requirements-dev.txt), side by side on this machine, from a clean checkout:
#   1. installs what it needs (Debian python3-numpy/-torch/-onnx; the Python
#      tool environment .venv/ of scripts/venv.sh, with onnxruntime);
#   2. writes a random MedEmbed-base-shaped model (BERT-base 12/768/12/3072)
#      with ../shared/tools/make_model.py and exports it to ONNX with
#      ../shared/tools/torch_ref.py;
#   3. fixed shapes (default 1x16,32x128,8x512): ROUNDS rounds, each running
#      ORT (../shared/tools/peer_bench.py) and then `medembed bench --json`
#      for every dtype, so both engines see the same background load; a
#      round reports medians of RUNS calls;
#   4. the real workload: all PubMedQA abstracts (tokenization included for
#      medembed via `medembed bench -i`; ORT is fed the same ids, from
#      `medembed tokenize`, in length-sorted padded batches of 32 by
#      peer_bench.py --corpus), and `medembed embed` end to end for reference;
#   5. bench/summarize.py prints medians and the medembed/ORT ratios (per
#      round, then the median over rounds) and writes OUT/summary.json.
#
# Environment: OUT (default bench/out, git-ignored), MODEL (a model folder to
# use instead of generating one), THREADS (2), ROUNDS (5), RUNS (5), SHAPES,
# DTYPES ("f32 bf16 int8"), CORPUS_ROUNDS (1; 0 skips the corpus),
# CORPUS_DTYPES ("f32 bf16 int8"), MEDEMBED_SHARED (../shared).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${MEDEMBED_SHARED:-$root/../shared}
out=${OUT:-$root/bench/out}
threads=${THREADS:-2}
rounds=${ROUNDS:-5}
runs=${RUNS:-5}
shapes=${SHAPES:-1x16,32x128,8x512}
dtypes=${DTYPES:-f32 bf16 int8}
corpus_rounds=${CORPUS_ROUNDS:-1}
corpus_dtypes=${CORPUS_DTYPES:-f32 bf16 int8}
corpus=$shared/data/pubmedqa/corpus.jsonl

# The environment presets OPENBLAS_CORETYPE=Haswell, which halves OpenBLAS
# (numpy, PyTorch) speed; baselines run without it.
unset OPENBLAS_CORETYPE
mkdir -p "$out"
log() { printf '[ort_compare] %s\n' "$*" >&2; }

# 1. dependencies
missing=()
for p in python3-numpy python3-torch python3-onnx; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get install -y "${missing[@]}" >/dev/null
fi
MEDEMBED_REQUIRE_PEERS=1 MEDEMBED_VENV=$root/.venv bash "$root/scripts/venv.sh"
py=$root/.venv/bin/python
log "ONNX Runtime $("$py" -c 'import onnxruntime; print(onnxruntime.__version__)')"

# 2. model and its ONNX export
model=${MODEL:-$out/base-f32}
if [ ! -f "$model/model.safetensors" ]; then
    log "make_model.py --preset base -> $model"
    /usr/bin/python3 "$shared/tools/make_model.py" --preset base --out "$model" >&2
fi
onnx=$out/$(basename "$model").onnx
if [ ! -f "$onnx" ]; then
    log "torch_ref.py export-onnx -> $onnx"
    /usr/bin/python3 "$shared/tools/torch_ref.py" export-onnx "$model" "$onnx" >&2 2>/dev/null
fi

# 3. build
make -C "$root" -j2 all >/dev/null
me=$root/build/medembed
log "medembed $("$me" --version)"
nproc_=$(nproc)
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $nproc_ CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# 4. fixed shapes, interleaved rounds
rm -f "$out"/ort_shapes_*.json "$out"/me_shapes_*.json "$out"/*corpus_*.json
for r in $(seq "$rounds"); do
    log "round $r/$rounds: ORT $shapes"
    "$py" "$shared/tools/peer_bench.py" --onnx "$onnx" --engine ort --precision f32 \
        --shapes "$shapes" --threads "$threads" --runs "$runs" --warmup 2 >"$out/ort_shapes_$r.json"
    for dt in $dtypes; do
        log "round $r/$rounds: medembed $dt $shapes"
        "$me" bench -m "$model" --shapes "$shapes" --dtype "$dt" --threads "$threads" \
            --runs "$runs" --warmup 2 --peak-seconds 0 --json >"$out/me_shapes_${dt}_$r.json"
    done
done
"$me" bench -m "$model" --shapes 1x16 --runs 1 --warmup 0 --peak-seconds 1 --threads "$threads" \
    --json >"$out/me_peak_f32.json"

# 5. the real workload
if [ "$corpus_rounds" -gt 0 ]; then
    if [ ! -s "$out/corpus_ids.jsonl" ]; then
        "$me" tokenize -m "$model" -i "$corpus" |
            /usr/bin/python3 -c 'import sys, json
for l in sys.stdin: print(json.dumps({"ids": json.loads(l)["ids"]}))' >"$out/corpus_ids.jsonl"
    fi
    for r in $(seq "$corpus_rounds"); do
        log "corpus round $r/$corpus_rounds: ORT (batches of 32)"
        "$py" "$shared/tools/peer_bench.py" --onnx "$onnx" --engine ort --precision f32 \
            --threads "$threads" --corpus "$out/corpus_ids.jsonl" >"$out/ort_corpus_$r.json"
        for dt in $corpus_dtypes; do
            log "corpus round $r/$corpus_rounds: medembed $dt"
            "$me" bench -m "$model" -i "$corpus" --dtype "$dt" --threads "$threads" --runs 1 \
                --warmup 0 --peak-seconds 0 --json >"$out/me_corpus_${dt}_$r.json"
        done
    done
    log "medembed embed end to end (f32, load + tokenize + embed + write)"
    t0=$(date +%s.%N)
    "$me" embed -m "$model" -i "$corpus" -o /dev/null --threads "$threads"
    t1=$(date +%s.%N)
    echo "{\"embed_cli_s\": $(echo "$t1 - $t0" | bc)}" >"$out/me_embed_cli.json"
fi

# 6. summary
/usr/bin/python3 "$here/summarize.py" "$out"
