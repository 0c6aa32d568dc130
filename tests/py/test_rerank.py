"""Cross-encoder reranking (`medembed rerank`, search --rerank) against independent references.

* numpy_ref (float64): token_type_ids, the pooler and the classification head on random
  weights (gen_model cross_encoder folders), fed the pair encodings of Hugging Face's
  `tokenizers` package (ce_ref.py, its own process);
* sentence-transformers 3.3.1's CrossEncoder.predict on the same folders (scores and ranking);
* pair truncation ("longest_first", both directions) against `tokenizers` on every length
  combination around the limit: a pair cut differently scores differently on random weights.
"""
import json
import os
import subprocess

import numpy as np
import pytest

import gen_model
import numpy_ref
from conftest import clean_env, peer_python, read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = gen_model.WORDS


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def ce_model(models, **kw):
    base = dict(cross_encoder=True, num_labels=1, max_seq_length=32,
                max_position_embeddings=48, seed=11)
    base.update(kw)
    return models.get(**base)


def hf_reference(tmp_path, model_dir, pairs, max_length, direction="right", st=False):
    py = peer_python("sentence_transformers" if st else "tokenizers")
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    out = tmp_path / "ref.npz"
    cmd = [py, os.path.join(HERE, "ce_ref.py"), model_dir, str(src), str(out),
           "--max-length", str(max_length), "--direction", direction] + (["--st"] if st else [])
    r = subprocess.run(cmd, capture_output=True, env=clean_env(), timeout=600)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
    z = np.load(out)
    res, off = {"pairs": []}, 0
    for n in z["lens"]:
        res["pairs"].append((z["ids"][off:off + n].tolist(), z["types"][off:off + n].tolist()))
        off += n
    for k in ("st_scores", "st_logits"):
        if k in z:
            res[k] = z[k]
    return res


def numpy_scores(models, model_dir, encoded, raw):
    ref = models.ref(model_dir)
    return np.array([numpy_ref.ce_score(ref, ids, types, raw=raw) for ids, types in encoded])


def rerank(cli, model_dir, query, texts, args=()):
    """Runs medembed rerank; returns scores in input order (and the printed order)."""
    inp = "".join(json.dumps({"text": t, "id": "d%d" % i}) + "\n" for i, t in enumerate(texts))
    r = cli.ok(["rerank", "-m", model_dir, "-q", query, "-i", "-"] + list(args), input=inp)
    recs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    scores = np.full(len(texts), np.nan)
    for rec in recs:
        assert rec["id"] == "d%d" % rec["index"]
        scores[rec["index"]] = rec["score"]
    return scores, [rec["index"] for rec in recs]


def test_scores_match_float64_reference(cli, models, tmp_path):
    """f32 scores (sigmoid and raw logits) equal the float64 reference on HF's encodings, for
    pairs under and over the limit; the printed order is by score."""
    m = ce_model(models)
    rng = np.random.default_rng(1)
    query = words(rng, 5)
    texts = [words(rng, int(n)) for n in (0, 1, 3, 8, 20, 27, 40, 90)] + ["x" * 50]
    enc = hf_reference(tmp_path, m["dir"], [[query, t] for t in texts], m["max_length"])
    assert any(len(ids) == m["max_length"] for ids, _ in enc["pairs"])  # truncation exercised
    for raw in (False, True):
        got, order = rerank(cli, m["dir"], query, texts, ["--raw-scores"] if raw else [])
        want = numpy_scores(models, m["dir"], enc["pairs"], raw)[:, 0]
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 if raw else 5e-6)
        assert order == sorted(range(len(texts)), key=lambda i: (-got[i], i))


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("dtype,tol,min_rho", [("bf16", 0.04, 0.95), ("int8", 0.06, 0.9)])
def test_low_precision_dtypes_track_reference(cli, models, tmp_path, dtype, tol, min_rho):
    """bf16 and int8 logits stay within a measured tolerance of the float64 reference, as a
    fraction of the logits' spread (random weights with std 0.3 amplify rounding; measured
    on a Zen 4: bf16 0.021, int8 0.028), and rank the candidates nearly as it does."""
    m = ce_model(models, hidden=64, heads=4, ffn=128, seed=12)
    rng = np.random.default_rng(2)
    query = words(rng, 6)
    texts = [words(rng, int(n)) for n in rng.integers(1, 40, 24)]
    enc = hf_reference(tmp_path, m["dir"], [[query, t] for t in texts], m["max_length"])
    want = numpy_scores(models, m["dir"], enc["pairs"], True)[:, 0]
    got, _ = rerank(cli, m["dir"], query, texts, ["--raw-scores", "--dtype", dtype])
    rel = np.abs(got - want).max() / (want.max() - want.min())
    rho = spearman(got, want)
    print("%s max |logit error| / spread %.4f, spearman %.4f" % (dtype, rel, rho))
    assert rel < tol and rho > min_rho
