#!/usr/bin/env bash
# serve_wrk.sh - throughput and latency of `medembed serve` under wrk, as a share of offline
# throughput on the same texts. Not a test: it prints a table and writes
# $OUT/results.json; docs/SERVER.md records the figures.
#
#   bash bench/serve_wrk.sh                      # generated MedEmbed-small-shaped model
#   MODEL=path/to/MedEmbed-base-v0.1 bash bench/serve_wrk.sh
#   SHAPE=tiny DURATION=10 CONNS="1 8 64" bash bench/serve_wrk.sh
#
# Each request embeds ONE text (the case dynamic batching exists for: many clients, one query
# each), cycling through PubMedQA questions from ../shared (or synthetic sentences without
# it). Offline throughput is `medembed bench` when the binary has it, else `medembed embed`
# over the same texts (--batch-size 32, model load time subtracted). It is measured right
# before and right after each wrk run, and each run's share uses the mean of its two: on a
# shared machine the load drifts, and the spread of the pair says how far to trust a share.
# (The server idles while offline runs, and offline runs while the server idles.)
#
# Environment: BIN (build/medembed), MODEL (a model folder; default: generated SHAPE),
# SHAPE tiny|mini|small|base (small), N_TEXTS (256), DURATION seconds per run (20; a run
# lasts at least 10 rounds of its connections, c / offline rate each, up to 600 s, since
# wrk counts only requests completed within the run),
# CONNS ("1 8 64"), ROUTE (/embed or /v1/embeddings), THREADS (inference threads, 0 = all),
# SERVE_ARGS (extra `serve` flags), OFFLINE_SECONDS (about how long each offline measurement
# runs, 10; the texts are repeated to fill it), OUT (bench/out/serve_wrk). Needs Debian's wrk
# and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/medembed}
SHAPE=${SHAPE:-small}
N_TEXTS=${N_TEXTS:-256}
DURATION=${DURATION:-20}
CONNS=${CONNS:-"1 8 64"}
ROUTE=${ROUTE:-/embed}
THREADS=${THREADS:-0}
SERVE_ARGS=${SERVE_ARGS:-}
OUT=${OUT:-bench/out/serve_wrk}
OFFLINE_SECONDS=${OFFLINE_SECONDS:-10}
PY=${PY:-/usr/bin/python3}
SHARED=${MEDEMBED_SHARED:-../shared}

for tool in wrk curl; do
    command -v $tool >/dev/null || { echo "serve_wrk: $tool not found (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "serve_wrk: $BIN not built (make)" >&2; exit 1; }
mkdir -p "$OUT"

# ---- model
if [ -z "${MODEL:-}" ]; then
    MODEL="$OUT/model-$SHAPE"
    if [ ! -f "$MODEL/config.json" ]; then
        case "$SHAPE" in
            tiny)  dims="--layers 2 --hidden 64 --heads 4 --ffn 256" ;;
            mini)  dims="--layers 4 --hidden 256 --heads 4 --ffn 1024" ;;
            small) dims="--layers 12 --hidden 384 --heads 12 --ffn 1536" ;;   # MedEmbed-small
            base)  dims="--layers 12 --hidden 768 --heads 12 --ffn 3072" ;;   # MedEmbed-base
            *) echo "serve_wrk: SHAPE must be tiny, mini, small or base" >&2; exit 1 ;;
        esac
        echo "serve_wrk: generating a random $SHAPE model in $MODEL" >&2
        # shellcheck disable=SC2086
        "$PY" tests/py/gen_model.py --out "$MODEL" $dims --max-seq-length 512 \
            --max-position-embeddings 512 >/dev/null
    fi
fi

# ---- texts
"$PY" bench/serve_wrk_report.py texts "$SHARED/data/pubmedqa/queries.jsonl" "$N_TEXTS" \
    "$ROUTE" "$OUT"
n_texts=$(wc -l < "$OUT/texts.jsonl")
thr_flag=()
[ "$THREADS" != 0 ] && thr_flag=(--threads "$THREADS")

