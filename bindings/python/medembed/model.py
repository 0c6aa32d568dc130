"""model.py - medembed.Model: a sentence-transformers-like encoder over libmedembed.

Threading: one immutable ``medembed_model`` is shared by every thread; each Python thread
that calls ``encode`` gets its own ``medembed_ctx`` (scratch memory + worker pool), created
on first use and kept in a ``threading.local``. ctypes releases the GIL around each C call,
so N Python threads encode in parallel. ``close()`` (or garbage collection) frees every
ctx first, then the model.

Processes: ``get_model(path, ...)`` returns one shared Model per process and per options; a
Model pickles as its load arguments and unpickles through ``get_model``, so Dask/Spark tasks
that ship a Model to a worker load it there once and reuse it across tasks.
"""
import ctypes
import json
import os
import re
import threading
import weakref

import numpy as np

from . import _lib
from .errors import InvalidArgument, MedembedError, from_status
from .progress import Progress
from .quantization import PRECISIONS, quantize_embeddings

_load_lock = threading.Lock()
_load_count = 0
_cache = {}
_cache_lock = threading.Lock()


def load_count():
    """How many models this process has loaded from disk (successful loads)."""
    return _load_count


def _norm_dtype(dtype):
    if dtype is None:
        return 0
    if isinstance(dtype, int) and dtype in (0, 1, 2):
        return dtype
    key = str(getattr(dtype, "name", dtype)).lower()
    if key not in _lib.DTYPES:
        raise ValueError("dtype must be one of float32/f32, bf16, int8, got %r" % (dtype,))
    return _lib.DTYPES[key]


def _resolved(fn, name):
    """Calls a library function that writes a path (medembed_model_resolve,
    medembed_cache_dir) and returns it as str, or raises its error."""
    buf = ctypes.create_string_buffer(4096)
    err = ctypes.create_string_buffer(4096)
    rc = fn(name, buf, len(buf), err, len(err))
    if rc != 0:
        raise from_status(rc, err.value.decode("utf-8", "replace") or _lib.status_str(rc))
    return os.fsdecode(buf.value)


def cache_home():
    """The model cache root shared with the CLI, $MEDEMBED_HOME (default
    $XDG_CACHE_HOME/medembed, else ~/.cache/medembed),
    as libmedembed computes it (medembed_cache_dir)."""
    return _resolved(_lib.lib().medembed_cache_dir, None)


def resolve_model_path(path_or_repo):
    """The model folder for a path, or for a hub repo id ORG/NAME[@REV] already downloaded
    (`medembed pull ORG/NAME`, or huggingface_hub into its cache), as an absolute path.

    The rules are libmedembed's (medembed_model_resolve, include/medembed.h "Model names"),
    the same for the CLI's -m: a folder wins over a repo id of the same spelling; then
    $MEDEMBED_HOME/models/ORG/NAME[@REV], then the Hugging Face hub cache. Nothing is
    downloaded from Python: a missing model raises NotFound (a FileNotFoundError) that says
    to run `medembed pull`; a file raises InvalidArgument (a ValueError)."""
    p = os.fsencode(path_or_repo)
    if b"\0" in p:
        raise InvalidArgument("model path contains a NUL byte")
    return os.path.abspath(_resolved(_lib.lib().medembed_model_resolve, p))


class _ModelHandle:
    """Owns the C model; freed when the last Model/ctx referring to it goes away."""

    def __init__(self, ptr):
        self.ptr = ptr

    def free(self):
        if self.ptr:
            _lib.lib().medembed_model_free(self.ptr)
            self.ptr = None

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass


class _Ctx:
    """One thread's medembed_ctx. Holds the model handle so the model outlives it."""

    def __init__(self, handle, threads):
        self.handle = handle
        self.lock = threading.Lock()
        p = ctypes.c_void_p()
        rc = _lib.lib().medembed_ctx_create(handle.ptr, int(threads), ctypes.byref(p))
        if rc != 0:
            raise from_status(rc, "cannot create a context: %s" % _lib.status_str(rc))
        self.ptr = p

    def error(self, rc):
        msg = _lib.lib().medembed_ctx_last_error(self.ptr) or b""
        return msg.decode("utf-8", "replace") or _lib.status_str(rc)

    def free(self):
        with self.lock:
            if self.ptr:
                _lib.lib().medembed_ctx_free(self.ptr)
                self.ptr = None

    def __del__(self):
        try:
            self.free()
        except Exception:
            pass


