"""test_server.py - integration tests of `medembed serve`.

Each test starts the real binary on a free loopback port (--port 0; the port is read from the
"listening on" log line) with a generated random-weight model, and talks to it with the
standard library's http.client. The reference for every vector is `medembed embed` (the CLI),
compared as float32 bit patterns: the server must return exactly the CLI's vectors, alone or
batched with anything else.

Covers: /v1/embeddings (float and base64, token-id inputs, dimensions, usage), /embed
(truncate, truncation_direction, normalize, prompt_name, dimensions), /tokenize, /info,
/health (503 while loading), /metrics, /search, every error row of the issue's table with its
JSON shape, 64 parallel clients, a disconnected client dropped from the queue, SIGTERM with
requests in flight, --log-inputs, and the official `openai` Python client.

Models come from tests/py/gen_model.py when present, else ../shared/tools/make_model.py; with
neither, the tests skip visibly.
"""
import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from conftest import clean_env, peer_python  # noqa: E402
BIN = os.path.abspath(os.environ.get("MEDEMBED_BIN", os.path.join(REPO, "build", "medembed")))
LIB = os.path.join(os.path.dirname(BIN), "libmedembed.so")
_shared = os.environ.get("MEDEMBED_SHARED", os.path.join(REPO, "..", "shared"))
SHARED = os.path.normpath(_shared) if os.path.isdir(_shared) else None

TEXTS = [
    "aspirin for secondary stroke prevention",
    "Chest pain radiating to the left arm, diaphoresis.",
    "hello world",
    "the patient was given 5 mg of warfarin daily",
    "x",
    "MRI showed no acute infarct; follow up in 3 months",
    "Type 2 diabetes mellitus with hyperglycemia and chronic kidney disease stage 3",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines inside",
    "café naïve résumé",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "blood pressure 140/90 mmHg, heart rate 88",
]


# --------------------------------------------------------------------------- models

def _generate(out, big=False):
    """Writes a random model to `out` with whichever generator is available."""
    try:
        import gen_model  # tests/py/gen_model.py
    except ImportError:
        gen_model = None
    if gen_model is not None:
        if big:
            gen_model.make_model(out, layers=2, hidden=128, heads=4, ffn=512,
                                 max_seq_length=512, max_position_embeddings=512)
        else:
            gen_model.make_model(out, layers=2, hidden=64, heads=4, ffn=128,
                                 max_seq_length=128, max_position_embeddings=128)
        return
    if SHARED is None:
        pytest.skip("no model generator: tests/py/gen_model.py and ../shared are both absent")
    tool = os.path.join(SHARED, "tools", "make_model.py")
    subprocess.run(["/usr/bin/python3", tool, "--preset", "tiny", "--std", "0.3", "--out", out,
                    "--seed", "1" if big else "0"], check=True, capture_output=True, timeout=300)


def _variant(base, out, modules=None, prompts=None, default_prompt=None, pooling=None,
             include_prompt=None):
    """A copy of model `base` with edited sentence-transformers JSON (weights linked)."""
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    for name in os.listdir(base):
        src = os.path.join(base, name)
        if os.path.isfile(src):
            os.symlink(src, os.path.join(out, name))
    shutil.copy(os.path.join(base, "1_Pooling", "config.json"),
                os.path.join(out, "1_Pooling", "config.json"))

    def edit(name, fn):
        p = os.path.join(out, name)
        with open(p, encoding="utf-8") as f:
            obj = json.load(f)
        obj = fn(obj)
        os.remove(p)
        with open(p, "w", encoding="utf-8") as f:
            json.dump(obj, f)

    if modules is not None:
        edit("modules.json", lambda m: [x for x in m if modules(x)])
    if prompts is not None:
        def st(c):
            c["prompts"] = prompts
            c["default_prompt_name"] = default_prompt
            return c
        edit("config_sentence_transformers.json", st)
    if pooling is not None or include_prompt is not None:
        def pool(c):
            if pooling is not None:
                for k in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens"):
                    c["pooling_mode_" + k] = False
                c["pooling_mode_" + pooling] = True
            if include_prompt is not None:
                c["include_prompt"] = include_prompt
            return c
        edit(os.path.join("1_Pooling", "config.json"), pool)
    return out


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="medembed-serve-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def model(workdir):
    if not os.access(BIN, os.X_OK):
        pytest.skip("%s not built" % BIN)
    out = os.path.join(workdir, "model")
    _generate(out)
    return out


@pytest.fixture(scope="module")
def info(model):
    r = subprocess.run([BIN, "info", "-m", model], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --------------------------------------------------------------------------- CLI reference

def cli_embed(model, texts, args=()):
    """`medembed embed` records for texts (JSONL strings in, JSONL out)."""
    data = "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")
    r = subprocess.run([BIN, "embed", "-m", model, "--input-format", "jsonl"] + list(args),
                       input=data, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    return [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]


def cli_vectors(model, texts, args=()):
    return np.array([rec["embedding"] for rec in cli_embed(model, texts, args)],
                    dtype=np.float32)


def cli_ids(model, texts, args=()):
    data = "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")
    r = subprocess.run([BIN, "tokenize", "-m", model, "--input-format", "jsonl"] + list(args),
                       input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]


def f32(rows):
    return np.array(rows, dtype=np.float32)


def assert_bits_equal(got, want):
    got, want = f32(got), f32(want)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes(), "max |diff| %g" % float(np.max(np.abs(got - want)))


# --------------------------------------------------------------------------- server harness

_clean_env = clean_env  # conftest.py; leaks=True for the server


