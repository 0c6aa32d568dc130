"""Checks the test oracles themselves before they judge the engine.

* numpy_ref (float64 BERT) against ../shared/golden/embeddings (an independent float64 PyTorch
  implementation): embedding, CLS vector and whole hidden state.
* numpy_ref's safetensors reader on every layout gen_model writes (dtypes, bert. prefix,
  position_ids, shards).
* wordpiece_ref (ASCII tokenizer) against the golden ids of Hugging Face's Rust tokenizers, and
  gen_model's tokenizer.json against the Rust library itself when it is installed.
"""
import json
import math
import os
import random
import subprocess

import numpy as np
import pytest

import gen_model
import numpy_ref
import wordpiece_ref
from conftest import clean_env, need_shared, peer_python, read_jsonl

GOLDEN = ["tiny-cls-f32", "tiny-cls-f16", "tiny-cls-bf16", "tiny-mean-128", "tiny-max-64"]
TOL = 1e-6  # the two float64 references agree to ~1e-13; 1e-6 leaves room for nothing else


@pytest.mark.parametrize("name", GOLDEN)
def test_reference_matches_golden(name):
    d = need_shared("golden", "embeddings", name)
    m = numpy_ref.load(d)
    rows = read_jsonl(os.path.join(d, "golden.jsonl"))
    if name in ("tiny-cls-f16", "tiny-cls-bf16"):
        # the weight dtype is what differs from tiny-cls-f32; the long abstracts add nothing
        rows = [r for i, r in enumerate(rows) if i < 4 or len(r["ids"]) < 64]
    worst = {"embedding": 0.0, "cls": 0.0, "hidden": 0.0}
    n_hidden = 0
    for r in rows:
        assert len(r["ids"]) <= m.max_length
        h = numpy_ref.hidden(m, r["ids"])
        e = numpy_ref.embed(m, r["ids"])
        worst["embedding"] = max(worst["embedding"], float(np.abs(e - r["embedding"]).max()))
        worst["cls"] = max(worst["cls"], float(np.abs(h[0] - r["cls"]).max()))
        if "hidden" in r:
            n_hidden += 1
            worst["hidden"] = max(worst["hidden"], float(np.abs(h - np.array(r["hidden"])).max()))
    assert n_hidden >= 1
    assert max(worst.values()) < TOL, worst


def test_reference_reads_folder_config():
    expect = {"tiny-cls-f32": ("cls", True, 512), "tiny-mean-128": ("mean", False, 128),
              "tiny-max-64": ("max", True, 64)}
    for name, (pooling, normalize, max_length) in expect.items():
        m = numpy_ref.load(need_shared("golden", "embeddings", name))
        assert (m.pooling, m.normalize, m.max_length) == (pooling, normalize, max_length)


def test_golden_truncation_is_cls_prefix_sep():
    """The golden ids follow sentence-transformers truncation, which the CLI tests assume."""
    d = need_shared("golden", "embeddings", "tiny-max-64")
    full = {r["text"]: r["ids"] for r in read_jsonl(need_shared("golden", "tokenizer",
                                                                "pubmedqa.jsonl"))}
    n = 0
    for r in read_jsonl(os.path.join(d, "golden.jsonl")):
        if r["text"] in full and len(full[r["text"]]) > 64:
            assert r["ids"] == full[r["text"]][:63] + [102]
            n += 1
    assert n >= 4


# --------------------------------------------------------------------------- safetensors reader

