"""test_resolve.py - one meaning for a model name: the CLI's -m, Python's Model() /
resolve_model_path() and the C library's medembed_model_load() (called by name through ctypes)
resolve the same name to the same folder, all through medembed_model_resolve.

Independent references: the folder layouts are written here, medembed's cache as docs/PULL.md
describes it and the Hugging Face hub cache the way huggingface_hub writes it
(models--ORG--NAME/blobs/<hash>, snapshots/<commit>/<file> as relative symlinks into blobs,
refs/<rev> holding the commit with no newline); the expected folder of each name is spelled
from those layouts, and each cached model is a different random model whose fingerprint is
taken from its source folder. The CLI runs offline (MEDEMBED_OFFLINE=1, a dead HF_ENDPOINT)
except where a local mock hub (mock_hub.py) serves a pull.
"""
import ctypes
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import pkg_support as ps

medembed = ps.import_medembed()

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_model  # noqa: E402
from conftest import clean_env  # noqa: E402
from mock_hub import MockHub  # noqa: E402

COMMIT_MAIN = "3f0c5e1f4d2b8a7c6e5d4c3b2a1908f7e6d5c4b3"
COMMIT_OLD = "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd"
COMMIT_PR = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["aspirin for stroke prevention", "statins lower LDL cholesterol", ""]


@pytest.fixture(scope="module")
def srcs(tmp_path_factory):
    """Distinct random models, by role. The fingerprint covers config.json and the
    safetensors headers, not the weights, so each also has its own config.json."""
    root = tmp_path_factory.mktemp("resolve_src")
    names = ["ours", "ours_pr", "hf_main", "hf_old", "hf_pr", "both_hf", "cwd"]
    out = {}
    for i, n in enumerate(names):
        gen_model.make_model(str(root / n), layers=1, seed=10 + i, max_seq_length=64,
                             max_position_embeddings=64 + i)
        out[n] = str(root / n)
    return out


@pytest.fixture(scope="module")
def fingerprints(srcs):
    out = {}
    for role, d in srcs.items():
        m = medembed.Model(d)
        out[role] = m.fingerprint
        m.close()
    assert len(set(out.values())) == len(out)  # else the checks below could not tell them apart
    return out


def dead_endpoint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_put(hub, repo, src, commit, refs=()):
    """src's files into a huggingface_hub cache at hub: blobs named by sha256 (LFS files,
    here the weights) or git blob sha1 (the rest), snapshot entries as relative symlinks,
    and refs/<ref> files holding the commit. Returns the snapshot folder."""
    org, name = repo.split("/")
    base = os.path.join(hub, "models--%s--%s" % (org, name))
    snap = os.path.join(base, "snapshots", commit)
    for dirpath, _, files in os.walk(src):
        for fn in files:
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, src)
            with open(full, "rb") as f:
                data = f.read()
            blob = (hashlib.sha256(data).hexdigest() if fn.endswith(".safetensors")
                    else git_blob_sha1(data))
            os.makedirs(os.path.join(base, "blobs"), exist_ok=True)
            with open(os.path.join(base, "blobs", blob), "wb") as f:
                f.write(data)
            link = os.path.join(snap, rel)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.relpath(os.path.join(base, "blobs", blob), os.path.dirname(link)),
                       link)
    for ref in refs:
        p = os.path.join(base, "refs", ref)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(commit)
    return snap


def ours_put(home, repo, src, rev=None):
    """src copied as `medembed pull` leaves it: $MEDEMBED_HOME/models/ORG/NAME[@REV], with
    '/' and '%' in REV percent-encoded (docs/PULL.md)."""
    enc = "" if rev is None else "@" + rev.replace("%", "%25").replace("/", "%2F")
    dest = os.path.join(home, "models", *repo.split("/")) + enc
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    subprocess.run(["cp", "-r", src, dest], check=True)
    return dest


