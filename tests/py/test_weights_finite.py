"""NaN and infinity in the weights are refused at load, naming the tensor.

The damaged values are written into a gen_model folder's safetensors file by hand (the
header says where each tensor lies), so the reference is the file itself: the load must
fail with a non-zero exit (CLI) or an exception (Python), and the message must name each
damaged tensor, the kind of value and its element. A pack cache written for the intact
model must not let the damaged one through.
"""
import json
import os
import shutil
import struct

import numpy as np
import pytest

import gen_model


def poke(folder, edits):
    """Writes each (tensor-name suffix, element, value) into model.safetensors in place;
    returns the full tensor names."""
    path = os.path.join(folder, "model.safetensors")
    names = []
    with open(path, "r+b") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        for suffix, elem, value in edits:
            name = min(k for k in header if k.endswith(suffix))
            t = header[name]
            fmt, size = {"F32": ("<f", 4), "F16": ("<e", 2)}[t["dtype"]]
            f.seek(8 + hlen + t["data_offsets"][0] + size * elem)
            f.write(struct.pack(fmt, value))
            names.append(name)
    return names


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("finite") / "good")
    gen_model.make_model(d, seed=13)
    return d


def damaged(good, tmp_path, name="bad"):
    d = str(tmp_path / name)
    shutil.copytree(good, d)
    return d


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_nan_and_inf_are_refused_naming_the_tensors(cli, tmp_path, dtype):
    base = str(tmp_path / "base")
    gen_model.make_model(base, seed=14, dtype=dtype)
    bad = damaged(base, tmp_path)
    names = poke(bad, [("attention.output.dense.weight", 5, float("nan")),
                       ("embeddings.LayerNorm.bias", 3, float("inf"))])
    for args in (["info", "-m", bad], ["embed", "-m", bad]):
        r = cli.run(args, input="aspirin\n")
        err = r.stderr.decode()
        assert r.returncode == 1 and not r.stdout, err
        assert 'tensor "%s" holds NaN at element 5' % names[0] in err, err
        assert 'tensor "%s" holds infinity at element 3' % names[1] in err, err
    # the intact model loads: the check refuses only what is damaged
    cli.ok(["info", "-m", base])
    # -inf in a tensor the encoder does not use (MLM head) is refused too
    head = str(tmp_path / "head")
    gen_model.make_model(head, seed=14, dtype=dtype, extra_head=True)
    cli.ok(["info", "-m", head])
    (name,) = poke(head, [("predictions.bias", 0, float("-inf"))])
    r = cli.run(["info", "-m", head])
    assert r.returncode == 1 and ('tensor "%s" holds infinity' % name).encode() in r.stderr


def test_pack_cache_does_not_bypass_the_check(cli, good, tmp_path):
    cache = str(tmp_path / "cache")
    model = damaged(good, tmp_path, "m")
    env = {"MEDEMBED_PACK_CACHE": cache}
    r = cli.run(["info", "-m", model], env=env)
    assert r.returncode == 0, r.stderr
    pc = json.loads(r.stdout)["pack_cache"]
    if pc["status"] == "off":
        pytest.skip("no kernel level packs weights on this CPU: nothing is cached")
    r = cli.run(["info", "-m", model], env=env)
    assert json.loads(r.stdout)["pack_cache"]["status"] == "hit"
    # now damage a packed layer's weights in place, keeping the file's mtime
    st = os.stat(os.path.join(model, "model.safetensors"))
    (name,) = poke(model, [("intermediate.dense.weight", 7, float("nan"))])
    os.utime(os.path.join(model, "model.safetensors"), ns=(st.st_atime_ns, st.st_mtime_ns))
    r = cli.run(["info", "-m", model], env=env)
    assert r.returncode == 1 and ('tensor "%s" holds NaN at element 7' % name).encode() \
        in r.stderr, r.stderr
    assert os.listdir(cache)  # the cache file is still there: it did not decide


def test_python_load_raises(good, tmp_path):
    import pkg_support as ps
    medembed = ps.import_medembed()
    bad = damaged(good, tmp_path)
    (name,) = poke(bad, [("word_embeddings.weight", 11, float("nan"))])
    with pytest.raises(Exception, match='tensor "%s" holds NaN at element 11' % name):
        medembed.Model(bad)
    with medembed.Model(good) as m:
        assert np.all(np.isfinite(m.encode(["aspirin"])))
