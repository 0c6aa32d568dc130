"""medembed.dask on a real distributed.LocalCluster with 2 worker processes: the PubMedQA
corpus (or generated text without ../shared) embedded partition by partition must equal
single-process Model.encode bit for bit, and each worker must load the model exactly once
however many partitions and graphs it runs."""
import json
import logging
import os

import numpy as np
import pytest

import pkg_support as ps

medembed = ps.import_medembed()
dd = pytest.importorskip("dask.dataframe", reason="python3-dask is not installed")
distributed = pytest.importorskip("distributed", reason="python3-distributed is not installed")
pd = pytest.importorskip("pandas")

import medembed.dask as mdask  # noqa: E402

MAXLEN = 64  # tokens per text: keeps 1,000 abstracts a few seconds of compute on 2 cores
NPART = 12
TIMEOUT = 180  # seconds for any one distributed computation


@pytest.fixture(scope="module")
def corpus():
    recs = ps.corpus_texts()
    return pd.DataFrame({"_id": [r[0] for r in recs], "text": [r[1] for r in recs]})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ps.make_model(str(tmp_path_factory.mktemp("dask_model") / "m"))


@pytest.fixture(scope="module")
def reference(model_dir, corpus):
    m = medembed.Model(model_dir, threads=1, max_length=MAXLEN)
    return m.encode(corpus["text"].tolist())


@pytest.fixture(scope="module")
def client():
    # worker processes inherit MEDEMBED_LIB and PYTHONPATH (set by pkg_support) from here
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR)
    c = distributed.Client(cluster, timeout=60)
    try:
        yield c
    finally:
        c.close(timeout=30)
        cluster.close(timeout=30)


def test_embed_equals_single_process(client, corpus, model_dir, reference):
    assert client.run(medembed.load_count) == {w: 0 for w in client.scheduler_info()["workers"]}
    ddf = dd.from_pandas(corpus, npartitions=NPART)
    out = mdask.embed(ddf, column="text", model=model_dir, max_length=MAXLEN)
    assert list(out.columns) == ["_id", "text", "embedding"]
    res = client.compute(out).result(timeout=TIMEOUT)
    assert res["_id"].tolist() == corpus["_id"].tolist()
    got = np.stack(res["embedding"].to_numpy())
    assert got.dtype == np.float32 and got.shape == reference.shape
    assert np.array_equal(got, reference)

    loads = client.run(medembed.load_count)
    parts = client.run(mdask.partitions_done)
    assert len(loads) == 2
    assert sum(parts.values()) == NPART
    # every worker ran partitions, loaded the model exactly once, and reused it
    for w in loads:
        assert parts[w] >= 1 and loads[w] == 1, (loads, parts)
    assert max(parts.values()) >= 2


def test_npy_shards_reuse_the_loaded_model(client, corpus, model_dir, reference, tmp_path):
    ddf = dd.from_pandas(corpus, npartitions=NPART)
    model = medembed.Model(model_dir, max_length=MAXLEN)  # a Model works as well as a path
    out_dir = str(tmp_path / "shards")
    man = mdask.to_npy(ddf, out_dir, column="text", model=model, id_column="_id")
    assert man["rows"] == len(corpus) and len(man["shards"]) == NPART
    assert man["model"]["fingerprint"] == model.fingerprint and man["dim"] == model.dim
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
        assert json.load(f) == man
    emb, ids = mdask.read_npy(out_dir)
    assert np.array_equal(emb, reference)
    assert ids == corpus["_id"].tolist()
    # a second graph on the same workers: still one load each
    assert set(client.run(medembed.load_count).values()) == {1}


def test_int8_over_partitions_uses_one_calibration(client, corpus, model_dir, reference):
    ddf = dd.from_pandas(corpus.iloc[:200], npartitions=4)
    with pytest.raises(ValueError, match="calibration_embeddings"):
        mdask.embed(ddf, column="text", model=model_dir, precision="int8")
    calib = reference[200:600]
    out = mdask.embed(ddf, column="text", model=model_dir, max_length=MAXLEN,
                      precision="int8", calibration_embeddings=calib)
    res = client.compute(out).result(timeout=TIMEOUT)
    got = np.stack(res["embedding"].to_numpy())
    want = medembed.quantize_embeddings(reference[:200], "int8", calibration_embeddings=calib)
    assert got.dtype == np.int8 and np.array_equal(got, want)


def test_bad_column_and_missing_values(client, corpus, model_dir):
    ddf = dd.from_pandas(corpus.iloc[:10], npartitions=2)
    with pytest.raises(KeyError, match="'body' is not in the DataFrame"):
        mdask.embed(ddf, column="body", model=model_dir)
    with pytest.raises(ValueError, match="model= is required"):
        mdask.embed(ddf, column="text")
    bad = corpus.iloc[:10].copy()
    bad.loc[bad.index[3], "text"] = None
    out = mdask.embed(dd.from_pandas(bad, npartitions=2), column="text", model=model_dir)
    with pytest.raises(ValueError, match="missing value at index 3"):
        client.compute(out).result(timeout=TIMEOUT)  # the worker's exception, re-raised here


def test_parquet_output(corpus, model_dir, tmp_path):
    ddf = dd.from_pandas(corpus.iloc[:200], npartitions=3)
    if mdask.parquet_engine() != "pyarrow":
        with pytest.raises(ImportError, match="needs pyarrow"):
            mdask.to_parquet(ddf, str(tmp_path / "pq"), column="text", model=model_dir)
        pytest.skip("pyarrow is not installed (requirements-dev.txt): only the refusal checked")
    import pyarrow.parquet as pq
    mdask.to_parquet(ddf, str(tmp_path / "pq"), column="text", model=model_dir,
                     max_length=MAXLEN, compute=True)
    table = pq.read_table(str(tmp_path / "pq"))
    assert str(table.schema.field("embedding").type) == "list<element: float>"
    back = table.to_pandas()
    assert back["_id"].tolist() == corpus["_id"][:200].tolist()
    ref = medembed.Model(model_dir, max_length=MAXLEN).encode(corpus["text"][:200].tolist())
    got = np.stack(back["embedding"].to_numpy())
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    # quantized: the element type follows the precision, values equal quantize_embeddings
    mdask.to_parquet(ddf, str(tmp_path / "pq8"), column="text", model=model_dir,
                     max_length=MAXLEN, precision="ubinary", compute=True)
    table = pq.read_table(str(tmp_path / "pq8"))
    assert str(table.schema.field("embedding").type) == "list<element: uint8>"
    got = np.stack(table.to_pandas()["embedding"].to_numpy())
    assert np.array_equal(got, medembed.quantize_embeddings(ref, "ubinary"))
