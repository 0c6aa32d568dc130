"""Shared fixtures for the Python tests.

Run from the repository root:  MEDEMBED_BIN=build/medembed /usr/bin/python3 -m pytest -q tests/py
(tests/run_py.sh does this). Tests that need ../shared (golden files, PubMedQA, the bert-base
tokenizer) skip with a visible reason when that folder is absent, as in a user's fresh clone.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import gen_model  # noqa: E402
import numpy_ref  # noqa: E402

_shared = os.environ.get("MEDEMBED_SHARED", os.path.join(REPO, "..", "shared"))
SHARED = os.path.normpath(_shared) if os.path.isdir(_shared) else None
NO_SHARED = "../shared is absent (a fresh clone): golden/reference files unavailable"


def need_shared(*parts):
    """Path under ../shared, or skip the test with a visible reason."""
    if SHARED is None:
        pytest.skip(NO_SHARED)
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip("%s is missing" % p)
    return p


# CI sets MEDEMBED_REQUIRE_PEERS=1: there a missing peer (a PyPI package, a real model from
# a wheel) fails the test instead of skipping it, since CI must run every test.
REQUIRE_PEERS = os.environ.get("MEDEMBED_REQUIRE_PEERS") == "1"


def peer_skip(reason):
    """Skips visibly for want of a peer; fails instead under MEDEMBED_REQUIRE_PEERS=1."""
    if REQUIRE_PEERS:
        pytest.fail("%s (MEDEMBED_REQUIRE_PEERS=1: this run must have every peer; "
                    "run `make venv`)" % reason, pytrace=False)
    pytest.skip(reason)


def clean_env(env=None, leaks=False, **extra):
    """The environment (default os.environ) for a child process, with extra set. Under
    `make asan` tests/run_py.sh preloads the sanitizer runtime into this interpreter: an
    uninstrumented child (PyTorch, the openai client) must not inherit it, and an
    instrumented one (the server, meant to free everything) gets leak checking back."""
    env = dict(os.environ if env is None else env)
    env.pop("LD_PRELOAD", None)
    opts = [o for o in env.get("ASAN_OPTIONS", "").split(":") if o and
            not o.startswith("detect_leaks=")]
    if leaks:
        opts.append("detect_leaks=1")
    if opts:
        env["ASAN_OPTIONS"] = ":".join(opts)
    else:
        env.pop("ASAN_OPTIONS", None)
    env.update(extra)
    return env


def peer_python(*modules, system=False):
    """An interpreter that imports all of `modules`: this one's executable (a child process,
    so a sanitizer preload never meets them), or the venv of scripts/venv.sh, or with
    system=True Debian's /usr/bin/python3 (peers packaged as python3-*). Skips (or fails
    under MEDEMBED_REQUIRE_PEERS=1) when none does."""
    code = "import " + ", ".join(modules)
    cands = [sys.executable, os.path.join(REPO, ".venv", "bin", "python")]
    if system:
        cands.append("/usr/bin/python3")
    for py in dict.fromkeys(c for c in cands if os.access(c, os.X_OK)):
        r = subprocess.run([py, "-c", code], capture_output=True, env=clean_env(), timeout=300)
        if r.returncode == 0:
            return py
    peer_skip("no Python with %s (run `make venv`, which installs requirements-dev.txt)"
              % ", ".join(modules))


def sanitizer_build(binary):
    """True when `binary` links a sanitizer runtime (make asan / ubsan)."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return b"libasan" in out or b"libubsan" in out


def cpu_flags():
    """The flags words of /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(re.findall(r"[\w.]+", f.read()))
    except OSError:
        return set()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Cli:
    """Runs the medembed binary and parses its output."""

    def __init__(self, path):
        self.path = path
        self.timeout = 120  # seconds per command; the real-model tests raise it

    def run(self, args, input=None, timeout=None, env=None):
        timeout = timeout or self.timeout
        if isinstance(input, str):
            input = input.encode("utf-8")
        r = subprocess.run([self.path] + [str(a) for a in args], input=input,
                           capture_output=True, timeout=timeout,
                           env=None if env is None else dict(os.environ, **env))
        # a signal (segfault, abort) shows as a negative return code: always a bug
        assert r.returncode >= 0, "medembed %s died with signal %d\nstderr: %s" % (
            " ".join(map(str, args)), -r.returncode, r.stderr.decode("utf-8", "replace"))
        return r

    def ok(self, args, input=None):
        r = self.run(args, input)
        assert r.returncode == 0, "medembed %s failed (%d): %s" % (
            " ".join(map(str, args)), r.returncode, r.stderr.decode("utf-8", "replace"))
        return r

    @staticmethod
    def jsonl_input(texts):
        return "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")

    def embed(self, model, texts=None, args=(), raw=None):
        """Embed texts (sent as JSONL strings unless raw bytes are given); parsed records."""
        if raw is None:
            raw = self.jsonl_input(texts)
            args = ["--input-format", "jsonl"] + list(args)
        r = self.ok(["embed", "-m", model] + list(args), raw)
        return [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]

    def embed_npy(self, model, texts, args, tmp_path, name="out.npy"):
        out = os.path.join(str(tmp_path), name)
        self.ok(["embed", "-m", model, "--input-format", "jsonl", "--format", "npy", "-o", out]
                + list(args), self.jsonl_input(texts))
        return np.load(out, allow_pickle=False)

    def tokenize(self, model, texts, args=()):
        r = self.ok(["tokenize", "-m", model, "--input-format", "jsonl"] + list(args),
                    self.jsonl_input(texts))
        recs = [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]
        assert len(recs) == len(texts)
        return [rec["ids"] for rec in recs]

    def info(self, model):
        r = self.ok(["info", "-m", model])
        return json.loads(r.stdout.decode("utf-8"))


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("MEDEMBED_BIN", os.path.join(REPO, "build", "medembed"))
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    if not os.access(path, os.X_OK):
        pytest.skip("medembed binary not found at %s (build it, or set MEDEMBED_BIN)" % path)
    return Cli(path)


class ModelFactory:
    """gen_model folders made once per session and keyed by their options."""

    def __init__(self, root):
        self.root = root
        self.cache = {}
        self.refs = {}

    def get(self, **kw):
        key = json.dumps(kw, sort_keys=True)
        if key not in self.cache:
            d = os.path.join(self.root, "m%d" % len(self.cache))
            self.cache[key] = gen_model.make_model(d, **kw)
        return self.cache[key]

    def ref(self, model_dir):
        if model_dir not in self.refs:
            self.refs[model_dir] = numpy_ref.load(model_dir)
        return self.refs[model_dir]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return ModelFactory(str(tmp_path_factory.mktemp("models")))