def test_safetensors_dtypes_roundtrip(tmp_path):
    w = gen_model.make_weights(2, 32, 4, 64, 50, 16, 2, seed=3, std=0.3)
    for dtype in ("f32", "f16", "bf16"):
        p = str(tmp_path / ("%s.safetensors" % dtype))
        gen_model.write_safetensors(p, w, dtype)
        got = numpy_ref.read_safetensors(p)
        assert sorted(got) == sorted(w)
        for name, a in w.items():
            g = got[name]
            assert g.dtype == np.float64 and g.shape == a.shape
            if dtype == "f32":
                assert np.array_equal(g, a.astype(np.float64))
            elif dtype == "f16":
                assert np.array_equal(g, a.astype(np.float16).astype(np.float64))
            else:
                # bf16 keeps float32's top 16 bits: low bits zero, relative error <= 2^-9
                bits = g.astype(np.float32).view(np.uint32)
                assert not np.any(bits & 0xFFFF)
                assert np.all(np.abs(g - a) <= np.abs(a) * 2.0 ** -8)


def test_layouts_give_identical_reference(models):
    base = dict(hidden=32, heads=4, ffn=64, seed=11)
    ids = [2, 40, 41, 42, 100, 3]
    plain = numpy_ref.load(models.get(**base)["dir"])
    h0 = numpy_ref.hidden(plain, ids)
    for extra in (dict(bert_prefix=True, position_ids=True), dict(shards=2),
                  dict(shards=2, bert_prefix=True, extra_head=True)):
        m = numpy_ref.load(models.get(**dict(base, **extra))["dir"])
        assert np.array_equal(numpy_ref.hidden(m, ids), h0), extra
    # f16 storage changes the values a little, not the meaning
    m16 = numpy_ref.load(models.get(**dict(base, dtype="f16"))["dir"])
    diff = np.abs(numpy_ref.hidden(m16, ids) - h0).max()
    assert 0 < diff < 0.05


def test_pooling_relations(models):
    """mean_sqrt_len = mean * sqrt(n); max >= every token; cls = token 0 (no normalize)."""
    ids = [2, 50, 60, 70, 80, 3]
    got = {}
    for pooling in gen_model.POOLING_MODES:
        d = models.get(hidden=32, heads=4, ffn=64, seed=5, pooling=pooling, normalize=False)["dir"]
        m = numpy_ref.load(d)
        assert m.pooling == pooling and not m.normalize
        got[pooling] = numpy_ref.embed(m, ids)
    h = numpy_ref.hidden(m, ids)
    assert np.allclose(got["mean_sqrt_len"], got["mean"] * math.sqrt(len(ids)), atol=1e-12)
    assert np.allclose(got["cls"], h[0], atol=0)
    assert np.all(got["max"] >= h - 1e-15) and np.all(np.isin(got["max"], h))
    n = numpy_ref.embed(m, ids, normalize=True)
    assert abs(np.linalg.norm(n) - 1.0) < 1e-12


def test_gelu_is_exact_erf():
    x = np.linspace(-6, 6, 1201)
    want = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])
    assert np.abs(numpy_ref._gelu(x) - want).max() < 1e-15


def test_reference_rejects_broken_files(tmp_path):
    d = str(tmp_path / "m")
    gen_model.make_model(d, hidden=32, heads=4, ffn=64)
    st = os.path.join(d, "model.safetensors")
    header, data = gen_model.read_header(st)
    name = "encoder.layer.0.output.dense.weight"
    header[name]["data_offsets"][1] += 4
    gen_model.write_raw(st, header, data)
    with pytest.raises(numpy_ref.RefError, match=name):
        numpy_ref.load(d)


# --------------------------------------------------------------------------- tokenizer oracles