def _die_with_parent():
    """preexec_fn: the server gets SIGTERM if pytest itself dies (PR_SET_PDEATHSIG), so a
    crashed test run leaves no servers behind on a shared machine."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except Exception:
        pass


class Server:
    """A running `medembed serve`; stopped (SIGTERM) by close()."""

    def __init__(self, model, *args, env=None, wait=True):
        self.logf = tempfile.NamedTemporaryFile(prefix="medembed-serve-", suffix=".log",
                                                delete=False)
        cmd = [BIN, "serve", "-m", model, "--port", "0"] + [str(a) for a in args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.logf, env=_clean_env(env, leaks=True),
                                     preexec_fn=_die_with_parent)
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline and self.port is None:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.02)
        assert self.port, "server did not start: %s" % self.log()
        if wait:
            self.wait_ready()

    def log(self):
        with open(self.logf.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, "server exited: %s" % self.log()
            try:
                status, _, _ = self.request("GET", "/health", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("server never became healthy: %s" % self.log())

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode("utf-8")
            elif isinstance(body, str):
                body = body.encode("utf-8")
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def post(self, path, obj, headers=None, timeout=60):
        status, hdrs, data = self.request("POST", path, obj, headers, timeout)
        return status, json.loads(data) if data else None

    def metrics(self):
        status, _, data = self.request("GET", "/metrics")
        assert status == 200
        return parse_metrics(data.decode("utf-8"))

    def close(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server ignored SIGTERM: %s" % self.log())
        rc = self.proc.returncode
        os.unlink(self.logf.name)
        return rc


def parse_metrics(text):
    """{'name{labels}': value} from Prometheus text; checks the format on the way."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith("# HELP ") or line.startswith("# TYPE "), line
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (\S+)', line)
        assert m, "bad metrics line: %r" % line
        out[m.group(1)] = float(m.group(3))
    return out


@pytest.fixture(scope="module")
def server(model):
    s = Server(model, "--max-client-batch-size", 16, "--payload-limit", 200000)
    yield s
    assert s.close() == 0


def tei_error(status, body, want_status, want_type=None):
    assert status == want_status, body
    assert isinstance(body, dict) and set(body) == {"error", "error_type"}, body
    assert isinstance(body["error"], str) and body["error"], body
    if want_type:
        assert body["error_type"] == want_type, body


def openai_error(status, body, want_status, want_code=None, want_param=None):
    assert status == want_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    e = body["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"]
    want_type = {401: "authentication_error", 429: "rate_limit_error"}.get(
        want_status, "invalid_request_error" if want_status < 500 else "server_error")
    assert e["type"] == want_type, e
    if want_code:
        assert e["code"] == want_code, e
    if want_param:
        assert e["param"] == want_param, e


# --------------------------------------------------------------------------- vectors

def test_embed_equals_cli(server, model):
    want = cli_vectors(model, TEXTS)
    status, got = server.post("/embed", {"inputs": TEXTS})
    assert status == 200
    assert_bits_equal(got, want)
    # one string in, a list of one vector out (TEI)
    status, got = server.post("/embed", {"inputs": TEXTS[0]})
    assert status == 200 and len(got) == 1
    assert_bits_equal(got, want[:1])


def test_openai_float_and_base64_equal_cli(server, model, info):
    recs = cli_embed(model, TEXTS)
    want = f32([r["embedding"] for r in recs])
    status, body = server.post("/v1/embeddings", {"input": TEXTS, "model": "anything"})
    assert status == 200
    assert body["object"] == "list" and body["model"] == os.path.basename(model)
    assert [d["index"] for d in body["data"]] == list(range(len(TEXTS)))
    assert all(d["object"] == "embedding" for d in body["data"])
    assert_bits_equal([d["embedding"] for d in body["data"]], want)
    tokens = sum(r["n_tokens"] for r in recs)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    status, body = server.post("/v1/embeddings", {"input": TEXTS, "encoding_format": "base64"})
    assert status == 200
    for d, w in zip(body["data"], want):
        raw = base64.b64decode(d["embedding"])
        assert raw == w.astype("<f4").tobytes()
    # the /embeddings alias (TEI serves both)
    status, body = server.post("/embeddings", {"input": TEXTS[1]})
    assert status == 200 and len(body["data"]) == 1
    assert_bits_equal([body["data"][0]["embedding"]], want[1:2])


def test_token_id_inputs(server, model):
    """Token ids are used verbatim: the CLI's own ids give the CLI's vectors."""
    ids = [r["ids"] for r in cli_ids(model, TEXTS[:4])]
    want = cli_vectors(model, TEXTS[:4])
    status, body = server.post("/v1/embeddings", {"input": ids})
    assert status == 200
    assert_bits_equal([d["embedding"] for d in body["data"]], want)
    assert body["usage"]["prompt_tokens"] == sum(len(i) for i in ids)
    status, body = server.post("/v1/embeddings", {"input": ids[0]})  # one flat id list
    assert status == 200 and len(body["data"]) == 1
    assert_bits_equal([body["data"][0]["embedding"]], want[:1])
    status, got = server.post("/embed", {"inputs": [TEXTS[0], ids[1]]})  # mixed
    assert status == 200
    assert_bits_equal(got, want[:2])


def test_normalize_false_and_dimensions(server, model, info):
    raw = cli_vectors(model, TEXTS[:3], ["--no-normalize"])
    status, got = server.post("/embed", {"inputs": TEXTS[:3], "normalize": False})
    assert status == 200
    assert_bits_equal(got, raw)
    d = info["dim"] // 2
    status, got = server.post("/embed", {"inputs": TEXTS[:3], "normalize": False,
                                         "dimensions": d})
    assert status == 200
    assert_bits_equal(got, raw[:, :d])
    # normalized output cut to d dims is re-normalized (OpenAI / Matryoshka semantics)
    status, body = server.post("/v1/embeddings", {"input": TEXTS[:3], "dimensions": d})
    assert status == 200
    got = f32([x["embedding"] for x in body["data"]])
    full = cli_vectors(model, TEXTS[:3])
    ref = full[:, :d].astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    status, got = server.post("/embed", {"inputs": TEXTS[:1], "dimensions": info["dim"]})
    assert status == 200
    assert_bits_equal(got, full[:1])


def long_text(n_words):
    rng = random.Random(n_words)
    words = ["alpha", "beta", "gamma", "delta", "x7", "ray", "dose", "mg", "zeta", "q"]
    return " ".join(rng.choice(words) for _ in range(n_words))


def fitting_texts(model, max_len, fractions=(0.3, 0.6, 0.95)):
    """long_text()s whose token counts are about these fractions of the model's limit."""
    def count(text):
        return len(cli_ids(model, [text], ["--no-truncate"])[0]["ids"])

    per_word = count(long_text(100)) / 100.0
    out = []
    for f in fractions:
        n = max(1, int(f * max_len / per_word))
        while n > 1 and count(long_text(n)) > max_len:
            n -= 1
        out.append(long_text(n))
    return out


