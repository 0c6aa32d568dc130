"""Summarize a bench/peers.sh run: OUT folder as argv[1]; writes OUT/results.json.

Reads OUT/raw/: machine.json, shapes_rR_LABEL.json and corpus_rR_LABEL.json, where LABEL
is ort-f32, ort-int8, ov-f32, ov-bf16 or medembed-DTYPE. For every workload and engine it
takes the median over rounds of each round's median; every ratio is taken within a round
(all engines of a round saw the same background load), then its median over rounds is
reported. Throughput ratios are medembed / peer tokens per second (higher is better);
latency ratios (1x16) are medembed / peer milliseconds (lower is better). The peers of each
target are those of issue 22: the best f32 peer (ONNX Runtime or OpenVINO f32) for f32,
OpenVINO bf16 for bf16, the best of ONNX Runtime int8 and OpenVINO bf16 for int8. An
OpenVINO run whose compiled precision is not the one asked is left out of every ratio.

results.json: {"machine", "raw": {file: its JSON}, "summary": {"shapes", "corpus",
"targets", "excluded"}}.
"""
import glob
import json
import os
import re
import statistics
import sys

# medembed dtype -> (the peers it is compared with, the target's name for them)
TARGET_PEERS = {"f32": (["ort-f32", "ov-f32"], "best f32 peer"),
                "bf16": (["ov-bf16"], "OpenVINO bf16"),
                "int8": (["ort-int8", "ov-bf16"], "best of ORT int8 / OpenVINO bf16")}
# (dtype, workload, kind, bound, ">=" or "<=")
TARGETS = [("f32", "32x128", "throughput", 1.15, ">="),
           ("f32", "1x16", "latency", 0.70, "<="),
           ("bf16", "32x128", "throughput", 1.25, ">="),
           ("bf16", "1x16", "latency", 0.80, "<="),
           ("int8", "32x128", "throughput", 1.25, ">="),
           ("f32", "corpus", "throughput", 1.30, ">="),
           ("bf16", "corpus", "throughput", 1.25, ">=")]
CORPUS_PEERS = {"f32": (["ort-f32"], "ONNX Runtime f32"), "bf16": (["ov-bf16"], "OpenVINO bf16"),
                "int8": (["ort-int8", "ov-bf16"], "best of ORT int8 / OpenVINO bf16")}


def med(xs):
    return statistics.median(xs) if xs else None


def load(path):
    with open(path) as f:
        return json.load(f)