def _bert_vocab():
    p = need_shared("reference", "bert-base-uncased", "vocab.txt")
    with open(p, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def test_ascii_tokenizer_matches_golden_ids():
    vocab = {t: i for i, t in enumerate(_bert_vocab())}
    n = 0
    for fname in ("edge_cases.jsonl", "pubmedqa.jsonl"):
        for r in read_jsonl(need_shared("golden", "tokenizer", fname)):
            try:
                ids = wordpiece_ref.encode(r["text"], vocab)
            except wordpiece_ref.NotAscii:
                continue
            assert ids == r["ids"], r["text"]
            n += 1
    assert n > 1000


def _random_ascii_texts(n, seed):
    rng = random.Random(seed)
    alpha = [chr(c) for c in range(32, 127)] + ["\t", "\n", "\r", "\x00", "\x01", "\x0b", "\x7f"]
    texts = ["", "Hello, World!", "patients were randomized [SEP] x", "a" * 100, "a" * 101,
             "PUBMED-based studies' results (n=20)."]
    for _ in range(n):
        k = rng.randint(0, 60)
        texts.append("".join(rng.choice(alpha) if rng.random() < 0.4
                             else rng.choice(gen_model.WORDS + [" "]) for _ in range(k)))
    return texts


HF_TOKENIZE = r"""
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
for line in sys.stdin:
    print(json.dumps({"ids": tok.encode(json.loads(line)).ids}))
"""


@pytest.mark.parametrize("cased", [False, True])
def test_gen_model_tokenizer_json_loads_in_hf_tokenizers(tmp_path, cased):
    """gen_model's tokenizer.json, read by Hugging Face's tokenizers (PyPI, the Rust library
    sentence-transformers uses), gives the ids of wordpiece_ref."""
    py = peer_python("tokenizers")
    d = str(tmp_path / "m")
    info = gen_model.make_model(d, cased=cased)
    texts = _random_ascii_texts(150, seed=7 + cased)
    inp = "".join(json.dumps(t) + "\n" for t in texts).encode()
    r = subprocess.run([py, "-c", HF_TOKENIZE, os.path.join(d, "tokenizer.json")], input=inp,
                       capture_output=True, timeout=120, env=clean_env())
    assert r.returncode == 0, r.stderr.decode()
    got = [json.loads(line)["ids"] for line in r.stdout.decode().splitlines()]
    assert len(got) == len(texts)
    for t, ids in zip(texts, got):
        assert wordpiece_ref.encode(t, info["vocab"], lowercase=not cased) == ids, repr(t)


def test_gen_model_tokenizer_json_layout_matches_hf():
    """Same keys, nesting and value types as bert-base-uncased's tokenizer.json."""
    with open(need_shared("reference", "bert-base-uncased", "tokenizer.json"),
              encoding="utf-8") as f:
        ref = json.load(f)
    ours = gen_model.tokenizer_json(gen_model.make_vocab())

    def shape(o):
        if isinstance(o, dict):
            return {k: shape(v) for k, v in o.items()}
        if isinstance(o, list):
            return [shape(o[0])] if o else []
        return type(o).__name__

    ref["model"].pop("vocab")
    ours = dict(ours, model={k: v for k, v in ours["model"].items() if k != "vocab"})
    assert shape(ours) == shape(ref)
    assert list(ours) == list(ref) and list(ours["model"]) == list(ref["model"])


def test_gen_model_cli_writes_folder(tmp_path):
    d = str(tmp_path / "m")
    r = subprocess.run([os.environ.get("PYTHON", "/usr/bin/python3"), gen_model.__file__,
                        "--out", d, "--pooling", "max", "--dtype", "bf16", "--shards", "2",
                        "--prompt", "query=search: ", "--default-prompt", "query",
                        "--no-normalize", "--max-seq-length", "40"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    for f in ("config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
              "model-00002-of-00002.safetensors", "vocab.txt", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "modules.json",
              "1_Pooling/config.json", "sentence_bert_config.json",
              "config_sentence_transformers.json"):
        assert os.path.isfile(os.path.join(d, f)), f
    m = numpy_ref.load(d)
    assert (m.pooling, m.normalize, m.max_length) == ("max", False, 40)
    with open(os.path.join(d, "config_sentence_transformers.json")) as f:
        st = json.load(f)
    assert st["prompts"] == {"query": "search: "} and st["default_prompt_name"] == "query"
    vocab = open(os.path.join(d, "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and 200 < len(vocab) < 1000