def test_truncation(server, model, info):
    max_len = info["max_length"]
    text = long_text(max_len * 2)
    # default (--auto-truncate false): 422, as TEI
    status, body = server.post("/embed", {"inputs": text})
    tei_error(status, body, 422, "Validation")
    assert str(max_len) in body["error"]
    status, body = server.post("/v1/embeddings", {"input": [TEXTS[0], text]})
    openai_error(status, body, 422, "context_length_exceeded", "input")
    # truncate right = what the CLI does by default
    want = cli_vectors(model, [text])
    status, got = server.post("/embed", {"inputs": text, "truncate": True})
    assert status == 200
    assert_bits_equal(got, want)
    status, got = server.post("/embed", {"inputs": text, "truncate": True,
                                         "truncation_direction": "Right"})
    assert status == 200
    assert_bits_equal(got, want)
    # truncate left: [CLS] + the last max-2 pieces + [SEP], checked against those ids
    full = cli_ids(model, [text], ["--no-truncate"])[0]["ids"]
    assert len(full) > max_len
    left = [full[0]] + full[len(full) - 1 - (max_len - 2):len(full) - 1] + [full[-1]]
    assert len(left) == max_len
    status, by_ids = server.post("/v1/embeddings", {"input": [left]})
    assert status == 200
    status, got = server.post("/embed", {"inputs": [text], "truncate": True,
                                         "truncation_direction": "left"})
    assert status == 200
    assert_bits_equal(got, [by_ids["data"][0]["embedding"]])
    assert f32(got).tobytes() != want.tobytes()
    # token-id input over the limit
    status, body = server.post("/v1/embeddings", {"input": [full]})
    openai_error(status, body, 422, "context_length_exceeded")


def test_auto_truncate_flag(model, info):
    text = long_text(info["max_length"] * 2)
    s = Server(model, "--auto-truncate", "true")
    try:
        status, got = s.post("/embed", {"inputs": text})
        assert status == 200
        assert_bits_equal(got, cli_vectors(model, [text]))
        status, body = s.post("/embed", {"inputs": text, "truncate": False})
        tei_error(status, body, 422, "Validation")
        status, body = s.request("GET", "/info")[0], json.loads(s.request("GET", "/info")[2])
        assert body["auto_truncate"] is True
    finally:
        assert s.close() == 0


def test_prompts(workdir, model):
    pm = _variant(model, os.path.join(workdir, "prompts"),
                  prompts={"query": "query: ", "passage": "passage: "})
    s = Server(pm)
    try:
        status, got = s.post("/embed", {"inputs": TEXTS[:3], "prompt_name": "query"})
        assert status == 200
        assert_bits_equal(got, cli_vectors(pm, TEXTS[:3], ["--prompt-name", "query"]))
        status, got = s.post("/embed", {"inputs": TEXTS[:3]})  # no default prompt
        assert status == 200
        assert_bits_equal(got, cli_vectors(pm, TEXTS[:3]))
        status, body = s.post("/embed", {"inputs": "a", "prompt_name": "nope"})
        tei_error(status, body, 422, "Validation")
        assert "nope" in body["error"] and "query" in body["error"]
        status, toks = s.post("/tokenize", {"inputs": "a", "prompt_name": "query"})
        assert status == 200
        want_ids = cli_ids(pm, ["query: a"])[0]["ids"]
        assert [t["id"] for t in toks[0]] == want_ids
    finally:
        assert s.close() == 0
    # a default prompt applies when none is named, as sentence-transformers does
    dm = _variant(model, os.path.join(workdir, "default-prompt"),
                  prompts={"query": "query: "}, default_prompt="query")
    s = Server(dm)
    try:
        status, got = s.post("/v1/embeddings", {"input": TEXTS[:2]})
        assert status == 200
        assert_bits_equal([d["embedding"] for d in got["data"]], cli_vectors(dm, TEXTS[:2]))
        assert_bits_equal([d["embedding"] for d in got["data"]],
                          cli_vectors(dm, TEXTS[:2], ["--prompt-name", "query"]))
    finally:
        assert s.close() == 0


def test_prompt_excluded_from_pooling(workdir, model):
    """include_prompt = false (mean pooling): the server hands texts and prompt to the
    library, which leaves the prompt's tokens out of pooling; still equal to the CLI."""
    pm = _variant(model, os.path.join(workdir, "prompt-excluded"),
                  prompts={"query": "query: "}, pooling="mean_tokens", include_prompt=False)
    s = Server(pm)
    try:
        want = cli_vectors(pm, TEXTS[:4], ["--prompt-name", "query"])
        status, got = s.post("/embed", {"inputs": TEXTS[:4], "prompt_name": "query"})
        assert status == 200
        assert_bits_equal(got, want)
        # and it differs from pooling over the prompt too
        incl = _variant(model, os.path.join(workdir, "prompt-included"),
                        prompts={"query": "query: "}, pooling="mean_tokens")
        assert f32(got).tobytes() != cli_vectors(incl, TEXTS[:4],
                                                 ["--prompt-name", "query"]).tobytes()
    finally:
        assert s.close() == 0


def test_model_without_normalize(workdir, model):
    """normalize=true (TEI's default) gives unit vectors even when the model has no
    Normalize module; normalize=false gives the model's raw output (= the CLI's)."""
    nm = _variant(model, os.path.join(workdir, "no-normalize"),
                  modules=lambda m: "Normalize" not in m["type"])
    raw = cli_vectors(nm, TEXTS[:4])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    s = Server(nm)
    try:
        status, got = s.post("/embed", {"inputs": TEXTS[:4], "normalize": False})
        assert status == 200
        assert_bits_equal(got, raw)
        status, got = s.post("/embed", {"inputs": TEXTS[:4]})
        assert status == 200
        ref = raw.astype(np.float64) / np.linalg.norm(raw.astype(np.float64), axis=1,
                                                      keepdims=True)
        np.testing.assert_allclose(f32(got), ref, rtol=2e-6, atol=1e-7)
    finally:
        assert s.close() == 0


