"""The library's embed pipeline in two steps (medembed_tokens_*, medembed_ctx_embed_tokens),
called through ctypes as a C program would.

References: `medembed tokenize --no-truncate` ids (checked against Hugging Face tokenizers
elsewhere) cut by hand as HF's right and left truncation cut them; `medembed embed` vectors;
the prompt rule's table written out here. Bad arguments must give the documented status and
a message, never a crash.
"""
import ctypes

import numpy as np
import pytest

import pkg_support as ps

medembed = ps.import_medembed()
from medembed import _lib  # noqa: E402  (bound to the build under test by import_medembed)

OK, ERR_ARG, ERR_TOO_LONG, ERR_NOT_FOUND = 0, -1, -6, -7
F_NO_TRUNCATE, F_TRUNCATE_LEFT, F_ALL_TOKENS = 0x2, 0x10, 0x20
PROMPTS = {"query": "query: ", "corpus": "corpus: ", "other": "other: "}
LONG = " ".join(["hypertension treated with ace inhibitors"] * 40)
TEXTS = ["aspirin for stroke", "", LONG, "statins lower ldl"]

_P = ctypes.c_void_p
_PROTOS = {
    "medembed_tokens_create": (ctypes.c_int, [_P, ctypes.POINTER(_P)]),
    "medembed_tokens_free": (None, [_P]),
    "medembed_tokens_clear": (None, [_P]),
    "medembed_tokens_add_texts": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_char_p),
                                                 ctypes.POINTER(ctypes.c_size_t), ctypes.c_int32,
                                                 ctypes.POINTER(_lib.EmbedOpts), ctypes.c_char_p,
                                                 ctypes.c_size_t]),
    "medembed_tokens_add_ids": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_int32),
                                               ctypes.c_int32, ctypes.c_char_p,
                                               ctypes.c_size_t]),
    "medembed_tokens_append": (ctypes.c_int, [_P, _P, ctypes.c_int32, ctypes.c_int32]),
    "medembed_tokens_count": (ctypes.c_int32, [_P]),
    "medembed_tokens_ids": (ctypes.POINTER(ctypes.c_int32),
                            [_P, ctypes.c_int32, ctypes.POINTER(ctypes.c_int32)]),
    "medembed_tokens_info": (ctypes.c_int, [_P, ctypes.c_int32, ctypes.POINTER(_lib.TextInfo)]),
    "medembed_ctx_embed_tokens": (ctypes.c_int, [_P, _P, ctypes.c_uint32, ctypes.c_int32,
                                                 ctypes.c_void_p]),
    "medembed_model_prompt_count": (ctypes.c_int32, [_P]),
    "medembed_model_prompt_name": (ctypes.c_char_p, [_P, ctypes.c_int32]),
    "medembed_model_default_prompt_name": (ctypes.c_char_p, [_P]),
    "medembed_model_include_prompt": (ctypes.c_int32, [_P]),
}


@pytest.fixture(scope="module")
def L():
    lib = _lib.lib()
    for name, (res, args) in _PROTOS.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


@pytest.fixture(scope="module")
def pm(tmp_path_factory):
    return ps.make_model(str(tmp_path_factory.mktemp("pipe") / "m"), seed=7, prompts=PROMPTS,
                         default_prompt_name="other")


@pytest.fixture(scope="module")
def model(pm):
    m = medembed.Model(pm)
    yield m
    m.close()


class Set:
    def __init__(self, L, model):
        self.L, self.p = L, _P()
        assert L.medembed_tokens_create(model._ptr(), ctypes.byref(self.p)) == OK

    def add(self, texts, flags=0, prompt=None, prompt_name=None, role=0, max_length=0):
        o = _lib.EmbedOpts()
        self.L.medembed_embed_opts_init(ctypes.byref(o))
        o.flags, o.role, o.max_length = flags, role, max_length
        o.prompt = None if prompt is None else prompt.encode()
        o.prompt_name = None if prompt_name is None else prompt_name.encode()
        raw = [t.encode() for t in texts]
        arr = (ctypes.c_char_p * len(raw))(*raw)
        lens = (ctypes.c_size_t * len(raw))(*[len(b) for b in raw])
        err = ctypes.create_string_buffer(512)
        rc = self.L.medembed_tokens_add_texts(self.p, arr, lens, len(raw), ctypes.byref(o), err,
                                              512)
        return rc, err.value.decode()

    def count(self):
        return self.L.medembed_tokens_count(self.p)

    def ids(self, i):
        n = ctypes.c_int32()
        p = self.L.medembed_tokens_ids(self.p, i, ctypes.byref(n))
        return None if not p else [p[k] for k in range(n.value)]

    def info(self, i):
        ti = _lib.TextInfo()
        assert self.L.medembed_tokens_info(self.p, i, ctypes.byref(ti)) == OK
        return ti

    def embed(self, model, flags=0, budget=0):
        out = np.empty((self.count(), model.dim), np.float32)
        ctx = model._ctx()
        with ctx.lock:
            rc = self.L.medembed_ctx_embed_tokens(ctx.ptr, self.p, flags, budget,
                                                  out.ctypes.data)
        return rc, out

    def free(self):
        self.L.medembed_tokens_free(self.p)