def main(out):
    raw_dir = os.path.join(out, "raw")
    raw = {os.path.basename(p): load(p) for p in sorted(glob.glob(os.path.join(raw_dir, "*.json")))}
    machine = raw.get("machine.json", {})
    # per[(workload, label)][round] = {"tps", "ms"}; workload "BxS" or "corpus"
    per, excluded = {}, set()
    for name, doc in raw.items():
        m = re.match(r"(shapes|corpus)_r(\d+)_(.+)\.json$", name)
        if not m:
            continue
        what, r, label = m.group(1), int(m.group(2)), m.group(3)
        if doc.get("precision_ok") is False:
            excluded.add(label)
            continue
        for res in doc["results"]:
            if what == "shapes":
                key, v = "%dx%d" % (res["batch"], res["seq"]), {"tps": res["tokens_per_s"],
                                                               "ms": res["ms_median"]}
            else:
                key = "corpus"
                v = {"tps": res["tokens_per_s"], "docs_per_s": res["docs_per_s"]}
            per.setdefault((key, label), {})[r] = v
    workloads = []
    for k, _ in per:
        if k not in workloads:
            workloads.append(k)
    workloads.sort(key=lambda k: (k == "corpus", [int(v) for v in k.split("x")] if "x" in k else 0))

    def ratio_rounds(work, dtype, peers, kind):
        """Per-round ratios of medembed-DTYPE to the best of `peers` in that round."""
        me = per.get((work, "medembed-" + dtype), {})
        out_r = {}
        for r, v in sorted(me.items()):
            ps = [per[(work, p)][r] for p in peers if r in per.get((work, p), {})]
            if not ps:
                continue
            if kind == "throughput":
                out_r[r] = v["tps"] / max(p["tps"] for p in ps)
            else:
                out_r[r] = v["ms"] / min(p["ms"] for p in ps)
        return out_r

    summary = {"workloads": [], "targets": [], "excluded": sorted(excluded)}
    for work in workloads:
        labels = sorted({l for (k, l) in per if k == work},
                        key=lambda l: (l.startswith("medembed"), l))
        entry = {"workload": work, "engines": {}, "ratios": {}}
        for l in labels:
            rs = per[(work, l)]
            e = {"rounds": len(rs), "tokens_per_s": med([v["tps"] for v in rs.values()]),
                 "tokens_per_s_rounds": [rs[r]["tps"] for r in sorted(rs)]}
            if work == "corpus":
                e["docs_per_s"] = med([v["docs_per_s"] for v in rs.values()])
            else:
                e["ms_median"] = med([v["ms"] for v in rs.values()])
                e["ms_rounds"] = [rs[r]["ms"] for r in sorted(rs)]
            entry["engines"][l] = e
        table = CORPUS_PEERS if work == "corpus" else TARGET_PEERS
        kinds = ["throughput"] + (["latency"] if work != "corpus" else [])
        for dt, (peers, name) in table.items():
            for kind in kinds:
                rr = ratio_rounds(work, dt, peers, kind)
                if rr:
                    entry["ratios"]["%s %s vs %s" % (dt, kind, name)] = {
                        "median": med(list(rr.values())), "rounds": [rr[r] for r in sorted(rr)],
                        "peers": peers}
            for p in sorted({p for ps, _ in table.values() for p in ps} | {"ort-f32"}):
                for kind in kinds:
                    rr = ratio_rounds(work, dt, [p], kind)
                    if rr:
                        entry["ratios"]["%s %s vs %s" % (dt, kind, p)] = {
                            "median": med(list(rr.values())),
                            "rounds": [rr[r] for r in sorted(rr)], "peers": [p]}
        for kind in kinds:
            rr = ratio_rounds(work, "bf16", ["medembed-f32"], kind)
            if rr:
                entry["ratios"]["bf16 %s vs medembed f32" % kind] = {
                    "median": med(list(rr.values())), "rounds": [rr[r] for r in sorted(rr)],
                    "peers": ["medembed-f32"]}
        summary["workloads"].append(entry)

    for dt, work, kind, bound, op in TARGETS:
        name = (CORPUS_PEERS if work == "corpus" else TARGET_PEERS)[dt][1]
        key = "%s %s vs %s" % (dt, kind, name)
        w = next((e for e in summary["workloads"] if e["workload"] == work), None)
        got = w["ratios"].get(key) if w else None
        t = {"dtype": dt, "workload": work, "kind": kind, "vs": name, "target": op + str(bound)}
        if got is None:
            t.update(value=None, met=None)
        else:
            v = got["median"]
            t.update(value=v, met=(v >= bound) if op == ">=" else (v <= bound),
                     by=(v / bound - 1) if op == ">=" else (bound / v - 1))
        summary["targets"].append(t)

    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"machine": machine, "raw": raw, "summary": summary}, f, indent=1)

    print("\n%s (%s), %s threads, %s rounds of %s calls; load %s -> %s" % (
        machine.get("cpu_model"), machine.get("cpu_family_model"), machine.get("threads"),
        machine.get("rounds"), machine.get("runs"), machine.get("loadavg_start"),
        machine.get("loadavg_end")))
    if excluded:
        print("left out (OpenVINO compiled another precision than asked): " +
              ", ".join(sorted(excluded)))
    for e in summary["workloads"]:
        print("\n%s | tokens/s%s | rounds" % (e["workload"],
                                             "" if e["workload"] == "corpus" else " | ms"))
        for l, v in e["engines"].items():
            ms = "" if e["workload"] == "corpus" else " | %.2f" % v["ms_median"]
            print("  %-14s | %9.1f%s | %d" % (l, v["tokens_per_s"], ms, v["rounds"]))
        for k, v in e["ratios"].items():
            if any(k.endswith(" vs " + p) for p in ("ort-int8", "ov-f32", "ov-bf16")):
                continue  # in results.json; the printout keeps the targets' peers
            print("  ratio %-52s %.3f  (rounds %s)" % (
                k, v["median"], " ".join("%.2f" % x for x in v["rounds"])))
    print("\ntargets (median over rounds of the per-round ratios):")
    for t in summary["targets"]:
        if t["value"] is None:
            print("  %-5s %-7s %-10s vs %-34s %s: not measured" % (
                t["dtype"], t["workload"], t["kind"], t["vs"], t["target"]))
        else:
            print("  %-5s %-7s %-10s vs %-34s %s: %.3f  %s" % (
                t["dtype"], t["workload"], t["kind"], t["vs"], t["target"], t["value"],
                "met" if t["met"] else "MISSED by %.0f%%" % (-100 * t["by"])))
    print("\nwrote %s" % os.path.join(out, "results.json"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py OUT_DIR")
    main(sys.argv[1])
