"""medembed.spark - the function Spark's DataFrame.mapInPandas takes, and its schema.

    from medembed.spark import embed_partitions
    fn, schema = embed_partitions("/models/MedEmbed-base-v0.1", "text", keep="id string")
    out = df.mapInPandas(fn, schema)     # columns: id, text, embedding array<float>

This module imports neither pyspark nor pyarrow: ``fn`` is a plain
``Iterator[pandas.DataFrame] -> Iterator[pandas.DataFrame]`` function, so it runs (and is
tested) on pandas alone. On an executor the first batch loads the model through
medembed.get_model(), once per Python worker process, and later batches and tasks reuse it
(set spark.python.worker.reuse=true, Spark's default, to keep the worker alive).
"""
import re

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