def test_tokenize(server, model):
    want = cli_ids(model, TEXTS[:3])
    status, got = server.post("/tokenize", {"inputs": TEXTS[:3]})
    assert status == 200 and len(got) == 3
    for toks, w in zip(got, want):
        assert [t["id"] for t in toks] == w["ids"]
        assert [t["text"] for t in toks] == w["tokens"]
        assert toks[0]["special"] and toks[-1]["special"]
        assert not any(t["special"] for t in toks[1:-1])
        assert all(t["start"] is None and t["stop"] is None for t in toks)
    status, got = server.post("/tokenize", {"inputs": TEXTS[0], "add_special_tokens": False})
    assert status == 200 and len(got) == 1
    assert [t["id"] for t in got[0]] == want[0]["ids"][1:-1]
    # /tokenize does not truncate
    text = long_text(400)
    status, got = server.post("/tokenize", {"inputs": text})
    assert [t["id"] for t in got[0]] == cli_ids(model, [text], ["--no-truncate"])[0]["ids"]


def test_info_and_health(server, model, info):
    status, hdrs, data = server.request("GET", "/info")
    assert status == 200
    body = json.loads(data)
    assert body["model_id"] == os.path.basename(model)
    assert body["max_input_length"] == info["max_length"]
    assert body["max_client_batch_size"] == 16
    assert body["max_batch_tokens"] == 16384
    assert body["max_concurrent_requests"] == 512
    assert body["model_type"] == {"embedding": {"pooling": info["pooling"]}}
    assert body["medembed"]["fingerprint"] == info["fingerprint"]
    assert server.request("GET", "/health")[0] == 200


def test_health_503_while_loading(workdir, model):
    """The port answers before the model is loaded: /health and the inference routes say
    503 until then. config.json is a FIFO here, so loading blocks until the test opens it;
    what it then reads is not a regular file, so the load fails and the server exits 1."""
    fm = os.path.join(workdir, "fifo-model")
    os.makedirs(fm)
    for name in os.listdir(model):
        if name != "config.json":
            os.symlink(os.path.join(model, name), os.path.join(fm, name))
    os.mkfifo(os.path.join(fm, "config.json"))
    s = Server(fm, wait=False)
    try:
        status, _, data = s.request("GET", "/health", timeout=10)
        tei_error(status, json.loads(data), 503, "Unhealthy")
        status, body = s.post("/v1/embeddings", {"input": "a"})
        openai_error(status, body, 503)
        fd = os.open(os.path.join(fm, "config.json"), os.O_WRONLY)  # unblocks the loader
        os.close(fd)
        assert s.proc.wait(30) == 1
        assert "config.json" in s.log()
    finally:
        s.close()


def test_bad_model_and_usage_errors(workdir):
    r = subprocess.run([BIN, "serve", "-m", os.path.join(workdir, "missing"), "--port", "0"],
                       capture_output=True, timeout=30)
    assert r.returncode == 1 and b"missing" in r.stderr
    for args in (["serve"], ["serve", "-m", "x", "--auto-truncate", "maybe"],
                 ["serve", "-m", "x", "--port", "70000"], ["serve", "-m", "x", "--bogus"],
                 ["serve", "-m", "x", "--max-client-batch-size", "0"]):
        r = subprocess.run([BIN] + args, capture_output=True, timeout=30)
        assert r.returncode == 2, args
        assert r.stderr.startswith(b"medembed: error: "), r.stderr
        assert len(r.stderr.splitlines()) == 1
    r = subprocess.run([BIN, "serve", "--help"], capture_output=True, timeout=30)
    assert r.returncode == 0 and b"--max-batch-tokens" in r.stdout


# --------------------------------------------------------------------------- error rows

def test_error_rows(server, info):
    dim = info["dim"]
    many = ["t"] * 17  # --max-client-batch-size 16
    tei_rows = [
        # (body, status, error_type)
        ({"inputs": ""}, 400, "Empty"),
        ({"inputs": []}, 400, "Empty"),
        ({"inputs": ["a", ""]}, 400, "Empty"),
        ({"inputs": many}, 422, "Validation"),
        ({"inputs": "a", "dimensions": 0}, 422, "Validation"),
        ({"inputs": "a", "dimensions": dim + 1}, 422, "Validation"),
        ({"inputs": "a", "dimensions": "8"}, 422, "Validation"),
        ({"inputs": "a", "prompt_name": "unknown"}, 422, "Validation"),
        ({"inputs": "a", "truncate": "yes"}, 422, "Validation"),
        ({"inputs": "a", "truncation_direction": "middle"}, 422, "Validation"),
        ({"inputs": "a", "normalize": 1}, 422, "Validation"),
        ({"inputs": 5}, 422, "Validation"),
        ({"inputs": [["a"]]}, 422, "Validation"),
        ({"inputs": [[1, -1]]}, 422, "Validation"),
        ({"inputs": [[1, 10 ** 9]]}, 422, "Validation"),
        ({"input": "a"}, 422, "Validation"),  # missing field
        (["a"], 422, "Validation"),           # not an object
    ]
    for body, want_status, want_type in tei_rows:
        status, got = server.post("/embed", body)
        tei_error(status, got, want_status, want_type)
    for raw in (b'{"inputs": "a"', b"not json", b"", b'{"inputs": "\xff\xfe"}',
                b'{"inputs": "a"} trailing'):
        status, _, data = server.request("POST", "/embed", raw)
        tei_error(status, json.loads(data), 400, "Validation")
    openai_rows = [
        ({"input": ""}, 400, "empty_input", "input"),
        ({"input": []}, 400, "empty_input", "input"),
        ({"input": [[]]}, 400, "empty_input", "input"),
        ({"input": many}, 422, "too_many_inputs", "input"),
        ({"input": "a", "dimensions": 0}, 422, "invalid_dimensions", "dimensions"),
        ({"input": "a", "encoding_format": "int8"}, 422, "invalid_value", "encoding_format"),
        ({"input": "a", "model": 3}, 422, "invalid_type", "model"),
        ({"model": "m"}, 422, "missing_field", "input"),
        ({"inputs": "a"}, 422, "unknown_field", None),  # refused before parsing
    ]
    for body, want_status, code, param in openai_rows:
        status, got = server.post("/v1/embeddings", body)
        openai_error(status, got, want_status, code, param)
    status, _, data = server.request("POST", "/v1/embeddings", b"{oops")
    openai_error(status, json.loads(data), 400, "invalid_json")
    # /tokenize takes strings only
    status, got = server.post("/tokenize", {"inputs": [[1, 2]]})
    tei_error(status, got, 422, "Validation")
    # routes and methods
    status, _, data = server.request("GET", "/nope")
    tei_error(status, json.loads(data), 404)
    status, hdrs, data = server.request("GET", "/embed")
    tei_error(status, json.loads(data), 405)
    assert hdrs.get("Allow") == "POST"
    status, _, data = server.request("POST", "/search", {"query": "a"})
    tei_error(status, json.loads(data), 404)
    # none of it hurt the server
    status, got = server.post("/embed", {"inputs": "still fine"})
    assert status == 200


