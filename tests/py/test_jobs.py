"""Long jobs: the progress line (under a pseudo-terminal and through a pipe)
and resume after SIGKILL (embed JSONL, index build), checked against a clean
run of the same command: the same bytes, the same SQLite rows.

Bounded: a tiny generated model and a few thousand short lines; each kill
test runs the command four times (about 0.5 s each here)."""
import json
import os
import pty
import random
import select
import signal
import sqlite3
import subprocess
import time

import pytest

WORDS = ("heart lung patient aspirin fever renal failure acute chronic dose "
         "blood insulin glucose stroke therapy trial").split()


@pytest.fixture(scope="module")
def model(models):
    return models.get()["dir"]


def write_lines(path, n, seed=7, jsonl=False):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
            if jsonl:
                f.write(json.dumps({"_id": "d%05d" % i, "text": text}) + "\n")
            else:
                f.write(text + "\n")
    return str(path)


def run_pty(argv, timeout=60):
    """Runs argv with stderr on a pseudo-terminal and stdout on a pipe;
    returns (rc, stdout bytes, terminal bytes)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    term = b""
    deadline = time.time() + timeout
    out_chunks = []
    while time.time() < deadline:
        r, _, _ = select.select([master, p.stdout], [], [], 0.1)
        if master in r:
            try:
                data = os.read(master, 65536)
            except OSError:  # the slave side closed: EIO on Linux
                data = b""
            term += data
        if p.stdout in r:
            data = os.read(p.stdout.fileno(), 65536)
            if data:
                out_chunks.append(data)
            elif p.poll() is not None:
                break
    p.wait(timeout=5)
    while True:  # what is left on either side
        r, _, _ = select.select([master], [], [], 0.05)
        if not r:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        term += data
    out_chunks.append(p.stdout.read())
    os.close(master)
    return p.returncode, b"".join(out_chunks), term


SUMMARY = (r"medembed embed: done: (\d+) texts, (\d+) tokens, (\d+) truncated, "
           r"(\d+) invalid UTF-8, [0-9.]+ s")


def test_progress_on_a_terminal_and_not_on_a_pipe(cli, model, tmp_path):
    import re
    inp = write_lines(tmp_path / "in.txt", 600)
    with open(inp, "ab") as f:
        f.write(b"bad \xff byte\n")
    argv = [cli.path, "embed", "-m", model, "-i", inp, "--max-length", "24", "--batch-size", "16"]
    piped = cli.ok(argv[1:])
    recs = [json.loads(x) for x in piped.stdout.decode().splitlines()]
    assert len(recs) == 601
    # a pipe gets no bar and no summary: only the warnings
    assert b"\r" not in piped.stderr and b"medembed embed:" not in piped.stderr
    assert b"invalid UTF-8" in piped.stderr

    rc, out, term = run_pty(argv)
    assert rc == 0, term
    assert out == piped.stdout  # the output stream carries no progress bytes
    text = term.decode("utf-8", "replace")
    # drawn in place, with done/total of the input bytes and the rates
    assert "\r\x1b[K" in text
    bars = re.findall(r"medembed embed: \d+ texts +[0-9.]+% \(.+? of .+?\) +\d+ texts/s +\d+ "
                      r"tokens/s", text)
    assert bars, text
    m = re.search(SUMMARY, text)
    assert m, text
    n, tokens, trunc, bad = map(int, m.groups())
    assert n == len(recs)
    assert tokens == sum(r["n_tokens"] for r in recs)
    assert trunc == sum(r["truncated"] for r in recs) and trunc > 0
    assert bad == 1
    # the warnings start on a fresh line, never after a bar on the same line
    for line in text.replace("\r\n", "\n").split("\n"):
        if "warning:" in line:
            assert line.split("\r")[-1].lstrip("\x1b[K").startswith("medembed: warning:"), line

    rc, out, term = run_pty(argv + ["--quiet"])
    assert rc == 0 and out == piped.stdout
    assert b"medembed embed:" not in term and b"\r\x1b[K" not in term

    # --progress forces it onto a pipe: plain lines, no carriage returns
    forced = cli.ok(argv[1:] + ["--progress"])
    err = forced.stderr.decode()
    assert "\r" not in err and re.search(SUMMARY, err)
    assert forced.stdout == piped.stdout


def test_progress_of_index_eval_and_bench(cli, model, tmp_path):
    import re
    corpus = write_lines(tmp_path / "c.jsonl", 200, jsonl=True)
    rc, _, term = run_pty([cli.path, "index", "build", "-m", model, "-i", corpus, "-o",
                           str(tmp_path / "x.db")])
    assert rc == 0
    m = re.search(r"medembed index build: done: (\d+) texts, tokens n/a", term.decode())
    assert m and int(m.group(1)) == 200, term
    # eval: the corpus by its size in bytes, then the queries of the qrels by count
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    os.replace(corpus, str(beir / "corpus.jsonl"))
    with open(str(beir / "queries.jsonl"), "w") as f:
        for i in range(12):
            f.write(json.dumps({"_id": "q%d" % i, "text": WORDS[i] + " " + WORDS[i + 1]}) + "\n")
    with open(str(beir / "qrels" / "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i in range(10):
            f.write("q%d\td%05d\t1\n" % (i, i))
    rc, out, term = run_pty([cli.path, "eval", "-m", model, "--beir", str(beir), "--json"])
    assert rc == 0, term
    text = term.decode()
    assert re.search(r"medembed eval corpus: done: 200 texts, tokens n/a", text), text
    m = re.search(r"medembed eval queries: done: 10 texts, (\d+) tokens", text)
    assert m and int(m.group(1)) > 10 * 2, text
    assert json.loads(out)["n_queries"] == 10
    r = cli.ok(["bench", "-m", model, "--shapes", "2x8,3x16", "--runs", "2", "--warmup", "1",
                "--peak-seconds", "0", "--progress"])
    m = re.search(r"medembed bench: done: (\d+) texts, (\d+) tokens", r.stderr.decode())
    assert m, r.stderr
    assert int(m.group(1)) == 3 * (2 + 3) and int(m.group(2)) == 3 * (2 * 8 + 3 * 16)
    assert b"medembed bench:" not in r.stdout


def kill_three_times_then_finish(argv, seconds, check_partial=None):
    """Starts argv, SIGKILLs it at a random point, three times in a row, then
    lets it finish. Every start gets the same argv (with --resume)."""
    rng = random.Random(int(os.environ.get("MEDEMBED_KILL_SEED", "0")) or None)
    for _ in range(3):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, max(0.1, 0.8 * seconds)))
        p.send_signal(signal.SIGKILL)
        p.communicate()
        if check_partial:
            check_partial()
    r = subprocess.run(argv, capture_output=True)
    assert r.returncode == 0, r.stderr
    return r


def test_embed_resume_after_sigkill_equals_a_clean_run(cli, model, tmp_path):
    inp = write_lines(tmp_path / "in.txt", 3000)
    ref = tmp_path / "ref.jsonl"
    t0 = time.time()
    cli.ok(["embed", "-m", model, "-i", inp, "-o", ref])
    seconds = time.time() - t0
    out = tmp_path / "out.jsonl"
    argv = [cli.path, "embed", "-m", model, "-i", inp, "-o", str(out), "--resume",
            "--batch-size", "8"]
    kill_three_times_then_finish(argv, seconds)
    assert out.read_bytes() == ref.read_bytes()
    # resuming a finished file adds nothing
    cli.ok(argv[1:])
    assert out.read_bytes() == ref.read_bytes()


def test_embed_resume_refuses_a_foreign_file(cli, model, tmp_path):
    inp = write_lines(tmp_path / "in.txt", 20)
    other = write_lines(tmp_path / "other.jsonl", 30, jsonl=True)
    out = tmp_path / "out.jsonl"
    cli.ok(["embed", "-m", model, "-i", other, "-o", out])
    r = cli.run(["embed", "-m", model, "-i", inp, "-o", out, "--resume"])
    assert r.returncode == 1 and b"not this input's output" in r.stderr
    out.write_text("hello\n")
    r = cli.run(["embed", "-m", model, "-i", inp, "-o", out, "--resume"])
    assert r.returncode == 2 and b"not a medembed embed record" in r.stderr
    assert out.read_text() == "hello\n"  # left as it was
    r = cli.run(["embed", "-m", model, "-i", inp, "--resume"])
    assert r.returncode == 2 and b"--resume needs a JSONL output file" in r.stderr


def dump_index(path):
    db = sqlite3.connect(str(path))
    try:
        docs = db.execute("SELECT id, ext_id, metadata FROM docs ORDER BY id").fetchall()
        chunks = db.execute("SELECT id, doc, chunk_no, tok_start, tok_end, vec, vec_f32 FROM "
                            "chunks ORDER BY id").fetchall()
    finally:
        db.close()
    return docs, chunks


def test_index_build_resume_after_sigkill_equals_a_clean_run(cli, model, tmp_path):
    corpus = write_lines(tmp_path / "c.jsonl", 2000, jsonl=True)
    ref = tmp_path / "ref.db"
    t0 = time.time()
    cli.ok(["index", "build", "-m", model, "-i", corpus, "-o", ref, "--batch-size", "16"])
    seconds = time.time() - t0
    db = tmp_path / "db.db"
    argv = [cli.path, "index", "build", "-m", model, "-i", corpus, "-o", str(db), "--resume",
            "--batch-size", "16"]
    r = kill_three_times_then_finish(argv, seconds)
    want = dump_index(ref)
    assert len(want[0]) == 2000
    assert dump_index(db) == want
    # without --resume, an id already in the index is still an error
    r = cli.run(["index", "add", "-m", model, "-i", corpus, "--index", db])
    assert r.returncode == 1 and b"already in the index" in r.stderr


def test_python_encode_progress_bar(model, tmp_path):
    """encode(show_progress_bar=True) draws the CLI's line on stderr (in place
    on a terminal) and ends with the same summary; the result is unchanged."""
    import re
    import sys
    import numpy as np
    import pkg_support as ps
    medembed = ps.import_medembed()
    texts = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(i % 50 + 1))
             for i in range(300)]
    m = medembed.Model(model)
    want = m.encode(texts, batch_size=16)
    want_tokens = int(np.asarray(m.tokenize(texts)["attention_mask"]).sum())
    m.close()
    script = (
        "import sys, numpy as np, medembed\n"
        "m = medembed.Model(sys.argv[1])\n"
        "texts = [l.rstrip('\\n') for l in open(sys.argv[2], encoding='utf-8')]\n"
        "np.save(sys.argv[3], m.encode(texts, batch_size=16, show_progress_bar=True))\n")
    inp = tmp_path / "t.txt"
    inp.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    rc, out, term = run_pty([sys.executable, "-c", script, model, str(inp),
                             str(tmp_path / "o.npy")])
    text = term.decode("utf-8", "replace")
    assert rc == 0, text
    assert out == b""
    assert "\r\x1b[K" in text and re.search(r"medembed encode: \d+ texts +[0-9.]+% \(\d+ of 300\)",
                                             text), text
    m2 = re.search(r"medembed encode: done: 300 texts, (\d+) tokens, 0 truncated, 0 invalid "
                   r"UTF-8, [0-9.]+ s", text)
    assert m2 and int(m2.group(1)) == want_tokens, text
    assert np.array_equal(np.load(str(tmp_path / "o.npy")), want)


def test_server_splits_big_client_batches(model, tmp_path):
    """512 inputs (the default --max-client-batch-size) in one request are split
    into --max-batch-tokens forward passes and come back in order, bitwise
    equal to `medembed embed`; 513 get TEI's 422; --strict-client-batch brings
    back TEI's limit of 32; a request whose answer does not fit --max-memory
    gets 503 instead of being computed."""
    import base64
    import numpy as np
    from test_server import Server, assert_bits_equal, cli_vectors, tei_error
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 90))) for _ in range(513)]
    want = cli_vectors(model, texts[:512])
    s = Server(model, "--max-batch-tokens", 256, "--auto-truncate", "true")
    try:
        status, got = s.post("/embed", {"inputs": texts[:512]})
        assert status == 200 and len(got) == 512
        assert_bits_equal(got, want)
        status, body = s.post("/v1/embeddings", {"input": texts[:512], "encoding_format": "base64"})
        assert status == 200
        assert [d["index"] for d in body["data"]] == list(range(512))
        raw = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
                        for d in body["data"]])
        assert raw.tobytes() == want.tobytes()
        status, body = s.post("/embed", {"inputs": texts})
        tei_error(status, body, 422, "Validation")
        assert "batch size 513 > maximum allowed batch size 512" in body["error"]
        status, hdrs, data = s.request("GET", "/info")
        assert json.loads(data)["max_client_batch_size"] == 512
        # the body limit still applies to a big batch
        status, body = s.post("/embed", {"inputs": ["x" * 5000] * 500})
        assert status == 413, body
    finally:
        assert s.close() == 0
    s = Server(model, "--strict-client-batch", "--auto-truncate", "true")
    try:
        status, got = s.post("/embed", {"inputs": texts[:32]})
        assert status == 200
        assert_bits_equal(got, want[:32])
        status, body = s.post("/embed", {"inputs": texts[:33]})
        tei_error(status, body, 422, "Validation")
        assert "batch size 33 > maximum allowed batch size 32" in body["error"]
    finally:
        assert s.close() == 0
    # --max-memory just above what one body may cost (864 kB here): 1500 tiny
    # inputs are a 6 kB body but a 1.15 MB answer (1500 x 32 dims x 24 bytes),
    # reserved once the request is parsed
    s = Server(model, "--payload-limit", 100000, "--max-memory", 1 << 20,
               "--max-client-batch-size", 2000)
    try:
        status, body = s.post("/embed", {"inputs": ["a"] * 1500})
        tei_error(status, body, 503, "Overloaded")
        status, got = s.post("/embed", {"inputs": ["a"] * 16})
        assert status == 200 and len(got) == 16
    finally:
        assert s.close() == 0


def read_shards(prefix):
    import numpy as np
    d = os.path.dirname(str(prefix))
    with open(str(prefix) + ".manifest.json", encoding="utf-8") as f:
        m = json.load(f)
    rows = [np.load(os.path.join(d, s["file"]), allow_pickle=False) for s in m["shards"]]
    ids = []
    for s in m["shards"]:
        with open(os.path.join(d, s["ids"]), encoding="utf-8") as f:
            ids += json.load(f)
    assert [len(r) for r in rows] == [s["rows"] for s in m["shards"]]
    return m, (np.concatenate(rows) if rows else None), ids


def test_npy_shards_equal_one_file_and_resume_per_shard(cli, model, tmp_path):
    import numpy as np
    inp = write_lines(tmp_path / "in.jsonl", 2500, jsonl=True)
    ref = tmp_path / "ref.npy"
    t0 = time.time()
    cli.ok(["embed", "-m", model, "-i", inp, "--format", "npy", "-o", ref])
    seconds = time.time() - t0
    want = np.load(str(ref))
    want_ids = ["d%05d" % i for i in range(2500)]
    cli.ok(["embed", "-m", model, "-i", inp, "--format", "npy", "--shard-size", "300", "-o",
            tmp_path / "clean.npy"])
    m, got, ids = read_shards(tmp_path / "clean")
    assert m["complete"] and m["rows"] == 2500 and m["dim"] == want.shape[1]
    assert [s["rows"] for s in m["shards"]] == [300] * 8 + [100]
    assert got.tobytes() == want.tobytes() and ids == want_ids

    out = tmp_path / "k.npy"
    argv = [cli.path, "embed", "-m", model, "-i", inp, "--format", "npy", "--shard-size", "300",
            "-o", str(out), "--resume", "--batch-size", "8"]

    def whole_shards_only():
        if os.path.exists(str(tmp_path / "k.manifest.json")):
            m, got, ids = read_shards(tmp_path / "k")
            n = m["rows"]
            assert got is None or got.tobytes() == want[:n].tobytes()
            assert ids == want_ids[:n]

    kill_three_times_then_finish(argv, seconds, whole_shards_only)
    m2, got2, ids2 = read_shards(tmp_path / "k")
    assert json.dumps(m2).replace("k-", "clean-") == json.dumps(m)
    assert got2.tobytes() == want.tobytes() and ids2 == want_ids
    for i in range(9):
        assert (tmp_path / ("k-%05d.npy" % i)).read_bytes() == \
            (tmp_path / ("clean-%05d.npy" % i)).read_bytes()
    # a finished run resumed with a longer input is refused; other sizes too
    longer = write_lines(tmp_path / "longer.jsonl", 2600, jsonl=True)
    r = cli.run(argv[1:5] + [longer] + argv[6:])
    assert r.returncode == 1 and b"it is not this input's output" in r.stderr
    r = cli.run(["embed", "-m", model, "-i", inp, "--format", "npy", "--shard-size", "200",
                 "-o", out, "--resume"])
    assert r.returncode == 2 and b"--shard-size 300" in r.stderr
    r = cli.run(["embed", "-m", model, "-i", inp, "--shard-size", "200", "-o", out])
    assert r.returncode == 2 and b"--shard-size needs .npy output" in r.stderr