# ---- offline throughput (texts/s)
now() { date +%s.%N; }
use_bench=0
offline_src="medembed embed --batch-size 32, load time subtracted"
if "$BIN" bench --help >/dev/null 2>&1; then
    use_bench=1
    offline_src="medembed bench -i (corpus workload: tokenization included, median of runs)"
fi
offline_input="$OUT/texts.jsonl"
n_offline=$n_texts
bench_runs=3
offline_run() {
    if [ "$use_bench" = 1 ]; then
        "$BIN" bench -m "$MODEL" -i "$OUT/corpus.jsonl" --runs "$bench_runs" --warmup 1 \
            --peak-seconds 0 "${thr_flag[@]}" --json |
            "$PY" -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["docs_per_s"])'
        return
    fi
    head -1 "$OUT/texts.jsonl" > "$OUT/one.jsonl"
    local t0 t1 t2
    t0=$(now)
    "$BIN" embed -m "$MODEL" -i "$OUT/one.jsonl" --input-format jsonl "${thr_flag[@]}" -o /dev/null
    t1=$(now)
    "$BIN" embed -m "$MODEL" -i "$offline_input" --input-format jsonl --batch-size 32 \
        "${thr_flag[@]}" -o /dev/null 2>/dev/null
    t2=$(now)
    "$PY" -c "print($n_offline / max(1e-9, ($t2 - $t1) - ($t1 - $t0)))"
}
# a first run warms the page cache and sizes each measurement to about OFFLINE_SECONDS
rate=$(offline_run)
reps=$("$PY" -c "print(max(1, round($OFFLINE_SECONDS * $rate / $n_texts)))")
if [ "$use_bench" = 1 ]; then
    bench_runs=$(( reps > 3 ? reps : 3 ))
else
    for _ in $(seq "$reps"); do cat "$OUT/texts.jsonl"; done > "$OUT/offline.jsonl"
    offline_input="$OUT/offline.jsonl"
    n_offline=$((n_texts * reps))
fi
echo "serve_wrk: offline reference: $offline_src" >&2

# ---- server
log="$OUT/serve.log"
# shellcheck disable=SC2086
"$BIN" serve -m "$MODEL" --port 0 --max-concurrent-requests 1024 "${thr_flag[@]}" \
    $SERVE_ARGS 2>"$log" &
srv=$!
trap 'kill -TERM $srv 2>/dev/null || true; wait $srv 2>/dev/null || true' EXIT
port=""
for _ in $(seq 600); do
    port=$(grep -o 'listening on http://[^ ]*:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 $srv 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
url="http://127.0.0.1:$port"
wrk -t1 -c8 -d2s -s bench/serve_wrk.lua "$url" -- "$OUT/bodies.txt" "$ROUTE" >/dev/null  # warm-up

runs=()
for c in $CONNS; do
    raw="$OUT/wrk-c$c.txt"
    before=$(offline_run)
    dur=$("$PY" -c "import math; print(min(600, max($DURATION, math.ceil(10 * $c / $before))))")
    wrk -t1 -c"$c" -d"${dur}s" --timeout 120s --latency -s bench/serve_wrk.lua "$url" \
        -- "$OUT/bodies.txt" "$ROUTE" > "$raw"
    after=$(offline_run)
    echo "serve_wrk: c=$c (${dur}s): $(grep Requests/sec "$raw"), offline $before / $after texts/s" >&2
    runs+=("$c:$raw:$before:$after")
done
curl -s "$url/metrics" > "$OUT/metrics.txt"
kill -TERM $srv
wait $srv 2>/dev/null || true
trap - EXIT

"$PY" bench/serve_wrk_report.py report "$OUT/results.json" "${runs[@]}"
echo "offline source: $offline_src"
echo "model $MODEL; $n_texts texts; runs of at least ${DURATION}s; route $ROUTE;" \
    "kernels $("$BIN" --version | sed 's/.*kernels: //; s/)//'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