def test_payload_limit(server):
    big = {"inputs": "word " * 50000}  # ~250 kB > --payload-limit 200000
    status, got = server.post("/embed", big)
    tei_error(status, got, 413, "Validation")
    status, got = server.post("/v1/embeddings", {"input": "word " * 50000})
    openai_error(status, got, 413, "payload_too_large")
    # the same body sent chunked (no Content-Length) is cut off while streaming
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        data = json.dumps(big).encode()
        chunks = (data[i:i + 16384] for i in range(0, len(data), 16384))
        c.request("POST", "/embed", body=chunks, encode_chunked=True,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        tei_error(r.status, json.loads(r.read()), 413, "Validation")
    finally:
        c.close()
    assert server.post("/embed", {"inputs": "ok"})[0] == 200


def test_api_key(model):
    s = Server(model, "--api-key", "s3cret-key")
    try:
        for hdrs in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret"},
                     {"Authorization": "Bearer s3cret-key2"}, {"Authorization": "s3cret-key"}):
            status, body = s.post("/embed", {"inputs": "a"}, headers=hdrs)
            tei_error(status, body, 401, "Unauthorized")
            status, body = s.post("/v1/embeddings", {"input": "a"}, headers=hdrs)
            openai_error(status, body, 401, "invalid_api_key")
        assert s.request("GET", "/info")[0] == 401
        ok = {"Authorization": "Bearer s3cret-key"}
        assert s.post("/embed", {"inputs": "a"}, headers=ok)[0] == 200
        assert s.post("/v1/embeddings", {"input": "a"}, headers=ok)[0] == 200
        assert s.request("GET", "/info", headers=ok)[0] == 200
        assert s.request("GET", "/health")[0] == 200   # public, as in TEI
        assert s.request("GET", "/metrics")[0] == 200
    finally:
        assert s.close() == 0
    env = dict(os.environ, MEDEMBED_API_KEY="from-env")
    s = Server(model, env=env)
    try:
        assert s.post("/embed", {"inputs": "a"})[0] == 401
        assert s.post("/embed", {"inputs": "a"},
                      headers={"Authorization": "Bearer from-env"})[0] == 200
    finally:
        assert s.close() == 0


def _open_partial(port, path, body, sent):
    """A connection that has sent the headers and `sent` bytes of body: a request in
    progress that holds its concurrency slot."""
    sk = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (path, len(body))).encode()
    sk.sendall(head + body[:sent])
    return sk


def _finish_partial(sk, body, sent):
    sk.sendall(body[sent:])
    f = sk.makefile("rb")
    status_line = f.readline().decode()
    status = int(status_line.split()[1])
    length = None
    while True:
        line = f.readline().decode().strip()
        if not line:
            break
        k, _, v = line.partition(":")
        if k.lower() == "content-length":
            length = int(v)
    data = f.read(length) if length is not None else f.read()
    sk.close()
    return status, json.loads(data)


def test_concurrency_limit_429(model):
    """A slot is taken when a request's body is complete and held until it is answered:
    bodies still arriving hold none, and requests over the limit get 429 in both shapes.
    (test_server_hardening.py holds slots with unread answers and checks every route.)"""
    s = Server(model, "--max-concurrent-requests", 2)
    try:
        body = json.dumps({"inputs": "held"}).encode()
        held = [_open_partial(s.port, "/embed", body, 5) for _ in range(3)]
        deadline = time.time() + 10
        while s.metrics()["te_requests_in_flight"] < 4 and time.time() < deadline:
            time.sleep(0.01)  # the three incomplete requests (+ this scrape) are in
        assert s.post("/embed", {"inputs": "not blocked"})[0] == 200
        assert s.request("POST", "/tokenize", {"inputs": "a"})[0] == 200
        for sk in held:
            status, got = _finish_partial(sk, body, 5)
            assert status == 200 and len(got) == 1
        m = s.metrics()
        assert m.get('te_request_failure{err="overloaded"}', 0) == 0
    finally:
        assert s.close() == 0


# --------------------------------------------------------------------------- concurrency

