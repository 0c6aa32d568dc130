#!/usr/bin/env bash
# bench/peers.sh - medembed side by side with the engines users would pick from PyPI:
# ONNX Runtime f32 and int8 (quantize_dynamic, QInt8 weights) and OpenVINO f32 and bf16
# (bench/peer_bench.py), from a fresh clone:
#   0. prints the CPU model and its flags;
#   1. installs what it needs: the Python tool environment .venv/ (scripts/venv.sh:
#      numpy, onnx, onnxruntime, openvino of requirements-dev.txt);
#   2. writes a random MedEmbed-base-shaped model (12 layers, 768 hidden, 12 heads, FFN
#      3072, 512 tokens) with tests/py/gen_model.py, on bert-base-uncased's vocabulary
#      (VOCAB, default ../shared's; without it gen_model's synthetic one, which splits
#      words into more pieces, so corpus token counts differ), and its ONNX graph, ONNX Runtime int8
#      twin and OpenVINO fp32 IR with bench/peer_bench.py export;
#   3. builds medembed;
#   4. the corpus end to end (CORPUS, default ../shared's PubMedQA; SKIP when absent):
#      medembed `bench -i` (tokenization included), the peers fed medembed's ids
#      (`medembed tokenize`) in length-sorted padded batches of 32;
#   5. fixed shapes (default 1x16,32x128,8x512) in ROUNDS interleaved rounds: each round
#      runs every peer and every medembed dtype once (in an order rotated from round to
#      round), all on the same token ids, so all see the same background load;
#   6. bench/summarize.py writes OUT/results.json (every raw timing, medians per round and
#      over rounds, the ratios of the issue's targets) and prints the tables.
#
# Environment: OUT (bench/out, git-ignored), MODEL (a model folder instead of the random
# one), VOCAB (a vocab.txt), THREADS (2), ROUNDS (5), RUNS (5), WARMUP (2), SHAPES,
# DTYPES ("f32 bf16 int8"), PEERS ("ort-f32 ort-int8 ov-f32 ov-bf16"), CORPUS (a JSONL corpus, {"text"} a line),
# CORPUS_DOCS (the first N documents; 0 = all), CORPUS_ROUNDS (1; 0 skips the corpus),
# CORPUS_DTYPES ("f32 bf16 int8"), PY (a Python with the peers: skips step 1),
# MEDEMBED_BIN (a built medembed: skips step 3), MEDEMBED_SHARED (../shared).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${MEDEMBED_SHARED:-$root/../shared}
out=${OUT:-$root/bench/out}
threads=${THREADS:-2}
rounds=${ROUNDS:-5}
runs=${RUNS:-5}
warmup=${WARMUP:-2}
shapes=${SHAPES:-1x16,32x128,8x512}
dtypes=${DTYPES:-f32 bf16 int8}
peers=${PEERS:-ort-f32 ort-int8 ov-f32 ov-bf16}
vocab=${VOCAB:-$shared/reference/bert-base-uncased/vocab.txt}
corpus=${CORPUS:-$shared/data/pubmedqa/corpus.jsonl}
corpus_docs=${CORPUS_DOCS:-0}
corpus_rounds=${CORPUS_ROUNDS:-1}
corpus_dtypes=${CORPUS_DTYPES:-f32 bf16 int8}

