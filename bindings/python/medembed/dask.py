"""medembed.dask - embed a dask DataFrame partition by partition.

    import dask.dataframe as dd, medembed.dask
    ddf = dd.read_json("corpus.jsonl", lines=True, blocksize=2**24)
    out = medembed.dask.embed(ddf, column="text", model="/models/MedEmbed-base-v0.1")
    out.compute()                      # the input columns + "embedding" (float32 vectors)
    medembed.dask.to_npy(ddf, "emb/", column="text", model=..., id_column="_id")

Each task calls medembed.get_model(), so a worker process loads the model once, on its first
partition, and every later partition and task on that worker reuses it (thread-safe: a worker
with several threads still loads once; each thread gets its own context). Only the model's
path and options travel with the task graph, never weights.

threads= is the number of compute threads per Dask thread (default 1): Dask already runs one
task per worker thread, so more would oversubscribe the cores.
"""
import json
import os
import threading

import numpy as np
import pandas as pd

from .model import Model, get_model
from .quantization import PRECISIONS, quantize_embeddings


_done_lock = threading.Lock()
_done = 0


def partitions_done():
    """How many partitions this process has embedded (for monitoring, and to show reuse)."""
    return _done


def _count_partition():
    global _done
    with _done_lock:
        _done += 1


class ModelRef:
    """A picklable handle to a model: its load arguments. Resolved per process."""

    def __init__(self, model, dtype="float32", threads=1, max_length=None):
        if isinstance(model, Model):
            self.args = (model.path, model.dtype, threads, model._max_length_arg)
        elif isinstance(model, ModelRef):
            self.args = model.args
        elif isinstance(model, (str, os.PathLike)):
            from .model import resolve_model_path
            self.args = (resolve_model_path(model), dtype, threads, max_length)
        else:
            raise TypeError("model must be a folder path, a repo id or a medembed.Model, got %s"
                            % type(model).__name__)

    def get(self):
        return get_model(*self.args)


def _encode_options(precision, ranges, calibration_embeddings, **kw):
    """Validates options on the client, before any task runs."""
    if precision not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS),
                                                                  precision))
    if precision.endswith("int8"):
        if ranges is None and calibration_embeddings is None:
            raise ValueError(
                "precision=%r over partitions needs ranges= or calibration_embeddings=: ranges "
                "computed per partition would differ between partitions" % precision)
        if ranges is None:
            c = np.asarray(calibration_embeddings)
            ranges = np.vstack((np.min(c, axis=0), np.max(c, axis=0)))
    return dict(kw, precision=precision, ranges=None if ranges is None else np.asarray(ranges))


def _encode(model, texts, opts):
    o = dict(opts)
    precision, ranges = o.pop("precision"), o.pop("ranges")
    emb = model.encode(texts, convert_to_numpy=True, **o)
    if precision != "float32":
        emb = quantize_embeddings(emb, precision, ranges=ranges)
    return emb


def _texts(pdf, column):
    if column not in pdf.columns:
        raise KeyError("column %r is not in the DataFrame (columns: %s)"
                       % (column, ", ".join(map(str, pdf.columns))))
    col = pdf[column]
    bad = col.isna()
    if bad.any():
        raise ValueError("column %r has a missing value at index %r" % (column,
                                                                         col.index[bad][0]))
    return col.tolist()


def embed_partition(pdf, ref, column, output_column, opts):
    """One partition: pdf plus output_column (an object column of 1-D arrays)."""
    model = ref.get()
    emb = _encode(model, _texts(pdf, column), opts)
    out = pdf.copy()
    out[output_column] = pd.Series(list(emb), index=pdf.index, dtype=object)
    _count_partition()
    return out


def embed(ddf, column="text", model=None, output_column="embedding", batch_size=32,
          normalize_embeddings=True, prompt=None, prompt_name=None, precision="float32",
          ranges=None, calibration_embeddings=None, dtype="float32", threads=1,
          max_length=None):
    """A dask DataFrame with ``output_column`` added: one float32 (or quantized) vector per row.

    model : a folder path, a cached repo id, or a medembed.Model (only its path and options
            are sent to the workers). Other arguments as in Model.encode; int8/uint8 need
            ``ranges`` or ``calibration_embeddings`` so that every partition uses the same.
    """
    if model is None:
        raise ValueError("model= is required (a model folder, repo id or medembed.Model)")
    if column not in ddf.columns:
        raise KeyError("column %r is not in the DataFrame (columns: %s)"
                       % (column, ", ".join(map(str, ddf.columns))))
    ref = ModelRef(model, dtype=dtype, threads=threads, max_length=max_length)
    opts = _encode_options(precision, ranges, calibration_embeddings, batch_size=batch_size,
                           normalize_embeddings=normalize_embeddings, prompt=prompt,
                           prompt_name=prompt_name)
    meta = ddf._meta.copy()
    meta[output_column] = pd.Series([], dtype=object)
    return ddf.map_partitions(embed_partition, ref, column, output_column, opts, meta=meta)


