#!/usr/bin/python3
"""serve_wrk_report.py - helpers of bench/serve_wrk.sh (standard library only).

    serve_wrk_report.py texts SRC N ROUTE OUTDIR
        writes OUTDIR/texts.jsonl (JSON strings), OUTDIR/corpus.jsonl ({"text"} records) and
        OUTDIR/bodies.txt (one request body per line) from the first N PubMedQA questions in
        SRC, or from a generator.
    serve_wrk_report.py report RESULTS.json C:WRK_OUT:OFFLINE_BEFORE:OFFLINE_AFTER ...
        parses wrk --latency outputs, prints the markdown table, writes RESULTS.json; each
        run's share of offline uses the mean of the offline runs just before and after it.
"""
import json
import os
import random
import re
import sys


def texts(src, n, route, out):
    items = []
    if os.path.exists(src):
        with open(src, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    items.append(json.loads(line)["text"])
                if len(items) == n:
                    break
    else:
        rng = random.Random(0)
        words = ("patient study treatment clinical risk blood heart acute chronic therapy "
                 "dose outcome mortality stroke diabetes insulin kidney infection trial "
                 "cohort").split()
        items = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
                 for _ in range(n)]
    key = "input" if "embeddings" in route else "inputs"
    with open(os.path.join(out, "texts.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(t) + "\n" for t in items)
    with open(os.path.join(out, "bodies.txt"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps({key: t}) + "\n" for t in items)
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:  # medembed bench -i
        f.writelines(json.dumps({"text": t}) + "\n" for t in items)
    print("serve_wrk: %d texts from %s" % (len(items), src if os.path.exists(src)
                                            else "a generator"), file=sys.stderr)


def to_ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def report(out, runs):
    rows = []
    print("\n| connections | requests/s | p50 ms | p99 ms | offline texts/s (before, after) "
          "| share of offline |")
    print("|---|---|---|---|---|---|")
    for arg in runs:
        c, path, before, after = arg.rsplit(":", 3)
        before, after = float(before), float(after)
        offline = (before + after) / 2
        with open(path) as f:
            text = f.read()
        lat = {p: to_ms(v, u) for p, v, u in
               re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        errs = re.search(r"Socket errors: (.*)", text)
        r = {"connections": int(c), "requests_per_s": rps, "p50_ms": lat.get("50"),
             "p99_ms": lat.get("99"), "offline_before": before, "offline_after": after,
             "share_of_offline": rps / offline, "non_2xx": int(bad.group(1)) if bad else 0,
             "socket_errors": errs.group(1) if errs else None}
        rows.append(r)
        note = ""
        if r["non_2xx"] or r["socket_errors"]:
            note = " non-2xx %d, socket errors %s" % (r["non_2xx"], r["socket_errors"])
        print("| %d | %.1f | %.1f | %.1f | %.1f (%.1f, %.1f) | %.0f%% |%s"
              % (r["connections"], rps, r["p50_ms"], r["p99_ms"], offline, before, after,
                 100 * rps / offline, note))
    with open(out, "w") as f:
        json.dump({"runs": rows}, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1] == "texts":
        texts(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
