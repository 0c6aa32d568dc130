"""index.py - searching a medembed index file (built with `medembed index build`).

    import medembed
    model = medembed.Model("MedEmbed-small-v0.1")
    ix = medembed.Index("pubmed.db")
    ix.search("HbA1c above 7% E11.9", model=model, mode="hybrid", k=5, filters=["year>=2015"])

Modes (docs/SEARCH.md): "dense" (vectors, needs the model the index was built with), "bm25"
(keywords through SQLite FTS5; no model needed) and "hybrid" (both, fused by reciprocal rank
fusion, or with ``alpha`` by a weighted sum of min-max normalised scores). Each hit is a dict:
id, score, chunk / start / end (the best chunk and its token span; None for a keyword-only
hit), metadata, and for hybrid hits ``dense`` and ``bm25``: {"rank", "score"} of each leg, or
None where that leg did not return the document.

With ``rerank=medembed.CrossEncoder(...)`` the first ``rerank_top`` hits (default max(50, k)) are
scored by the cross-encoder on (query, document text as indexed) and the best ``k`` returned:
``score`` is then the cross-encoder's and ``first_stage`` keeps {"rank", "score"} of the
search, as `medembed search --rerank` prints them.
"""
import ctypes
import json

from . import _lib
from .errors import from_status

INDEX_READONLY = 1

_free = None


def _libc_free(p):
    """free() for a buffer the library malloc'd."""
    global _free
    if _free is None:
        _free = ctypes.CDLL(None).free
        _free.argtypes = [ctypes.c_void_p]
        _free.restype = None
    _free(p)


