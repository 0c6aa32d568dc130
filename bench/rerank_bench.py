#!/usr/bin/env python3
"""rerank_bench.py - cross-encoder reranking speed: medembed beside sentence-transformers.

The workload is what `search --rerank` and POST /rerank do: one query against its top
candidates. For each query, `--candidates` documents (PubMedQA abstracts when ../shared has
them, else generated clinical-looking text) are scored as (query, document) pairs, cut to
`--max-length` tokens (longest_first).

Engines, each in this process, on the same pairs and the same threads:
  - medembed.CrossEncoder at each --dtypes precision, end to end: it tokenizes the pairs and
    batches them itself (padding-free);
  - the --peers: ONNX Runtime f32 and int8 (quantize_dynamic, QInt8 weights) and OpenVINO f32
    and bf16 (precision read back from the compiled model) on the graph bench/peer_bench.py
    exports for the folder (token types, pooler, classifier), set up as bench/peers.sh sets
    them up. They get the pairs already tokenized (Hugging Face `tokenizers`, longest_first,
    the same ids medembed makes; tokenization not timed) in length-sorted batches of 32 padded
    to their longest pair;
  - sentence-transformers' CrossEncoder (`st`; PyTorch float32, torch.set_num_threads(threads),
    predict(batch_size=32), its default). With a PyTorch built on a generic BLAS (Debian's)
    it is far from PyTorch's speed elsewhere: the ONNX Runtime and OpenVINO rows are the fair
    peers.

Rounds are interleaved, the engine order rotated each round, so every engine sees the same
background load; the first call of each engine is a warm-up and is not timed. Printed: the CPU
model and flags, pairs/s per engine (median over rounds), the ratio of each medembed dtype to
the best peer in the same precision (f32: the faster of ORT f32 and OpenVINO f32; bf16:
OpenVINO bf16; int8: the faster of ORT int8 and OpenVINO bf16), as the median of the per-round
ratios with their range, and the largest difference of each engine's sigmoid scores from
medembed f32's. --json writes every raw timing.

The model is a cross-encoder folder (--model), by default a random-weight one in the shape of
cross-encoder/ms-marco-MiniLM-L-6-v2 (6 layers, 384 hidden, 12 heads, FFN 1536, 512 tokens)
written by tests/py/gen_model.py on bert-base-uncased's vocabulary from ../shared (its
synthetic vocabulary without it). Speed does not depend on the weights' values.

    .venv/bin/python bench/rerank_bench.py [--model DIR] [--rounds 5] [--threads 2]
"""
import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
sys.path.insert(0, HERE)


def cpu_line():
    model, flags = platform.processor() or "?", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "asimd", "sve"))]
    return "CPU: %s; %d CPUs; flags: %s" % (model, os.cpu_count() or 0, " ".join(keep))


def workload(n_queries, n_cand, seed):
    shared = os.environ.get("MEDEMBED_SHARED", os.path.join(ROOT, "..", "shared"))
    qpath = os.path.join(shared, "data", "pubmedqa", "queries.jsonl")
    cpath = os.path.join(shared, "data", "pubmedqa", "corpus.jsonl")
    rng = random.Random(seed)
    if os.path.exists(qpath) and os.path.exists(cpath):
        with open(qpath, encoding="utf-8") as f:
            queries = [json.loads(line)["text"] for line in f if line.strip()]
        with open(cpath, encoding="utf-8") as f:
            docs = [json.loads(line)["text"] for line in f if line.strip()]
        source = "PubMedQA (../shared)"
    else:
        words = ("patient presented with chest pain dyspnea troponin elevated ECG showed ST "
                 "elevation aspirin heparin metformin HbA1c insulin glargine stroke warfarin "
                 "INR renal failure creatinine sepsis lactate antibiotics").split()
        queries = [" ".join(rng.choice(words) for _ in range(12)) + "?" for _ in range(64)]
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(80, 300)))
                for _ in range(1000)]
        source = "generated text (no ../shared)"
    qs = rng.sample(queries, n_queries)
    return [[(q, d) for d in rng.sample(docs, n_cand)] for q in qs], source


