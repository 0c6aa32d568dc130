"""Tests of the Python package medembed (bindings/python): Model.encode against the CLI,
quantization against an independent NumPy reimplementation of sentence-transformers'
quantize_embeddings, errors, threads, pickling and the LangChain-style methods."""
import math
import os
import pickle
import threading

import numpy as np
import pytest

import pkg_support as ps

medembed = ps.import_medembed()

TEXTS = [
    "Aspirin reduces the risk of stroke in patients with atrial fibrillation.",
    "statins lower LDL cholesterol",
    "",
    "Café résumé naïve — accents, CJK 漢字 and emoji 😀 go to [UNK] or pieces",
    "tabs\tand\nnewlines inside one text",
    "statins lower LDL cholesterol",  # a duplicate: same row bits
    " ".join(["hypertension treated with ace inhibitors"] * 120),  # over max_length: truncated
    "x",
    "The patient was given 12 mg of drug X, b.i.d., for 3 days (95% CI 1.2-3.4).",
]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg_models")
    return {
        "norm": ps.make_model(str(root / "norm")),
        "nonorm": ps.make_model(str(root / "nonorm"), normalize=False, seed=1),
        "prompts": ps.make_model(str(root / "prompts"), seed=2,
                                 prompts={"query": "query: ", "passage": "passage: "},
                                 default_prompt_name="query"),
    }


@pytest.fixture(scope="module")
def model(model_dirs):
    m = medembed.Model(model_dirs["norm"])
    yield m
    m.close()


# ---------------------------------------------------------------- equality with the CLI