@pytest.fixture
def caches(tmp_path, monkeypatch, srcs):
    """Both caches filled; the environment pointing at them, offline. Returns
    {name: (expected folder, source role)}."""
    home, hub = str(tmp_path / "mhome"), str(tmp_path / "hf" / "hub")
    monkeypatch.setenv("MEDEMBED_HOME", home)
    monkeypatch.setenv("HF_HUB_CACHE", hub)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("MEDEMBED_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    cases = {
        "acme/ours": (ours_put(home, "acme/ours", srcs["ours"]), "ours"),
        "acme/ours@refs/pr/1": (ours_put(home, "acme/ours", srcs["ours_pr"], "refs/pr/1"),
                                "ours_pr"),
        "acme/hf-only": (hf_put(hub, "acme/hf-only", srcs["hf_main"], COMMIT_MAIN, ["main"]),
                         "hf_main"),
        "acme/hf-only@" + COMMIT_OLD: (hf_put(hub, "acme/hf-only", srcs["hf_old"], COMMIT_OLD),
                                       "hf_old"),
        "acme/hf-only@refs/pr/3": (hf_put(hub, "acme/hf-only", srcs["hf_pr"], COMMIT_PR,
                                          ["refs/pr/3"]), "hf_pr"),
    }
    # in both caches: medembed's own wins
    hf_put(hub, "acme/both", srcs["both_hf"], COMMIT_MAIN, ["main"])
    cases["acme/both"] = (ours_put(home, "acme/both", srcs["ours"]), "ours")
    cases["acme/hf-only@main"] = cases["acme/hf-only"]
    return cases