def _as_texts(sentences):
    """(list of str|bytes, input_was_single)."""
    if isinstance(sentences, (str, bytes)):
        return [sentences], True
    if hasattr(sentences, "tolist") and not isinstance(sentences, list):
        sentences = sentences.tolist()  # numpy array, pandas Series
    try:
        texts = list(sentences)
    except TypeError:
        raise TypeError("sentences must be a str or an iterable of str, got %s"
                        % type(sentences).__name__) from None
    return texts, False


def _to_utf8(texts):
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, bytes):
            out.append(t)
        elif isinstance(t, str):
            try:
                out.append(t.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise InvalidArgument("text %d: cannot be encoded as UTF-8 (%s)" % (i, e.reason)
                                      ) from None
        else:
            raise TypeError("text %d: expected str, got %s%s" % (
                i, type(t).__name__,
                " (a missing value?)" if t is None or (isinstance(t, float) and t != t) else ""))
    return out


def _pack_cache_bytes(pack_cache):
    """pack_cache as the bytes medembed_load_opts.pack_cache takes (None stays None)."""
    if pack_cache is None:
        return None
    if not isinstance(pack_cache, (str, bytes, os.PathLike)):
        raise ValueError("pack_cache must be a directory path, \"\" or None, got %r"
                         % (pack_cache,))
    pc = os.fsencode(pack_cache)
    if b"\0" in pc:
        raise ValueError("pack_cache contains a NUL byte")
    return pc


class Model:
    """A sentence-embedding model loaded by libmedembed.

    Model(path_or_repo, dtype="float32", threads=0, max_length=None, pack_cache=None)

    path_or_repo : a model folder in Hugging Face sentence-transformers layout, or a repo id
                   ("abhinand/MedEmbed-base-v0.1") already downloaded to a cache.
    dtype        : compute precision, "float32" (reference), "bf16" or "int8".
    threads      : worker threads per calling thread (0 = all CPUs).
    max_length   : cap on tokens per text, [CLS]/[SEP] included (None = the model's).
    pack_cache   : directory for the packed-weights cache (faster later loads, one copy shared
                   by the processes that load the model; see docs/PERFORMANCE.md); None = the
                   MEDEMBED_PACK_CACHE environment variable, "" = no cache.
                   info["pack_cache"] says whether the load used or wrote a file.
    """

    def __init__(self, path_or_repo, dtype="float32", threads=0, max_length=None,
                 pack_cache=None):
        global _load_count
        self.path = resolve_model_path(path_or_repo)
        self.dtype = {0: "float32", 1: "bf16", 2: "int8"}[_norm_dtype(dtype)]
        if threads is None:
            threads = 0
        if not isinstance(threads, int) or threads < 0 or threads > 256:
            raise ValueError("threads must be an int in [0, 256] (0 = all CPUs), got %r"
                             % (threads,))
        if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
            raise ValueError("max_length must be an int >= 2 or None, got %r" % (max_length,))
        pc = _pack_cache_bytes(pack_cache)
        self.threads = threads
        self._max_length_arg = max_length
        self._pack_cache_arg = pack_cache
        L = _lib.lib()
        opts = _lib.LoadOpts()
        L.medembed_load_opts_init(ctypes.byref(opts))
        opts.dtype = _norm_dtype(dtype)
        opts.max_length = max_length or 0
        opts.pack_cache = pc  # kept alive by pc until the load returns
        err = ctypes.create_string_buffer(1024)
        ptr = ctypes.c_void_p()
        rc = L.medembed_model_load(os.fsencode(self.path), ctypes.byref(opts), ctypes.byref(ptr),
                                   err, len(err))
        if rc != 0:
            raise from_status(rc, err.value.decode("utf-8", "replace") or _lib.status_str(rc))
        with _load_lock:
            _load_count += 1
        self._handle = _ModelHandle(ptr)
        self._local = threading.local()
        self._ctxs = weakref.WeakSet()
        self._ctxs_lock = threading.Lock()
        self._closed = False
        self.dim = int(L.medembed_model_dim(ptr))
        self.max_length = int(L.medembed_model_max_length(ptr))
        self.pooling = _lib.POOLINGS.get(int(L.medembed_model_pooling(ptr)), "unknown")
        self.has_normalize = bool(L.medembed_model_normalize(ptr))
        self.fingerprint = L.medembed_model_fingerprint(ptr).decode("ascii")
        self.kind = L.medembed_model_kind_name(L.medembed_model_kind(ptr)).decode("ascii")
        self.num_labels = int(L.medembed_model_num_labels(ptr))
        self._pad_id = None

    # ---- lifetime -------------------------------------------------------------------
    def _ptr(self):
        if self._closed:
            raise InvalidArgument("this Model is closed")
        return self._handle.ptr

    def close(self):
        """Frees every thread's context, then the model. Do not call while other threads
        are encoding with this Model; later calls raise."""
        if self._closed:
            return
        self._closed = True
        with self._ctxs_lock:
            ctxs = list(self._ctxs)
        for c in ctxs:
            c.free()
        self._handle.free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        # Pickles as its load arguments; unpickling returns the receiving process's shared copy.
        return (get_model, (self.path, self.dtype, self.threads, self._max_length_arg,
                            self._pack_cache_arg))

    def __repr__(self):
        return "Model(%r, dtype=%r, dim=%d, max_length=%d, pooling=%r)" % (
            self.path, self.dtype, self.dim, self.max_length, self.pooling)

    def _ctx(self):
        c = getattr(self._local, "ctx", None)
        if c is None or c.ptr is None:
            c = _Ctx(self._handle, self.threads)
            self._local.ctx = c
            with self._ctxs_lock:
                self._ctxs.add(c)
        return c

    # ---- information -----------------------------------------------------------------
    @property
    def info(self):
        """The library's JSON description of the model, as a dict."""
        L, p = _lib.lib(), self._ptr()
        n = L.medembed_model_info_json(p, None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        L.medembed_model_info_json(p, buf, n + 1)
        return json.loads(buf.value.decode("utf-8"))

    def get_sentence_embedding_dimension(self):
        return self.dim

    def get_max_seq_length(self):
        return self.max_length

    def prompt(self, name=None):
        """The prompt named `name` in the model config (None: the default prompt), or None."""
        s = _lib.lib().medembed_model_prompt(self._ptr(), None if name is None else
                                             name.encode("utf-8"))
        return None if s is None else s.decode("utf-8")

    @property
    def prompts(self):
        return dict(self.info.get("prompts") or {})

    @property
    def isa(self):
        return _lib.lib().medembed_isa().decode("ascii")

    # ---- tokenizer -------------------------------------------------------------------
    def _pad(self):
        if self._pad_id is None:
            L, p = _lib.lib(), self._ptr()
            self._pad_id = 0
            for i in range(int(L.medembed_vocab_size(p))):
                if L.medembed_token_str(p, i) == b"[PAD]":
                    self._pad_id = i
                    break
        return self._pad_id

    def tokenize_ids(self, text, truncate=True):
        """The ids the model sees for one text ([CLS] ... [SEP]) as a list of int."""
        L, p = _lib.lib(), self._ptr()
        (raw,) = _to_utf8([text])
        flags = 0 if truncate else _lib.F_NO_TRUNCATE
        cap = max(self.max_length, 16)
        while True:
            ids = (ctypes.c_int32 * cap)()
            info = _lib.TextInfo()
            rc = L.medembed_tokenize(p, raw, len(raw), flags, ids, cap, ctypes.byref(info))
            if rc != 0:
                raise from_status(rc, "tokenize: %s" % _lib.status_str(rc))
            if info.n_tokens <= cap:
                return list(ids[:info.n_tokens])
            cap = info.n_tokens

    def tokenize(self, texts, truncate=True):
        """Tokenize like SentenceTransformer.tokenize: a dict of (n, longest) int64 arrays
        input_ids (padded with [PAD]), attention_mask and token_type_ids (zeros)."""
        texts, _ = _as_texts(texts)
        seqs = [self.tokenize_ids(t, truncate) for t in texts]
        width = max((len(s) for s in seqs), default=0)
        ids = np.full((len(seqs), width), self._pad(), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": np.zeros_like(ids)}

    def token(self, token_id):
        s = _lib.lib().medembed_token_str(self._ptr(), int(token_id))
        return None if s is None else s.decode("utf-8")

    # ---- embedding -------------------------------------------------------------------
    def _embed_batch(self, ctx, raw, opts, out, info=None):
        n = len(raw)
        arr = (ctypes.c_char_p * n)(*raw)
        lens = (ctypes.c_size_t * n)(*[len(b) for b in raw])
        with ctx.lock:
            if ctx.ptr is None:
                raise InvalidArgument("this Model is closed")
            rc = _lib.lib().medembed_ctx_embed(ctx.ptr, arr, lens, n, ctypes.byref(opts),
                                               out.ctypes.data, info)
            if rc != 0:
                return rc, ctx.error(rc)
        return 0, None

    def _embed_opts(self, prompt, prompt_name, role):
        """The library's embed options; the library's prompt rule (medembed_resolve_prompt)
        decides which prompt applies. As in ST, a prompt string wins over a prompt_name."""
        L, p = _lib.lib(), self._ptr()
        opts = _lib.EmbedOpts()
        L.medembed_embed_opts_init(ctypes.byref(opts))
        if prompt is not None:
            prompt_name = None
            opts.prompt = prompt.encode("utf-8")
            if b"\0" in opts.prompt:
                raise ValueError("prompt must not contain NUL characters")
        if prompt_name is not None:
            opts.prompt_name = prompt_name.encode("utf-8")
        opts.role = role
        err = ctypes.create_string_buffer(512)
        got = ctypes.c_char_p()
        rc = L.medembed_resolve_prompt(p, ctypes.byref(opts), ctypes.byref(got), None, err,
                                       len(err))
        if rc != 0:
            raise ValueError(err.value.decode("utf-8", "replace"))
        return opts

    def encode_query(self, sentences, **kwargs):
        """encode() for search queries: with no prompt given, the model's "query" prompt
        (else its default prompt) applies, as in SentenceTransformer.encode_query."""
        return self.encode(sentences, _role=_lib.ROLE_QUERY, **kwargs)

    def encode_document(self, sentences, **kwargs):
        """encode() for documents: with no prompt given, the model's "document", "passage"
        or "corpus" prompt (else its default prompt) applies, as in
        SentenceTransformer.encode_document."""
        return self.encode(sentences, _role=_lib.ROLE_DOCUMENT, **kwargs)

    def encode(self, sentences, batch_size=32, normalize_embeddings=True, prompt=None,
               prompt_name=None, show_progress_bar=False, convert_to_numpy=True,
               precision="float32", max_length=None, truncate=True, _role=_lib.ROLE_TEXT):
        """Embed texts, as SentenceTransformer.encode does.

        sentences  : a str (returns a 1-D array) or a sequence of str (returns (n, dim)).
        batch_size : texts per library call; the output does not depend on it.
        normalize_embeddings : True L2-normalizes every row (the model's Normalize module
                     already does if it has one); False returns what the model's own module
                     pipeline gives, as ST does.
        prompt, prompt_name : a prompt string ("" = none), or the name of one in the model
                     config; with neither, the model's default prompt (if any) is used, as in
                     ST. The library's rule decides (docs/PYTHON.md, "Prompts").
        precision  : "float32", or "int8"|"uint8"|"binary"|"ubinary" quantized as
                     sentence_transformers.quantization.quantize_embeddings does (int8 ranges
                     from these embeddings; see medembed.quantize_embeddings for calibration).
        convert_to_numpy : False returns a list of 1-D arrays.
        max_length / truncate : extensions: cap tokens per text; truncate=False makes a text
                     over the limit an error instead of being cut.
        """
        if precision not in PRECISIONS:
            raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS),
                                                                      precision))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive int, got %r" % (batch_size,))
        texts, single = _as_texts(sentences)
        raw = _to_utf8(texts)
        opts = self._embed_opts(prompt, prompt_name, _role)
        opts.max_length = int(max_length or 0)
        opts.flags = 0 if truncate else _lib.F_NO_TRUNCATE
        out = np.empty((len(raw), self.dim), dtype=np.float32)
        ctx = self._ctx()
        n_batches = (len(raw) + batch_size - 1) // batch_size
        bar = Progress("encode", len(raw)) if show_progress_bar else None
        info = (_lib.TextInfo * min(batch_size, max(1, len(raw))))() if bar else None
        for b in range(n_batches):
            s = b * batch_size
            e = min(len(raw), s + batch_size)
            rc, msg = self._embed_batch(ctx, raw[s:e], opts, out[s:e], info)
            if rc != 0:
                # The library names a text by its index within the batch; report the global one.
                m = re.match(r"text (\d+)(.*)$", msg, re.S)
                if m:
                    msg = "text %d%s" % (s + int(m.group(1)), m.group(2))
                raise from_status(rc, msg)
            if bar:
                got = info[:e - s]
                bar.add(e - s, sum(i.n_tokens for i in got), sum(i.truncated != 0 for i in got),
                        sum(i.n_invalid_utf8 != 0 for i in got))
        if bar:
            bar.end()
        if normalize_embeddings and not self.has_normalize and len(raw):
            # torch.nn.functional.normalize(p=2, eps=1e-12), as ST's normalize_embeddings does.
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = (out / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
        if precision != "float32":
            # no rows: no ranges to compute, but the caller still gets the right dtype/width
            empty_ranges = np.zeros((2, self.dim), np.float32) if not len(raw) else None
            out = quantize_embeddings(out, precision, ranges=empty_ranges)
        if single:
            return out[0]
        return out if convert_to_numpy else list(out)

    def encode_ids(self, sequences, normalize_embeddings=True):
        """Embed pre-tokenized sequences (lists of ids, each [CLS] ... [SEP])."""
        seqs = [np.asarray(s, dtype=np.int32).ravel() for s in sequences]
        n = len(seqs)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        ids = np.ascontiguousarray(np.concatenate(seqs), dtype=np.int32)
        lens = np.array([len(s) for s in seqs], dtype=np.int32)
        ctx = self._ctx()
        with ctx.lock:
            rc = _lib.lib().medembed_ctx_embed_ids(ctx.ptr, ids.ctypes.data, lens.ctypes.data,
                                                   n, 0, out.ctypes.data)
            if rc != 0:
                raise from_status(rc, ctx.error(rc))
        if normalize_embeddings and not self.has_normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = (out / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
        return out

    # ---- LangChain-style interface -----------------------------------------------------
    def embed_documents(self, texts):
        """List of float lists, one per text (LangChain Embeddings.embed_documents); the
        document prompt of the library's rule applies (encode_document)."""
        return self.encode_document(list(texts)).tolist()

    def embed_query(self, text):
        """Float list for one query (LangChain Embeddings.embed_query); the query prompt of
        the library's rule applies (encode_query)."""
        return self.encode_query([text])[0].tolist()


def get_model(path_or_repo, dtype="float32", threads=0, max_length=None, pack_cache=None):
    """This process's shared Model for these arguments, loaded on first use.

    Thread-safe: concurrent first calls load once. Dask workers and Spark executors use this,
    so each process loads a model exactly once however many tasks it runs."""
    pc = _pack_cache_bytes(pack_cache)
    key = (resolve_model_path(path_or_repo), _norm_dtype(dtype), threads or 0, max_length, pc)
    m = _cache.get(key)
    if m is not None and not m._closed:
        return m
    with _cache_lock:
        m = _cache.get(key)
        if m is None or m._closed:
            m = Model(key[0], dtype=dtype, threads=threads, max_length=max_length,
                      pack_cache=pack_cache)
            _cache[key] = m
        return m


__all__ = ["Model", "get_model", "load_count", "resolve_model_path", "MedembedError"]