def make_model(out):
    import gen_model
    shared = os.environ.get("MEDEMBED_SHARED", os.path.join(ROOT, "..", "shared"))
    vocab = os.path.join(shared, "reference", "bert-base-uncased", "vocab.txt")
    gen_model.make_model(out, layers=6, hidden=384, heads=12, ffn=1536, max_seq_length=512,
                         max_position_embeddings=512, cross_encoder=True, std=0.05,
                         vocab_file=vocab if os.path.exists(vocab) else None)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="cross-encoder folder (default: a random MiniLM-L6 one)")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="f32,bf16,int8")
    ap.add_argument("--peers", default="ort-f32,ort-int8,ov-f32,ov-bf16,st",
                    help="comma list of ort-f32, ort-int8, ov-f32, ov-bf16, st; or none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every raw timing here")
    a = ap.parse_args()

    print(cpu_line(), flush=True)
    import medembed
    tmp = None
    model = a.model
    if not model:
        tmp = tempfile.TemporaryDirectory(prefix="medembed-rerank-bench-")
        model = make_model(os.path.join(tmp.name, "ce"))
    groups, source = workload(a.queries, a.candidates, a.seed)
    n_pairs = sum(len(g) for g in groups)
    dtype_names = {"f32": "float32", "bf16": "bfloat16", "int8": "int8"}
    engines = {}
    for dt in [d for d in a.dtypes.split(",") if d]:
        ce = medembed.CrossEncoder(model, dtype=dtype_names[dt], threads=a.threads,
                                   max_length=a.max_length)
        engines["medembed-" + dt] = (lambda ce: lambda gi: ce.predict(groups[gi],
                                                                      truncate=True))(ce)
    peers = [p for p in a.peers.split(",") if p and p != "none"]
    graph = [p for p in peers if p.startswith(("ort-", "ov-"))]
    if graph:
        import peer_bench
        from tokenizers import Tokenizer
        d = tempfile.mkdtemp(prefix="medembed-rerank-peers-")
        peer_bench.cmd_export(argparse.Namespace(model=model, out=d))
        tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
        tok.enable_truncation(a.max_length, strategy="longest_first", direction="right")
        tok.no_padding()
        batches = []  # per group: [(ids, mask, types), ...] sorted by length, 32 a batch
        for g in groups:
            enc = tok.encode_batch(g)
            order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
            bs = []
            for k in range(0, len(order), 32):
                part = [enc[i] for i in order[k:k + 32]]
                L = max(len(e.ids) for e in part)
                ids = np.zeros((len(part), L), np.int64)
                typ = np.zeros((len(part), L), np.int64)
                mask = np.zeros((len(part), L), np.int64)
                for r, e in enumerate(part):
                    ids[r, :len(e.ids)] = e.ids
                    typ[r, :len(e.ids)] = e.type_ids
                    mask[r, :len(e.ids)] = 1
                bs.append((order[k:k + 32], ids, mask, typ))
            batches.append(bs)
        for p in graph:
            eng, prec = p.split("-")
            e = peer_bench.Engine(eng, prec, d, a.threads)

            def run(gi, e=e):
                out = np.empty(len(groups[gi]), np.float64)
                for idx, ids, mask, typ in batches[gi]:
                    out[idx] = e.run(ids, mask, static=False, types=typ)[:, 0]
                return out
            engines[p] = run
            if eng == "ov" and e.compiled_precision != prec:
                sys.exit("rerank_bench: OpenVINO compiled %s for %s" % (e.compiled_precision,
                                                                       prec))
    if "st" in peers:
        import torch
        from sentence_transformers import CrossEncoder
        torch.set_num_threads(a.threads)
        st = CrossEncoder(model, max_length=a.max_length, device="cpu")

        def st_run(gi):
            with torch.inference_mode():
                return st.predict(groups[gi], batch_size=32, show_progress_bar=False,
                                  activation_fct=torch.nn.Identity())
        engines["st"] = st_run
    names = list(engines)
    print("model %s; %d queries x %d candidates = %d pairs from %s; max_length %d; "
          "%d threads; %d rounds" % (model if a.model else "random MiniLM-L6-shaped CE",
                                     len(groups), a.candidates, n_pairs, source, a.max_length,
                                     a.threads, a.rounds), flush=True)
    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))
    scores = {}
    for n in names:  # warm-up, and the scores compared below (as sigmoids)
        z = np.concatenate([np.asarray(engines[n](gi), dtype=np.float64).reshape(-1)
                            for gi in range(len(groups))])
        scores[n] = z if n.startswith("medembed-") else sigmoid(z)
    times = {n: [] for n in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0 = time.perf_counter()
            for gi in range(len(groups)):
                engines[n](gi)
            times[n].append(time.perf_counter() - t0)
    rate = {n: n_pairs / statistics.median(times[n]) for n in names}
    best_peer = {"f32": ["ort-f32", "ov-f32"], "bf16": ["ov-bf16"],
                 "int8": ["ort-int8", "ov-bf16"]}
    ratios = {}
    ref = scores.get("medembed-f32")
    print("\n| engine | pairs/s (median) | vs the best peer in its precision | max score diff "
          "from medembed f32 |\n|---|---|---|---|")
    for n in names:
        cell = ""
        if n.startswith("medembed-"):
            cands = [p for p in best_peer[n.split("-")[1]] if p in times]
            if cands:
                best = max(cands, key=lambda p: rate[p])
                per = [s / m for s, m in zip(times[best], times[n])]
                ratios[n] = {"peer": best, "median": statistics.median(per),
                             "min": min(per), "max": max(per)}
                cell = "%.2fx %s [%.2f-%.2f]" % (ratios[n]["median"], best, min(per), max(per))
        diff = "" if ref is None else "%.2g" % float(np.max(np.abs(scores[n] - ref)))
        print("| %s | %.1f | %s | %s |" % (n, rate[n], cell, diff))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu_line(), "pairs": n_pairs, "threads": a.threads,
                       "rounds": a.rounds, "seconds": times, "pairs_per_s": rate,
                       "ratios": ratios,
                       "max_abs_diff_vs_f32": {n: float(np.max(np.abs(scores[n] - ref)))
                                               for n in names} if ref is not None else {}},
                      f, indent=1)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