def c_load(name):
    """medembed_model_load(name) straight through ctypes: (info dict, fingerprint), or
    (status, message) on failure."""
    L = medembed._lib.lib()
    ptr = ctypes.c_void_p()
    err = ctypes.create_string_buffer(4096)
    rc = L.medembed_model_load(os.fsencode(name), None, ctypes.byref(ptr), err, len(err))
    if rc != 0:
        return rc, err.value.decode()
    try:
        n = L.medembed_model_info_json(ptr, None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        L.medembed_model_info_json(ptr, buf, n + 1)
        return json.loads(buf.value.decode()), L.medembed_model_fingerprint(ptr).decode()
    finally:
        L.medembed_model_free(ptr)


def cli_run(args, cwd=None, env=None):
    return subprocess.run([ps.BIN] + list(args), capture_output=True, timeout=120, cwd=cwd,
                          env=env)


def cli_info(name, cwd=None):
    r = cli_run(["info", "-m", name], cwd=cwd)
    assert r.returncode == 0, (name, r.stderr.decode())
    assert r.stderr == b"", r.stderr.decode()  # no pull notice: found locally
    return json.loads(r.stdout)


def test_every_caller_resolves_a_name_to_the_same_folder(caches, fingerprints):
    for name, (want, role) in sorted(caches.items()):
        # Python
        assert medembed.resolve_model_path(name) == want, name
        m = medembed.Model(name)
        assert m.path == want and m.fingerprint == fingerprints[role], name
        m.close()
        # the C library, by name
        info, fp = c_load(name)
        assert info["path"] == want and fp == fingerprints[role], (name, info, fp)
        # the CLI (which did not read the Hugging Face hub cache before)
        got = cli_info(name)
        assert got["path"] == want and got["fingerprint"] == fingerprints[role], (name, got)


def test_serve_m_resolves_alike(caches, fingerprints, tmp_path):
    """`medembed serve -m NAME` loads the folder the others resolve NAME to (GET /info)."""
    name = "acme/hf-only@refs/pr/3"
    want, role = caches[name]
    log = open(str(tmp_path / "serve.log"), "w+")
    proc = subprocess.Popen([ps.BIN, "serve", "-m", name, "--port", "0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            env=clean_env())
    try:
        port, deadline = None, time.time() + 60
        while time.time() < deadline:
            log.seek(0)
            text = log.read()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            assert proc.poll() is None, text
            if m:
                port = int(m.group(1))
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    c.request("GET", "/info")
                    r = c.getresponse()
                    body = r.read()
                except OSError:
                    r = None
                finally:
                    c.close()
                if r is not None and r.status == 200:
                    info = json.loads(body)["medembed"]
                    assert info["path"] == want, info
                    assert info["fingerprint"] == fingerprints[role], info
                    return
            time.sleep(0.05)
        raise AssertionError("server not ready: %s" % text)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_hf_cache_model_embeds_alike_without_network(caches, monkeypatch, tmp_path):
    # not offline: the hub is a dead port, and a model in the HF cache needs no request
    monkeypatch.delenv("MEDEMBED_OFFLINE")
    name = "acme/hf-only"
    m = medembed.Model(name)
    cli = ps.cli_embed_npy(name, TEXTS, tmp_path)
    assert np.array_equal(m.encode(TEXTS), cli)
    m.close()


def test_a_folder_wins_over_a_repo_id_everywhere(caches, srcs, fingerprints, tmp_path,
                                                 monkeypatch):
    cwd = tmp_path / "work"
    (cwd / "acme").mkdir(parents=True)
    subprocess.run(["cp", "-r", srcs["cwd"], str(cwd / "acme" / "ours")], check=True)
    monkeypatch.chdir(cwd)
    want = str(cwd / "acme" / "ours")
    assert medembed.resolve_model_path("acme/ours") == want
    info, fp = c_load("acme/ours")
    assert info["path"] == "acme/ours" and fp == fingerprints["cwd"]  # as given: relative
    got = cli_info("acme/ours", cwd=str(cwd))
    assert got["path"] == "acme/ours" and got["fingerprint"] == fingerprints["cwd"]


def test_missing_and_bad_names_fail_alike(caches, tmp_path):
    home, hub = os.environ["MEDEMBED_HOME"], os.environ["HF_HUB_CACHE"]
    with pytest.raises(medembed.NotFound) as ei:
        medembed.resolve_model_path("acme/none@v2")
    msg = str(ei.value)
    for part in ("acme/none@v2", os.path.join(home, "models", "acme", "none@v2"),
                 os.path.join(hub, "models--acme--none"), "medembed pull acme/none@v2"):
        assert part in msg, (part, msg)
    assert c_load("acme/none@v2") == (-7, msg)  # MEDEMBED_ERR_NOT_FOUND, the same words
    r = cli_run(["info", "-m", "acme/none@v2"])
    err = r.stderr.decode()
    assert r.returncode == 1 and "not in the cache" in err and "MEDEMBED_OFFLINE" in err, err
    assert os.path.join(home, "models", "acme", "none@v2") in err
    # a file: the library's message everywhere
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(medembed.InvalidArgument) as ei:
        medembed.Model(str(f))
    assert c_load(str(f)) == (-1, str(ei.value))
    r = cli_run(["info", "-m", str(f)])
    assert r.returncode == 1 and str(ei.value) in r.stderr.decode()
    # not a folder and not a repo id
    for bad in ("a/b/c", "acme/x@a b", "./nope"):
        with pytest.raises(medembed.NotFound, match="no such model folder"):
            medembed.resolve_model_path(bad)
        r = cli_run(["info", "-m", bad])
        assert r.returncode == 1 and "no such model folder" in r.stderr.decode()


def test_cache_home_follows_the_library(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDEMBED_HOME", str(tmp_path / "h"))
    assert medembed.model.cache_home() == str(tmp_path / "h")
    monkeypatch.setenv("MEDEMBED_HOME", "")  # empty counts as unset
    monkeypatch.setenv("HOME", str(tmp_path / "u"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert medembed.model.cache_home() == str(tmp_path / "u" / ".cache" / "medembed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert medembed.model.cache_home() == str(tmp_path / "x" / "medembed")


def test_pulled_model_is_where_python_and_the_library_look(srcs, fingerprints, tmp_path,
                                                           monkeypatch):
    hub = MockHub()
    try:
        hub.add_repo("org/tiny", srcs["ours"])
        hub.add_revision("org/tiny", "refs/pr/1", srcs["ours_pr"])
        home = str(tmp_path / "mhome")
        monkeypatch.setenv("MEDEMBED_HOME", home)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))
        env = {k: v for k, v in os.environ.items()
               if not k.lower().endswith("_proxy") and k not in ("MEDEMBED_OFFLINE",
                                                                 "HF_HUB_OFFLINE")}
        env.update(HF_ENDPOINT=hub.endpoint, MEDEMBED_PULL_RETRIES="0", no_proxy="*",
                   NO_PROXY="*")
        r = cli_run(["pull", "-q", "org/tiny@refs/pr/1"], env=env)
        assert r.returncode == 0, r.stderr.decode()
        dest = r.stdout.decode().strip()
        assert dest == os.path.join(home, "models", "org", "tiny@refs%2Fpr%2F1")
        assert medembed.resolve_model_path("org/tiny@refs/pr/1") == dest
        assert c_load("org/tiny@refs/pr/1")[1] == fingerprints["ours_pr"]
        # -m pulls a missing repo id into the folder the library then finds
        r = cli_run(["info", "-m", "org/tiny"], env=env)
        assert r.returncode == 0, r.stderr.decode()
        assert "pulling it into" in r.stderr.decode()
        got = json.loads(r.stdout)
        assert got["path"] == os.path.join(home, "models", "org", "tiny")
        assert medembed.resolve_model_path("org/tiny") == got["path"]
        assert medembed.Model("org/tiny").fingerprint == fingerprints["ours"]
    finally:
        hub.stop()
