#!/usr/bin/env python3
"""serve_soak.py - soak benchmark of `medembed serve` (not a test).

Drives a server for a long time (10 minutes by default) from many connections (64) with a
mix of valid, invalid and oversized requests, and reports as JSON:

- RSS of the server sampled every second. Its level at the end of the warm-up (the first
  minute) is the baseline: the median of the samples of the warm-up's last 10 s. The level
  afterwards (the median of each 10 s window) must stay within +10% of it; the single peak
  sample is reported too (an oversized chunked body is buffered up to the payload limit
  before its 413, so single samples swing by a few MB);
- that no request was lost: every request got a response, of the status its type expects
  (200, 400, 404, 405, 413, 422); a response of another status counts as unexpected;
- p50/p99/max latency per request type, and requests/s.

    python3 bench/serve_soak.py                       # 10 minutes, 64 connections
    python3 bench/serve_soak.py --duration 60 --warmup 15 --out bench/out/soak-1min.json

The client speaks HTTP/1.1 over plain sockets, one keep-alive connection per thread, and
reads the answer even when the server closes while the body is still being sent (an
oversized body), as curl does; such a request counts as lost only if no answer arrives.
Without --model it generates a random model of the tiny shape (2 layers, hidden 64) with
tests/py/gen_model.py, so the server's own overhead, not inference, is what is soaked. The
exit status is 1 when a request was lost or the RSS bound was exceeded.
"""
import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

TEXTS = [
    "aspirin for secondary stroke prevention",
    "Chest pain radiating to the left arm, diaphoresis.",
    "the patient was given 5 mg of warfarin daily",
    "MRI showed no acute infarct; follow up in 3 months",
    "Type 2 diabetes mellitus with hyperglycemia and chronic kidney disease stage 3",
    "blood pressure 140/90 mmHg, heart rate 88",
    "café naïve résumé",
]


def body(obj):
    return json.dumps(obj).encode("utf-8")


def make_mix(payload_limit, oversize):
    """(name, weight, method, path, body function, expected status)."""
    def texts(rng, n):
        return [rng.choice(TEXTS) for _ in range(n)]
    big = b'{"inputs": "' + b"a" * oversize + b'"}'
    return [
        ("embed", 30, "POST", "/embed", lambda r: body({"inputs": texts(r, r.randint(1, 4))}), 200),
        ("openai", 20, "POST", "/v1/embeddings",
         lambda r: body({"input": texts(r, r.randint(1, 4)), "model": "m"}), 200),
        ("tokenize", 10, "POST", "/tokenize", lambda r: body({"inputs": texts(r, 2)}), 200),
        ("info", 3, "GET", "/info", None, 200),
        ("bad_json", 8, "POST", "/embed", lambda r: b'{"inputs": ["unterminated', 400),
        ("empty_input", 4, "POST", "/v1/embeddings", lambda r: body({"input": ""}), 400),
        ("bad_type", 8, "POST", "/embed", lambda r: body({"inputs": 42, "truncate": "yes"}), 422),
        ("too_many", 4, "POST", "/embed", lambda r: body({"inputs": ["x"] * 600}), 422),
        ("not_found", 3, "GET", "/v2/nothing", None, 404),
        ("bad_method", 3, "DELETE", "/embed", None, 405),
        ("oversized", 3, "POST", "/embed", lambda r: big, 413),
        ("oversized_chunked", 1, "POST", "/v1/embeddings", lambda r: Chunked(big), 413),
    ]


