"""_lib.py - finds libmedembed.so and declares the C prototypes for ctypes.

The search order, first hit wins:

1. ``$MEDEMBED_LIB`` (a path to the .so): tests and users pointing at a fresh build;
2. the copy shipped inside the package (``medembed/libmedembed.so``, copied by setup.py at
   build time);
3. ``build/libmedembed.so`` of the source tree this package sits in (bindings/python/medembed
   -> ../../../build), built with ``make lib`` if it is missing and a Makefile is there;
4. the system loader (``ctypes.util.find_library("medembed")``).

Functions are called through ``ctypes.CDLL``, which releases the GIL for the duration of every
foreign call; the library's compute therefore overlaps with other Python threads.
"""
import ctypes
import ctypes.util
import os
import subprocess
import threading

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.normpath(os.path.join(_HERE, "..", "..", ".."))

_lock = threading.Lock()
_lib = None
_lib_path = None


class LibraryNotFound(OSError):
    """libmedembed.so could not be found or built."""


class TextInfo(ctypes.Structure):
    _fields_ = [("n_tokens", ctypes.c_int32), ("n_untruncated", ctypes.c_int32),
                ("truncated", ctypes.c_int32), ("n_invalid_utf8", ctypes.c_int32)]


# These mirror include/medembed.h field for field: the library's *_init
# functions write every field the C struct has, so a missing one here would be
# a write past the end of the ctypes buffer (tests/py/test_pkg_encode.py
# checks that with guard bytes).
class LoadOpts(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int32), ("max_length", ctypes.c_int32),
                ("tokenizer_only", ctypes.c_int32), ("pack_cache", ctypes.c_char_p)]


class EmbedOpts(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("max_length", ctypes.c_int32),
                ("prompt", ctypes.c_char_p), ("batch_tokens", ctypes.c_int32),
                ("prompt_name", ctypes.c_char_p), ("role", ctypes.c_int32)]


class SearchOpts(ctypes.Structure):
    _fields_ = [("k", ctypes.c_int32), ("exact", ctypes.c_int32), ("ef_search", ctypes.c_int32),
                ("rescore", ctypes.c_int32), ("filters", ctypes.POINTER(ctypes.c_char_p)),
                ("n_filters", ctypes.c_int32), ("n_threads", ctypes.c_int32),
                ("with_metadata", ctypes.c_int32), ("mode", ctypes.c_int32),
                ("alpha", ctypes.c_float), ("text", ctypes.c_char_p),
                ("candidates", ctypes.c_int32)]


# medembed_search_mode
SEARCH_MODES = {"dense": 0, "bm25": 1, "hybrid": 2}
RERANK_TOP_DEFAULT = 50  # MEDEMBED_RERANK_TOP_DEFAULT (include/medembed.h)

F_NO_NORMALIZE = 0x1
F_NO_TRUNCATE = 0x2
# medembed_role: which prompt the library's rule picks when none is named
ROLE_TEXT, ROLE_QUERY, ROLE_DOCUMENT = 0, 1, 2
F_STRICT_UTF8 = 0x4
F_RAW_TOKENIZER = 0x8
F_TRUNCATE_LEFT = 0x10
F_RAW_SCORES = 0x40

DTYPES = {"f32": 0, "float32": 0, "bf16": 1, "bfloat16": 1, "int8": 2}
POOLINGS = {0: "cls", 1: "mean", 2: "max", 3: "mean_sqrt_len"}

_P = ctypes.c_void_p
_I32 = ctypes.c_int32
_SZ = ctypes.c_size_t

