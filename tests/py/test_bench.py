"""`medembed bench`: the JSON contract other tools read, the corpus workload, bad input.

Timings themselves are never asserted (speed is measured by bench/, not by tests); what is
asserted is that the figures are consistent with each other and with independent counts:
tokens per second equals batch x seq over the median time, the corpus token count equals the
ids of `wordpiece_ref` (an independent WordPiece), and the JSON carries the field names the
speed issue fixed ("batch", "seq", "dtype", "threads", "tokens_per_s", "ms_median",
"ms_p90") plus the load time and peak RSS.
"""
import json
import os

import pytest

import gen_model
import wordpiece_ref

REQUIRED = ("batch", "seq", "dtype", "threads", "tokens_per_s", "ms_median", "ms_p90")


@pytest.fixture(scope="module")
def model(models):
    return models.get(seed=7, hidden=64, heads=4, ffn=128, layers=2)


def bench_json(cli, model_dir, args):
    r = cli.ok(["bench", "-m", model_dir, "--peak-seconds", "0", "--json"] + list(args))
    doc = json.loads(r.stdout.decode("utf-8"))
    assert list(doc) == ["results"]
    return doc["results"]


@pytest.mark.parametrize("dtype", ["f32", "bf16", "int8"])
def test_shapes_json_contract(cli, model, dtype):
    res = bench_json(cli, model["dir"], ["--shapes", "1x8,3x16,2x128", "--dtype", dtype,
                                         "--threads", "2", "--runs", "3", "--warmup", "1"])
    assert [(r["batch"], r["seq"]) for r in res] == [(1, 8), (3, 16), (2, 128)]
    for r in res:
        for k in REQUIRED:
            assert k in r, k
        assert r["dtype"] == dtype and r["threads"] == 2 and r["runs"] == 3
        assert r["workload"] == "shape" and r["engine"] == "medembed"
        assert 0 < r["ms_min"] <= r["ms_median"] <= r["ms_p90"]
        want = r["batch"] * r["seq"] / (r["ms_median"] * 1e-3)
        assert r["tokens_per_s"] == pytest.approx(want, rel=1e-4)
        assert r["seqs_per_s"] == pytest.approx(r["batch"] / (r["ms_median"] * 1e-3), rel=1e-4)
        assert r["load_s"] > 0
        # the process holds at least the weight file's worth of packed weights + scratch, and a
        # 2-layer 64-wide model has no business using a gigabyte
        wbytes = os.path.getsize(os.path.join(model["dir"], "model.safetensors"))
        assert wbytes / 2**20 < r["rss_peak_mb"] < 1024


def test_table_output_names_rss_and_load(cli, model):
    r = cli.ok(["bench", "-m", model["dir"], "--shapes", "2x8", "--runs", "1", "--warmup", "0",
                "--peak-seconds", "0", "--threads", "1"])
    out = r.stdout.decode("utf-8")
    assert "load" in out.splitlines()[0]
    assert any(line.startswith("shape") and line.split()[1:3] == ["2", "8"]
               for line in out.splitlines())
    assert "peak RSS" in out.splitlines()[-1]


def test_corpus_counts_tokens_like_wordpiece(cli, model, tmp_path):
    texts = [" ".join(gen_model.WORDS[:n]) for n in (0, 3, 17, 40, 200)]
    texts.append("Aspirin reduced the risk, (n=120)!")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": str(i), "title": "t", "text": t}) + "\n"
                              for i, t in enumerate(texts)))
    res = bench_json(cli, model["dir"], ["-i", str(corpus), "--runs", "2", "--warmup", "0",
                                         "--threads", "2", "--dtype", "bf16"])
    assert len(res) == 1
    r = res[0]
    ids = [wordpiece_ref.encode(t, model["vocab"], lowercase=True, max_length=128,
                                st_lower=True) for t in texts]
    assert max(len(s) for s in ids) == 128  # one text is truncated, as embed would
    assert r["workload"] == "corpus" and r["dtype"] == "bf16"
    assert r["docs"] == len(texts)
    assert r["tokens"] == sum(len(s) for s in ids)
    assert r["batch"] == len(texts)
    assert r["tokens_per_s"] == pytest.approx(r["tokens"] / (r["ms_median"] * 1e-3), rel=1e-4)


@pytest.mark.parametrize("args,code,msg", [
    (["--shapes", "0x5"], 2, "--shapes expects"),
    (["--shapes", "4x"], 2, "--shapes expects"),
    (["--shapes", "2x129"], 2, "longer than the model's 128 tokens"),
    (["--dtype", "fp64"], 2, "--dtype expects f32, bf16 or int8"),
    (["--runs", "0"], 2, "--runs expects"),
    (["-i", "/nonexistent/corpus.jsonl"], 1, "/nonexistent/corpus.jsonl: cannot open input"),
    (["extra"], 2, "unexpected argument"),
])
def test_bad_input_is_named(cli, model, args, code, msg):
    r = cli.run(["bench", "-m", model["dir"], "--peak-seconds", "0"] + args)
    assert r.returncode == code
    err = r.stderr.decode("utf-8")
    assert msg in err, err
    assert r.stdout.decode("utf-8").strip() == ""  # no half-printed table


def test_missing_model_is_named(cli, tmp_path):
    r = cli.run(["bench", "-m", str(tmp_path / "nope"), "--shapes", "1x8"])
    assert r.returncode == 1
    assert str(tmp_path / "nope") in r.stderr.decode("utf-8")
