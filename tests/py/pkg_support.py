"""pkg_support.py - helpers for the tests of the Python package (tests/py/test_pkg_*.py).

The package under test is bindings/python/medembed, imported from the source tree and bound
to the freshly built library: BUILD/libmedembed.so next to $MEDEMBED_BIN (tests/run_py.sh
sets it; default build/medembed), exported as MEDEMBED_LIB so that Dask worker processes
load the same file. Test models come from tests/py/gen_model.py when it is there, else from
../shared/tools/make_model.py (tiny preset); with neither, the tests skip visibly.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
PKG_DIR = os.path.join(REPO, "bindings", "python")

_bin = os.environ.get("MEDEMBED_BIN", os.path.join(REPO, "build", "medembed"))
BIN = _bin if os.path.isabs(_bin) else os.path.join(REPO, _bin)
LIB = os.path.join(os.path.dirname(BIN), "libmedembed.so")

_shared = os.environ.get("MEDEMBED_SHARED", os.path.join(REPO, "..", "shared"))
SHARED = os.path.normpath(_shared) if os.path.isdir(_shared) else None


def import_medembed():
    """The package from bindings/python, bound to LIB; skips when the build is missing."""
    if not os.path.isfile(LIB) or not os.access(BIN, os.X_OK):
        pytest.skip("%s or %s not built (run make, or set MEDEMBED_BIN)" % (LIB, BIN),
                    allow_module_level=True)
    san = _sanitizer_runtime(LIB)
    if san:
        pytest.skip("%s is built with %s, which Python can load only when preloaded: run "
                    "LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name="
                    "libubsan.so) ASAN_OPTIONS=detect_leaks=0 tests/run_py.sh ..." % (LIB, san),
                    allow_module_level=True)
    os.environ["MEDEMBED_LIB"] = LIB
    if PKG_DIR not in sys.path:
        sys.path.insert(0, PKG_DIR)
    pp = os.environ.get("PYTHONPATH", "")
    if PKG_DIR not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = PKG_DIR + (os.pathsep + pp if pp else "")
    import medembed
    assert os.path.samefile(medembed.lib_path(), LIB), medembed.lib_path()
    return medembed


def _sanitizer_runtime(lib):
    """"libasan" if lib needs the ASan runtime and this process has not preloaded it."""
    try:
        deps = subprocess.run(["ldd", lib], capture_output=True, timeout=30).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    if "libasan" not in deps:
        return None
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        return None if "libasan" in f.read() else "libasan"


def need_shared(*parts):
    if SHARED is None:
        pytest.skip("../shared is absent (a fresh clone): %s unavailable" % "/".join(parts))
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip("%s is missing" % p)
    return p


def _edit_json(path, fn):
    obj = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    obj = fn(obj) or obj
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)


def make_model(out, normalize=True, prompts=None, default_prompt_name=None, seed=0):
    """A random-weight model folder at out; returns out."""
    try:
        sys.path.insert(0, HERE)
        import gen_model  # tests/py/gen_model.py (synthetic vocabulary, numpy only)
    except ImportError:
        gen_model = None
    finally:
        sys.path.remove(HERE)
    if gen_model is not None:
        gen_model.make_model(out, normalize=normalize, prompts=prompts,
                             default_prompt_name=default_prompt_name, seed=seed)
        return out
    tool = os.path.join(SHARED or "/nonexistent", "tools", "make_model.py")
    if not os.path.isfile(tool):
        pytest.skip("no model generator: tests/py/gen_model.py and ../shared/tools/make_model.py "
                    "are both absent")
    subprocess.run([sys.executable, tool, "--preset", "tiny", "--std", "0.3", "--seed",
                    str(seed), "--out", out], check=True, capture_output=True, timeout=120)
    if not normalize:
        _edit_json(os.path.join(out, "modules.json"),
                   lambda mods: [m for m in mods if "Normalize" not in m.get("type", "")])
    if prompts is not None or default_prompt_name is not None:
        def upd(cfg):
            cfg["prompts"] = dict(prompts or {})
            cfg["default_prompt_name"] = default_prompt_name
        _edit_json(os.path.join(out, "config_sentence_transformers.json"), upd)
    return out


def cli(args, input=None, timeout=120):
    r = subprocess.run([BIN] + [str(a) for a in args], input=input, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, "medembed %s failed (%d): %s" % (
        " ".join(map(str, args)), r.returncode, r.stderr.decode("utf-8", "replace"))
    return r


def jsonl(texts):
    return "".join(json.dumps(t) + "\n" for t in texts).encode("utf-8")


def cli_embed_npy(model_dir, texts, tmp_path, args=()):
    """`medembed embed --format npy` on texts (sent as JSONL strings): the (n, dim) array."""
    out = os.path.join(str(tmp_path), "cli_%d.npy" % len(os.listdir(str(tmp_path))))
    cli(["embed", "-m", model_dir, "--input-format", "jsonl", "--format", "npy", "-o", out]
        + list(args), jsonl(texts))
    return np.load(out, allow_pickle=False)


def cli_tokenize(model_dir, texts, args=()):
    r = cli(["tokenize", "-m", model_dir, "--input-format", "jsonl"] + list(args), jsonl(texts))
    return [json.loads(line)["ids"] for line in r.stdout.decode("utf-8").splitlines()]


def corpus_texts(limit=None):
    """PubMedQA abstracts from ../shared, or generated clinical-sounding text without it."""
    if SHARED is not None:
        p = os.path.join(SHARED, "data", "pubmedqa", "corpus.jsonl")
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                recs = [json.loads(line) for line in f if line.strip()]
            out = [(r["_id"], r["text"]) for r in recs]
            return out[:limit] if limit else out
    rng = np.random.default_rng(7)
    words = ("patient patients acute chronic stroke aspirin dose trial risk heart blood cell "
             "therapy cancer mortality survival insulin glucose children women cohort "
             "randomized significant reduced increased outcome 12 mg 95% ci").split()
    n = limit or 400
    return [("g%d" % i, " ".join(rng.choice(words, size=int(rng.integers(3, 120)))))
            for i in range(n)]
