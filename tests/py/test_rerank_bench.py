"""bench/rerank_bench.py end to end on a tiny cross-encoder.

No timing is asserted (speed is measured by bench/, not by tests). What is asserted: the CPU
line comes first; every engine ran in every round; the ratios in the JSON equal those
recomputed here from the raw timings, against the faster peer of the same precision; and the
peers compute the same thing as medembed: the ONNX graph bench/peer_bench.py exports for a
cross-encoder (token types, pooler, classifier), fed Hugging Face `tokenizers`' pair encoding,
and sentence-transformers' CrossEncoder give medembed f32's scores within 1e-5.

Needs numpy, onnx, onnxruntime, tokenizers and sentence-transformers (scripts/venv.sh):
without them this skips, and fails under MEDEMBED_REQUIRE_PEERS=1.
"""
import json
import os
import statistics
import subprocess

import pytest

import gen_model
from conftest import REPO, clean_env, peer_python, sanitizer_build

ROUNDS = 2
ENGINES = ["medembed-f32", "medembed-int8", "ort-f32", "ort-int8", "st"]


def test_rerank_bench(cli, tmp_path):
    if sanitizer_build(cli.path):
        pytest.skip("a speed harness: not run against a sanitizer build (the cross-encoder "
                    "itself is checked under the sanitizers by test_rerank.py)")
    py = peer_python("numpy", "onnx", "onnxruntime", "tokenizers", "sentence_transformers")
    ce = str(tmp_path / "ce")
    gen_model.make_model(ce, layers=2, hidden=64, heads=4, ffn=128, max_seq_length=64,
                         max_position_embeddings=64, cross_encoder=True, seed=5)
    out = tmp_path / "r.json"
    env = clean_env(MEDEMBED_LIB=os.path.join(os.path.dirname(cli.path), "libmedembed.so"))
    r = subprocess.run([py, os.path.join(REPO, "bench", "rerank_bench.py"), "--model", ce,
                        "--queries", "2", "--candidates", "5", "--max-length", "64",
                        "--rounds", str(ROUNDS), "--dtypes", "f32,int8",
                        "--peers", "ort-f32,ort-int8,st", "--json", str(out)],
                       capture_output=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
    text = r.stdout.decode("utf-8")
    assert text.startswith("CPU: "), text[:200]
    doc = json.loads(out.read_text())
    assert doc["pairs"] == 10 and doc["rounds"] == ROUNDS
    assert sorted(doc["seconds"]) == sorted(ENGINES)
    for name in ENGINES:
        t = doc["seconds"][name]
        assert len(t) == ROUNDS and all(x > 0 for x in t), name
        assert doc["pairs_per_s"][name] == pytest.approx(10 / statistics.median(t))
        assert "| %s |" % name in text
    for dt, peers in (("f32", ["ort-f32"]), ("int8", ["ort-int8"])):
        got = doc["ratios"]["medembed-" + dt]
        best = max(peers, key=lambda p: doc["pairs_per_s"][p])
        per = [s / m for s, m in zip(doc["seconds"][best], doc["seconds"]["medembed-" + dt])]
        assert got["peer"] == best
        assert got["median"] == pytest.approx(statistics.median(per))
        assert (got["min"], got["max"]) == pytest.approx((min(per), max(per)))
    diff = doc["max_abs_diff_vs_f32"]
    assert diff["medembed-f32"] == 0
    assert diff["ort-f32"] < 1e-5 and diff["st"] < 1e-5, diff
    # int8 accuracy on real weights is measured in docs/SEARCH.md, not on random ones
    assert all(0 <= d < 1 for d in diff.values()), diff
