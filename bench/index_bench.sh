#!/usr/bin/env bash
# index_bench.sh - HNSW vs exact search on N random unit vectors of dimension D
# (default 100,000 x 768, the figure quoted in docs/SEARCH.md).
#
#     bash bench/index_bench.sh [N] [D] [NQ] [M] [EF_CONSTRUCTION] [EF_SEARCH...]
#
# Measures with the CLI (build/medembed) and /usr/bin/time: build time and
# peak memory of `index build --vectors`, file size, and for exact and HNSW
# search the queries per second (NQ queries, minus a 1-query run so that
# opening the index is not counted) and recall@10 against exact search.
# Needs /usr/bin/python3 with numpy. Not part of the tests: numbers depend on
# the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; D=${2:-768}; NQ=${3:-1000}; M=${4:-16}; EFC=${5:-200}
shift $(( $# < 5 ? $# : 5 )) || true
EFS=("$@"); [ ${#EFS[@]} -eq 0 ] && EFS=(64 128 256)
BIN=${MEDEMBED_BIN:-build/medembed}
PY=${PY:-/usr/bin/python3}
W=${BENCH_DIR:-bench/out/index}
mkdir -p "$W"
rm -f "$W"/flat.db* "$W"/hnsw.db*
"$PY" - "$W" "$N" "$D" "$NQ" <<'PYEOF'
import sys, numpy as np
w, n, d, nq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(1234)
x = rng.standard_normal((n, d), dtype=np.float32); x /= np.linalg.norm(x, axis=1, keepdims=True)
q = rng.standard_normal((nq, d), dtype=np.float32); q /= np.linalg.norm(q, axis=1, keepdims=True)
np.save(f"{w}/x.npy", x); np.save(f"{w}/q.npy", q); np.save(f"{w}/q1.npy", q[:1])
PYEOF
tm() { /usr/bin/time -f "%e %M" -o "$W/time" "$@"; cat "$W/time"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "data: $N x $D random unit vectors, $NQ queries, HNSW M=$M ef_construction=$EFC"
read -r t mem < <(tm "$BIN" index build --vectors "$W/x.npy" -o "$W/flat.db" 2>/dev/null)
echo "build flat: ${t}s, peak RSS $((mem / 1024)) MiB, file $(( $(stat -c %s "$W/flat.db") / 1048576 )) MiB"
read -r t mem < <(tm "$BIN" index build --vectors "$W/x.npy" -o "$W/hnsw.db" --hnsw-m "$M" \
    --ef-construction "$EFC" 2>/dev/null)
echo "build hnsw: ${t}s, peak RSS $((mem / 1024)) MiB, file $(( $(stat -c %s "$W/hnsw.db") / 1048576 )) MiB"
qps() { # label, extra args
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$W/time" "$BIN" search --index "$W/$DB" \
        --query-vectors "$W/q1.npy" -k 10 "$@" >/dev/null
    read -r t1 _ <"$W/time"
    /usr/bin/time -f "%e %M" -o "$W/time" "$BIN" search --index "$W/$DB" \
        --query-vectors "$W/q.npy" -k 10 "$@" >"$W/$label.jsonl"
    read -r tn mem <"$W/time"
    echo "$label: $("$PY" -c "print('%.0f QPS' % (($NQ - 1) / max(1e-9, $tn - $t1)))"), search RSS $((mem / 1024)) MiB, open ${t1}s"
}
DB=flat.db qps exact --exact
for ef in "${EFS[@]}"; do DB=hnsw.db qps "hnsw_ef$ef" --ef-search "$ef"; done
"$PY" - "$W" "${EFS[@]}" <<'PYEOF'
import sys, json
w, efs = sys.argv[1], sys.argv[2:]
def load(f):
    r = {}
    for line in open(f):
        j = json.loads(line); r.setdefault(j["query_id"], []).append(j["id"])
    return r
ex = load(f"{w}/exact.jsonl")
for ef in efs:
    h = load(f"{w}/hnsw_ef{ef}.jsonl")
    rec = sum(len(set(h[q]) & set(ex[q])) for q in ex) / (10 * len(ex))
    print(f"recall@10 ef_search={ef}: {rec:.4f}")
PYEOF
