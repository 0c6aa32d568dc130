#!/usr/bin/python3
"""spark_bench.py - documents/s per executor core of medembed.spark.MedEmbedEmbeddings on a
local Spark session, and of medembed.dask.embed on a LocalCluster, against single-process
Model(threads=1).encode on the same machine (the per-core engine speed).

Not a test: figures depend on the machine and on whatever else runs on it.

    make && .venv/bin/python bench/spark_bench.py [--model DIR] [--docs 1000]
        [--max-length 128] [--partitions 8] [--repeat 3] [--cores 1 2] [--no-dask]

Needs pyspark, pyarrow (requirements-dev.txt) and Java 17. Without --model it generates a
random model (tests/py/gen_model.py: 4 layers, hidden 256) under bench/out/. Texts are the
PubMedQA abstracts from ../shared/data/pubmedqa, or generated text. Each layout runs once as
a warm-up (every Python worker loads the model), then the best of --repeat is kept; its output
is checked bitwise against the baseline. share = (docs/s / cores) / baseline docs/s. For
N > 1 cores it also runs N plain processes of Model(threads=1).encode at once: what N cores
of this machine give the engine alone at that moment, the ceiling for Spark and Dask there.
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# dask_bench sets up the paths (bindings, tests/py, MEDEMBED_LIB) and owns the corpus loader
from dask_bench import REPO, texts  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def default_model():
    out = os.path.join(REPO, "bench", "out", "spark-bench-model")
    if not os.path.isfile(os.path.join(out, "config.json")):
        import gen_model
        gen_model.make_model(out, layers=4, hidden=256, heads=4, ffn=1024)
    return out


def best_of(fn, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, res


def _encode_worker(model_dir, docs, max_length, repeat, q):
    import medembed
    m = medembed.Model(model_dir, threads=1, max_length=max_length)
    m.encode(docs[:8])
    q.put(best_of(lambda: m.encode(docs), repeat)[0])


def run_processes(model_dir, docs, args, cores):
    """N plain processes, each Model(threads=1).encode of the whole corpus at once: what the
    machine gives N cores of the engine right now, without Spark or Dask."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_encode_worker, args=(model_dir, docs, args.max_length,
                                                    args.repeat, q)) for _ in range(cores)]
    for p in ps:
        p.start()
    times = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return max(times)  # the slowest process bounds the total


def run_spark(model_dir, docs, args, cores, ref):
    from pyspark.sql import SparkSession

    from medembed.spark import MedEmbedEmbeddings
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master("local[%d]" % cores).appName("medembed-bench")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "2g")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = spark.createDataFrame(pd.DataFrame({"i": np.arange(len(docs)), "text": docs}))
        df = df.repartition(args.partitions).cache()
        df.count()
        stage = MedEmbedEmbeddings(model=model_dir, inputCol="text", outputCol="e",
                                   outputFormat="array", maxLength=args.max_length,
                                   batchSize=32, tokensCol="-")
        out = stage.transform(df).select("i", "e")

        def job():
            out.write.format("noop").mode("overwrite").save()

        job()  # warm-up: each Python worker loads the model
        dt, _ = best_of(job, args.repeat)
        rows = out.collect()
        got = np.zeros_like(ref)
        for r in rows:
            got[r.i] = np.asarray(r.e, dtype=np.float32)
        assert np.array_equal(got, ref), "Spark output differs from the baseline"
        return dt
    finally:
        spark.stop()


def run_dask(model_dir, docs, args, cores, ref):
    import dask.dataframe as dd
    import distributed

    import medembed.dask as mdask
    cluster = distributed.LocalCluster(n_workers=cores, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        ddf = dd.from_pandas(pd.DataFrame({"text": docs}), npartitions=args.partitions)
        ddf = client.persist(ddf)
        kw = dict(column="text", model=model_dir, max_length=args.max_length, threads=1)
        client.compute(mdask.embed(ddf, **kw)).result()  # warm-up: each worker loads
        dt, res = best_of(lambda: client.compute(mdask.embed(ddf, **kw)).result(), args.repeat)
        assert np.array_equal(np.stack(res["embedding"].to_numpy()), ref), \
            "Dask output differs from the baseline"
        return dt
    finally:
        client.close()
        cluster.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--arrow-batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()

    import medembed
    model_dir = args.model or default_model()
    docs = texts(args.docs)
    m = medembed.Model(model_dir, threads=1, max_length=args.max_length)
    m.encode(docs[:8])
    base, ref = best_of(lambda: m.encode(docs), args.repeat)
    base_rate = len(docs) / base
    print("model %s (dim %d, max_length %d, isa %s), %d docs, %d partitions, best of %d, "
          "load average %.1f" % (model_dir, m.dim, m.max_length, m.isa, len(docs),
                                 args.partitions, args.repeat, os.getloadavg()[0]))
    print("%-36s %8.1f docs/s per core  (%.2f s)" % ("single process, Model(threads=1)",
                                                    base_rate, base))
    for cores in args.cores:
        if cores > 1:
            dt = run_processes(model_dir, docs, args, cores)
            print("%-36s %8.1f docs/s per core  (%.2f s)  share %.0f%%"
                  % ("%d plain processes, threads=1" % cores, len(docs) / dt, dt,
                     100.0 * len(docs) / dt / base_rate))
    layouts = [("spark local[%d]", run_spark)] + ([] if args.no_dask else
                                                   [("dask %d worker(s) x 1 thread", run_dask)])
    for name, fn in layouts:
        for cores in args.cores:
            dt = fn(model_dir, docs, args, cores, ref)
            per_core = len(docs) / dt / cores
            print("%-36s %8.1f docs/s per core  (%.2f s)  share %.0f%%"
                  % (name % cores, per_core, dt, 100.0 * per_core / base_rate))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