class Chunked(bytes):
    """A body sent with Transfer-Encoding: chunked (64 KiB chunks)."""


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes."""

    def __init__(self, port, timeout):
        self.port, self.timeout, self.sock, self.buf = port, timeout, None, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def request(self, method, path, payload):
        """Returns (status, send_failed) or raises if no answer came."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
        if isinstance(payload, Chunked):
            head += "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            step = 65536
            payload = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + step]), payload[i:i + step])
                               for i in range(0, len(payload), step)) + b"0\r\n\r\n"
        elif payload is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(payload)
        data = (head + "\r\n").encode() + (payload or b"")
        send_failed = False
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            send_failed = True  # the server answered early and closed; read what it sent
        try:
            while b"\r\n\r\n" not in self.buf:
                self._recv()
        except (ConnectionError, OSError):
            self.close()
            raise
        hdr, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = hdr.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
        try:
            while len(self.buf) < n:
                self._recv()
        except (ConnectionError, OSError):
            self.close()
            raise
        self.buf = self.buf[n:]
        if send_failed or headers.get("connection", "").lower() == "close":
            self.close()
        return status, send_failed


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "medembed"))
    ap.add_argument("--model", help="model folder (default: a generated tiny model)")
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (600)")
    ap.add_argument("--warmup", type=float, default=60,
                    help="seconds before the RSS baseline is taken (60)")
    ap.add_argument("--conns", type=int, default=64, help="client connections (64)")
    ap.add_argument("--payload-limit", type=int, default=2000000,
                    help="the server's --payload-limit (its default, 2000000)")
    ap.add_argument("--oversize", type=int, default=2100000,
                    help="bytes of an oversized body's text (2100000)")
    ap.add_argument("--serve-args", default="", help="extra `medembed serve` flags")
    ap.add_argument("--timeout", type=float, default=60, help="per-request timeout, seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "serve_soak.json"))
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="medembed-soak-")
    model = a.model
    if not model:
        sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
        import gen_model
        model = os.path.join(tmp, "model")
        gen_model.make_model(model, layers=2, hidden=64, heads=4, ffn=128, max_seq_length=128,
                             max_position_embeddings=128)
    log = open(os.path.join(tmp, "serve.log"), "w+")
    cmd = [a.bin, "serve", "-m", model, "--port", "0", "--payload-limit", str(a.payload_limit)]
    cmd += a.serve_args.split()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    port = None
    deadline = time.time() + 60
    while time.time() < deadline and port is None:
        with open(log.name) as f:
            m = re.search(r"listening on http://[^:]+:(\d+)", f.read())
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None:
            sys.exit("serve_soak: the server did not start:\n" + open(log.name).read())
        else:
            time.sleep(0.05)
    while True:  # ready
        try:
            if Conn(port, 5).request("GET", "/health", None)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("serve_soak: the server never became ready:\n" + open(log.name).read())
        time.sleep(0.05)

    mix = make_mix(a.payload_limit, a.oversize)
    names = [m[0] for m in mix]
    weights = [m[1] for m in mix]
    stats = {m[0]: {"sent": 0, "ok": 0, "unexpected": {}, "lost": 0, "send_failed": 0,
                    "lat": []} for m in mix}
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.time()
    samples = []

    def sampler():
        while not stop.is_set():
            r = rss_kb(proc.pid)
            if r is not None:
                samples.append((round(time.time() - t0, 1), r))
            stop.wait(1.0)

    def worker(i):
        rng = random.Random(a.seed * 1000 + i)
        conn = Conn(port, a.timeout)
        local = {n: {"sent": 0, "ok": 0, "unexpected": {}, "lost": 0, "send_failed": 0,
                     "lat": []} for n in names}
        while not stop.is_set():
            k = rng.choices(range(len(mix)), weights)[0]
            name, _, method, path, fn, want = mix[k]
            s = local[name]
            payload = fn(rng) if fn else None
            s["sent"] += 1
            t = time.perf_counter()
            try:
                status, send_failed = conn.request(method, path, payload)
            except (OSError, ValueError, IndexError):
                s["lost"] += 1
                conn.close()
                continue
            s["lat"].append(time.perf_counter() - t)
            s["send_failed"] += send_failed
            if status == want:
                s["ok"] += 1
            else:
                s["unexpected"][str(status)] = s["unexpected"].get(str(status), 0) + 1
        conn.close()
        with lock:
            for n in names:
                g, l_ = stats[n], local[n]
                for key in ("sent", "ok", "lost", "send_failed"):
                    g[key] += l_[key]
                g["lat"] += l_["lat"]
                for st, c in l_["unexpected"].items():
                    g["unexpected"][st] = g["unexpected"].get(st, 0) + c

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.conns)]
    st_thread = threading.Thread(target=sampler, daemon=True)
    st_thread.start()
    for t in threads:
        t.start()
    time.sleep(a.duration)
    stop.set()
    for t in threads:
        t.join(a.timeout + 5)
    elapsed = time.time() - t0
    st_thread.join()
    alive = proc.poll() is None
    proc.terminate()
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if xs else None

    window = 10.0
    baseline = median([r for t, r in samples if a.warmup - window <= t <= a.warmup])
    after = [(t, r) for t, r in samples if t > a.warmup]
    levels = []  # median RSS of each 10 s window after the warm-up
    k = 0
    while after and a.warmup + k * window < after[-1][0]:
        w = [r for t, r in after if a.warmup + k * window < t <= a.warmup + (k + 1) * window]
        if w:
            levels.append(median(w))
        k += 1
    level_max = max(levels) if levels else None
    peak_after = max(r for _, r in after) if after else None
    per_type = {}
    total = {"sent": 0, "ok": 0, "lost": 0, "unexpected": 0}
    for n in names:
        s = stats[n]
        lat = s["lat"]
        per_type[n] = {
            "expected_status": [m[5] for m in mix if m[0] == n][0],
            "sent": s["sent"], "ok": s["ok"], "unexpected": s["unexpected"], "lost": s["lost"],
            "send_failed_then_answered": s["send_failed"],
            "p50_ms": round(percentile(lat, 50) * 1e3, 2) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1e3, 2) if lat else None,
            "max_ms": round(max(lat) * 1e3, 2) if lat else None,
        }
        total["sent"] += s["sent"]
        total["ok"] += s["ok"]
        total["lost"] += s["lost"]
        total["unexpected"] += sum(s["unexpected"].values())
    rss_ok = baseline is not None and level_max is not None and level_max <= baseline * 1.10
    result = {
        "duration_s": round(elapsed, 1), "warmup_s": a.warmup, "connections": a.conns,
        "payload_limit": a.payload_limit, "oversize_bytes": a.oversize,
        "model": model if a.model else "generated tiny (2 layers, hidden 64)",
        "cpu": cpu_name(), "requests": total,
        "requests_per_s": round(total["sent"] / elapsed, 1),
        "per_type": per_type,
        "rss_kb": {"baseline": baseline, "max_level_after_warmup": level_max,
                   "level_over_baseline": round(level_max / baseline, 3) if baseline and level_max else None,
                   "levels_10s": levels,
                   "peak_sample_after_warmup": peak_after,
                   "peak_over_baseline": round(peak_after / baseline, 3) if baseline and peak_after else None,
                   "first": samples[0][1] if samples else None,
                   "last": samples[-1][1] if samples else None,
                   "samples": samples},
        "rss_within_10pct": rss_ok, "server_alive_at_end": alive, "server_exit_status": rc,
        "no_request_lost": total["lost"] == 0,
    }
    log.seek(0)
    tail = log.read()[-4000:]
    log.close()
    if not alive or rc != 0:
        sys.stderr.write("serve_soak: the server's log ends with:\n" + tail)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    summary = dict(result, rss_kb=dict(result["rss_kb"], samples="(%d samples in %s)" % (len(samples), a.out)))
    print(json.dumps(summary, indent=1))
    ok = rss_ok and total["lost"] == 0 and total["unexpected"] == 0 and alive and rc == 0
    sys.exit(0 if ok else 1)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + ", %d CPUs" % os.cpu_count()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
