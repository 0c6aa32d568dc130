"""medembed - sentence embeddings with libmedembed, from Python.

    import medembed
    model = medembed.Model("MedEmbed-base-v0.1")          # a folder, or a cached repo id
    emb = model.encode(["aspirin for stroke prevention", "statins and LDL"])  # (2, dim) float32
    q = model.encode("what lowers cholesterol?", precision="binary")

A thin ctypes layer over libmedembed.so (see _lib.py for how it is found). The output equals
the `medembed embed` CLI bit for bit. Submodules: medembed.dask (batch embedding of dask
DataFrames), medembed.spark (the mapInPandas function for Spark). medembed.Index searches an
index file: dense, bm25 (keywords) or hybrid (docs/SEARCH.md). medembed.CrossEncoder scores
(query, text) pairs with a cross-encoder (predict, rank) and reranks Index.search hits.
"""
from ._lib import LibraryNotFound, lib_path
from .errors import (EncodingError, FormatError, InvalidArgument, IOFailure, MedembedError,
                     Mismatch, NotFound, OutOfMemory, TextTooLong, Unsupported)
from .crossencoder import CrossEncoder
from .index import Index
from .model import Model, get_model, load_count, resolve_model_path
from .quantization import quantize_embeddings

__version__ = "0.1.0"


def library_version():
    """The loaded libmedembed's version string."""
    from . import _lib
    return _lib.lib().medembed_version().decode("ascii")


__all__ = ["Model", "CrossEncoder", "Index", "get_model", "load_count", "resolve_model_path", "quantize_embeddings",
           "library_version", "lib_path", "LibraryNotFound", "MedembedError", "InvalidArgument",
           "OutOfMemory", "IOFailure", "FormatError", "Unsupported", "TextTooLong", "NotFound",
           "EncodingError", "Mismatch"]
