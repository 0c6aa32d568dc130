"""The packed-weights cache (MEDEMBED_PACK_CACHE, medembed_load_opts.pack_cache).

A load with a cache directory packs the weights as without one and writes them to a file there;
a later load maps that file instead. The tests check, through the CLI:
- the results with the cache (written, then hit) are bit-identical to a load without one, for
  every dtype and every SIMD level this CPU runs, and the f32 ones match the NumPy reference;
- the file has the layout src/model/packcache.h describes (header, table,
  checksum recomputed here independently);
- a damaged, truncated or foreign file, or changed weights, is never used: the model is packed
  again, the results stay right, and the file is rewritten;
- a cache directory that cannot be created costs only the cache; the scalar level, which reads
  the weights unpacked, has none;
- a new file removes the files it makes stale (same model folder, level and dtype, another
  key; a killed writer's old temporary file) and nothing else;
- the Python package's Model(pack_cache=...) uses the directory it is given.
"""
import json
import os
import re
import shutil
import struct
import time

import numpy as np
import pytest

import numpy_ref
from conftest import cpu_flags

TEXTS = ["", "aspirin and stroke", "Patients with acute myocardial infarction (n=120).",
         "BP 140/90 mmHg, HR 110 bpm; SpO2 92% on RA.", "x " * 40]
M64 = 2 ** 64 - 1
ALIGN = 4096


# amx-emu: the AMX kernels on emulated tiles, which every AVX-512 CPU runs
LEVELS = [isa for isa, flag in (("avx2", "avx2"), ("avx512", "avx512f"), ("amx", "amx_tile"),
                                ("amx-emu", "avx512f")) if flag in cpu_flags()]


def level(isa):
    """The LEVEL part of a cache file's name: the kernel level and the CPU features in the key."""
    f = cpu_flags()
    return isa + ("+bf16" if "avx512_bf16" in f else "") + ("+vnni" if "avx512_vnni" in f else "")


@pytest.fixture()
def model(models, tmp_path):
    """A private copy of a small model (the tests change its files' times)."""
    src = models.get(hidden=64, heads=4, ffn=256, layers=2, seed=7)["dir"]
    dst = str(tmp_path / "model")
    shutil.copytree(src, dst)
    return dst


def embed(cli, model, cache, dtype="f32", isa=None):
    env = {"MEDEMBED_PACK_CACHE": cache}
    if isa:
        env["MEDEMBED_ISA"] = isa
    r = cli.run(["embed", "-m", model, "--input-format", "jsonl", "--dtype", dtype],
                cli.jsonl_input(TEXTS), env=env)
    assert r.returncode == 0, r.stderr.decode()
    return [json.loads(x)["embedding"] for x in r.stdout.decode().splitlines()]


def status(cli, model, cache, isa=None, dtype="f32"):
    env = {"MEDEMBED_PACK_CACHE": cache}
    if isa:
        env["MEDEMBED_ISA"] = isa
    r = cli.run(["info", "-m", model, "--dtype", dtype], env=env)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout.decode())["pack_cache"]


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_levels_never_share_a_file(cli, model, tmp_path, dtype):
    """The AMX level packs the same bytes as AVX-512's wide blocks, yet each level keys its own
    file: one level's file is never another's hit, and writing one leaves the other's alone."""
    if "avx512f" not in cpu_flags():
        pytest.skip("this CPU lacks AVX-512: no AVX-512 or amx-emu level to compare")
    cache = str(tmp_path / "cache")
    want = embed(cli, model, "", dtype, "avx512")
    embed(cli, model, cache, dtype, "avx512")
    assert status(cli, model, cache, "avx512", dtype)["status"] == "hit"
    st = status(cli, model, cache, "amx-emu", dtype)
    assert st["status"] != "hit" and "-%s-%s.mepack" % (level("amx-emu"), dtype) in st["path"], st
    assert status(cli, model, cache, "amx-emu", dtype)["status"] == "hit"
    assert status(cli, model, cache, "avx512", dtype)["status"] == "hit"
    assert len(cache_files(cache)) == 2
    if dtype == "int8":  # exact sums on both: the same bits, from either file
        assert embed(cli, model, cache, dtype, "amx-emu") == want


def cache_files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []


def checksum(b):
    """The Fletcher-style sums in 8 lanes of model/checksum.c, written again from its description."""
    w = np.frombuffer(b, dtype="<u8").reshape(-1, 8)  # one row per 64-byte step
    with np.errstate(over="ignore"):  # uint64 sums wrap mod 2^64, as in C
        run = np.cumsum(w, axis=0, dtype=np.uint64)  # a after each step
        a = run[-1]
        s = np.sum(run, axis=0, dtype=np.uint64)
    h = 0xcbf29ce484222325
    for lane in range(8):
        h = ((h ^ int(a[lane])) * 0x100000001b3) & M64
        h = ((h ^ int(s[lane])) * 0x100000001b3) & M64
        h ^= h >> 29
    return h


def parse(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"MEPACK01"
    n, reserved = struct.unpack_from("<II", b, 8)
    file_bytes, csum, start = struct.unpack_from("<QQQ", b, 48)
    table = [struct.unpack_from("<QQ", b, 72 + 16 * i) for i in range(n)]
    return b, n, reserved, file_bytes, csum, start, table


@pytest.mark.parametrize("isa", LEVELS or ["none"])
@pytest.mark.parametrize("dtype", ["f32", "bf16", "int8"])
def test_written_then_hit_gives_the_same_bits(cli, model, tmp_path, isa, dtype):
    if isa == "none":
        pytest.skip("this CPU has neither AVX2 nor AVX-512: no level packs weights")
    cache = str(tmp_path / "cache")
    ref = embed(cli, model, "", dtype, isa)  # no cache
    assert status(cli, model, "", isa, dtype) == {"path": None, "status": "off"}
    first = embed(cli, model, cache, dtype, isa)
    files = cache_files(cache)
    assert len(files) == 1 and files[0].endswith("-%s-%s.mepack" % (level(isa), dtype)), files
    st = status(cli, model, cache, isa, dtype)
    assert st == {"path": files[0], "status": "hit"}
    second = embed(cli, model, cache, dtype, isa)
    assert first == ref and second == ref
    if dtype == "f32":  # and right, not only unchanged
        r = numpy_ref.load(model)
        ids = cli.tokenize(model, TEXTS)
        for got, seq in zip(second, ids):
            np.testing.assert_allclose(got, numpy_ref.embed(r, seq), atol=1e-5)


@pytest.mark.parametrize("big", [False, True])
def test_file_layout_and_checksum(cli, models, model, tmp_path, big):
    """big: a 6.3 MB file, over the 4 MiB pieces that the C checksum sums in parallel and
    then combines, against this one sequential definition."""
    if big:
        model = models.get(hidden=256, heads=4, ffn=1024, layers=2, seed=8)["dir"]
    cache = str(tmp_path / "cache")
    embed(cli, model, cache)
    (path,) = cache_files(cache)
    assert status(cli, model, cache)["status"] == "hit"
    b, n, reserved, file_bytes, csum, start, table = parse(path)
    assert n == 2 * 4 and reserved == 0  # 2 layers x (qkv, attention out, FFN in, FFN out)
    assert file_bytes == len(b) == os.path.getsize(path)
    assert start == (72 + 16 * n + ALIGN - 1) // ALIGN * ALIGN
    assert not any(b[72 + 16 * n:start])
    at = start
    for off, size in table:
        assert off == at and size > 0
        at = (off + size + ALIGN - 1) // ALIGN * ALIGN
    assert at == file_bytes
    assert checksum(b[start:]) == csum
    # the f32 blobs hold every weight: at least 4 bytes per parameter of each linear layer
    hidden, ffn = (256, 1024) if big else (64, 256)
    assert file_bytes > (4 << 20) if big else file_bytes < (4 << 20)
    for (off, size), (n_out, n_in) in zip(table, [(3 * hidden, hidden), (hidden, hidden),
                                                  (ffn, hidden), (hidden, ffn)] * 2):
        assert size >= 4 * n_out * n_in


def _damage(path, how):
    with open(path, "r+b") as f:
        b = bytearray(f.read())
        if how == "data":  # one bit deep inside the last layer
            b[len(b) - 5000] ^= 0x10
        elif how == "table":
            struct.pack_into("<Q", b, 72 + 8, struct.unpack_from("<Q", b, 72 + 8)[0] - 64)
        elif how == "magic":
            b[0:8] = b"NOTPACK!"
        elif how == "key":
            b[20] ^= 1
        f.seek(0)
        f.write(b)
        if how == "truncated":
            f.truncate(len(b) - ALIGN)


@pytest.mark.parametrize("how,reason", [
    ("data", "checksum mismatch"),
    ("table", "out of place"),
    ("magic", "not a medembed pack cache"),
    ("key", "key differs"),
    ("truncated", "truncated"),
])
def test_a_bad_file_is_ignored_and_rewritten(cli, model, tmp_path, how, reason):
    cache = str(tmp_path / "cache")
    ref = embed(cli, model, "")
    embed(cli, model, cache)
    (path,) = cache_files(cache)
    _damage(path, how)
    r = cli.run(["info", "-m", model], env={"MEDEMBED_PACK_CACHE": cache})
    st = json.loads(r.stdout.decode())["pack_cache"]["status"]
    assert st.startswith("miss: ") and reason in st and st.endswith("; written"), st
    assert status(cli, model, cache)["status"] == "hit"  # the rewrite is good
    assert embed(cli, model, cache) == ref
    _damage(path, how)
    assert embed(cli, model, cache) == ref  # a load that finds the damage still gets it right


def test_changed_weights_get_their_own_file(cli, model, tmp_path):
    cache = str(tmp_path / "cache")
    embed(cli, model, cache)
    (old,) = cache_files(cache)
    # new weights in place: every value scaled, the header (shapes, offsets) the same
    st_path = os.path.join(model, "model.safetensors")
    with open(st_path, "r+b") as f:
        b = bytearray(f.read())
        hlen = struct.unpack_from("<Q", b, 0)[0]
        header = json.loads(b[8:8 + hlen])
        for name, t in header.items():
            if name == "__metadata__" or t["dtype"] != "F32":
                continue
            lo, hi = t["data_offsets"]
            v = np.frombuffer(bytes(b[8 + hlen + lo:8 + hlen + hi]), dtype="<f4") * 0.5
            b[8 + hlen + lo:8 + hlen + hi] = v.astype("<f4").tobytes()
        f.seek(0)
        f.write(b)
    st = os.stat(st_path)
    os.utime(st_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert status(cli, model, cache)["status"] == "miss: no file yet; written; removed 1 stale file"
    (new,) = cache_files(cache)  # the old weights' file is gone: it could never be used again
    assert new != old and os.path.basename(new)[:17] == os.path.basename(old)[:17]
    got = embed(cli, model, cache)
    r = numpy_ref.load(model)
    for g, seq in zip(got, cli.tokenize(model, TEXTS)):
        np.testing.assert_allclose(g, numpy_ref.embed(r, seq), atol=1e-5)


def test_an_unusable_directory_costs_only_the_cache(cli, model, tmp_path):
    ref = embed(cli, model, "")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = str(blocker / "cache")
    st = status(cli, model, cache)["status"]
    assert st.startswith("miss: ") and "not written: cannot create the directory" in st, st
    assert embed(cli, model, cache) == ref


def test_scalar_level_has_no_cache(cli, model, tmp_path):
    cache = str(tmp_path / "cache")
    st = status(cli, model, cache, isa="scalar")
    assert st["status"].startswith("off: the scalar kernels"), st
    assert cache_files(cache) == []


# FOLDER-KEY-LEVEL-DTYPE.mepack; a LEVEL may hold a dash (amx-emu)
NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{32})-([a-z0-9+-]+)-(\w+)\.mepack$")


def test_a_new_file_removes_the_stale_ones_and_nothing_else(cli, models, model, tmp_path):
    if not LEVELS:
        pytest.skip("this CPU has neither AVX2 nor AVX-512: no level packs weights")
    isa = LEVELS[-1]
    lv = level(isa)
    cache = str(tmp_path / "cache")
    other = str(tmp_path / "other")  # another folder holding the same model
    shutil.copytree(model, other)
    embed(cli, model, cache, "f32", isa)
    embed(cli, other, cache, "f32", isa)
    embed(cli, model, cache, "bf16", isa)
    files = {os.path.basename(p): NAME.match(os.path.basename(p)).groups()
             for p in cache_files(cache)}
    assert len(files) == 3 and {g[2] for g in files.values()} == {lv}
    (mine,) = [n for n, g in files.items() if g[3] == "f32" and
               n != os.path.basename(status(cli, other, cache, isa)["path"])]
    folder, key = files[mine][:2]
    assert len({g[0] for g in files.values()}) == 2  # two folders, two names

    def put(name, age_s=0):
        path = os.path.join(cache, name)
        with open(path, "wb") as f:
            f.write(b"x")
        t = time.time() - age_s
        os.utime(path, (t, t))
        return name

    k2 = "f" * 32 if key != "f" * 32 else "e" * 32
    stale = [put("%s-%s-%s-f32.mepack" % (folder, k2, lv)),  # older weights or version
             put("%s-%s-%s-f32.mepack.tmp.Ab12Cd" % (folder, key, lv), 7200),  # killed writer
             put("%s-%s-%s-int8.mepack.tmp.Zz9yX8" % (folder, k2, lv), 7200)]  # any dtype's
    kept = [put("%s-%s-%s-f32.mepack.tmp.Ef34Gh" % (folder, key, lv), 60),  # a write under way
            put("%s-%s-%s-int8.mepack" % (folder, k2, lv)),  # another dtype
            put("%s-%s-%s+zz-f32.mepack" % (folder, k2, lv)),  # other CPU features
            put("%s-%s-%s-f32.mepack" % ("0" * 16, k2, lv)),  # another folder
            put("%s-%s-%s-f32.mepack.bak" % (folder, k2, lv)),  # not a cache name
            put("%s-%s-%s-f32.mepack.tmp.backup1" % (folder, k2, lv), 7200),  # not mkostemp's
            put("%s-%s.mepack.tmp.Qq1Ww2" % (folder, k2), 7200),  # no LEVEL-DTYPE
            put("notes.txt", 7200)]
    for name in ("%s-%s-%s-f32.mepack" % (folder, "d" * 32, lv),  # a folder, a link: left alone
                 "%s-%s-%s-f32.mepack" % (folder, "c" * 32, lv)):
        kept.append(name)
    os.mkdir(os.path.join(cache, kept[-2]))
    os.symlink(os.path.join(cache, "notes.txt"), os.path.join(cache, kept[-1]))
    os.unlink(os.path.join(cache, mine))  # the next load writes again
    st = status(cli, model, cache, isa)
    assert st == {"path": os.path.join(cache, mine),
                  "status": "miss: no file yet; written; removed 3 stale files"}, st
    left = set(os.listdir(cache))
    assert not left & set(stale)
    assert left == set(kept) | set(files)
    assert status(cli, model, cache, isa)["status"] == "hit"
    # a hit writes nothing and removes nothing
    put(stale[0])
    assert status(cli, model, cache, isa)["status"] == "hit"
    assert stale[0] in os.listdir(cache)


def test_python_model_takes_a_pack_cache(cli, model, tmp_path):
    if not LEVELS:
        pytest.skip("this CPU has neither AVX2 nor AVX-512: no level packs weights")
    import pkg_support as ps
    medembed = ps.import_medembed()
    cache = str(tmp_path / "pycache")
    with medembed.Model(model, pack_cache=cache) as m:
        first = m.encode(TEXTS)
        assert m.info["pack_cache"] == {"path": cache_files(cache)[0],
                                          "status": "miss: no file yet; written"}
    with medembed.Model(model, pack_cache=cache) as m:
        assert m.info["pack_cache"]["status"] == "hit"
        assert np.array_equal(m.encode(TEXTS), first)
    with medembed.Model(model, pack_cache="") as m:  # "" = none, whatever the environment says
        assert m.info["pack_cache"] == {"path": None, "status": "off"}
        assert np.array_equal(m.encode(TEXTS), first)
    with pytest.raises(ValueError, match="pack_cache"):
        medembed.Model(model, pack_cache=3)
    with pytest.raises(ValueError, match="pack_cache"):
        medembed.get_model(model, pack_cache=3)
    np.testing.assert_allclose(first, embed(cli, model, ""), rtol=0, atol=1e-7)  # the CLI agrees
