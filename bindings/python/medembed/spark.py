"""medembed.spark - MedEmbed in Apache Spark.

    from medembed.spark import MedEmbedEmbeddings      # a pyspark.ml Transformer
    stage = MedEmbedEmbeddings(model="/models/MedEmbed-base-v0.1", inputCol="document",
                               outputCol="embeddings", outputFormat="annotation")
    result = Pipeline(stages=[document_assembler, stage]).fit(df).transform(df)

MedEmbedEmbeddings needs pyspark and pyarrow: its rows travel to the Python workers as Arrow
batches (an iterator pandas_udf), and each worker process loads the model once through
medembed.get_model() and keeps it while Spark reuses the worker (spark.python.worker.reuse,
on by default). See docs/PYTHON.md, "Spark".

embed_partitions() is the lower-level form, the function DataFrame.mapInPandas takes; it
needs neither pyspark nor pyarrow (plain pandas iterators in, out):

    from medembed.spark import embed_partitions
    fn, schema = embed_partitions("/models/MedEmbed-base-v0.1", "text", keep="id string")
    out = df.mapInPandas(fn, schema)     # columns: id, text, embedding array<float>
"""
import re
import threading
from typing import Iterator

import numpy as np
import pandas as pd

from .dask import ModelRef, _encode, _encode_options, _texts

# Spark SQL element type for each output precision. Spark has no unsigned byte, so uint8 and
# ubinary widen to smallint (their values 0..255 would not fit tinyint).
ELEMENT_TYPES = {"float32": "float", "int8": "tinyint", "binary": "tinyint",
                 "uint8": "smallint", "ubinary": "smallint"}
_NUMPY_TYPES = {"float": np.float32, "tinyint": np.int8, "smallint": np.int16}
_FIELD = re.compile(r"^\s*`?([A-Za-z_][\w]*)`?\s+(.+?)\s*$")


def _split_ddl(ddl):
    """[(name, type)] from a DDL field list "a string, b array<float>" (top-level commas)."""
    out, depth, cur = [], 0, ""
    for ch in ddl:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    fields = []
    for f in out:
        m = _FIELD.match(f)
        if not m:
            raise ValueError("cannot parse schema field %r (expected \"name type\")" % f.strip())
        fields.append((m.group(1), m.group(2)))
    return fields


def _keep_fields(keep, column):
    """The (name, type) pairs to carry from input to output; the text column comes first."""
    if keep is None:
        fields = []
    elif isinstance(keep, str):
        fields = _split_ddl(keep)
    elif hasattr(keep, "fields"):  # a pyspark StructType, duck-typed
        fields = [(f.name, f.dataType.simpleString()) for f in keep.fields]
    else:
        fields = [tuple(f) for f in keep]
    names = [n for n, _ in fields]
    if column not in names:
        fields = [(column, "string")] + fields
    if len(set(n for n, _ in fields)) != len(fields):
        raise ValueError("duplicate column in keep=: %s" % ", ".join(n for n, _ in fields))
    return fields


def embed_partitions(model, column="text", output_column="embedding", keep=None,
                     batch_size=32, normalize_embeddings=True, prompt=None, prompt_name=None,
                     precision="float32", ranges=None, calibration_embeddings=None,
                     dtype="float32", threads=1, max_length=None):
    """(fn, schema) for ``df.mapInPandas(fn, schema)``.

    model  : a model folder (present at the same path on every executor), a cached repo id, or
             a medembed.Model (only its path and options are captured).
    column : the text column.
    keep   : input columns to carry over, as a DDL string ("id string, year int"), a list of
             (name, spark_type) pairs, or the input DataFrame's StructType (df.schema). The
             text column is always kept.
    schema : a DDL string: the kept columns, then ``output_column`` as array<float>
             (array<tinyint> for int8/binary, array<smallint> for uint8/ubinary).
    Other arguments as in Model.encode; int8/uint8 need ranges or calibration_embeddings.
    """
    if model is None:
        raise ValueError("model is required (a model folder, repo id or medembed.Model)")
    ref = ModelRef(model, dtype=dtype, threads=threads, max_length=max_length)
    opts = _encode_options(precision, ranges, calibration_embeddings, batch_size=batch_size,
                           normalize_embeddings=normalize_embeddings, prompt=prompt,
                           prompt_name=prompt_name)
    fields = _keep_fields(keep, column)
    if output_column in [n for n, _ in fields]:
        raise ValueError("output_column %r collides with an input column" % output_column)
    elem = ELEMENT_TYPES[precision]
    np_type = _NUMPY_TYPES[elem]
    names = [n for n, _ in fields]
    schema = ", ".join("%s %s" % f for f in fields + [(output_column, "array<%s>" % elem)])

    def fn(batches):
        model_ = None
        for pdf in batches:
            missing = [n for n in names if n not in pdf.columns]
            if missing:
                raise KeyError("input batch lacks column(s) %s (has: %s)"
                               % (", ".join(missing), ", ".join(map(str, pdf.columns))))
            if model_ is None:
                model_ = ref.get()
            out = pdf[names].copy()
            if len(pdf):
                emb = _encode(model_, _texts(pdf, column), opts).astype(np_type, copy=False)
                out[output_column] = pd.Series(list(emb), index=pdf.index, dtype=object)
            else:
                out[output_column] = pd.Series([], index=pdf.index, dtype=object)
            yield out

    fn.__name__ = "medembed_embed_partitions"
    return fn, schema


