#!/usr/bin/python3
"""hnsw_bench.py - medembed's HNSW graph side by side with hnswlib and FAISS.

    /usr/bin/python3 bench/hnsw_bench.py [--n 20000 100000] [--data random clustered]
        [--vectors EMB.npy] [--m 16] [--efc 200] [--threads 2] [--rounds 3]
        [--ef 16 32 64 128 256 512] [--nq 1000] [--peers medembed hnswlib faiss]

Builds the same vectors with the same M, ef_construction and build threads
in each library, rounds interleaved (medembed, hnswlib, faiss, medembed, ...),
and prints per library the median build seconds (wall clock, and CPU
seconds of all threads: on a shared machine the wall clock depends on the
other jobs, the CPU time much less), the distance evaluations
of the build, and per ef_search the queries per second and Recall@10 against
exact brute force (numpy, float32), medians over the rounds, then the range
of Recall@10 over the rounds' graphs (a threaded hnswlib or FAISS build
depends on thread timing; medembed's graph does not). Inner product on unit
vectors throughout.

Data sets (dim --dim, default 768), all rows L2-normalised:
  random     i.i.d. Gaussian vectors: the hardest case for any graph.
  clustered  --clusters (default 100) Gaussian clusters: centres N(0, 1),
             points centre + N(0, --spread^2) per coordinate.
  --vectors  real embeddings from a float32 (N, D) .npy file (for example
             `medembed embed --format npy` over PubMedQA contexts); the last
             --nq rows are the queries, the others are indexed.

medembed is run through its CLI (`index build --vectors`, `search
--query-vectors`); its build time is the whole command, SQLite writes
included, and its graph uses all online CPUs (run on a machine with
--threads CPUs, or pin with taskset). Distance evaluations come from
MEDEMBED_HNSW_STATS=1; hnswlib cannot report them (n/a); FAISS reports
those of its searches only. Queries run one at a time on one thread in
every library. Needs Debian's python3-numpy, python3-hnswlib and
python3-faiss (a missing peer is skipped with a note). Not a test: the
figures depend on the machine; quote the CPU and load printed first.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def cpu_seconds():
    """User + system seconds of this process and its waited-for children."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def cpu_line():
    model, flags = "?", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    keep = [f for f in flags if f.startswith(("avx", "fma", "amx", "sse4"))]
    return model, os.cpu_count(), keep


def unit(x):
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(kind, n, nq, dim, args, rng):
    if kind == "random":
        x = rng.standard_normal((n + nq, dim), dtype=np.float32)
    elif kind == "clustered":
        c = rng.standard_normal((args.clusters, dim), dtype=np.float32)
        lab = rng.integers(0, args.clusters, n + nq)
        x = c[lab] + args.spread * rng.standard_normal((n + nq, dim), dtype=np.float32)
    else:
        x = np.load(kind).astype(np.float32)
        if x.ndim != 2 or x.shape[0] <= nq:
            sys.exit(f"{kind}: need a (N, D) matrix with more than --nq={nq} rows")
        if n and n + nq > x.shape[0]:
            sys.exit(f"{kind}: {x.shape[0]} rows, fewer than --n {n} + --nq {nq}")
        x = x[: n + nq] if n else x
    x = unit(np.ascontiguousarray(x, dtype=np.float32))
    return np.ascontiguousarray(x[:-nq]), np.ascontiguousarray(x[-nq:])


def exact_top10(x, q):
    gt = np.empty((q.shape[0], 10), dtype=np.int64)
    for s in range(0, q.shape[0], 256):
        sc = q[s:s + 256] @ x.T
        part = np.argpartition(-sc, 10, axis=1)[:, :10]
        gt[s:s + 256] = part
    return gt


def recall(found, gt):
    hit = sum(len(set(f[:10]) & set(g)) for f, g in zip(found, gt))
    return hit / (10.0 * len(gt))