def _write_shard(pdf, index, path, ref, column, id_column, opts):
    model = ref.get()
    emb = _encode(model, _texts(pdf, column), opts)
    name = "part-%05d.npy" % index
    np.save(os.path.join(path, name), emb, allow_pickle=False)
    shard = {"file": name, "rows": int(emb.shape[0])}
    if id_column is not None:
        ids_name = "part-%05d.ids.jsonl" % index
        with open(os.path.join(path, ids_name), "w", encoding="utf-8") as f:
            for v in pdf[id_column].tolist():
                f.write(json.dumps(v.item() if hasattr(v, "item") else v) + "\n")
        shard["ids"] = ids_name
    _count_partition()
    return shard, {"fingerprint": model.fingerprint, "dim": model.dim, "path": model.path,
                   "has_normalize": model.has_normalize, "dtype": model.dtype}


def to_npy(ddf, path, column="text", model=None, id_column=None, batch_size=32,
           normalize_embeddings=True, prompt=None, prompt_name=None, precision="float32",
           ranges=None, calibration_embeddings=None, dtype="float32", threads=1,
           max_length=None, compute=True):
    """Writes one ``part-NNNNN.npy`` per partition (rows in input order) into folder ``path``,
    with ``part-NNNNN.ids.jsonl`` when id_column is given, then ``manifest.json``:

        {"format": "medembed-npy-shards", "version": 1, "rows": N, "dim": D,
         "precision": ..., "model": {"path", "fingerprint", "dtype"}, "column": ...,
         "shards": [{"file", "rows", "ids"?}, ...]}

    Returns the manifest dict. The folder must be reachable by every worker (shared storage).
    """
    import dask

    if model is None:
        raise ValueError("model= is required (a model folder, repo id or medembed.Model)")
    for c in [column] + ([id_column] if id_column is not None else []):
        if c not in ddf.columns:
            raise KeyError("column %r is not in the DataFrame (columns: %s)"
                           % (c, ", ".join(map(str, ddf.columns))))
    ref = ModelRef(model, dtype=dtype, threads=threads, max_length=max_length)
    opts = _encode_options(precision, ranges, calibration_embeddings, batch_size=batch_size,
                           normalize_embeddings=normalize_embeddings, prompt=prompt,
                           prompt_name=prompt_name)
    os.makedirs(path, exist_ok=True)
    parts = ddf.to_delayed()
    tasks = [dask.delayed(_write_shard)(p, i, path, ref, column, id_column, opts)
             for i, p in enumerate(parts)]
    if not compute:
        return tasks
    results = dask.compute(*tasks)
    shards = [r[0] for r in results]
    info = results[0][1] if results else {}
    fps = {r[1]["fingerprint"] for r in results}
    if len(fps) > 1:
        raise RuntimeError("workers loaded different weights for %s (fingerprints %s)"
                           % (ref.args[0], sorted(fps)))
    manifest = {
        "format": "medembed-npy-shards", "version": 1,
        "rows": sum(s["rows"] for s in shards), "dim": info.get("dim"),
        "precision": precision, "column": column, "id_column": id_column,
        "model": {"path": info.get("path"), "fingerprint": info.get("fingerprint"),
                  "dtype": info.get("dtype")},
        "normalized": bool(normalize_embeddings or info.get("has_normalize")),
        "shards": shards,
    }
    tmp = os.path.join(path, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(path, "manifest.json"))
    return manifest


def read_npy(path, mmap=False):
    """(embeddings, ids or None) from a folder written by to_npy, shards concatenated."""
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
        man = json.load(f)
    arrs, ids = [], [] if man.get("id_column") is not None else None
    for s in man["shards"]:
        a = np.load(os.path.join(path, s["file"]), mmap_mode="r" if mmap else None,
                    allow_pickle=False)
        if a.shape[0] != s["rows"]:
            raise ValueError("%s: %d rows, manifest says %d" % (s["file"], a.shape[0], s["rows"]))
        arrs.append(a)
        if ids is not None:
            with open(os.path.join(path, s["ids"]), encoding="utf-8") as f:
                ids.extend(json.loads(line) for line in f)
    if not arrs:
        return np.zeros((0, man.get("dim") or 0), dtype=np.float32), ids
    return np.concatenate(arrs), ids


def parquet_engine():
    """"pyarrow" or "fastparquet" if one is importable, else None."""
    import importlib.util
    for name in ("pyarrow", "fastparquet"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def to_parquet(ddf, path, column="text", model=None, output_column="embedding", compute=True,
               **kw):
    """Embeds like embed() and writes Parquet with pyarrow: the input columns plus the vector
    as a list<float> column (list<int8> for int8/binary, list<uint8> for uint8/ubinary).

    Needs pyarrow; without it this raises ImportError (to_npy writes .npy shards with no extra
    package)."""
    if parquet_engine() != "pyarrow":
        raise ImportError("Parquet output needs pyarrow (pip install pyarrow); without it, "
                          "write .npy shards with medembed.dask.to_npy()")
    import pyarrow as pa
    precision = kw.get("precision", "float32")
    elem = {"float32": pa.float32(), "int8": pa.int8(), "binary": pa.int8(),
            "uint8": pa.uint8(), "ubinary": pa.uint8()}.get(precision, pa.float32())
    out = embed(ddf, column=column, model=model, output_column=output_column, **kw)
    return out.to_parquet(path, engine="pyarrow", compute=compute,
                          schema={output_column: pa.list_(elem)})
