#!/usr/bin/python3
"""bf16 / int8 accuracy against f32 on a real corpus.

Embeds the first N texts of a JSONL corpus (default: all PubMedQA abstracts
in ../shared) with `medembed embed --dtype f32|bf16|int8 --format npy` and
prints, for bf16 and int8, the mean and minimum cosine similarity to the f32
embedding of the same text. Needs numpy (/usr/bin/python3).

    bench/dtype_accuracy.py -m MODEL [-i corpus.jsonl] [-n N] [--threads 2] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)

ap = argparse.ArgumentParser()
ap.add_argument("-m", "--model", required=True)
ap.add_argument("-i", "--input",
                default=os.path.join(root, "..", "shared", "data", "pubmedqa", "corpus.jsonl"))
ap.add_argument("-n", type=int, default=0, help="first N texts (0 = all)")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--medembed", default=os.path.join(root, "build", "medembed"))
ap.add_argument("--json")
a = ap.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    src = a.input
    if a.n:
        src = os.path.join(tmp, "subset.jsonl")
        with open(a.input) as f, open(src, "w") as g:
            for i, line in enumerate(f):
                if i >= a.n:
                    break
                g.write(line)
    emb = {}
    for dt in ("f32", "bf16", "int8"):
        out = os.path.join(tmp, dt + ".npy")
        subprocess.run([a.medembed, "embed", "-m", a.model, "-i", src, "-o", out, "--format", "npy",
                        "--dtype", dt, "--threads", str(a.threads)], check=True)
        emb[dt] = np.load(out).astype(np.float64)

ref = emb["f32"]
ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
res = {"texts": int(ref.shape[0])}
for dt in ("bf16", "int8"):
    e = emb[dt] / np.linalg.norm(emb[dt], axis=1, keepdims=True)
    cos = np.sum(e * ref, axis=1)
    res[dt] = {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
    print(f"{dt} vs f32 over {ref.shape[0]} texts: mean cosine {cos.mean():.6f}, min {cos.min():.6f}")
if a.json:
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
