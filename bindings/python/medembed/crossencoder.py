"""crossencoder.py - medembed.CrossEncoder: sentence-transformers' CrossEncoder over
libmedembed.

    import medembed
    ce = medembed.CrossEncoder("ms-marco-MiniLM-L-6-v2")       # a folder, or a cached repo id
    ce.predict([("statins and myopathy", "Statin use was associated with ..."), ...])
    ce.rank("statins and myopathy", documents, top_k=5)

The folder is a BertForSequenceClassification model as sentence-transformers saves a
CrossEncoder. Each pair is scored as [CLS] query [SEP] text [SEP] (token types 0 then 1),
truncated "longest_first" to the model's limit, and the logits go through the model's
activation (sigmoid for one label unless the config names another), as
CrossEncoder.predict does; ``raw_scores=True`` returns the logits. Scores equal
`medembed rerank`'s bit for bit. Threading as medembed.Model: one context per thread.
"""
import ctypes

import numpy as np

from . import _lib
from .errors import InvalidArgument, Mismatch, from_status
from .model import Model, _to_utf8


class CrossEncoder:
    """A cross-encoder that scores (query, text) pairs."""

    def __init__(self, path_or_repo, dtype="float32", threads=0, max_length=None,
                 pack_cache=None):
        self.model = Model(path_or_repo, dtype=dtype, threads=threads, max_length=max_length,
                           pack_cache=pack_cache)
        if self.model.kind != "cross-encoder":
            path = self.model.path
            self.model.close()
            raise Mismatch("%s is an embedder, not a cross-encoder: use medembed.Model for it"
                           % path, -9)
        self.path = self.model.path
        self.num_labels = self.model.num_labels
        self.max_length = self.model.max_length

    def close(self):
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "CrossEncoder(%r, dtype=%r, num_labels=%d, max_length=%d)" % (
            self.path, self.model.dtype, self.num_labels, self.max_length)

    @property
    def info(self):
        return self.model.info

    def _score(self, query, texts, flags):
        """(len(texts), num_labels) float32 for one query."""
        q = _to_utf8([query])[0]
        raw = _to_utf8(texts)
        n = len(raw)
        out = np.empty((n, self.num_labels), dtype=np.float32)
        if n == 0:
            return out
        arr = (ctypes.c_char_p * n)(*raw)
        lens = (ctypes.c_size_t * n)(*[len(t) for t in raw])
        ctx = self.model._ctx()
        with ctx.lock:
            rc = _lib.lib().medembed_ctx_rerank(ctx.ptr, q, len(q), arr, lens, n, flags,
                                                out.ctypes.data)
            if rc != 0:
                raise from_status(rc, ctx.error(rc))
        return out

    @staticmethod
    def _flags(raw_scores, truncate, truncation_direction):
        if truncation_direction not in ("right", "left"):
            raise ValueError("truncation_direction must be 'right' or 'left', not %r"
                             % (truncation_direction,))
        return ((_lib.F_RAW_SCORES if raw_scores else 0) |
                (0 if truncate else _lib.F_NO_TRUNCATE) |
                (_lib.F_TRUNCATE_LEFT if truncation_direction == "left" else 0))

    def predict(self, sentences, raw_scores=False, apply_softmax=False, truncate=True,
                truncation_direction="right", batch_size=None, show_progress_bar=None,
                convert_to_numpy=True):
        """Scores of (query, text) pairs, as CrossEncoder.predict returns them: a float32
        array of shape (n,) for one label or (n, num_labels), or one score (one label) / one
        row for a single pair. raw_scores: the logits, without the activation.
        apply_softmax: softmax over the labels (more than one label). truncate=False makes a
        pair over max_length an error (TextTooLong). Pairs are batched in the library
        (batch_size and show_progress_bar are accepted for compatibility and ignored)."""
        single = len(sentences) == 2 and all(isinstance(x, (str, bytes)) for x in sentences)
        pairs = [sentences] if single else list(sentences)
        for i, p in enumerate(pairs):
            if isinstance(p, (str, bytes)) or len(p) != 2:
                raise InvalidArgument("pair %d: expected (query, text), got %r" % (i, p))
        flags = self._flags(raw_scores, truncate, truncation_direction)
        out = np.empty((len(pairs), self.num_labels), dtype=np.float32)
        groups = {}
        for i, (q, _) in enumerate(pairs):  # one library call per distinct query
            groups.setdefault(q, []).append(i)
        for q, idx in groups.items():
            out[idx] = self._score(q, [pairs[i][1] for i in idx], flags)
        if apply_softmax and self.num_labels > 1:
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        if self.num_labels == 1:
            out = out[:, 0]
        if single:
            out = out[0]
        return out if convert_to_numpy else out.tolist()

    def rank(self, query, documents, top_k=None, return_documents=False, raw_scores=False,
             truncate=True, truncation_direction="right", batch_size=None,
             show_progress_bar=None):
        """The documents ordered by score, best first, as CrossEncoder.rank returns them: a
        list of {"corpus_id", "score"[, "text"]}; top_k keeps the first k. Needs a
        one-label model. Equal scores keep the input order."""
        if self.num_labels != 1:
            raise InvalidArgument("rank needs a cross-encoder with one label; this one has %d"
                                  % self.num_labels)
        docs = list(documents)
        flags = self._flags(raw_scores, truncate, truncation_direction)
        scores = self._score(query, docs, flags)[:, 0]
        order = np.empty(len(docs), dtype=np.int32)  # the library's ranking rule
        rc = _lib.lib().medembed_rank_order(scores.ctypes.data, len(docs), order.ctypes.data)
        if rc != 0:
            raise from_status(rc, "ranking %d scores" % len(docs))
        order = [int(i) for i in order]
        if top_k is not None:
            order = order[:int(top_k)]
        out = []
        for i in order:
            r = {"corpus_id": i, "score": float(scores[i])}
            if return_documents:
                r["text"] = docs[i]
            out.append(r)
        return out

    rerank = rank
