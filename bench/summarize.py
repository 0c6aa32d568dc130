#!/usr/bin/python3
"""Summarize bench/ort_compare.sh results (OUT folder given as argv[1]).

For every shape and dtype: the median over rounds of each engine's
per-round median, and the median over rounds of the per-round ratio
medembed / ORT (tokens/s; for 1x16 also the latency ratio medembed ms / ORT
ms). Ratios are taken within a round, so both engines saw the same
background load. Writes OUT/summary.json and prints a Markdown table.
"""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]


def load(path):
    with open(path) as f:
        return json.load(f)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def by_shape(results):
    return {(r["batch"], r["seq"]): r for r in results}


rounds = sorted(int(re.search(r"_(\d+)\.json$", p).group(1))
                for p in glob.glob(os.path.join(out, "ort_shapes_*.json")))
dtypes = sorted({re.search(r"me_shapes_(\w+?)_\d+\.json$", p).group(1)
                 for p in glob.glob(os.path.join(out, "me_shapes_*.json"))},
                key=lambda d: ["f32", "bf16", "int8"].index(d) if d in ("f32", "bf16", "int8") else 9)

summary = {"shapes": [], "corpus": []}
rows = []
shapes = []
for r in rounds:
    for k in by_shape(load(os.path.join(out, f"ort_shapes_{r}.json"))["results"]):
        if k not in shapes:
            shapes.append(k)

for shp in shapes:
    ort_tps, ort_ms = [], []
    for r in rounds:
        o = by_shape(load(os.path.join(out, f"ort_shapes_{r}.json"))["results"]).get(shp)
        if o:
            ort_tps.append(o["tokens_per_s"])
            ort_ms.append(o["ms_median"])
    entry = {"batch": shp[0], "seq": shp[1], "ort_tokens_per_s": med(ort_tps),
             "ort_ms_median": med(ort_ms), "rounds": len(ort_tps), "medembed": {}}
    for dt in dtypes:
        tps, ms, ratio, lat_ratio = [], [], [], []
        for r in rounds:
            p = os.path.join(out, f"me_shapes_{dt}_{r}.json")
            q = os.path.join(out, f"ort_shapes_{r}.json")
            if not (os.path.exists(p) and os.path.exists(q)):
                continue
            m = by_shape(load(p)["results"]).get(shp)
            o = by_shape(load(q)["results"]).get(shp)
            if not (m and o):
                continue
            tps.append(m["tokens_per_s"])
            ms.append(m["ms_median"])
            ratio.append(m["tokens_per_s"] / o["tokens_per_s"])
            lat_ratio.append(m["ms_median"] / o["ms_median"])
        entry["medembed"][dt] = {"tokens_per_s": med(tps), "ms_median": med(ms),
                                 "ratio_vs_ort": med(ratio), "latency_ratio_vs_ort": med(lat_ratio),
                                 "ratios": ratio}
        rows.append((f"{shp[0]}x{shp[1]}", dt, med(tps), med(ms), med(ort_tps), med(ort_ms),
                     med(ratio), med(lat_ratio)))
    summary["shapes"].append(entry)

print("| shape | dtype | medembed tok/s | medembed ms | ORT fp32 tok/s | ORT ms | ratio tok/s | latency ratio |")
print("|---|---|---|---|---|---|---|---|")
for s, dt, tps, ms, otps, oms, ra, lr in rows:
    print(f"| {s} | {dt} | {tps:.1f} | {ms:.2f} | {otps:.1f} | {oms:.2f} | {ra:.2f}x | {lr:.2f} |")

corpus_rounds = sorted(int(re.search(r"_(\d+)\.json$", p).group(1))
                       for p in glob.glob(os.path.join(out, "ort_corpus_*.json")))
if corpus_rounds:
    print()
    print("| corpus | dtype | medembed docs/s | medembed tok/s | ORT fp32 docs/s | ratio | CPU-time ratio |")
    print("|---|---|---|---|---|---|---|")
    for dt in ["f32", "bf16", "int8"]:
        dps, tps, odps, ratio, cratio = [], [], [], [], []
        for r in corpus_rounds:
            p = os.path.join(out, f"me_corpus_{dt}_{r}.json")
            if not os.path.exists(p):
                continue
            m = load(p)["results"][0]
            o = load(os.path.join(out, f"ort_corpus_{r}.json"))
            dps.append(m["docs_per_s"])
            tps.append(m["tokens_per_s"])
            o_dps = o["docs_per_s"] if "docs_per_s" in o else o["docs"] / o["seconds"]
            odps.append(o_dps)
            ratio.append(m["docs_per_s"] / o_dps)
            if "cpu_ms_median" in o and m.get("cpu_ms_median"):
                cratio.append(o["cpu_ms_median"] / m["cpu_ms_median"])
        if not dps:
            continue
        summary["corpus"].append({"dtype": dt, "docs_per_s": med(dps), "tokens_per_s": med(tps),
                                  "ort_docs_per_s": med(odps), "ratio_vs_ort": med(ratio),
                                  "ratios": ratio, "cpu_time_ratio_vs_ort": med(cratio)})
        cr = f"{med(cratio):.2f}x" if cratio else "n/a"
        print(f"| PubMedQA {m['docs']} docs, {m['mean_tokens']:.0f} tok mean | {dt} | {med(dps):.2f} | "
              f"{med(tps):.0f} | {med(odps):.2f} | {med(ratio):.2f}x | {cr} |")
    cli = os.path.join(out, "me_embed_cli.json")
    if os.path.exists(cli):
        summary["embed_cli_s"] = load(cli)["embed_cli_s"]
        print(f"\n`medembed embed` end to end (f32, load + tokenize + embed + write): "
              f"{summary['embed_cli_s']:.1f} s")

peak = os.path.join(out, "me_peak_f32.json")
if os.path.exists(peak):
    summary["peak_gflops_f32"] = load(peak)["results"][0]["peak_gflops"]
    print(f"\nmeasured fp32 FMA peak: {summary['peak_gflops_f32']:.1f} GFLOP/s")

with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