# The environment may preset OPENBLAS_CORETYPE=Haswell, which slows OpenBLAS-backed numpy.
unset OPENBLAS_CORETYPE
mkdir -p "$out/raw"
rm -f "$out"/raw/*.json
log() { printf '[peers] %s\n' "$*" >&2; }

# 0. the CPU, first
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | xargs)
cpu_fms="family $(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | xargs)"
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2- | xargs)
echo "CPU: $cpu_model ($cpu_fms), $(nproc) CPUs"
echo "flags: $cpu_flags"

# 1. dependencies
if [ -z "${PY:-}" ]; then
    MEDEMBED_REQUIRE_PEERS=1 MEDEMBED_VENV=$root/.venv bash "$root/scripts/venv.sh"
    PY=$root/.venv/bin/python
fi
"$PY" -c 'import numpy, onnx, onnxruntime, openvino' ||
    { log "FAILED: $PY lacks numpy, onnx, onnxruntime or openvino (bash scripts/venv.sh)"; exit 1; }

# 2. model and the peers' files
model=${MODEL:-$out/base-f32}
if [ ! -f "$model/config.json" ]; then
    va=()
    if [ -f "$vocab" ]; then
        va=(--vocab "$vocab")
    else
        log "no $vocab: the synthetic vocabulary (set VOCAB=vocab.txt for real token counts)"
    fi
    log "gen_model.py base shape -> $model"
    "$PY" "$root/tests/py/gen_model.py" --out "$model" --layers 12 --hidden 768 --heads 12 \
        --ffn 3072 --std 0.02 --max-seq-length 512 --max-position-embeddings 512 --seed 1 \
        "${va[@]}" >&2
fi
peer_dir=$out/peer-$(basename "$model")
stamp=$( (cat "$model/config.json"; stat -c '%s %Y' "$model"/*.safetensors; sha256sum "$here/peer_bench.py") | sha256sum | cut -c1-16)
if [ "$(cat "$peer_dir/stamp" 2>/dev/null)" != "$stamp" ]; then
    log "peer_bench.py export -> $peer_dir"
    rm -rf "$peer_dir"
    "$PY" "$here/peer_bench.py" export "$model" "$peer_dir" 2> >(grep -v 'pre-processing before quantization' >&2)
    echo "$stamp" >"$peer_dir/stamp"
fi

# 3. medembed
if [ -z "${MEDEMBED_BIN:-}" ]; then
    make -C "$root" -j2 all >/dev/null
    MEDEMBED_BIN=$root/build/medembed
fi
me=$MEDEMBED_BIN
log "$("$me" --version | head -1); $("$PY" -c 'import onnxruntime as o, openvino as v; print("onnxruntime", o.__version__, "openvino", v.get_version())')"
"$PY" - "$out/raw/machine.json" "$cpu_model" "$cpu_fms" "$cpu_flags" "$threads" "$rounds" "$runs" \
    "$warmup" "$(cut -d' ' -f1-3 /proc/loadavg)" "$("$me" --version | head -1)" "$model" <<'EOF'
import json, sys, time
k = ["cpu_model", "cpu_family_model", "cpu_flags", "threads", "rounds", "runs", "warmup",
     "loadavg_start", "medembed", "model"]
d = dict(zip(k, sys.argv[2:]))
for n in ("threads", "rounds", "runs", "warmup"):
    d[n] = int(d[n])
d["date_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
json.dump(d, open(sys.argv[1], "w"))
EOF

# one engine on one workload: WHAT (shapes|corpus), ROUND, LABEL (ort-f32, medembed-bf16...)
run_one() {
    local what=$1 r=$2 label=$3 eng=${3%%-*} prec=${3#*-}
    local f=$out/raw/${what}_r${r}_${label}.json
    log "$what round $r/$4: $label"
    if [ "$eng" = medembed ]; then
        if [ "$what" = shapes ]; then
            "$me" bench -m "$model" --shapes "$shapes" --dtype "$prec" --threads "$threads" \
                --runs "$runs" --warmup "$warmup" --peak-seconds 0 --json >"$f"
        else
            "$me" bench -m "$model" -i "$out/corpus.jsonl" --dtype "$prec" --threads "$threads" \
                --runs 1 --warmup 0 --peak-seconds 0 --json >"$f"
        fi
    else
        local rc=0 w=(--shapes "$shapes" --runs "$runs" --warmup "$warmup")
        [ "$what" = corpus ] && w=(--corpus "$out/corpus_ids.jsonl")
        "$PY" "$here/peer_bench.py" time --engine "$eng" --precision "$prec" --dir "$peer_dir" \
            --threads "$threads" "${w[@]}" >"$f" || rc=$?
        # 3: OpenVINO compiled another precision than asked; the JSON records it and
        # summarize.py leaves that peer out of every ratio.
        [ $rc = 0 ] || [ $rc = 3 ] || { log "FAILED: $label ($rc)"; exit 1; }
    fi
}

# 4. the corpus (first: its single round is the longest step)
if [ "$corpus_rounds" -gt 0 ]; then
    if [ -f "$corpus" ]; then
        if [ "$corpus_docs" -gt 0 ]; then head -n "$corpus_docs" "$corpus"; else cat "$corpus"; fi \
            >"$out/corpus.jsonl"
        "$me" tokenize -m "$model" -i "$out/corpus.jsonl" >"$out/corpus_ids.jsonl"
        cengines=($peers)
        for dt in $corpus_dtypes; do cengines+=("medembed-$dt"); done
        n=${#cengines[@]}
        for r in $(seq "$corpus_rounds"); do
            for i in $(seq 0 $((n - 1))); do
                run_one corpus "$r" "${cengines[$(((i + r - 1) % n))]}" "$corpus_rounds"
            done
        done
    else
        echo "SKIP: corpus: $corpus is absent (set CORPUS=FILE.jsonl, {\"text\": ...} a line)"
    fi
fi

# 5. fixed shapes, interleaved rounds
engines=($peers)
for dt in $dtypes; do engines+=("medembed-$dt"); done
n=${#engines[@]}
for r in $(seq "$rounds"); do
    for i in $(seq 0 $((n - 1))); do
        run_one shapes "$r" "${engines[$(((i + r - 1) % n))]}" "$rounds"
    done
done

sed -i "s/}\$/, \"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}/" "$out/raw/machine.json"

# 6. summary
"$PY" "$here/summarize.py" "$out"