# ---------------------------------------------------------------------------------------------
# MedEmbedEmbeddings: a pyspark.ml Transformer (needs pyspark and pyarrow; the rest of this
# module does not).

ANNOTATOR_TYPE = "sentence_embeddings"
OUTPUT_FORMATS = ("array", "vector", "annotation")
_RESULT_DDL = "embedding array<float>, n_tokens int, truncated boolean, error string"

_batches_lock = threading.Lock()
_batches_done = 0


def batches_done():
    """How many Arrow batches this process has embedded for MedEmbedEmbeddings."""
    return _batches_done


def _trace(rows):
    """Counts a batch; with $MEDEMBED_SPARK_TRACE set to a folder, appends "pid loads rows"
    to <folder>/<pid>.txt (how a job shows that each worker loaded the model once)."""
    global _batches_done
    import os
    from .model import load_count
    with _batches_lock:
        _batches_done += 1
    d = os.environ.get("MEDEMBED_SPARK_TRACE")
    if d:
        with open(os.path.join(d, "%d.txt" % os.getpid()), "a", encoding="ascii") as f:
            f.write("%d %d %d\n" % (os.getpid(), load_count(), rows))


def _row_text(v, annotations):
    """(text, error) for one input cell: a str, or an array of document annotation results."""
    if annotations:
        if v is None:
            return None, "null annotation array"
        if len(v) != 1:
            return None, "%d annotations in the row; one document annotation expected" % len(v)
        v = v[0]
    if v is None or (isinstance(v, float) and v != v):
        return None, "null text"
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, "invalid UTF-8 at byte %d" % e.start
    if not isinstance(v, str):
        return None, "not a string (%s)" % type(v).__name__
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        return None, "invalid UTF-8 at character %d" % e.start
    return v, None


def embed_rows(model, cells, annotations=False, batch_size=32, normalize=True,
               max_length=None, strict=False, report_tokens=True):
    """The per-batch step of MedEmbedEmbeddings, on plain Python values.

    Returns a pandas.DataFrame with columns embedding (float32 array or None), n_tokens
    (tokens with [CLS]/[SEP], before truncation), truncated, error (None when embedded).
    Bad cells get error set and a null embedding, or raise ValueError when strict."""
    texts, errors = [], []
    for i, v in enumerate(cells):
        t, err = _row_text(v, annotations)
        if err is not None and strict:
            raise ValueError("row %d: %s (strict mode)" % (i, err))
        texts.append(t)
        errors.append(err)
    good = [i for i, e in enumerate(errors) if e is None]
    emb = [None] * len(texts)
    n_tok = [None] * len(texts)
    trunc = [None] * len(texts)
    if good:
        batch = [texts[i] for i in good]
        try:
            vecs = model.encode(batch, batch_size=batch_size, normalize_embeddings=normalize,
                                max_length=max_length)
            for j, i in enumerate(good):
                emb[i] = vecs[j]
        except Exception:
            if strict:
                raise
            for i in good:  # isolate the failing text(s); the others keep their vectors
                try:
                    emb[i] = model.encode([texts[i]], normalize_embeddings=normalize,
                                          max_length=max_length)[0]
                except Exception as e:  # noqa: BLE001 - reported in the error column
                    errors[i] = str(e) or type(e).__name__
        if report_tokens:
            limit = min(max_length or model.max_length, model.max_length)
            for i in good:
                if errors[i] is None:
                    n = len(model.tokenize_ids(texts[i], truncate=False))
                    n_tok[i], trunc[i] = n, n > limit
    return pd.DataFrame({"embedding": pd.Series(emb, dtype=object),
                         "n_tokens": pd.Series(n_tok, dtype="Int32"),
                         "truncated": pd.Series(trunc, dtype="boolean"),
                         "error": pd.Series(errors, dtype=object)})