def test_64_parallel_clients(server, model, info):
    """64 clients, mixed lengths and routes, bad requests among them: every good answer
    equals the CLI's vectors for its texts, every bad one gets its error, none is lost."""
    # lengths up to the limit (or 160 tokens, to keep the test quick with a 512-token model)
    pool = TEXTS + fitting_texts(model, min(info["max_length"], 160), (0.1, 0.3, 0.6, 0.95))
    want = cli_vectors(model, pool, ["--no-truncate"])
    before = server.metrics()
    results, errors = [], []
    lock = threading.Lock()

    def client(k):
        rng = random.Random(k)
        try:
            for j in range(4):
                if (k + j) % 11 == 0:  # a bad request in the stream
                    status, body = server.post("/embed", {"inputs": []})
                    with lock:
                        results.append(("bad", status))
                    continue
                idx = [rng.randrange(len(pool)) for _ in range(rng.randint(1, 12))]
                texts = [pool[i] for i in idx]
                if rng.random() < 0.5:
                    status, body = server.post("/embed", {"inputs": texts})
                    vecs = body
                else:
                    fmt = rng.choice(["float", "base64"])
                    status, body = server.post("/v1/embeddings",
                                               {"input": texts, "encoding_format": fmt})
                    vecs = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
                            if fmt == "base64" else d["embedding"] for d in body["data"]]
                with lock:
                    results.append(("good", status))
                assert status == 200, body
                assert_bits_equal(vecs, want[idx])
        except Exception as e:  # reported below with the client number
            with lock:
                errors.append("client %d: %r" % (k, e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert not errors, errors[:3]
    good = sum(1 for kind, _ in results if kind == "good")
    bad = [st for kind, st in results if kind == "bad"]
    assert good + len(bad) == 64 * 4
    assert all(st == 400 for st in bad)
    after = server.metrics()

    def total(m, name):
        return sum(v for k, v in m.items() if k.startswith(name + "{"))

    assert total(after, "te_request_success") - total(before, "te_request_success") == good
    assert after['te_request_failure{err="empty"}'] - before['te_request_failure{err="empty"}'] \
        == len(bad)
    assert after["te_queue_size"] == 0
    # requests really were batched together: fewer forward calls than requests
    batches = after["te_batch_inference_count"] - before["te_batch_inference_count"]
    assert 0 < batches <= good


def test_token_budget_does_not_change_vectors(model, info):
    """With --max-batch-tokens at its minimum (the model's limit) requests are split over
    many forward calls and packed with other requests' sequences; vectors are unchanged."""
    pool = TEXTS + fitting_texts(model, min(info["max_length"], 160), (0.5, 0.95))
    want = cli_vectors(model, pool, ["--no-truncate"])
    s = Server(model, "--max-batch-tokens", info["max_length"])
    errors = []

    def client(k):
        try:
            idx = [(k * 3 + j) % len(pool) for j in range(10)]
            status, got = s.post("/embed", {"inputs": [pool[i] for i in idx]})
            assert status == 200
            assert_bits_equal(got, want[idx])
        except Exception as e:
            errors.append(repr(e))

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        m = s.metrics()
        assert m["te_batch_next_tokens_sum"] / m["te_batch_next_tokens_count"] \
            <= info["max_length"]
        assert m["te_batch_inference_count"] > 8
    finally:
        assert s.close() == 0


def test_metrics_format(server):
    server.post("/embed", {"inputs": ["one", "two"]})
    m = server.metrics()
    assert m['te_request_count{route="/embed",method="batch"}'] >= 1
    for h in ("te_request_duration", "te_request_queue_duration", "te_request_inference_duration",
              "te_request_tokenization_duration", "te_request_input_length",
              "te_batch_next_size", "te_batch_next_tokens", "te_batch_inference_duration"):
        buckets = sorted(((float(k.split('le="')[1].rstrip('"}')) if "+Inf" not in k
                           else float("inf")), v)
                         for k, v in m.items() if k.startswith(h + "_bucket{"))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), h  # cumulative
        assert counts[-1] == m[h + "_count"] > 0, h
    assert m["te_embed_count"] >= 2 and m["te_embed_tokens"] > 0


def test_disconnected_client_is_dropped(workdir):
    """A client that hangs up while its request waits in the queue is dropped before its
    sequences are computed. The batcher is kept busy by a large request split into one
    forward call per sequence (--max-batch-tokens = the model's limit)."""
    big = os.path.join(workdir, "big")
    if not os.path.isdir(big):
        _generate(big, big=True)
    r = subprocess.run([BIN, "info", "-m", big], capture_output=True, timeout=60)
    max_len = json.loads(r.stdout)["max_length"]
    s = Server(big, "--max-batch-tokens", max_len, "--auto-truncate", "true",
               "--max-client-batch-size", 512)
    try:
        text = long_text(max_len * 2)  # truncated to max_len tokens
        assert s.post("/embed", {"inputs": [text]})[0] == 200  # warm-up
        t0 = time.time()
        assert s.post("/embed", {"inputs": [text]})[0] == 200
        per_seq = max(time.time() - t0, 1e-3)
        n_seq = int(min(512, max(4, 1.0 / per_seq)))  # keep the batcher busy for ~1 s
        done = []
        a = threading.Thread(target=lambda: done.append(
            s.post("/embed", {"inputs": [text] * n_seq}, timeout=120)[0]))
        a.start()
        deadline = time.time() + 20
        while s.metrics()["te_queue_size"] < 2 and time.time() < deadline:
            time.sleep(0.005)
        key = 'te_request_count{route="/embed",method="batch"}'
        before = s.metrics()[key]
        body = json.dumps({"inputs": ["dropped " * 10] * 5}).encode()
        sk = _open_partial(s.port, "/embed", body, len(body))
        deadline = time.time() + 20  # B is parsed (then queued at once): hang up
        while s.metrics()[key] < before + 1 and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)
        sk.close()
        a.join(120)
        assert done == [200]
        m = s.metrics()
        assert m['te_request_failure{err="disconnected"}'] == 1, s.log()
        # B's 5 inputs never reached a forward pass: only the warm-ups' and A's did
        assert m["te_batch_next_size_sum"] == 2 + n_seq
        assert m["te_embed_count"] == 2 + n_seq
        assert m["te_queue_size"] == 0
        assert s.post("/embed", {"inputs": "after"})[0] == 200
    finally:
        assert s.close() == 0


