#!/usr/bin/python3
"""dask_bench.py - documents/s of medembed.dask.embed on a LocalCluster, two layouts of the
same cores: 1 worker process x N threads against N worker processes x 1 thread (N = --cores,
default 2), plus single-process Model.encode with N compute threads as a baseline.

Not a test: figures depend on the machine and on whatever else runs on it.

    make && /usr/bin/python3 bench/dask_bench.py [--model DIR] [--docs 1000] [--max-length 128]
        [--partitions 16] [--repeat 3] [--cores 2]

Without --model it generates a tiny random model (tests/py/gen_model.py, or
../shared/tools/make_model.py --preset tiny) under bench/out/. Texts are the PubMedQA
abstracts from ../shared/data/pubmedqa, or generated text. Every configuration's output is
checked bitwise against the baseline. Each worker loads the model in a warm-up task first, so
the timings exclude loading.
"""
import argparse
import logging
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
sys.path.insert(0, os.path.join(REPO, "tests", "py"))
os.environ.setdefault("MEDEMBED_LIB", os.path.join(REPO, "build", "libmedembed.so"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [os.path.join(REPO, "bindings", "python")] + [p for p in [os.environ.get("PYTHONPATH")] if p])

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def texts(n):
    import pkg_support
    recs = pkg_support.corpus_texts()
    while len(recs) < n:
        recs = recs + recs
    return [t for _, t in recs[:n]]


def default_model():
    out = os.path.join(REPO, "bench", "out", "dask-bench-model")
    if os.path.isfile(os.path.join(out, "config.json")):
        return out
    try:
        import gen_model
        gen_model.make_model(out, layers=2, hidden=64, heads=4, ffn=256)
    except ImportError:
        tool = os.path.join(REPO, "..", "shared", "tools", "make_model.py")
        subprocess.run([sys.executable, tool, "--preset", "tiny", "--std", "0.3", "--out", out],
                       check=True)
    return out


def run_cluster(model_dir, docs, args, n_workers, threads_per_worker, ref):
    import dask.dataframe as dd
    import distributed

    import medembed
    import medembed.dask as mdask

    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                       processes=True, host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        ddf = dd.from_pandas(pd.DataFrame({"text": docs}), npartitions=args.partitions)
        warm = dd.from_pandas(pd.DataFrame({"text": ["warm up"] * (4 * n_workers *
                                                                    threads_per_worker)}),
                              npartitions=2 * n_workers * threads_per_worker)
        kw = dict(column="text", model=model_dir, max_length=args.max_length, threads=1)
        client.compute(mdask.embed(warm, **kw)).result()
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = client.compute(mdask.embed(ddf, **kw)).result()
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        got = np.stack(res["embedding"].to_numpy())
        assert np.array_equal(got, ref), "distributed output differs from the baseline"
        loads = client.run(medembed.load_count)
        return best, loads
    finally:
        client.close()
        cluster.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()

    import medembed
    model_dir = args.model or default_model()
    docs = texts(args.docs)
    m = medembed.Model(model_dir, threads=args.cores, max_length=args.max_length)
    m.encode(docs[:8])
    best = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ref = m.encode(docs)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    n_tok = sum(len(m.tokenize_ids(t)) for t in docs)
    print("model %s (dim %d, max_length %d, isa %s), %d docs, %d tokens, %d partitions, best of %d"
          % (model_dir, m.dim, m.max_length, m.isa, len(docs), n_tok, args.partitions,
             args.repeat))
    print("%-34s %8.1f docs/s  (%.2f s)" % ("single process, %d compute threads" % args.cores,
                                            len(docs) / best, best))
    for nw, tpw in ((1, args.cores), (args.cores, 1)):
        dt, loads = run_cluster(model_dir, docs, args, nw, tpw, ref)
        print("%-34s %8.1f docs/s  (%.2f s)  loads per worker %s"
              % ("dask %d worker(s) x %d thread(s)" % (nw, tpw), len(docs) / dt, dt,
                 sorted(loads.values())))


if __name__ == "__main__":
    main()
