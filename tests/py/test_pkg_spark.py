"""medembed.spark.embed_partitions: the Iterator[pandas.DataFrame] -> Iterator[DataFrame]
function Spark's mapInPandas takes, run here on plain pandas iterators (no pyspark needed),
and the DDL schema that goes with it. MedEmbedEmbeddings on real Spark: test_spark.py."""
import numpy as np
import pytest

import pkg_support as ps

medembed = ps.import_medembed()
pd = pytest.importorskip("pandas")

from medembed.spark import embed_partitions  # noqa: E402

MAXLEN = 64


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return ps.make_model(str(tmp_path_factory.mktemp("spark_model") / "m"))


@pytest.fixture(scope="module")
def frame():
    recs = ps.corpus_texts(limit=90)
    return pd.DataFrame({"id": [r[0] for r in recs], "year": np.arange(len(recs)) + 1990,
                         "text": [r[1] for r in recs]})


def batches(df, sizes):
    """Splits df into consecutive Arrow-batch-like chunks, as Spark feeds mapInPandas."""
    start = 0
    for n in sizes:
        yield df.iloc[start:start + n]
        start += n
    assert start == len(df)


def test_mapinpandas_function_equals_encode(model_dir, frame):
    fn, schema = embed_partitions(model_dir, "text", keep="id string, year int",
                                  max_length=MAXLEN)
    assert schema == "text string, id string, year int, embedding array<float>"
    outs = list(fn(batches(frame, [40, 0, 1, 49])))
    assert len(outs) == 4 and len(outs[1]) == 0
    out = pd.concat(outs)
    assert list(out.columns) == ["text", "id", "year", "embedding"]
    assert out["id"].tolist() == frame["id"].tolist()
    assert out["year"].tolist() == frame["year"].tolist()
    got = np.stack(out["embedding"].to_numpy())
    ref = medembed.Model(model_dir, max_length=MAXLEN).encode(frame["text"].tolist())
    assert got.dtype == np.float32 and np.array_equal(got, ref)


def test_schema_from_struct_type_and_precisions(model_dir, frame):
    class Type:  # the two attributes of pyspark's StructType that embed_partitions reads
        def __init__(self, s):
            self.s = s

        def simpleString(self):
            return self.s

    class Field:
        def __init__(self, name, t):
            self.name, self.dataType = name, Type(t)

    class Struct:
        fields = [Field("id", "string"), Field("text", "string"),
                  Field("meta", "map<string,array<int>>")]

    _, schema = embed_partitions(model_dir, "body", keep="id string, tags array<string>, "
                                 "m map<string, decimal(10,2)>,`year` int")
    assert schema == ("body string, id string, tags array<string>, "
                      "m map<string, decimal(10,2)>, year int, embedding array<float>")
    _, schema = embed_partitions(model_dir, "text", keep=Struct(), output_column="vec")
    assert schema == "id string, text string, meta map<string,array<int>>, vec array<float>"
    ref = medembed.Model(model_dir, max_length=MAXLEN).encode(frame["text"].tolist())
    for precision, elem, dt in (("binary", "tinyint", np.int8), ("ubinary", "smallint",
                                                                 np.int16)):
        fn, schema = embed_partitions(model_dir, "text", precision=precision,
                                      max_length=MAXLEN)
        assert schema == "text string, embedding array<%s>" % elem
        got = np.stack(pd.concat(fn(batches(frame, [45, 45])))["embedding"].to_numpy())
        want = medembed.quantize_embeddings(ref, precision).astype(dt)
        assert got.dtype == dt and np.array_equal(got, want)
    fn, schema = embed_partitions(model_dir, "text", precision="uint8", max_length=MAXLEN,
                                  calibration_embeddings=ref)
    got = np.stack(pd.concat(fn(batches(frame, [90])))["embedding"].to_numpy())
    assert np.array_equal(got, medembed.quantize_embeddings(ref, "uint8",
                                                            calibration_embeddings=ref))


def test_errors(model_dir, frame):
    with pytest.raises(ValueError, match="calibration_embeddings"):
        embed_partitions(model_dir, "text", precision="int8")
    with pytest.raises(ValueError, match="collides"):
        embed_partitions(model_dir, "text", keep="embedding string")
    with pytest.raises(ValueError, match="cannot parse schema field"):
        embed_partitions(model_dir, "text", keep="id")
    with pytest.raises(FileNotFoundError):
        embed_partitions(str(model_dir) + "-missing", "text")
    fn, _ = embed_partitions(model_dir, "body")
    with pytest.raises(KeyError, match="lacks column"):
        list(fn(iter([frame])))
    bad = frame.iloc[:5].copy()
    bad.loc[bad.index[2], "text"] = None
    fn, _ = embed_partitions(model_dir, "text")
    with pytest.raises(ValueError, match="missing value at index 2"):
        list(fn(iter([bad])))