# name: (restype, argtypes)
_PROTOS = {
    "medembed_status_str": (ctypes.c_char_p, [ctypes.c_int]),
    "medembed_version": (ctypes.c_char_p, []),
    "medembed_load_opts_init": (None, [ctypes.POINTER(LoadOpts)]),
    "medembed_model_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(LoadOpts),
                                           ctypes.POINTER(_P), ctypes.c_char_p, _SZ]),
    "medembed_model_resolve": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, _SZ,
                                              ctypes.c_char_p, _SZ]),
    "medembed_cache_dir": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, _SZ,
                                          ctypes.c_char_p, _SZ]),
    "medembed_model_free": (None, [_P]),
    "medembed_model_dim": (_I32, [_P]),
    "medembed_model_max_length": (_I32, [_P]),
    "medembed_model_pooling": (_I32, [_P]),
    "medembed_model_normalize": (_I32, [_P]),
    "medembed_model_dtype": (_I32, [_P]),
    "medembed_model_info_json": (_SZ, [_P, ctypes.c_char_p, _SZ]),
    "medembed_model_prompt": (ctypes.c_char_p, [_P, ctypes.c_char_p]),
    "medembed_model_fingerprint": (ctypes.c_char_p, [_P]),
    "medembed_tokenize": (ctypes.c_int, [_P, ctypes.c_char_p, _SZ, ctypes.c_uint32,
                                         ctypes.POINTER(_I32), _I32, ctypes.POINTER(TextInfo)]),
    "medembed_token_str": (ctypes.c_char_p, [_P, _I32]),
    "medembed_vocab_size": (_I32, [_P]),
    "medembed_ctx_create": (ctypes.c_int, [_P, _I32, ctypes.POINTER(_P)]),
    "medembed_ctx_free": (None, [_P]),
    "medembed_ctx_last_error": (ctypes.c_char_p, [_P]),
    "medembed_embed_opts_init": (None, [ctypes.POINTER(EmbedOpts)]),
    "medembed_resolve_prompt": (ctypes.c_int, [_P, ctypes.POINTER(EmbedOpts),
                                               ctypes.POINTER(ctypes.c_char_p),
                                               ctypes.POINTER(ctypes.c_char_p), ctypes.c_char_p,
                                               _SZ]),
    "medembed_ctx_embed": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_char_p),
                                          ctypes.POINTER(_SZ), _I32, ctypes.POINTER(EmbedOpts),
                                          ctypes.c_void_p, ctypes.POINTER(TextInfo)]),
    "medembed_ctx_embed_ids": (ctypes.c_int, [_P, ctypes.c_void_p, ctypes.c_void_p, _I32,
                                              ctypes.c_uint32, ctypes.c_void_p]),
    "medembed_ctx_threads": (_I32, [_P]),
    "medembed_isa": (ctypes.c_char_p, []),
    "medembed_index_open": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(_P),
                                           ctypes.c_char_p, _SZ]),
    "medembed_index_free": (None, [_P]),
    "medembed_index_n_docs": (ctypes.c_int64, [_P]),
    "medembed_index_check_model": (ctypes.c_int, [_P, _P, ctypes.c_char_p, _SZ]),
    "medembed_search_opts_init": (None, [ctypes.POINTER(SearchOpts)]),
    "medembed_index_search_text": (ctypes.c_int, [_P, _P, ctypes.c_char_p,
                                                  ctypes.POINTER(EmbedOpts),
                                                  ctypes.POINTER(SearchOpts), ctypes.POINTER(_P),
                                                  ctypes.c_char_p, _SZ]),
    "medembed_hits_count": (_I32, [_P]),
    "medembed_hits_id": (ctypes.c_char_p, [_P, _I32]),
    "medembed_hits_score": (ctypes.c_float, [_P, _I32]),
    "medembed_hits_chunk": (_I32, [_P, _I32, ctypes.POINTER(_I32), ctypes.POINTER(_I32)]),
    "medembed_hits_metadata": (ctypes.c_char_p, [_P, _I32]),
    "medembed_hits_components": (ctypes.c_int, [_P, _I32, ctypes.POINTER(_I32),
                                                ctypes.POINTER(ctypes.c_float),
                                                ctypes.POINTER(_I32),
                                                ctypes.POINTER(ctypes.c_float)]),
    "medembed_hits_free": (None, [_P]),
    "medembed_hits_rerank": (ctypes.c_int, [_P, _P, _P, ctypes.c_char_p, _I32, ctypes.c_uint32,
                                            ctypes.c_char_p, _SZ]),
    "medembed_hits_first_stage": (ctypes.c_int, [_P, _I32, ctypes.POINTER(_I32),
                                                 ctypes.POINTER(ctypes.c_float)]),
    "medembed_rank_order": (ctypes.c_int, [_P, _I32, _P]),
    "medembed_model_kind": (_I32, [_P]),
    "medembed_model_kind_name": (ctypes.c_char_p, [_I32]),
    "medembed_model_num_labels": (_I32, [_P]),
    "medembed_ctx_rerank": (ctypes.c_int, [_P, ctypes.c_char_p, _SZ,
                                           ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(_SZ),
                                           _I32, ctypes.c_uint32, ctypes.c_void_p]),
    "medembed_index_doc_text": (ctypes.c_int, [_P, ctypes.c_char_p,
                                               ctypes.POINTER(ctypes.c_void_p),
                                               ctypes.POINTER(_SZ), ctypes.c_char_p, _SZ]),
}


def _candidates():
    env = os.environ.get("MEDEMBED_LIB")
    if env:
        yield env, "MEDEMBED_LIB"
        return  # an explicit choice is never silently replaced by another library
    yield os.path.join(_HERE, "libmedembed.so"), "package"
    yield os.path.join(_REPO, "build", "libmedembed.so"), "source tree"


def _try_make():
    """Runs `make lib` in the source tree when this package lives in one; returns the .so path."""
    if not os.path.isfile(os.path.join(_REPO, "Makefile")) or \
            not os.path.isfile(os.path.join(_REPO, "include", "medembed.h")):
        return None
    r = subprocess.run(["make", "-C", _REPO, "-j2", "lib"], capture_output=True, timeout=900)
    so = os.path.join(_REPO, "build", "libmedembed.so")
    if r.returncode != 0 or not os.path.isfile(so):
        tail = r.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise LibraryNotFound("building libmedembed with `make lib` in %s failed: %s"
                              % (_REPO, " | ".join(tail)))
    return so


def _declare(lib):
    for name, (res, args) in _PROTOS.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


def lib():
    """The loaded library (loaded on first use, once per process)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = None
        for p, origin in _candidates():
            if os.path.isfile(p):
                path = p
                break
            if origin == "MEDEMBED_LIB":
                raise LibraryNotFound("MEDEMBED_LIB=%s: no such file" % p)
        if path is None:
            path = _try_make()
        if path is None:
            path = ctypes.util.find_library("medembed")
        if path is None:
            raise LibraryNotFound(
                "libmedembed.so not found: set MEDEMBED_LIB=/path/to/libmedembed.so, "
                "reinstall the package from a built source tree, or run `make` in the repo")
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryNotFound("cannot load %s: %s" % (path, e)) from None
        try:
            _declare(handle)
        except AttributeError as e:
            raise LibraryNotFound("%s is not a compatible libmedembed: %s" % (path, e)) from None
        _lib, _lib_path = handle, path
        return _lib


def lib_path():
    lib()
    return _lib_path


def status_str(code):
    return lib().medembed_status_str(int(code)).decode("utf-8", "replace")
