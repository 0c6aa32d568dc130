"""test_pull.py - `medembed pull`, the model cache behind `-m`, and their failure modes,
against a local mock of the Hugging Face hub (mock_hub.py) on 127.0.0.1.

Independent references: the bytes and sha256 of the files the mock serves (hashlib), the
issue's list of files the engine needs, the mock's request log, and `medembed info` on the
source folder itself. Nothing here needs ../shared or the internet.
"""
import array
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

from mock_hub import MockHub, read_folder  # noqa: E402

DEFAULT = "abhinand/MedEmbed-base-v0.1"
MANIFEST = ".medembed-pull.json"
# What the engine needs of the test model (the issue: config, weights, tokenizer and
# sentence-transformers files), and what a real repo also holds that must not come down.
WANTED = {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
          "special_tokens_map.json", "modules.json", "1_Pooling/config.json",
          "sentence_bert_config.json", "config_sentence_transformers.json"}
UNWANTED = {"pytorch_model.bin", "onnx/model.onnx", "openvino/openvino_model.bin",
            "openvino/openvino_model.xml", "README.md", ".gitattributes", "tf_model.h5"}


# ------------------------------------------------------------------- the test model

def _safetensors(tensors):
    """bytes of a safetensors file holding {name: (shape, [floats])} as F32."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, vals) in tensors.items():
        b = array.array("f", vals).tobytes()
        assert sys.byteorder == "little"
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + b"".join(blobs)


def write_model(out, seed=0, hidden=16, layers=1, heads=2, ffn=32, max_pos=64, shards=1):
    """A tiny random BERT sentence-transformers folder, as the hub would hold it."""
    rng = random.Random(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [chr(c) for c in range(97, 123)] + ["##" + chr(c) for c in range(97, 123)]
    V, H = len(vocab), hidden

    def rnd(*shape):
        n = 1
        for s in shape:
            n *= s
        return (shape, [rng.gauss(0, 0.3) for _ in range(n)])

    def ln():
        return ((H,), [1 + rng.gauss(0, 0.1) for _ in range(H)])

    t = {"embeddings.word_embeddings.weight": rnd(V, H),
         "embeddings.position_embeddings.weight": rnd(max_pos, H),
         "embeddings.token_type_embeddings.weight": rnd(2, H),
         "embeddings.LayerNorm.weight": ln(), "embeddings.LayerNorm.bias": rnd(H)}
    for i in range(layers):
        p = "encoder.layer.%d." % i
        for part in ("query", "key", "value"):
            t[p + "attention.self.%s.weight" % part] = rnd(H, H)
            t[p + "attention.self.%s.bias" % part] = rnd(H)
        t[p + "attention.output.dense.weight"] = rnd(H, H)
        t[p + "attention.output.dense.bias"] = rnd(H)
        t[p + "attention.output.LayerNorm.weight"] = ln()
        t[p + "attention.output.LayerNorm.bias"] = rnd(H)
        t[p + "intermediate.dense.weight"] = rnd(ffn, H)
        t[p + "intermediate.dense.bias"] = rnd(ffn)
        t[p + "output.dense.weight"] = rnd(H, ffn)
        t[p + "output.dense.bias"] = rnd(H)
        t[p + "output.LayerNorm.weight"] = ln()
        t[p + "output.LayerNorm.bias"] = rnd(H)
    files = {
        "config.json": json.dumps({
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": V,
            "hidden_size": H, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": ffn, "max_position_embeddings": max_pos, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0}, indent=2),
        "vocab.txt": "\n".join(vocab) + "\n",
        "tokenizer_config.json": json.dumps({"do_lower_case": True, "model_max_length": max_pos,
                                             "tokenizer_class": "BertTokenizer"}),
        "special_tokens_map.json": json.dumps({"unk_token": "[UNK]", "sep_token": "[SEP]",
                                               "pad_token": "[PAD]", "cls_token": "[CLS]",
                                               "mask_token": "[MASK]"}),
        "modules.json": json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}]),
        "1_Pooling/config.json": json.dumps({"word_embedding_dimension": H,
                                             "pooling_mode_cls_token": True,
                                             "pooling_mode_mean_tokens": False}),
        "sentence_bert_config.json": json.dumps({"max_seq_length": max_pos,
                                                 "do_lower_case": False}),
        "config_sentence_transformers.json": json.dumps({"prompts": {},
                                                         "default_prompt_name": None}),
        # what a real repo also carries, none of which may come down
        "pytorch_model.bin": bytes(rng.getrandbits(8) for _ in range(3000)),
        "tf_model.h5": bytes(rng.getrandbits(8) for _ in range(500)),
        "onnx/model.onnx": bytes(rng.getrandbits(8) for _ in range(2000)),
        "openvino/openvino_model.bin": bytes(rng.getrandbits(8) for _ in range(1000)),
        "openvino/openvino_model.xml": "<net/>",
        "README.md": "# tiny\n",
        ".gitattributes": "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }
    if shards == 1:
        files["model.safetensors"] = _safetensors(t)
    else:
        names = list(t)
        weight_map = {}
        for k in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
            part = {n: t[n] for n in names[k::shards]}
            files[fn] = _safetensors(part)
            weight_map.update({n: fn for n in part})
        files["model.safetensors.index.json"] = json.dumps(
            {"metadata": {"total_size": 0}, "weight_map": weight_map})
    for rel, data in files.items():
        p = os.path.join(out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    return out


# --------------------------------------------------------------------- fixtures

def _bin():
    path = os.environ.get("MEDEMBED_BIN", os.path.join(REPO_ROOT, "build", "medembed"))
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    if not os.access(path, os.X_OK):
        pytest.skip("medembed binary not found at %s (build it, or set MEDEMBED_BIN)" % path)
    return path


@pytest.fixture
def hub():
    h = MockHub()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return write_model(str(tmp_path_factory.mktemp("src")), seed=1)


@pytest.fixture(scope="module")
def src2(tmp_path_factory):
    return write_model(str(tmp_path_factory.mktemp("src2")), seed=2)


class Runner:
    def __init__(self, home, endpoint):
        self.bin = _bin()
        self.home = home
        self.endpoint = endpoint

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.lower().endswith("_proxy") and not k.startswith(("HF_", "MEDEMBED_"))}
        env.update({"MEDEMBED_HOME": self.home, "HF_ENDPOINT": self.endpoint,
                    # -m also looks in the Hugging Face hub cache: keep the user's out
                    "HF_HUB_CACHE": os.path.join(self.home, "hf-hub"),
                    "MEDEMBED_PULL_RETRIES": "0", "MEDEMBED_CONNECT_TIMEOUT": "5",
                    "MEDEMBED_STALL_TIMEOUT": "5", "no_proxy": "*", "NO_PROXY": "*"})
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def run(self, args, env=None, input=b"", timeout=60):
        r = subprocess.run([self.bin] + list(args), env=self.env(env), input=input,
                           capture_output=True, timeout=timeout)
        assert r.returncode >= 0, "medembed %s died with signal %d: %s" % (
            args, -r.returncode, r.stderr.decode(errors="replace"))
        r.err = r.stderr.decode(errors="replace")
        r.out = r.stdout.decode(errors="replace")
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            assert bad not in r.err, "medembed %s: sanitizer report:\n%s" % (args, r.err)
        return r

    def ok(self, args, **kw):
        r = self.run(args, **kw)
        assert r.returncode == 0, "medembed %s failed (%d): %s" % (args, r.returncode, r.err)
        return r

    def fail(self, args, **kw):
        r = self.run(args, **kw)
        assert r.returncode != 0, "medembed %s should have failed: %s" % (args, r.err)
        err_lines = [ln for ln in r.err.splitlines() if ln.startswith("medembed: error: ")]
        assert err_lines, "no 'medembed: error:' line in: %s" % r.err
        return r


@pytest.fixture
def cli(hub, tmp_path):
    return Runner(str(tmp_path / "home"), hub.endpoint)


def cache_path(home, repo, rev=None):
    return os.path.join(home, "models", *repo.split("/")) + ("@" + rev if rev else "")


def tree(folder):
    """Every file under folder (relative paths), or an empty set if it does not exist."""
    return set(read_folder(folder)) if os.path.isdir(folder) else set()


def assert_same_files(dest, src, names):
    got = read_folder(dest)
    want = read_folder(src)
    for n in names:
        assert hashlib.sha256(got[n]).digest() == hashlib.sha256(want[n]).digest(), n


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def info(cli, model, **kw):
    args = ["info"] + (["-m", model] if model else [])
    return json.loads(cli.ok(args, **kw).out)


# ------------------------------------------------------------------------- tests

def test_full_pull(hub, cli, src):
    commit = hub.add_repo("org/tiny", src)
    r = cli.ok(["pull", "org/tiny"])
    dest = cache_path(cli.home, "org/tiny")
    assert r.out == dest + "\n"
    # exactly the engine's files plus our manifest, byte for byte
    assert tree(dest) == WANTED | {MANIFEST}
    assert_same_files(dest, src, WANTED)
    man = json.load(open(os.path.join(dest, MANIFEST)))
    assert man["repo"] == "org/tiny" and man["commit"] == commit
    assert man["revision"] == "main" and man["endpoint"] == hub.endpoint
    st = [f for f in man["files"] if f["name"] == "model.safetensors"][0]
    assert st["sha256"] == hashlib.sha256(read_folder(src)["model.safetensors"]).hexdigest()
    # the hub saw one listing with blobs=true, the files by commit, the LFS file via the CDN
    reqs = hub.requests()
    api = [q for q in reqs if q["path"].startswith("/api/")]
    assert [q["path"] for q in api] == ["/api/models/org/tiny/revision/main"]
    assert "blobs=true" in api[0]["query"]
    got = {q["path"].split("/resolve/%s/" % commit, 1)[1] for q in reqs
           if "/resolve/" in q["path"]}
    assert got == WANTED
    for name in UNWANTED:
        assert not any(name in q["path"] or name in q["query"] for q in reqs), name
    cdn = hub.requests("cdn")
    assert len(cdn) == 1 and "model.safetensors" in cdn[0]["query"]
    assert "pulling org/tiny" in r.err and "pulled org/tiny" in r.err
    # nothing left next to it
    assert sorted(os.listdir(os.path.dirname(dest))) == ["tiny"]
    # the pulled folder loads as the source folder does
    a, b = info(cli, dest), info(cli, src)
    assert a["fingerprint"] == b["fingerprint"] and a["dim"] == b["dim"] == 16


def test_sharded_weights(hub, cli, tmp_path):
    sharded = write_model(str(tmp_path / "sharded"), seed=3, shards=2)
    hub.add_repo("org/sharded", sharded)
    dest = cli.ok(["pull", "org/sharded", "-q"]).out.strip()
    want = (WANTED - {"model.safetensors"}) | {"model.safetensors.index.json",
                                               "model-00001-of-00002.safetensors",
                                               "model-00002-of-00002.safetensors"}
    assert tree(dest) == want | {MANIFEST}
    assert_same_files(dest, sharded, want)
    assert len(hub.requests("cdn")) == 2
    assert info(cli, dest)["fingerprint"] == info(cli, sharded)["fingerprint"]


def test_repo_id_resolves_through_cache_and_second_run_is_offline(hub, cli, src):
    hub.add_repo("org/tiny", src)
    dest = cache_path(cli.home, "org/tiny")
    r = cli.ok(["info", "-m", "org/tiny"])
    notices = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(notices) == 1 and "org/tiny" in notices[0] and dest in notices[0], r.err
    got = json.loads(r.out)
    assert got["path"] == dest
    assert got["fingerprint"] == info(cli, src)["fingerprint"]
    assert tree(dest) == WANTED | {MANIFEST}
    # second run: no request at all, no notice, same model, same embeddings as the source
    hub.clear_log()
    r2 = cli.ok(["info", "-m", "org/tiny"])
    assert hub.requests() == []
    assert r2.err == ""
    assert json.loads(r2.out) == got
    text = b"aspirin for stroke prevention\n"
    e1 = cli.ok(["embed", "-m", "org/tiny"], input=text)
    assert e1.err == "" and hub.requests() == []
    e0 = cli.ok(["embed", "-m", src], input=text)
    assert e1.out == e0.out and len(json.loads(e1.out)["embedding"]) == 16
    # and it works with the hub gone
    dead = "http://127.0.0.1:%d" % free_port()
    r3 = cli.ok(["info", "-m", "org/tiny"], env={"HF_ENDPOINT": dead})
    assert json.loads(r3.out) == got


def test_default_model_when_m_is_absent(hub, cli, src):
    hub.add_repo(DEFAULT, src)
    dest = cache_path(cli.home, DEFAULT)
    r = cli.ok(["info"])
    assert "no -m given" in r.err and DEFAULT in r.err
    assert json.loads(r.out)["path"] == dest
    assert tree(dest) == WANTED | {MANIFEST}
    hub.clear_log()
    # every command that loads a model falls back to it, from the cache
    text = b"william henry gates\n"
    for cmd in (["info"], ["embed"], ["tokenize"], ["embed", "--format", "npy"]):
        r = cli.ok(cmd, input=text)
        assert r.err == "", (cmd, r.err)
        if cmd[0] != "info":
            assert r.stdout == cli.ok(cmd + ["-m", src], input=text).stdout, cmd
    assert hub.requests() == []


def test_explicit_folder_wins_and_bad_m_is_clear(hub, cli, src, tmp_path):
    hub.add_repo("org/tiny", src)
    assert info(cli, src)["path"] == src
    # a path that does not exist is not sent to the hub
    for bad in ("./nope", "/nonexistent/model", "~/nope", "no-slash", "a/b/c", "org/-bad"):
        r = cli.fail(["info", "-m", bad])
        assert "no such model folder" in r.err, (bad, r.err)
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in cli.fail(["info", "-m", str(f)]).err
    assert hub.requests() == []


def test_resume_after_cut(hub, cli, src):
    commit = hub.add_repo("org/tiny", src)
    size = len(read_folder(src)["model.safetensors"])
    half = size // 2
    hub.cut_after["model.safetensors"] = half
    r = cli.fail(["pull", "org/tiny"])
    assert "model.safetensors" in r.err and "broke" in r.err and "resume" in r.err, r.err
    dest = cache_path(cli.home, "org/tiny")
    assert not os.path.exists(dest)
    staging = os.path.join(os.path.dirname(dest), ".tiny.partial")
    part = os.path.join(staging, "model.safetensors.incomplete")
    assert os.path.getsize(part) == half
    before = {q["path"] for q in hub.requests("hub") if "/resolve/" in q["path"]}
    hub.clear_log()
    r = cli.ok(["pull", "org/tiny"])
    assert "resuming" in r.err
    cdn = hub.requests("cdn")
    assert len(cdn) == 1 and cdn[0]["range"] == "bytes=%d-" % half
    # files finished before the cut are not fetched again
    again = {q["path"] for q in hub.requests("hub") if "/resolve/" in q["path"]}
    done_before = {p for p in before if not p.endswith("model.safetensors")}
    assert not (again & done_before)
    assert tree(dest) == WANTED | {MANIFEST}
    assert_same_files(dest, src, WANTED)
    assert json.load(open(os.path.join(dest, MANIFEST)))["commit"] == commit
    assert not os.path.exists(staging)


def test_retry_resumes_in_one_run(hub, cli, src):
    hub.add_repo("org/tiny", src)
    size = len(read_folder(src)["model.safetensors"])
    hub.cut_after["model.safetensors"] = size // 3
    r = cli.ok(["pull", "org/tiny"], env={"MEDEMBED_PULL_RETRIES": "2"})
    assert "resuming at byte %d" % (size // 3) in r.err
    cdn = hub.requests("cdn")
    assert [q["range"] for q in cdn] == [None, "bytes=%d-" % (size // 3)]
    assert_same_files(cache_path(cli.home, "org/tiny"), src, WANTED)


def test_resume_when_server_ignores_range(hub, cli, src):
    hub.add_repo("org/tiny", src)
    size = len(read_folder(src)["model.safetensors"])
    hub.cut_after["model.safetensors"] = size // 2
    cli.fail(["pull", "org/tiny"])
    hub.ignore_range = True
    cli.ok(["pull", "org/tiny"])
    assert_same_files(cache_path(cli.home, "org/tiny"), src, WANTED)


def test_corrupt_file_rejected_by_sha256(hub, cli, src):
    hub.add_repo("org/tiny", src)
    hub.corrupt.add("model.safetensors")
    r = cli.fail(["pull", "org/tiny"])
    want = hashlib.sha256(read_folder(src)["model.safetensors"]).hexdigest()
    assert "sha256 mismatch" in r.err and want in r.err, r.err
    dest = cache_path(cli.home, "org/tiny")
    assert not os.path.exists(dest)
    staging = os.path.join(os.path.dirname(dest), ".tiny.partial")
    assert not any(n.startswith("model.safetensors") for n in os.listdir(staging))
    # the same for -m: a clear error, no model folder
    r = cli.fail(["info", "-m", "org/tiny"])
    assert "sha256 mismatch" in r.err and not os.path.exists(dest)
    # a clean hub then gives a good folder, fetched from the start
    hub.corrupt.clear()
    hub.clear_log()
    cli.ok(["pull", "org/tiny"])
    assert [q["range"] for q in hub.requests("cdn")] == [None]
    assert_same_files(dest, src, WANTED)


def test_missing_repo_404(hub, cli, src):
    hub.add_repo("org/tiny", src)
    r = cli.fail(["pull", "org/nothing"])
    assert "org/nothing" in r.err and "not found" in r.err and "404" in r.err
    r = cli.fail(["info", "-m", "org/nothing"])
    assert "not found" in r.err
    r = cli.fail(["pull", "org/tiny@no-such-branch"])
    assert 'revision "no-such-branch" not found' in r.err
    assert tree(cli.home) == set() and not os.path.exists(os.path.join(cli.home, "models"))


def test_gated_repo_401_and_token(hub, cli, src):
    hub.add_repo("org/gated", src, token="hf_secret")
    r = cli.fail(["pull", "org/gated"])
    assert "401" in r.err and "HF_TOKEN" in r.err and "gated" in r.err, r.err
    r = cli.fail(["pull", "org/gated"], env={"HF_TOKEN": "hf_wrong"})
    assert "refused HF_TOKEN" in r.err
    assert not os.path.exists(os.path.join(cli.home, "models"))
    hub.clear_log()
    dest = cli.ok(["pull", "org/gated"], env={"HF_TOKEN": "hf_secret\n"}).out.strip()
    assert_same_files(dest, src, WANTED)
    # the token goes to the hub, never to the CDN the LFS redirect points at
    assert all(q["auth"] == "Bearer hf_secret" for q in hub.requests("hub"))
    cdn = hub.requests("cdn")
    assert cdn and all(q["auth"] is None for q in cdn)


def test_absent_server(cli, tmp_path):
    dead = "http://127.0.0.1:%d" % free_port()
    r = cli.fail(["pull", "org/tiny"], env={"HF_ENDPOINT": dead})
    assert "cannot reach " + dead in r.err
    assert "medembed pull org/tiny" in r.err  # the offline hint
    assert tree(cli.home) == set()
    # the README's first run on a machine without network: a clear message, exit 1
    r = cli.fail(["embed"], env={"HF_ENDPOINT": dead}, input=b"hello\n")
    assert r.returncode == 1
    assert "medembed pull " + DEFAULT in r.err
    assert cache_path(cli.home, DEFAULT) in r.err
    assert r.out == ""


def test_slow_server_times_out(hub, cli, src):
    hub.add_repo("org/tiny", src)
    hub.stall_api = 60  # released when the test ends
    r = cli.fail(["pull", "org/tiny"], env={"MEDEMBED_STALL_TIMEOUT": "1"}, timeout=30)
    assert "no data for 1 s" in r.err and "MEDEMBED_STALL_TIMEOUT" in r.err
    assert tree(cli.home) == set()


def test_stall_mid_file_keeps_partial_for_resume(hub, cli, src):
    hub.add_repo("org/tiny", src)
    hub.stall_file["model.safetensors"] = (1000, 60)
    r = cli.fail(["pull", "org/tiny"], env={"MEDEMBED_STALL_TIMEOUT": "1"}, timeout=30)
    assert "model.safetensors" in r.err and "no data for 1 s" in r.err
    dest = cache_path(cli.home, "org/tiny")
    assert not os.path.exists(dest)
    hub.clear_log()
    cli.ok(["pull", "org/tiny"])
    assert [q["range"] for q in hub.requests("cdn")] == ["bytes=1000-"]
    assert_same_files(dest, src, WANTED)


def test_offline_mode(hub, cli, src):
    hub.add_repo("org/tiny", src)
    for var in ("MEDEMBED_OFFLINE", "HF_HUB_OFFLINE"):
        r = cli.fail(["info", "-m", "org/tiny"], env={var: "1"})
        dest = cache_path(cli.home, "org/tiny")
        assert "org/tiny" in r.err and "not in the cache" in r.err and var in r.err
        assert "medembed pull org/tiny" in r.err and dest in r.err
        assert "-m DIR" in r.err
        r = cli.fail(["pull", "org/tiny"], env={var: "yes"})
        assert var in r.err
    assert hub.requests() == []
    # pinned revisions name themselves in the hint
    r = cli.fail(["info", "-m", "org/tiny@v2"], env={"MEDEMBED_OFFLINE": "1"})
    assert "medembed pull org/tiny@v2" in r.err
    # a cached model needs no network, offline or not
    cli.ok(["pull", "org/tiny"])
    hub.clear_log()
    assert info(cli, "org/tiny", env={"MEDEMBED_OFFLINE": "1"})["path"] == cache_path(
        cli.home, "org/tiny")
    assert hub.requests() == []


def test_up_to_date_and_update(hub, cli, src, src2):
    hub.add_repo("org/tiny", src)
    dest = cli.ok(["pull", "org/tiny"]).out.strip()
    hub.clear_log()
    r = cli.ok(["pull", "org/tiny"])
    assert "up to date" in r.err and r.out.strip() == dest
    assert [q["path"] for q in hub.requests()] == ["/api/models/org/tiny/revision/main"]
    # main moves: the folder is replaced as a whole, never mixed
    new = hub.add_revision("org/tiny", "main", src2)
    cli.ok(["pull", "org/tiny"])
    assert json.load(open(os.path.join(dest, MANIFEST)))["commit"] == new
    assert_same_files(dest, src2, WANTED)
    assert sorted(os.listdir(os.path.dirname(dest))) == ["tiny"]
    # a pinned commit that is already here needs no request
    hub.clear_log()
    cli.ok(["pull", "org/tiny@" + new])  # a different cache folder: pulls
    assert hub.requests()
    hub.clear_log()
    r = cli.ok(["pull", "org/tiny", "--revision", new])
    assert "up to date" in r.err and hub.requests() == []


def test_revision_and_dir(hub, cli, src, src2, tmp_path):
    hub.add_repo("org/tiny", src)
    commit2 = hub.add_revision("org/tiny", "refs/pr/1", src2)
    dest = cli.ok(["pull", "org/tiny@refs/pr/1"]).out.strip()
    assert dest == cache_path(cli.home, "org/tiny", "refs%2Fpr%2F1")
    assert_same_files(dest, src2, WANTED)
    api = [q for q in hub.requests() if q["path"].startswith("/api/")]
    # the revision is one path segment, '/' encoded (huggingface_hub: quote(rev, safe=""))
    assert api[0]["path"] == "/api/models/org/tiny/revision/refs%2Fpr%2F1"
    assert json.load(open(os.path.join(dest, MANIFEST)))["commit"] == commit2
    # -m finds the pinned folder
    hub.clear_log()
    assert info(cli, "org/tiny@refs/pr/1")["path"] == dest
    assert hub.requests() == []
    # --dir
    d = str(tmp_path / "mine" / "tiny")
    assert cli.ok(["pull", "org/tiny", "--dir", d + "/"]).out.strip() == d
    assert_same_files(d, src, WANTED)
    # an empty folder may be filled; one with foreign files is refused
    empty = tmp_path / "empty"
    empty.mkdir()
    cli.ok(["pull", "org/tiny", "--dir", str(empty)])
    assert tree(str(empty)) == WANTED | {MANIFEST}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    r = cli.fail(["pull", "org/tiny", "--dir", str(busy)])
    assert "did not put there" in r.err
    assert tree(str(busy)) == {"notes.txt"}


def test_repo_without_safetensors_or_config(hub, cli, src):
    files = read_folder(src)
    no_st = {k: v for k, v in files.items() if k != "model.safetensors"}
    hub.add_repo("org/binonly", no_st)
    r = cli.fail(["pull", "org/binonly"])
    assert "pytorch_model.bin" in r.err and "safetensors" in r.err
    hub.add_repo("org/noconfig", {k: v for k, v in files.items() if k != "config.json"})
    assert "no config.json" in cli.fail(["pull", "org/noconfig"]).err
    hub.add_repo("org/notok", {k: v for k, v in files.items() if k != "vocab.txt"})
    assert "tokenizer.json nor vocab.txt" in cli.fail(["pull", "org/notok"]).err
    assert tree(cli.home) == set()


def test_concurrent_auto_pulls_download_once(hub, cli, src):
    hub.add_repo("org/tiny", src)
    # slow the big file a little so the two runs overlap
    hub.delay_file["model.safetensors"] = (100, 1)
    out = [None, None]

    def go(i):
        out[i] = cli.run(["info", "-m", "org/tiny"], env={"MEDEMBED_STALL_TIMEOUT": "20"})

    ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert all(r is not None and r.returncode == 0 for r in out), [r and r.err for r in out]
    assert json.loads(out[0].out) == json.loads(out[1].out)
    assert len(hub.requests("cdn")) == 1


def test_usage_errors(cli):
    assert cli.run(["pull"]).returncode == 2
    assert "not a hub repo id" in cli.fail(["pull", "nope"]).err
    assert cli.run(["pull", "a/b", "c/d"]).returncode == 2
    assert cli.run(["pull", "a/b", "--bogus"]).returncode == 2
    r = cli.run(["pull", "a/b@x", "--revision", "y"])
    assert r.returncode == 2 and "twice" in r.err
    r = cli.run(["pull", "a/b"], env={"HF_ENDPOINT": "ftp://example"})
    assert r.returncode == 2 and "HF_ENDPOINT" in r.err
    r = cli.run(["pull", "a/b"], env={"MEDEMBED_STALL_TIMEOUT": "zero"})
    assert r.returncode == 2 and "MEDEMBED_STALL_TIMEOUT" in r.err
    r = cli.ok(["pull", "--help"])
    assert "HF_TOKEN" in r.out and "--revision" in r.out
    assert tree(cli.home) == set()