def test_sigterm_finishes_requests_in_flight(model, info):
    """SIGTERM: the listener closes, every request already begun is answered, then the
    process exits 0. Sixteen requests are begun (headers and part of the body sent) before
    the signal and completed after it, so all of them are in flight for certain."""
    pool = TEXTS + fitting_texts(model, min(info["max_length"], 160), (0.5, 0.9))
    want = cli_vectors(model, pool, ["--no-truncate"])
    s = Server(model)
    reqs = []
    for k in range(16):
        idx = list(range(k % len(pool), len(pool)))[:8]
        if k % 2:
            path, body = "/v1/embeddings", {"input": [pool[i] for i in idx]}
        else:
            path, body = "/embed", {"inputs": [pool[i] for i in idx]}
        data = json.dumps(body).encode()
        reqs.append((path, idx, data, _open_partial(s.port, path, data, len(data) - 1)))
    deadline = time.time() + 10
    while s.metrics()["te_requests_in_flight"] < 17 and time.time() < deadline:
        time.sleep(0.005)
    s.proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    while "SIGTERM" not in s.log() and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    results, errors = [None] * len(reqs), []

    def finish(k):
        path, idx, data, sk = reqs[k]
        try:
            status, got = _finish_partial(sk, data, len(data) - 1)
            if path == "/v1/embeddings":
                got = [d["embedding"] for d in got["data"]]
            results[k] = status
            assert_bits_equal(got, want[idx])
        except Exception as e:
            errors.append("request %d: %r" % (k, e))

    threads = [threading.Thread(target=finish, args=(k,)) for k in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert results == [200] * len(reqs)
    assert s.proc.wait(30) == 0, s.log()
    assert "stopped" in s.log()
    s.close()


# --------------------------------------------------------------------------- privacy

def test_texts_not_logged_unless_asked(model):
    secret = "patient Zebulon Quartermain has hepatitis"
    s = Server(model)
    try:
        s.post("/embed", {"inputs": secret})
        s.post("/embed", {"inputs": secret, "dimensions": 0})  # an error path too
        s.request("POST", "/embed", ('{"inputs": "%s' % secret).encode())  # bad JSON
        assert "Zebulon" not in s.log()
    finally:
        assert s.close() == 0
    s = Server(model, "--log-inputs")
    try:
        s.post("/embed", {"inputs": secret})
        assert "Zebulon" in s.log()
    finally:
        assert s.close() == 0


# --------------------------------------------------------------------------- /search

INDEX_BUILDER = r"""
import ctypes, json, sys
lib_path, model, path, docs_json = sys.argv[1:5]
docs = json.loads(docs_json)
l = ctypes.CDLL(lib_path)
P = ctypes.POINTER(ctypes.c_void_p)
V, I32, SZ, S = ctypes.c_void_p, ctypes.c_int32, ctypes.c_size_t, ctypes.c_char_p


class Doc(ctypes.Structure):
    _fields_ = [("id", S), ("text", S), ("text_len", SZ), ("metadata", S)]


class Config(ctypes.Structure):
    _fields_ = [(n, I32) for n in ("dim", "vec_dtype", "chunk_tokens", "overlap", "hnsw_m",
                                   "hnsw_ef_construction")]


l.medembed_model_load.argtypes = [S, V, P, S, SZ]
l.medembed_ctx_create.argtypes = [V, I32, P]
l.medembed_index_create.argtypes = [S, V, V, P, S, SZ]
l.medembed_index_add_docs.argtypes = [V, V, V, I32, V, S, SZ]
l.medembed_index_flush.argtypes = [V, S, SZ]
for f in ("medembed_index_free", "medembed_ctx_free", "medembed_model_free"):
    getattr(l, f).argtypes = [V]
err = ctypes.create_string_buffer(512)
m, ctx, ix = V(), V(), V()
def ok(rc):
    if rc != 0:
        sys.exit("index builder: %s" % err.value.decode())
ok(l.medembed_model_load(model.encode(), None, ctypes.byref(m), err, 512))
ok(l.medembed_ctx_create(m, 1, ctypes.byref(ctx)))
cfg = Config()
l.medembed_index_config_init(ctypes.byref(cfg))
ok(l.medembed_index_create(path.encode(), m, ctypes.byref(cfg), ctypes.byref(ix), err, 512))
arr = (Doc * len(docs))()
keep = []
for i, (doc_id, text, meta) in enumerate(docs):
    keep += [doc_id.encode(), text.encode(), json.dumps(meta).encode()]
    arr[i] = Doc(keep[-3], keep[-2], len(keep[-2]), keep[-1])
ok(l.medembed_index_add_docs(ix, ctx, arr, len(docs), None, err, 512))
ok(l.medembed_index_flush(ix, err, 512))
l.medembed_index_free(ix)
l.medembed_ctx_free(ctx)
l.medembed_model_free(m)
"""


def _build_index(model, path, docs):
    """Builds an index through the C API (ctypes, in a child process: a sanitizer build's
    library needs its runtime preloaded, which this interpreter does not have)."""
    env = _clean_env()
    ldd = subprocess.run(["ldd", LIB], capture_output=True, text=True, env=env).stdout
    m = re.search(r"(\S*libasan\.so\S*) => (\S+)", ldd)
    if m:
        env["LD_PRELOAD"] = m.group(2)
        env["ASAN_OPTIONS"] = "detect_leaks=0"  # the interpreter's own allocations
    r = subprocess.run(["/usr/bin/python3", "-c", INDEX_BUILDER, LIB, model, path,
                        json.dumps(docs)], capture_output=True, timeout=120, env=env)
    if b"undefined symbol: medembed_index" in r.stderr:
        pytest.skip("this build has no index API")
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")


def test_search(workdir, model):
    docs = [("d%d" % i, t, {"year": 2000 + i, "kind": "even" if i % 2 == 0 else "odd"})
            for i, t in enumerate(TEXTS)]
    path = os.path.join(workdir, "search.db")
    _build_index(model, path, docs)
    s = Server(model, "--index", path)
    try:
        query = "stroke prevention with aspirin"
        dvec = cli_vectors(model, [t for _, t, _ in docs]).astype(np.float64)
        qvec = cli_vectors(model, [query]).astype(np.float64)[0]
        scores = dvec @ qvec
        order = sorted(range(len(docs)), key=lambda i: -scores[i])
        status, body = s.post("/search", {"query": query, "k": 5})
        assert status == 200, body
        assert [h["id"] for h in body["hits"]] == ["d%d" % i for i in order[:5]]
        np.testing.assert_allclose([h["score"] for h in body["hits"]],
                                   scores[order[:5]], rtol=1e-5, atol=1e-6)
        assert body["hits"][0]["metadata"] == docs[order[0]][2]
        assert body["n_docs"] == len(docs)
        status, body = s.post("/search", {"query": query, "k": 3, "filter": "kind=odd"})
        assert status == 200
        odd = [i for i in order if i % 2 == 1][:3]
        assert [h["id"] for h in body["hits"]] == ["d%d" % i for i in odd]
        status, body = s.post("/search", {"query": query, "filter": ["year>=2005", "kind=even"]})
        assert status == 200
        assert all(h["metadata"]["year"] >= 2005 and h["metadata"]["kind"] == "even"
                   for h in body["hits"]) and body["hits"]
        for bad, st in (({"query": ""}, 400), ({"k": 3}, 422), ({"query": "a", "k": 0}, 422),
                        ({"query": "a", "filter": "year>>"}, 422),
                        ({"query": "a", "filter": 5}, 422)):
            status, body = s.post("/search", bad)
            tei_error(status, body, st)
    finally:
        assert s.close() == 0
    # an index built with another model is refused at startup
    other = _variant(model, os.path.join(workdir, "other-pool"), pooling="mean_tokens")
    r = subprocess.run([BIN, "serve", "-m", other, "--port", "0", "--index", path],
                       capture_output=True, timeout=60)
    assert r.returncode == 1 and b"--index" in r.stderr


def _cli_search(model, path, query, *args):
    r = subprocess.run([BIN, "search", "-m", model, "--index", path, "-q", query, "--metadata"]
                       + list(args), capture_output=True, timeout=60, env=_clean_env())
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.decode().splitlines()]