def test_prompt_accessors(L, model):
    p = model._ptr()
    names = [L.medembed_model_prompt_name(p, i).decode()
             for i in range(L.medembed_model_prompt_count(p))]
    assert names == list(PROMPTS)
    assert L.medembed_model_prompt_name(p, 3) is None and L.medembed_model_prompt_name(p, -1) is None
    assert L.medembed_model_default_prompt_name(p) == b"other"
    assert L.medembed_model_include_prompt(p) == 1


@pytest.mark.parametrize("role,want", [(0, "other"), (1, "query"), (2, "corpus")])
def test_role_picks_the_prompt(L, model, pm, role, want):
    s = Set(L, model)
    assert s.add(TEXTS[:1], role=role) == (OK, "")
    ref = ps.cli_tokenize(pm, [PROMPTS[want] + TEXTS[0]])[0]
    assert s.ids(0) == ref
    s.free()


def test_truncation_sides_and_all_tokens(L, model, pm):
    full = ps.cli_tokenize(pm, [PROMPTS["other"] + LONG], ["--no-truncate"])[0]
    mx = model.max_length
    assert len(full) > mx
    s = Set(L, model)
    assert s.add([LONG])[0] == OK
    assert s.add([LONG], flags=F_TRUNCATE_LEFT)[0] == OK
    assert s.add([LONG], flags=F_ALL_TOKENS)[0] == OK
    assert s.add([LONG], max_length=20)[0] == OK
    assert s.ids(0) == full[:mx - 1] + full[-1:]            # HF right truncation
    assert s.ids(1) == full[:1] + full[-(mx - 1):]          # HF left truncation
    assert s.ids(2) == full
    assert s.ids(3) == full[:19] + full[-1:]
    ti = s.info(1)
    assert (ti.n_tokens, ti.n_untruncated, ti.truncated) == (mx, len(full), 1)
    # a set holding an over-limit sequence cannot be embedded
    rc, _ = s.embed(model)
    assert rc == ERR_TOO_LONG
    s.free()


def test_embed_tokens_equals_embed_and_append_keeps_bits(L, model, pm, tmp_path):
    want = ps.cli_embed_npy(pm, TEXTS, tmp_path)
    a, b = Set(L, model), Set(L, model)
    assert a.add(TEXTS)[0] == OK
    rc, got = a.embed(model, budget=64)
    assert rc == OK and got.tobytes() == want.tobytes()
    # a batch made of pieces of other sets, as the server's batcher makes it
    assert L.medembed_tokens_append(b.p, a.p, 2, 2) == OK
    assert L.medembed_tokens_append(b.p, a.p, 0, 1) == OK
    assert [b.ids(i) for i in range(3)] == [a.ids(2), a.ids(3), a.ids(0)]
    rc, got = b.embed(model)
    assert rc == OK and got.tobytes() == want[[2, 3, 0]].tobytes()
    L.medembed_tokens_clear(b.p)
    assert b.count() == 0 and b.ids(0) is None
    a.free()
    b.free()


def test_bad_arguments(L, model, tmp_path):
    s = Set(L, model)
    rc, msg = s.add(["x"], prompt="a", prompt_name="query")
    assert rc == ERR_ARG and "not both" in msg
    rc, msg = s.add(["x"], prompt_name="nope")
    assert rc == ERR_NOT_FOUND and '"nope"' in msg and "query, corpus, other" in msg
    rc, msg = s.add(["ok", LONG], flags=F_NO_TRUNCATE)
    assert rc == ERR_TOO_LONG and msg.startswith("text 1:")
    assert s.count() == 0  # a failed call leaves the set unchanged
    other = ps.make_model(str(tmp_path / "other"), seed=8)
    with medembed.Model(other) as m2:
        t = Set(L, m2)
        assert t.add(["x"])[0] == OK
        assert L.medembed_tokens_append(s.p, t.p, 0, 1) == ERR_ARG  # another model's set
        rc, _ = t.embed(model)
        assert rc == ERR_ARG
        t.free()
    assert s.add(["a", "b"])[0] == OK
    for first, count in [(-1, 1), (0, 3), (2, 1), (1, -1)]:
        assert L.medembed_tokens_append(s.p, s.p, first, count) == ERR_ARG
    ids = (ctypes.c_int32 * 3)(2, 10**6, 3)
    err = ctypes.create_string_buffer(256)
    assert L.medembed_tokens_add_ids(s.p, ids, 3, err, 256) == ERR_ARG
    assert b"outside the vocabulary" in err.value
    assert L.medembed_tokens_add_ids(s.p, ids, 0, err, 256) == ERR_TOO_LONG
    assert s.count() == 2
    s.free()