class Index:
    """A read-only handle on an index file; thread-safe (searches run concurrently)."""

    def __init__(self, path):
        self.path = str(path)
        err = ctypes.create_string_buffer(1024)
        p = ctypes.c_void_p()
        rc = _lib.lib().medembed_index_open(self.path.encode("utf-8"), INDEX_READONLY,
                                            ctypes.byref(p), err, len(err))
        if rc != 0:
            raise from_status(rc, err.value.decode("utf-8", "replace"))
        self._ptr = p

    def close(self):
        if getattr(self, "_ptr", None):
            _lib.lib().medembed_index_free(self._ptr)
            self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return int(_lib.lib().medembed_index_n_docs(self._handle()))

    def _handle(self):
        if not getattr(self, "_ptr", None):
            raise ValueError("the index is closed")
        return self._ptr

    def search(self, query, model=None, k=10, mode="dense", alpha=None, filters=None,
               exact=False, ef_search=0, metadata=True, rerank=None, rerank_top=None):
        """The best ``k`` documents for the text ``query``, best first (a list of dicts).
        rerank: a medembed.CrossEncoder that reorders the first ``rerank_top`` hits
        (default max(50, k); k <= rerank_top)."""
        if not isinstance(query, str):
            raise TypeError("query must be a str, not %s" % type(query).__name__)
        if mode not in _lib.SEARCH_MODES:
            raise ValueError("mode must be 'dense', 'bm25' or 'hybrid', not %r" % (mode,))
        if alpha is not None and mode != "hybrid":
            raise ValueError("alpha applies to mode='hybrid'")
        if mode != "bm25" and model is None:
            raise ValueError("mode %r needs the model the index was built with" % mode)
        if "\0" in query and mode != "dense":
            raise ValueError("query cannot contain NUL characters for keyword search")
        if rerank is not None:
            if not hasattr(rerank, "_score") or getattr(rerank, "num_labels", 0) != 1:
                raise ValueError("rerank must be a medembed.CrossEncoder with one label")
            if rerank_top is None:
                rerank_top = max(_lib.RERANK_TOP_DEFAULT, int(k))
            if int(rerank_top) < 1 or int(k) > int(rerank_top):
                raise ValueError("k %d is more than rerank_top %d: the cross-encoder orders "
                                 "only the hits it reads" % (int(k), int(rerank_top)))
        if isinstance(filters, str):
            filters = [filters]
        filters = list(filters or [])
        so = _lib.SearchOpts()
        lib = _lib.lib()
        lib.medembed_search_opts_init(ctypes.byref(so))
        so.k = int(rerank_top) if rerank is not None else int(k)
        so.exact = 1 if exact else 0
        so.ef_search = int(ef_search)
        so.with_metadata = 1 if metadata else 0
        so.mode = _lib.SEARCH_MODES[mode]
        so.alpha = -1.0 if alpha is None else float(alpha)
        fbuf = (ctypes.c_char_p * max(1, len(filters)))(*[f.encode("utf-8") for f in filters])
        so.filters = fbuf
        so.n_filters = len(filters)
        q = query.encode("utf-8")
        err = ctypes.create_string_buffer(1024)
        hits = ctypes.c_void_p()
        if model is not None and mode != "bm25":
            ctx = model._ctx()
            eo = model._embed_opts(None, None, _lib.ROLE_QUERY)
            with ctx.lock:
                rc = lib.medembed_index_search_text(self._handle(), ctx.ptr, q, ctypes.byref(eo),
                                                    ctypes.byref(so), ctypes.byref(hits), err,
                                                    len(err))
        else:
            rc = lib.medembed_index_search_text(self._handle(), None, q, None, ctypes.byref(so),
                                                ctypes.byref(hits), err, len(err))
        if rc != 0:
            raise from_status(rc, err.value.decode("utf-8", "replace"))
        try:
            if rerank is not None:  # the library's reranking stage, as `search --rerank`
                cctx = rerank.model._ctx()
                with cctx.lock:
                    rc = lib.medembed_hits_rerank(hits, self._handle(), cctx.ptr, q, int(k), 0,
                                                  err, len(err))
                if rc != 0:
                    raise from_status(rc, err.value.decode("utf-8", "replace"))
            out = [self._hit(lib, hits, i, mode == "hybrid", metadata)
                   for i in range(lib.medembed_hits_count(hits))]
        finally:
            lib.medembed_hits_free(hits)
        return out

    def doc_text(self, doc_id):
        """The text stored for document ``doc_id`` (title + " " + text for BEIR input), as
        BM25 searches it and a cross-encoder reranks it."""
        lib = _lib.lib()
        err = ctypes.create_string_buffer(1024)
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        rc = lib.medembed_index_doc_text(self._handle(), str(doc_id).encode("utf-8"),
                                         ctypes.byref(p), ctypes.byref(n), err, len(err))
        if rc != 0:
            raise from_status(rc, err.value.decode("utf-8", "replace"))
        try:
            return ctypes.string_at(p, n.value).decode("utf-8", "replace")
        finally:
            _libc_free(p)

    @staticmethod
    def _hit(lib, hits, i, hybrid, metadata):
        s, e = ctypes.c_int32(), ctypes.c_int32()
        c = lib.medembed_hits_chunk(hits, i, ctypes.byref(s), ctypes.byref(e))
        h = {"id": lib.medembed_hits_id(hits, i).decode("utf-8"),
             "score": float(lib.medembed_hits_score(hits, i)),
             "chunk": c if c >= 0 else None,
             "start": s.value if c >= 0 else None,
             "end": e.value if c >= 0 else None}
        if metadata:
            h["metadata"] = json.loads(lib.medembed_hits_metadata(hits, i).decode("utf-8"))
        if hybrid:
            dr, br = ctypes.c_int32(), ctypes.c_int32()
            ds, bs = ctypes.c_float(), ctypes.c_float()
            lib.medembed_hits_components(hits, i, ctypes.byref(dr), ctypes.byref(ds),
                                         ctypes.byref(br), ctypes.byref(bs))
            h["dense"] = {"rank": dr.value, "score": float(ds.value)} if dr.value else None
            h["bm25"] = {"rank": br.value, "score": float(bs.value)} if br.value else None
        fr, fs = ctypes.c_int32(), ctypes.c_float()
        if lib.medembed_hits_first_stage(hits, i, ctypes.byref(fr), ctypes.byref(fs)):
            h["first_stage"] = {"rank": fr.value, "score": float(fs.value)}
        return h
