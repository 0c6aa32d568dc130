"""One identity per model (medembed_model_fingerprint, src/model/identity.h).

It must change with every input that changes the vectors, and only with those:
- one LayerNorm bias value (bytes a sampled hash skips), a shuffled vocabulary, a dropped
  Normalize module, another pooling mode, another prompt: each gives another identity, and an
  index built with the original model refuses the changed one by name;
- a copy of the folder elsewhere, another compute dtype, and a load through the pack cache: the same identity, and the index accepts the model.
The embeddings themselves are the independent check that each change matters: the changed
model's vectors differ from the original's (except for the prompt change, which changes them
only for texts embedded with that prompt).
"""
import json
import os
import shutil
import struct

import numpy as np
import pytest

import gen_model

TEXTS = ["aspirin for stroke prevention", "statins lower ldl cholesterol"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ident") / "base")
    gen_model.make_model(d, pooling="mean", seed=21, prompts={"query": "query: "})
    return d


def fp(cli, model, *args):
    return cli.info(model) if not args else json.loads(
        cli.ok(["info", "-m", model] + list(args)).stdout)


def variant(base, tmp_path, name, edit):
    d = str(tmp_path / name)
    shutil.copytree(base, d)
    edit(d)
    return d


def edit_json(path, fn):
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    obj = fn(obj) or obj
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def bump_layernorm_bias(d):
    """Adds 0.5 to one element of the last layer's output LayerNorm bias, in place."""
    path = os.path.join(d, "model.safetensors")
    with open(path, "r+b") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        name = max(k for k in header if k.endswith("output.LayerNorm.bias"))
        assert header[name]["dtype"] == "F32"
        off = 8 + hlen + header[name]["data_offsets"][0] + 4 * 7
        f.seek(off)
        (v,) = struct.unpack("<f", f.read(4))
        f.seek(off)
        f.write(struct.pack("<f", v + 0.5))


def shuffle_vocab(d):
    """Swaps two ordinary tokens' ids in vocab.txt and tokenizer.json."""
    with open(os.path.join(d, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")
    i, j = vocab.index("a"), vocab.index("s")
    vocab[i], vocab[j] = vocab[j], vocab[i]
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab))

    def swap(tj):
        v = tj["model"]["vocab"]
        v["a"], v["s"] = v["s"], v["a"]
    edit_json(os.path.join(d, "tokenizer.json"), swap)


CHANGES = {
    "layernorm_bias": bump_layernorm_bias,
    "vocab": shuffle_vocab,
    "no_normalize": lambda d: edit_json(
        os.path.join(d, "modules.json"),
        lambda mods: [m for m in mods if "Normalize" not in m.get("type", "")]),
    "pooling": lambda d: edit_json(
        os.path.join(d, "1_Pooling", "config.json"),
        lambda c: c.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)),
    "prompt": lambda d: edit_json(
        os.path.join(d, "config_sentence_transformers.json"),
        lambda c: c.update(prompts={"query": "search: "})),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_identity_covers_every_input(cli, base, tmp_path, change):
    other = variant(base, tmp_path, change, CHANGES[change])
    a, b = cli.info(base), cli.info(other)
    assert len(a["fingerprint"]) == 64 and a["fingerprint"] != b["fingerprint"]
    args = ["--prompt-name", "query"] if change == "prompt" else []
    va = cli.embed_npy(base, TEXTS, args, tmp_path, name="a.npy")
    vb = cli.embed_npy(other, TEXTS, args, tmp_path, name="b.npy")
    assert np.max(np.abs(va - vb)) > 1e-4  # the change matters, so the index must notice
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"_id": "d%d" % i, "text": t}) + "\n"
                            for i, t in enumerate(TEXTS)))
    db = tmp_path / "i.db"
    cli.ok(["index", "build", "-m", base, "-i", docs, "-o", db, "--no-chunk"])
    r = cli.run(["search", "-m", other, "--index", db, "-q", "aspirin"])
    assert r.returncode != 0 and b"model mismatch" in r.stderr, r.stderr
    if change != "pooling":  # pooling is named as such, before the identity
        assert a["fingerprint"][:12].encode() in r.stderr
    # adding with the changed model is refused too, and adds nothing
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"_id": "x", "text": "heparin"}) + "\n")
    r = cli.run(["index", "add", "-m", other, "--index", db, "-i", more])
    assert r.returncode != 0 and b"model mismatch" in r.stderr, r.stderr
    assert json.loads(cli.ok(["index", "info", "--index", db]).stdout)["n_docs"] == len(TEXTS)
    cli.ok(["search", "-m", base, "--index", db, "-q", "aspirin"])


def test_identity_ignores_load_settings_and_location(cli, base, tmp_path):
    want = cli.info(base)["fingerprint"]
    copy = str(tmp_path / "elsewhere" / "copy")
    shutil.copytree(base, copy)
    assert cli.info(copy)["fingerprint"] == want
    for args in (["--dtype", "bf16"], ["--dtype", "int8"]):
        assert fp(cli, base, *args)["fingerprint"] == want, args
    pc = str(tmp_path / "pc")
    for _ in range(2):  # the first load writes the pack cache file, the second maps it
        r = cli.run(["info", "-m", base], env={"MEDEMBED_PACK_CACHE": pc})
        assert r.returncode == 0
        assert json.loads(r.stdout)["fingerprint"] == want
    assert json.loads(r.stdout)["pack_cache"]["status"].startswith("hit"), r.stdout
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"_id": "d", "text": TEXTS[0]}) + "\n")
    db = tmp_path / "i.db"
    cli.ok(["index", "build", "-m", base, "-i", docs, "-o", db, "--no-chunk"])
    cli.ok(["search", "-m", copy, "--index", db, "-q", "aspirin"])
    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    assert info["model"]["weights_hash"] == want