try:
    from pyspark import keyword_only as _keyword_only
    from pyspark.ml import Transformer as _Transformer
    from pyspark.ml.param import Param as _Param, Params as _Params
    from pyspark.ml.param import TypeConverters as _TC
    from pyspark.ml.param.shared import HasInputCol as _HasInputCol
    from pyspark.ml.param.shared import HasOutputCol as _HasOutputCol
    from pyspark.ml.util import DefaultParamsReadable as _Readable
    from pyspark.ml.util import DefaultParamsWritable as _Writable
    _HAVE_PYSPARK = True
except ImportError:  # pragma: no cover - depends on the environment
    _HAVE_PYSPARK = False


def _make_udf(ref, annotations, batch_size, normalize, max_length, strict, report_tokens):
    from pyspark.sql.functions import pandas_udf

    def run(series_iter: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        model_ = None
        for s in series_iter:
            if model_ is None:
                model_ = ref.get()
            out = embed_rows(model_, s.tolist(), annotations, batch_size, normalize,
                             max_length, strict, report_tokens)
            _trace(len(s))
            yield out

    run.__name__ = "medembed_embed"
    # Nondeterministic keeps Spark's optimizer from copying the call into each expression
    # that reads a field of its result, which would embed every row several times.
    return pandas_udf(run, _RESULT_DDL).asNondeterministic()


if _HAVE_PYSPARK:
    class MedEmbedEmbeddings(_Transformer, _HasInputCol, _HasOutputCol, _Readable, _Writable):
        """A Spark ML stage that embeds a text column with medembed; stands where Spark NLP's
        BGEEmbeddings stands in a pyspark.ml.Pipeline.

        inputCol : a string column, or a Spark NLP annotation column (DocumentAssembler's
                   "document"), whose single annotation's ``result`` is embedded.
        outputCol: "array" -> array<float>; "vector" -> pyspark.ml.linalg DenseVector;
                   "annotation" -> Spark NLP's array<struct<annotatorType, begin, end, result,
                   metadata, embeddings>> with annotatorType "sentence_embeddings".
        Also adds ``n_tokens``/``truncated`` (tokens before the cut at maxLength) and
        ``errorCol`` (why a row got a null embedding); strict=True fails the job instead.
        """
        model = _Param(_Params._dummy(), "model", "model folder (same path on every "
                       "executor) or cached hub id", typeConverter=_TC.toString)
        dtype = _Param(_Params._dummy(), "dtype", "compute dtype: float32, bf16, ...",
                       typeConverter=_TC.toString)
        batchSize = _Param(_Params._dummy(), "batchSize", "texts per library call",
                           typeConverter=_TC.toInt)
        maxLength = _Param(_Params._dummy(), "maxLength", "token cap per text (0: the "
                           "model's)", typeConverter=_TC.toInt)
        normalize = _Param(_Params._dummy(), "normalize", "L2-normalize embeddings",
                           typeConverter=_TC.toBoolean)
        outputFormat = _Param(_Params._dummy(), "outputFormat", "array, vector or annotation",
                              typeConverter=_TC.toString)
        strict = _Param(_Params._dummy(), "strict", "fail the job on a bad row instead of a "
                        "null embedding", typeConverter=_TC.toBoolean)
        errorCol = _Param(_Params._dummy(), "errorCol", "column for the reason a row has no "
                          "embedding ('' for none)", typeConverter=_TC.toString)
        tokensCol = _Param(_Params._dummy(), "tokensCol", "prefix of the <p>n_tokens and "
                           "<p>truncated columns ('-' for none)", typeConverter=_TC.toString)

        @_keyword_only
        def __init__(self, *, model=None, inputCol="document", outputCol="embeddings",
                     dtype="float32", batchSize=32, maxLength=0, normalize=True,
                     outputFormat="annotation", strict=False, errorCol="embedding_error",
                     tokensCol=""):
            super().__init__()
            self._setDefault(inputCol="document", outputCol="embeddings", dtype="float32",
                             batchSize=32, maxLength=0, normalize=True,
                             outputFormat="annotation", strict=False,
                             errorCol="embedding_error", tokensCol="")
            self.setParams(**self._input_kwargs)

        @_keyword_only
        def setParams(self, *, model=None, inputCol="document", outputCol="embeddings",
                      dtype="float32", batchSize=32, maxLength=0, normalize=True,
                      outputFormat="annotation", strict=False, errorCol="embedding_error",
                      tokensCol=""):
            kw = {k: v for k, v in self._input_kwargs.items() if v is not None}
            return self._set(**kw)

        def setModel(self, v):
            return self._set(model=v)

        def setInputCols(self, cols):
            """Spark NLP's spelling: one input column."""
            cols = [cols] if isinstance(cols, str) else list(cols)
            if len(cols) != 1:
                raise ValueError("MedEmbedEmbeddings takes one input column, got %r" % cols)
            return self._set(inputCol=cols[0])

        def setInputCol(self, v):
            return self._set(inputCol=v)

        def setOutputCol(self, v):
            return self._set(outputCol=v)

        def setOutputFormat(self, v):
            return self._set(outputFormat=v)

        def setBatchSize(self, v):
            return self._set(batchSize=v)

        def setMaxLength(self, v):
            return self._set(maxLength=v)

        def setNormalize(self, v):
            return self._set(normalize=v)

        def setDtype(self, v):
            return self._set(dtype=v)

        def setStrict(self, v):
            return self._set(strict=v)

        def _transform(self, df):
            from pyspark.sql import functions as F
            from pyspark.sql import types as T
            if not self.isSet(self.model) or not self.getOrDefault(self.model):
                raise ValueError("MedEmbedEmbeddings: set model= (a model folder or hub id)")
            fmt = self.getOrDefault(self.outputFormat)
            if fmt not in OUTPUT_FORMATS:
                raise ValueError("outputFormat must be one of %s, got %r"
                                 % (", ".join(OUTPUT_FORMATS), fmt))
            bs = self.getOrDefault(self.batchSize)
            if bs < 1:
                raise ValueError("batchSize must be >= 1, got %d" % bs)
            in_col, out_col = self.getInputCol(), self.getOutputCol()
            if in_col not in df.columns:
                raise ValueError("inputCol %r is not in the DataFrame (columns: %s)"
                                 % (in_col, ", ".join(df.columns)))
            dt = df.schema[in_col].dataType
            annotations = (isinstance(dt, T.ArrayType) and isinstance(dt.elementType,
                                                                       T.StructType)
                           and "result" in dt.elementType.fieldNames())
            if annotations:
                src = F.col(in_col).getField("result")
            elif isinstance(dt, (T.StringType, T.BinaryType)):
                src = F.col(in_col)
            else:  # every row gets "not a string (...)"; strict mode fails up front
                if self.getOrDefault(self.strict):
                    raise ValueError("inputCol %r is %s, not a string or annotation column"
                                     % (in_col, dt.simpleString()))
                src = F.col(in_col)
            max_len = self.getOrDefault(self.maxLength) or None
            ref = ModelRef(self.getOrDefault(self.model), dtype=self.getOrDefault(self.dtype),
                           threads=1, max_length=max_len)
            tok_prefix = self.getOrDefault(self.tokensCol)
            report = tok_prefix != "-"
            udf = _make_udf(ref, annotations, bs, self.getOrDefault(self.normalize), max_len,
                            self.getOrDefault(self.strict), report)
            tmp = "__medembed_%s" % out_col
            df = df.withColumn(tmp, udf(src))
            emb = F.col(tmp + ".embedding")
            if fmt == "vector":
                from pyspark.ml.functions import array_to_vector
                value = array_to_vector(emb)
            elif fmt == "annotation":
                if annotations:
                    first = F.col(in_col).getItem(0)
                    begin, end, text = first.getField("begin"), first.getField("end"), \
                        first.getField("result")
                    meta = F.map_concat(F.coalesce(first.getField("metadata"),
                                                   F.create_map().cast("map<string,string>")),
                                        F.create_map(F.lit("n_tokens"), F.col(tmp + ".n_tokens")
                                                     .cast("string")))
                else:
                    text = F.col(in_col).cast("string")
                    begin, end = F.lit(0), F.length(text) - 1
                    meta = F.create_map(F.lit("sentence"), F.lit("0"), F.lit("n_tokens"),
                                        F.col(tmp + ".n_tokens").cast("string"))
                value = F.when(emb.isNull(), F.lit(None)).otherwise(F.array(F.struct(
                    F.lit(ANNOTATOR_TYPE).alias("annotatorType"),
                    begin.cast("int").alias("begin"), end.cast("int").alias("end"),
                    text.alias("result"), meta.alias("metadata"),
                    emb.alias("embeddings"))))
            else:
                value = emb
            df = df.withColumn(out_col, value)
            if report:
                df = df.withColumn(tok_prefix + "n_tokens", F.col(tmp + ".n_tokens")) \
                       .withColumn(tok_prefix + "truncated", F.col(tmp + ".truncated"))
            err_col = self.getOrDefault(self.errorCol)
            if err_col:
                df = df.withColumn(err_col, F.col(tmp + ".error"))
            return df.drop(tmp)
else:
    class MedEmbedEmbeddings:  # noqa: D101 - placeholder without pyspark
        def __init__(self, *a, **kw):
            raise ImportError("medembed.spark.MedEmbedEmbeddings needs pyspark (and pyarrow): "
                              "pip install pyspark pyarrow")