def test_search_modes(workdir, model):
    """mode bm25 / hybrid (+ alpha) answer what `medembed search --mode` prints for the same
    index (whose values tests/py/test_hybrid.py checks against Python references)."""
    docs = [("d%d" % i, t, {"year": 2000 + i}) for i, t in enumerate(TEXTS)]
    docs.append(("code", "Diagnosis E11.9; HbA1c 8.1; given 5-FU", {"year": 1990}))
    path = os.path.join(workdir, "modes.db")
    _build_index(model, path, docs)
    s = Server(model, "--index", path)
    try:
        for query in ("aspirin stroke prevention", "E11.9 HbA1c", 'NEAR(aspirin "stroke" *'):
            for mode, extra, body_extra in (("bm25", [], {}), ("hybrid", [], {}),
                                            ("hybrid", ["--alpha", "0.25"], {"alpha": 0.25})):
                want = _cli_search(model, path, query, "--mode", mode, "-k", "5", *extra)
                status, body = s.post("/search", dict({"query": query, "k": 5, "mode": mode},
                                                      **body_extra))
                assert status == 200, body
                got = body["hits"]
                assert [h["id"] for h in got] == [w["id"] for w in want]
                for h, w in zip(got, want):
                    assert h["score"] == pytest.approx(w["score"], rel=1e-6)
                    assert h["metadata"] == w["metadata"]
                    if w["chunk"] is None:
                        assert (h["chunk"], h["start"], h["end"]) == (-1, 0, 0)
                    else:
                        assert h["chunk"] == w["chunk"]["index"]
                    if mode == "hybrid":
                        for leg in ("dense", "bm25"):
                            if w[leg] is None:
                                assert h[leg] is None
                            else:
                                assert h[leg]["rank"] == w[leg]["rank"]
                                assert h[leg]["score"] == pytest.approx(w[leg]["score"],
                                                                        rel=1e-6)
                    else:
                        assert "dense" not in h and "bm25" not in h
        # BM25 ranks words: the query is not embedded (no forward pass), and a query longer
        # than the model's max_length is not cut (its last word still matches).
        before = s.metrics()
        status, body = s.post("/search", {"query": "E11.9", "mode": "bm25"})
        assert status == 200 and [h["id"] for h in body["hits"]] == ["code"]
        status, body = s.post("/search", {"query": " ".join(["xyzzy"] * 600) + " E11.9",
                                          "mode": "bm25"})
        assert status == 200 and [h["id"] for h in body["hits"]] == ["code"]
        after = s.metrics()
        assert after["te_batch_inference_count"] == before["te_batch_inference_count"]
        ok = 'te_request_success{route="/search",method="single"}'
        assert after[ok] - before[ok] == 2
        status, body = s.post("/search", {"query": "E11.9", "mode": "hybrid"})
        assert status == 200
        assert s.metrics()["te_batch_inference_count"] > after["te_batch_inference_count"]
        status, body = s.post("/search", {"query": "E11.9", "mode": "bm25",
                                          "filter": "year>=2000"})
        assert status == 200 and body["hits"] == []
        for bad in ({"query": "a", "mode": "sparse"}, {"query": "a", "mode": 1},
                    {"query": "a", "mode": "hybrid", "alpha": 2},
                    {"query": "a", "mode": "hybrid", "alpha": "0.5"},
                    {"query": "a", "alpha": 0.5},
                    {"query": "a\u0000b", "mode": "bm25"}):
            status, body = s.post("/search", bad)
            tei_error(status, body, 422)
    finally:
        assert s.close() == 0


# --------------------------------------------------------------------------- openai client

OPENAI_SCRIPT = r"""
import json, sys
import openai
client = openai.OpenAI(api_key="test-key", base_url=sys.argv[1], max_retries=0)
texts = json.loads(sys.argv[2])
a = client.embeddings.create(model="medembed", input=texts)
b = client.embeddings.create(model="medembed", input=texts, encoding_format="float")
c = client.embeddings.create(model="medembed", input=texts[0], dimensions=8)
err = None
try:
    client.embeddings.create(model="medembed", input="")
except openai.APIStatusError as e:
    err = {"status": e.status_code, "name": type(e).__name__}
print(json.dumps({
    "a": [d.embedding for d in a.data], "usage": a.usage.model_dump(), "model": a.model,
    "b": [d.embedding for d in b.data], "c": [d.embedding for d in c.data], "err": err,
    "version": openai.__version__}))
"""


def test_openai_python_client(server, model):
    """The official openai package from PyPI (requirements-dev.txt), in its own process."""
    py = peer_python("openai")
    texts = TEXTS[:5]
    r = subprocess.run([py, "-c", OPENAI_SCRIPT, "http://127.0.0.1:%d/v1" % server.port,
                        json.dumps(texts)], capture_output=True, timeout=120, env=_clean_env())
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    out = json.loads(r.stdout)
    want = cli_vectors(model, texts)
    assert_bits_equal(out["a"], want)  # the client's default (base64, decoded by the client)
    assert_bits_equal(out["b"], want)  # encoding_format "float"
    assert len(out["c"][0]) == 8
    np.testing.assert_allclose(np.linalg.norm(f32(out["c"])), 1.0, rtol=1e-6)
    assert out["model"] == os.path.basename(model)
    assert out["usage"]["prompt_tokens"] == sum(x["n_tokens"] for x in cli_embed(model, texts))
    assert out["err"] == {"status": 400, "name": "BadRequestError"}