def test_encode_equals_cli_bitwise(model, model_dirs, tmp_path):
    ref = ps.cli_embed_npy(model_dirs["norm"], TEXTS, tmp_path)
    got = model.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), model.dim)
    assert np.array_equal(got, ref)
    assert np.array_equal(got[1], got[5])
    # unit length: the model ends with a Normalize module
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batch_size_and_container_do_not_change_bits(model):
    ref = model.encode(TEXTS)
    for bs in (1, 2, 7, 1000):
        assert np.array_equal(model.encode(TEXTS, batch_size=bs), ref), bs
    assert np.array_equal(model.encode(tuple(TEXTS)), ref)
    assert np.array_equal(model.encode(np.array(TEXTS, dtype=object)), ref)
    assert np.array_equal(model.encode([t.encode("utf-8") for t in TEXTS]), ref)
    one = model.encode(TEXTS[0])
    assert one.shape == (model.dim,) and np.array_equal(one, ref[0])
    lst = model.encode(TEXTS, convert_to_numpy=False)
    assert isinstance(lst, list) and len(lst) == len(TEXTS)
    assert all(np.array_equal(a, b) for a, b in zip(lst, ref))
    assert model.encode([]).shape == (0, model.dim)
    assert model.encode([], precision="int8").dtype == np.int8
    assert model.encode([], precision="ubinary").shape == (0, (model.dim + 7) // 8)


def test_max_length_and_truncation_equal_cli(model, model_dirs, tmp_path):
    ref = ps.cli_embed_npy(model_dirs["norm"], TEXTS, tmp_path, ["--max-length", "8"])
    assert np.array_equal(model.encode(TEXTS, max_length=8), ref)
    m8 = medembed.Model(model_dirs["norm"], max_length=8)
    assert m8.max_length == 8
    assert np.array_equal(m8.encode(TEXTS), ref)
    assert not np.array_equal(model.encode(TEXTS), ref)  # truncation really changed something


def test_prompts_equal_cli(model_dirs, tmp_path):
    d = model_dirs["prompts"]
    m = medembed.Model(d)
    assert m.prompt("passage") == "passage: " and m.prompt() == "query: "
    default = ps.cli_embed_npy(d, TEXTS, tmp_path)
    passage = ps.cli_embed_npy(d, TEXTS, tmp_path, ["--prompt-name", "passage"])
    custom = ps.cli_embed_npy(d, TEXTS, tmp_path, ["--prompt", "summarize: "])
    assert np.array_equal(m.encode(TEXTS), default)  # default_prompt_name applies, as in ST
    assert np.array_equal(m.encode(TEXTS, prompt_name="query"), default)
    assert np.array_equal(m.encode(TEXTS, prompt_name="passage"), passage)
    assert np.array_equal(m.encode(TEXTS, prompt="passage: "), passage)
    assert np.array_equal(m.encode(TEXTS, prompt="summarize: "), custom)
    assert not np.array_equal(passage, default)
    # prompt="" means no prompt at all (ST: an explicit prompt overrides the default)
    assert not np.array_equal(m.encode(TEXTS, prompt=""), default)
    with pytest.raises(ValueError, match="nope"):
        m.encode(TEXTS, prompt_name="nope")
    # embed_query uses the "query" prompt, embed_documents the "passage" one (the library's
    # rule, as sentence-transformers' encode_query / encode_document)
    q = m.embed_query(TEXTS[0])
    assert isinstance(q, list) and all(isinstance(v, float) for v in q)
    assert np.array_equal(np.array(q, dtype=np.float32), default[0])
    assert np.array_equal(np.array(m.embed_documents(TEXTS), dtype=np.float32), passage)
    m.close()


def test_normalize_embeddings(model_dirs, tmp_path):
    d = model_dirs["nonorm"]
    m = medembed.Model(d)
    assert not m.has_normalize
    raw = ps.cli_embed_npy(d, TEXTS, tmp_path)
    assert np.array_equal(m.encode(TEXTS, normalize_embeddings=False), raw)
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # the model really is unnormalized
    got = m.encode(TEXTS)  # normalize_embeddings=True by default
    # reference: x / max(||x||, 1e-12) (torch.nn.functional.normalize), in float64
    ref = raw.astype(np.float64) / np.maximum(norms, 1e-12)[:, None]
    assert np.allclose(got, ref, rtol=0, atol=2e-7)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    m.close()


def test_tokenize_equals_cli(model, model_dirs):
    ids = ps.cli_tokenize(model_dirs["norm"], TEXTS)
    assert [model.tokenize_ids(t) for t in TEXTS] == ids
    long_ids = ps.cli_tokenize(model_dirs["norm"], TEXTS[6:7], ["--no-truncate"])[0]
    assert model.tokenize_ids(TEXTS[6], truncate=False) == long_ids
    assert len(long_ids) > model.max_length == len(ids[6])
    tok = model.tokenize(TEXTS)
    width = max(len(s) for s in ids)
    assert tok["input_ids"].shape == tok["attention_mask"].shape == (len(TEXTS), width)
    assert tok["input_ids"].dtype == np.int64
    pad = [i for i in range(model.info["vocab_size"]) if model.token(i) == "[PAD]"][0]
    for row, mask, s in zip(tok["input_ids"], tok["attention_mask"], ids):
        assert row[:len(s)].tolist() == s and (row[len(s):] == pad).all()
        assert mask.tolist() == [1] * len(s) + [0] * (width - len(s))
    assert not tok["token_type_ids"].any()
    assert model.token(ids[0][0]) == "[CLS]" and model.token(ids[0][-1]) == "[SEP]"


def test_encode_ids_matches_text_path(model):
    seqs = [model.tokenize_ids(t) for t in TEXTS]
    assert np.array_equal(model.encode_ids(seqs), model.encode(TEXTS))


def test_properties(model, model_dirs):
    info = model.info
    assert model.dim == info["dim"] == model.get_sentence_embedding_dimension()
    assert model.max_length == info["max_length"] == model.get_max_seq_length()
    assert model.pooling == info["pooling"] and len(model.fingerprint) == 64
    assert model.path == os.path.abspath(model_dirs["norm"])
    assert medembed.library_version().count(".") == 2


# ---------------------------------------------------------------- quantization

def ref_scalar_quantize(emb, precision, calibration=None, ranges=None):
    """Per-dimension scalar quantization written from the ST definition, element by element:
    step = (hi - lo) / 255 in float32; uint8 = trunc((x - lo) / step);
    int8 = trunc((x - lo) / step - 128)."""
    emb = np.asarray(emb, dtype=np.float32)
    if ranges is None:
        src = emb if calibration is None else np.asarray(calibration, dtype=np.float32)
        lo = [min(src[:, j]) for j in range(src.shape[1])]
        hi = [max(src[:, j]) for j in range(src.shape[1])]
    else:
        lo, hi = list(ranges[0]), list(ranges[1])
    out = np.zeros(emb.shape, dtype=np.int64)
    for j in range(emb.shape[1]):
        l32, h32 = np.float32(lo[j]), np.float32(hi[j])
        step = np.float32(h32 - l32) / np.float32(255)
        for i in range(emb.shape[0]):
            v = np.float32(np.float32(emb[i, j] - l32) / step)
            if precision == "int8":
                v = np.float32(v - np.float32(128))
            out[i, j] = math.trunc(float(v))
    if precision == "int8":
        return np.clip(out, -128, 127).astype(np.int8)
    return np.clip(out, 0, 255).astype(np.uint8)


def ref_binary(emb, signed):
    """Bit b of byte k is (x[8k + b] > 0), most significant bit first; int8 form is byte - 128."""
    n, d = emb.shape
    nbytes = (d + 7) // 8
    out = np.zeros((n, nbytes), dtype=np.int64)
    for i in range(n):
        for j in range(d):
            if emb[i, j] > 0:
                out[i, j // 8] |= 1 << (7 - j % 8)
    return (out - 128).astype(np.int8) if signed else out.astype(np.uint8)


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_encode_precision_matches_reference(model, precision):
    f32 = model.encode(TEXTS)
    q = model.encode(TEXTS, precision=precision)
    if precision.endswith("int8"):
        ref = ref_scalar_quantize(f32, precision)  # ranges from these embeddings, as in ST
    else:
        ref = ref_binary(f32, signed=precision == "binary")
    assert q.dtype == ref.dtype and q.shape == ref.shape
    assert np.array_equal(q, ref)
    if precision.endswith("int8"):
        # every dimension's min and max land on the extreme buckets
        lo, hi = (-128, 127) if precision == "int8" else (0, 255)
        assert (q.min(axis=0) == lo).all() and (q.max(axis=0) >= hi - 1).all()


def test_quantize_with_calibration_and_ranges(model):
    corpus = model.encode([t for _, t in ps.corpus_texts(limit=60)] + TEXTS, max_length=64)
    queries = model.encode(TEXTS[:4])
    for p in ("int8", "uint8"):
        got = medembed.quantize_embeddings(queries, p, calibration_embeddings=corpus)
        assert np.array_equal(got, ref_scalar_quantize(queries, p, calibration=corpus))
        rng = np.vstack([corpus.min(axis=0), corpus.max(axis=0)])
        assert np.array_equal(medembed.quantize_embeddings(queries, p, ranges=rng), got)
    # values outside the calibration range clip to the end buckets
    wide = np.vstack([queries, queries * 10, -queries * 10])
    q = medembed.quantize_embeddings(wide, "uint8", calibration_embeddings=queries)
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 255
    ref = ref_scalar_quantize(wide, "uint8", calibration=queries)
    assert np.array_equal(q, ref)
    # odd dimension: each row padded separately
    odd = np.array([[1, -1, 1, 0, 1, 1, 1, 1, 1, 1, -1]], dtype=np.float32)
    assert medembed.quantize_embeddings(odd, "ubinary").tolist() == [[0b10101111, 0b11000000]]
    assert np.array_equal(medembed.quantize_embeddings(odd, "binary"), ref_binary(odd, True))
    with pytest.raises(ValueError, match="float"):
        medembed.quantize_embeddings(q, "int8")
    with pytest.raises(ValueError, match="ranges must have shape"):
        medembed.quantize_embeddings(queries, "int8", ranges=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="precision"):
        medembed.quantize_embeddings(queries, "int4")


# ---------------------------------------------------------------- errors

def test_bad_paths(tmp_path, model_dirs):
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        medembed.Model(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="not-downloaded-org/missing.*medembed pull"):
        medembed.Model("not-downloaded-org/missing")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        medembed.Model("./relative/looking/path")
    f = tmp_path / "file.txt"
    f.write_text("x")
    # the library's resolver decides: a file is a bad argument (MEDEMBED_ERR_ARG)
    with pytest.raises(medembed.InvalidArgument, match="file.txt is a file"):
        medembed.Model(str(f))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(medembed.MedembedError, match="config.json") as ei:
        medembed.Model(str(empty))
    assert isinstance(ei.value, OSError) and ei.value.status < 0
    # a truncated weights file: the library's message names the file
    broken = tmp_path / "broken"
    ps.make_model(str(broken))
    st = broken / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[:len(data) // 2])
    with pytest.raises(medembed.MedembedError, match="safetensors") as ei:
        medembed.Model(str(broken))
    assert isinstance(ei.value, medembed.FormatError) or isinstance(ei.value, medembed.IOFailure)


def test_repo_ids_resolve_through_the_pull_cache(model_dirs, tmp_path, monkeypatch):
    home = tmp_path / "mhome"
    (home / "models" / "acme").mkdir(parents=True)
    os.symlink(model_dirs["norm"], str(home / "models" / "acme" / "med-tiny"))
    os.symlink(model_dirs["nonorm"], str(home / "models" / "acme" / "med-tiny@refs%2Fpr%2F1"))
    monkeypatch.setenv("MEDEMBED_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hub"))
    m = medembed.Model("acme/med-tiny")
    assert m.path.endswith(os.path.join("models", "acme", "med-tiny"))
    # the CLI's -m resolves the same id to the same folder, offline
    monkeypatch.setenv("MEDEMBED_OFFLINE", "1")
    assert np.array_equal(m.encode(TEXTS[:3]),
                          ps.cli_embed_npy("acme/med-tiny", TEXTS[:3], tmp_path))
    pr = medembed.Model("acme/med-tiny@refs/pr/1")
    assert not pr.has_normalize and pr.path.endswith("med-tiny@refs%2Fpr%2F1")
    with pytest.raises(FileNotFoundError, match="medembed pull acme/other"):
        medembed.Model("acme/other")


def test_bad_arguments(model, model_dirs):
    with pytest.raises(ValueError, match="dtype"):
        medembed.Model(model_dirs["norm"], dtype="float64")
    with pytest.raises(ValueError, match="threads"):
        medembed.Model(model_dirs["norm"], threads=-1)
    with pytest.raises(ValueError, match="max_length"):
        medembed.Model(model_dirs["norm"], max_length=1)
    with pytest.raises(TypeError, match=r"text 1: expected str, got NoneType \(a missing"):
        model.encode(["ok", None])
    with pytest.raises(TypeError, match="text 2: expected str, got float"):
        model.encode(["ok", "fine", float("nan")])
    with pytest.raises(TypeError, match="sentences must be"):
        model.encode(42)
    with pytest.raises(medembed.InvalidArgument, match="text 1: cannot be encoded as UTF-8"):
        model.encode(["ok", "lone \ud800 surrogate"])
    with pytest.raises(ValueError, match="precision"):
        model.encode(TEXTS, precision="int4")
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(TEXTS, batch_size=0)
    with pytest.raises(medembed.InvalidArgument, match="outside the vocabulary"):
        model.encode_ids([[1, 2, 10 ** 6]])


def test_too_long_error_names_global_index(model):
    texts = ["short"] * 40 + [TEXTS[6]] + ["short"] * 5
    with pytest.raises(medembed.TextTooLong, match=r"^text 40: \d+ tokens is over"):
        model.encode(texts, batch_size=16, truncate=False)
    # the model is still usable after an error
    assert np.array_equal(model.encode(["short"])[0], model.encode("short"))


def test_closed_model_raises(model_dirs):
    m = medembed.Model(model_dirs["norm"])
    m.encode(["before"])
    m.close()
    with pytest.raises(medembed.MedembedError, match="closed"):
        m.encode(["after"])
    m.close()  # idempotent


# ---------------------------------------------------------------- threads and processes

def test_four_threads_share_one_model(model):
    texts = [t for _, t in ps.corpus_texts(limit=32)] + TEXTS
    ref = model.encode(texts, max_length=64)  # 64 tokens keep the test fast on 2 cores
    barrier = threading.Barrier(4)
    results, ctx_ptrs, errors = {}, {}, []

    def work(k):
        try:
            barrier.wait(timeout=30)
            outs = []
            for rep in range(3):
                order = np.random.default_rng(k * 10 + rep).permutation(len(texts))
                emb = model.encode([texts[i] for i in order], batch_size=5 + k, max_length=64)
                back = np.empty_like(emb)
                back[order] = emb
                outs.append(back)
            ctx_ptrs[k] = model._ctx().ptr.value
            results[k] = outs
        except Exception as e:  # reported below; a thread's exception would be lost
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert len(set(ctx_ptrs.values())) == 4  # one context per thread
    for k in range(4):
        for emb in results[k]:
            assert np.array_equal(emb, ref), k


def test_calls_release_the_gil():
    import ctypes
    lib = medembed._lib.lib()
    # ctypes.CDLL (not PyDLL) drops the GIL around every foreign call; PyDLL functions carry
    # the PYTHONAPI flag, which keeps it.
    assert type(lib) is ctypes.CDLL
    for name in ("medembed_ctx_embed", "medembed_model_load", "medembed_tokenize"):
        assert not getattr(lib, name)._flags_ & ctypes._FUNCFLAG_PYTHONAPI, name


def test_pickle_reloads_once_per_process(model_dirs):
    m = medembed.Model(model_dirs["norm"], threads=1)
    before = medembed.load_count()
    a = pickle.loads(pickle.dumps(m))
    b = pickle.loads(pickle.dumps(m))
    assert a is b and a is not m  # both unpickles give the process's shared copy
    assert medembed.load_count() == before + 1
    assert medembed.get_model(model_dirs["norm"], threads=1) is a
    assert np.array_equal(a.encode(TEXTS), m.encode(TEXTS))
    m.close()


def test_embed_documents(model):
    docs = model.embed_documents(TEXTS[:3])
    assert isinstance(docs, list) and len(docs) == 3 and len(docs[0]) == model.dim
    assert np.array_equal(np.array(docs, dtype=np.float32), model.encode(TEXTS[:3]))


@pytest.mark.parametrize("name, init", [("LoadOpts", "medembed_load_opts_init"),
                                        ("EmbedOpts", "medembed_embed_opts_init")])
def test_option_structs_match_the_header(name, init):
    """Each ctypes option struct must be as large as the C struct: the library's
    *_init writes every C field, so a field missing from the Python mirror is a
    write past the ctypes buffer. The struct sits at the start of a larger buffer
    of guard bytes; init must leave every byte past sizeof(struct) alone."""
    import ctypes
    cls = getattr(medembed._lib, name)
    size = ctypes.sizeof(cls)
    buf = (ctypes.c_uint8 * (size + 64))(*([0xA5] * (size + 64)))
    getattr(medembed._lib.lib(), init)(ctypes.cast(buf, ctypes.POINTER(cls)))
    tail = bytes(buf[size:])
    assert tail == b"\xa5" * 64, "%s() wrote past ctypes.sizeof(%s) = %d: %s" % (
        init, name, size, tail[:16].hex())
    assert bytes(buf[:size]) != b"\xa5" * size  # and it did write the struct