class Medembed:
    name = "medembed"

    def __init__(self, args, work):
        self.bin, self.args, self.work = args.bin, args, work

    def build(self, xpath, x):
        self.db = os.path.join(self.work, "me.db")
        for sfx in ("", "-wal", "-shm"):
            if os.path.exists(self.db + sfx):
                os.unlink(self.db + sfx)
        env = dict(os.environ, MEDEMBED_HNSW_STATS="1")
        t = time.perf_counter()
        r = subprocess.run([self.bin, "index", "build", "--vectors", xpath, "-o", self.db,
                            "--hnsw-m", str(self.args.m), "--ef-construction",
                            str(self.args.efc), "--threads", str(self.args.threads)],
                           env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode:
            sys.exit(f"medembed index build failed: {r.stderr}")
        m = re.search(r"inserted with (\d+) distance evaluations", r.stderr)
        return dt, int(m.group(1)) if m else None

    def _search(self, qpath, ef):
        t = time.perf_counter()
        r = subprocess.run([self.bin, "search", "--index", self.db, "--query-vectors", qpath,
                            "-k", "10", "--ef-search", str(ef), "--threads", "1"],
                           capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode:
            sys.exit(f"medembed search failed: {r.stderr}")
        return dt, r.stdout

    def search(self, qpath, q1path, nq, ef):
        t1, _ = self._search(q1path, ef)  # opening the index, not counted
        tn, out = self._search(qpath, ef)
        found = [[] for _ in range(nq)]
        for line in out.splitlines():
            j = json.loads(line)
            found[int(j["query_id"])].append(int(j["id"]))
        return (nq - 1) / max(1e-9, tn - t1), found, None


class Hnswlib:
    name = "hnswlib"

    def __init__(self, args, work):
        import hnswlib
        self.mod, self.args = hnswlib, args

    def build(self, xpath, x):
        self.p = self.mod.Index(space="ip", dim=x.shape[1])
        self.p.init_index(max_elements=x.shape[0], M=self.args.m,
                          ef_construction=self.args.efc, random_seed=100)
        t = time.perf_counter()
        self.p.add_items(x, np.arange(x.shape[0]), num_threads=self.args.threads)
        return time.perf_counter() - t, None

    def search(self, qpath, q1path, nq, ef):
        q = np.load(qpath)
        self.p.set_ef(ef)
        t = time.perf_counter()
        lab, _ = self.p.knn_query(q, k=10, num_threads=1)
        return nq / (time.perf_counter() - t), lab.tolist(), None


class Faiss:
    name = "faiss"

    def __init__(self, args, work):
        import faiss
        self.mod, self.args = faiss, args

    def build(self, xpath, x):
        f = self.mod
        f.omp_set_num_threads(self.args.threads)
        self.ix = f.IndexHNSWFlat(x.shape[1], self.args.m, f.METRIC_INNER_PRODUCT)
        self.ix.hnsw.efConstruction = self.args.efc
        t = time.perf_counter()
        self.ix.add(x)
        return time.perf_counter() - t, None

    def search(self, qpath, q1path, nq, ef):
        f = self.mod
        q = np.load(qpath)
        f.omp_set_num_threads(1)
        self.ix.hnsw.efSearch = ef
        stats = getattr(f.cvar, "hnsw_stats", None)
        if stats is not None:
            stats.reset()
        t = time.perf_counter()
        _, lab = self.ix.search(q, 10)
        dt = time.perf_counter() - t
        f.omp_set_num_threads(self.args.threads)
        nd = int(stats.ndis) if stats is not None else None
        return nq / dt, lab.tolist(), nd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+",
                    help="vectors indexed (default 20000 100000; with --vectors all rows "
                    "but the queries)")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--data", nargs="+", default=["random", "clustered"],
                    choices=["random", "clustered"])
    ap.add_argument("--vectors", help="real embeddings (.npy); replaces --data")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--spread", type=float, default=0.5,
                    help="clustered: per-coordinate sigma around a N(0,1) centre")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", nargs="+", default=["medembed", "hnswlib", "faiss"])
    ap.add_argument("--bin", default=os.environ.get("MEDEMBED_BIN", "build/medembed"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    model, ncpu, flags = cpu_line()
    print(f"cpu: {model}, {ncpu} CPUs; flags: {' '.join(flags)}")
    print(f"load average: {' '.join('%.2f' % v for v in os.getloadavg())}")
    print(f"params: M {args.m}, ef_construction {args.efc}, build threads {args.threads}, "
          f"{args.nq} queries, rounds {args.rounds} (interleaved, medians)")
    kinds = {"medembed": Medembed, "hnswlib": Hnswlib, "faiss": Faiss}
    work = tempfile.mkdtemp(prefix="hnsw_bench.")
    libs = []
    for p in args.peers:
        try:
            libs.append(kinds[p](args, work))
        except ImportError as e:
            print(f"note: {p} skipped ({e}); install Debian's python3-{p}")
    sets = [args.vectors] if args.vectors else args.data
    rng = np.random.default_rng(args.seed)
    for kind in sets:
        for n in args.n or ([0] if args.vectors else [20000, 100000]):
            x, q = make_data(kind, n, args.nq, args.dim, args, rng)
            label = os.path.basename(kind) if args.vectors else kind
            print(f"\n== {label}: {x.shape[0]} x {x.shape[1]}, {q.shape[0]} queries")
            xpath, qpath, q1path = (os.path.join(work, f) for f in ("x.npy", "q.npy", "q1.npy"))
            np.save(xpath, x)
            np.save(qpath, q)
            np.save(q1path, q[:1])
            gt = exact_top10(x, q)
            build = {l.name: [] for l in libs}
            bcpu = {l.name: [] for l in libs}
            ndist = {l.name: None for l in libs}
            res = {l.name: {ef: [] for ef in args.ef} for l in libs}
            for r in range(args.rounds):
                for lib in libs:
                    c0 = cpu_seconds()
                    dt, nd = lib.build(xpath, x)
                    build[lib.name].append(dt)
                    bcpu[lib.name].append(cpu_seconds() - c0)
                    ndist[lib.name] = nd
                    print(f"  round {r + 1} {lib.name}: build {dt:.2f} s, "
                          f"{bcpu[lib.name][-1]:.2f} CPU s "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
                    for ef in args.ef:
                        qps, found, snd = lib.search(qpath, q1path, q.shape[0], ef)
                        res[lib.name][ef].append((qps, recall(found, gt), snd))
            print(f"{'method':10} {'build s':>8} {'CPU s':>8} {'build dist':>12}  "
                  + "  ".join(f"ef{ef}: QPS / R@10" for ef in args.ef))
            for lib in libs:
                row = (f"{lib.name:10} {statistics.median(build[lib.name]):8.2f} "
                       f"{statistics.median(bcpu[lib.name]):8.2f} ")
                nd = ndist[lib.name]
                row += f"{nd if nd is not None else 'n/a':>12}  "
                cells, spread = [], []
                for ef in args.ef:
                    qps = statistics.median(v[0] for v in res[lib.name][ef])
                    recs = [v[1] for v in res[lib.name][ef]]
                    cells.append(f"{qps:7.0f} / {statistics.median(recs):.3f}")
                    spread.append(f"ef{ef} {min(recs):.3f}-{max(recs):.3f}")
                print(row + "  ".join(cells))
                if args.rounds > 1:
                    print(f"{'':10} Recall@10 over the rounds' graphs: " + ", ".join(spread))
            print(f"load average: {' '.join('%.2f' % v for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
