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
# over the same texts (--batch-size 32), model load time subtracted.
#
# Environment: BIN (build/medembed), MODEL (a model folder; default: generated SHAPE),
# SHAPE tiny|mini|small|base (small), N_TEXTS (256), DURATION seconds per run (20),
# CONNS ("1 8 64"), ROUTE (/embed or /v1/embeddings), THREADS (inference threads, 0 = all),
# SERVE_ARGS (extra `serve` flags), OUT (bench/out/serve_wrk). Needs Debian's wrk.
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
PY=${PY:-/usr/bin/python3}
SHARED=${MEDEMBED_SHARED:-../shared}

command -v wrk >/dev/null || { echo "serve_wrk: wrk not found (apt-get install wrk)" >&2; exit 1; }
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

# ---- texts: one JSON string per line, and one request body per line
"$PY" - "$SHARED/data/pubmedqa/queries.jsonl" "$N_TEXTS" "$ROUTE" "$OUT" <<'EOF'
import json, os, random, sys
src, n, route, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
texts = []
if os.path.exists(src):
    with open(src, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
else:
    rng = random.Random(0)
    words = ("patient study treatment clinical risk blood heart acute chronic therapy dose "
             "outcome mortality stroke diabetes insulin kidney infection trial cohort").split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 30))) for _ in range(n)]
key = "input" if "embeddings" in route else "inputs"
with open(os.path.join(out, "texts.jsonl"), "w", encoding="utf-8") as f:
    f.writelines(json.dumps(t) + "\n" for t in texts)
with open(os.path.join(out, "bodies.txt"), "w", encoding="utf-8") as f:
    f.writelines(json.dumps({key: t}) + "\n" for t in texts)
print("serve_wrk: %d texts from %s" % (len(texts), src if os.path.exists(src) else "a generator"),
      file=sys.stderr)
EOF
n_texts=$(wc -l < "$OUT/texts.jsonl")
thr_flag=()
[ "$THREADS" != 0 ] && thr_flag=(--threads "$THREADS")

# ---- offline throughput (texts/s)
now() { date +%s.%N; }
if "$BIN" bench --help >/dev/null 2>&1; then
    offline_src="medembed bench"
    offline=$("$BIN" bench -m "$MODEL" -i "$OUT/texts.jsonl" --input-format jsonl \
        "${thr_flag[@]}" --json 2>/dev/null | "$PY" -c \
        'import json,sys; d=json.load(sys.stdin); print(d.get("texts_per_s") or d["texts/s"])') \
        || offline=""
fi
if [ -z "${offline:-}" ]; then
    offline_src="medembed embed (load time subtracted)"
    head -1 "$OUT/texts.jsonl" > "$OUT/one.jsonl"
    t0=$(now); "$BIN" embed -m "$MODEL" -i "$OUT/one.jsonl" --input-format jsonl \
        "${thr_flag[@]}" -o /dev/null; t1=$(now)
    "$BIN" embed -m "$MODEL" -i "$OUT/texts.jsonl" --input-format jsonl --batch-size 32 \
        "${thr_flag[@]}" -o /dev/null 2>/dev/null; t2=$(now)
    offline=$("$PY" -c "print($n_texts / max(1e-9, ($t2 - $t1) - ($t1 - $t0)))")
fi
echo "serve_wrk: offline: $offline texts/s ($offline_src)" >&2

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
# warm-up: every text once
wrk -t1 -c8 -d2s -s bench/serve_wrk.lua "$url" -- "$OUT/bodies.txt" "$ROUTE" >/dev/null

results="$OUT/results.json"
echo "[" > "$results"
first=1
printf '\n| connections | requests/s | p50 ms | p99 ms | share of offline |\n|---|---|---|---|---|\n'
for c in $CONNS; do
    raw="$OUT/wrk-c$c.txt"
    wrk -t1 -c"$c" -d"${DURATION}s" --timeout 120s --latency -s bench/serve_wrk.lua "$url" \
        -- "$OUT/bodies.txt" "$ROUTE" > "$raw"
    row=$("$PY" - "$raw" "$c" "$offline" <<'EOF'
import json, re, sys
text, c, offline = open(sys.argv[1]).read(), int(sys.argv[2]), float(sys.argv[3])
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errs = re.search(r"Socket errors: (.*)", text)
r = {"connections": c, "requests_per_s": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
     "share_of_offline": rps / offline, "non_2xx": int(bad.group(1)) if bad else 0,
     "socket_errors": errs.group(1) if errs else None}
print(json.dumps(r))
EOF
)
    [ $first = 1 ] || echo "," >> "$results"
    first=0
    echo "$row" >> "$results"
    "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print("| %d | %.1f | %.2f | %.2f | %.0f%% |%s" % (r["connections"], r["requests_per_s"], r["p50_ms"], r["p99_ms"], 100*r["share_of_offline"], "" if not (r["non_2xx"] or r["socket_errors"]) else " non-2xx %d, socket errors %s" % (r["non_2xx"], r["socket_errors"])))' "$row"
done
echo "]" >> "$results"
printf '\noffline: %.1f texts/s (%s); model %s; %s texts; %ss per run; route %s; kernels: %s\n' \
    "$offline" "$offline_src" "$MODEL" "$n_texts" "$DURATION" "$ROUTE" \
    "$("$BIN" --version | sed 's/.*kernels: //; s/)//')"
