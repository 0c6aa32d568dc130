"""Index writes under concurrency, crashes and bad input, against independent references.

- concurrent writers: 2 to 4 `index add` processes on one HNSW index, repeated; afterwards
  SQLite itself (Python's sqlite3) holds every added id with its vector, `index info`
  counts them, `search --exact` equals a NumPy brute force over the vectors the processes
  were given, and HNSW search agrees with it (recall);
- SIGKILL at random points of build, add and delete on an HNSW index: the file passes
  SQLite's integrity_check, the first open rebuilds a stale graph and saves it, and every
  later open loads it (`index info` reports hnsw.graph "stored"); results equal NumPy's on
  the vectors SQLite holds;
- `index delete` is all-or-nothing; a failed build leaves no file behind;
- `--vectors`: a 3-D array, another dtype, Fortran order, truncated or trailing data, and
  ids that do not match the vectors one to one are refused with a message, before any
  write.
All bounded: small vector-only indexes (no model), a few seconds in all.
"""
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_ids(path, ids):
    with open(path, "w") as f:
        for i in ids:
            f.write(json.dumps({"_id": i, "text": ""}) + "\n")


def hits_by_query(stdout):
    out = {}
    for line in stdout.decode("utf-8").splitlines():
        j = json.loads(line)
        out.setdefault(j["query_id"], []).append(j)
    return out


def stored(db):
    """(ids, vectors) as SQLite holds them, in insertion order."""
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT d.ext_id, c.vec FROM docs d JOIN chunks c ON c.doc = d.id "
                           "ORDER BY c.id").fetchall()
    finally:
        con.close()
    ids = [r[0] for r in rows]
    x = np.array([np.frombuffer(r[1], dtype="<f4") for r in rows]) if rows else None
    return ids, x


def check_search(cli, db, tmp_path, ids, x, rng, recall_min=0.9):
    """`search --exact` equals NumPy on (ids, x); HNSW's recall against it is high."""
    q = unit_rows(rng, 20, x.shape[1])
    np.save(tmp_path / "q.npy", q)
    want = np.argsort(-(q.astype(np.float64) @ x.astype(np.float64).T), axis=1,
                      kind="stable")[:, :10]
    r = cli.ok(["search", "--index", db, "--query-vectors", tmp_path / "q.npy", "-k", "10",
                "--exact"])
    got = hits_by_query(r.stdout)
    for i in range(len(q)):
        assert [h["id"] for h in got[i]] == [ids[j] for j in want[i]]
    r = cli.ok(["search", "--index", db, "--query-vectors", tmp_path / "q.npy", "-k", "10"])
    got = hits_by_query(r.stdout)
    recall = np.mean([len({h["id"] for h in got[i]} & {ids[j] for j in want[i]}) / 10
                      for i in range(len(q))])
    assert recall >= recall_min, recall


# ------------------------------------------------------------ concurrent writers


@pytest.mark.parametrize("n_writers", [2, 3, 4])
def test_concurrent_adds_leave_a_correct_index(cli, tmp_path, n_writers):
    rng = np.random.default_rng(40 + n_writers)
    d, n_base, n_each = 16, 100, 150
    for rnd in range(2):
        base = unit_rows(rng, n_base, d)
        np.save(tmp_path / "base.npy", base)
        write_ids(tmp_path / "base.jsonl", ["b%d" % i for i in range(n_base)])
        db = tmp_path / ("c%d.db" % rnd)
        cli.ok(["index", "build", "--vectors", tmp_path / "base.npy", "-i",
                tmp_path / "base.jsonl", "-o", db, "--hnsw-m", "8", "--ef-construction", "40"])
        parts, procs = [], []
        for w in range(n_writers):
            x = unit_rows(rng, n_each, d)
            names = ["w%d_%d" % (w, i) for i in range(n_each)]
            np.save(tmp_path / ("p%d.npy" % w), x)
            write_ids(tmp_path / ("p%d.jsonl" % w), names)
            parts.append((names, x))
        for w in range(n_writers):
            procs.append(subprocess.Popen(
                [cli.path, "index", "add", "--index", str(db), "--vectors",
                 str(tmp_path / ("p%d.npy" % w)), "-i", str(tmp_path / ("p%d.jsonl" % w)),
                 "--batch-size", "10"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
        want_ids = ["b%d" % i for i in range(n_base)] + [n for names, _ in parts for n in names]
        want_x = {n: v for names, x in [(["b%d" % i for i in range(n_base)], base)] + parts
                  for n, v in zip(names, x)}
        ids, x = stored(db)
        assert sorted(ids) == sorted(want_ids)  # every added id, once
        for n, v in zip(ids, x):
            assert np.array_equal(v, want_x[n])
        info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
        assert info["n_docs"] == info["n_chunks"] == len(want_ids)
        # the last writer's graph covers everything: later opens load it
        assert info["hnsw"]["graph"] == "stored"
        check_search(cli, db, tmp_path, ids, x, rng)
        # and the index still takes writes
        cli.ok(["index", "delete", "--index", db, "--id", "b0"])


# ------------------------------------------------------------ SIGKILL anywhere


def run_killed(cmd, delay):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    return p.returncode


@pytest.mark.parametrize("op", ["build", "add", "delete"])
def test_sigkill_then_opens_load_the_graph(cli, tmp_path, op):
    rng = np.random.default_rng({"build": 1, "add": 2, "delete": 3}[op])
    pick = random.Random(7)
    d, n = 24, 4000
    x = unit_rows(rng, n, d)
    names = ["v%d" % i for i in range(n)]
    np.save(tmp_path / "x.npy", x)
    write_ids(tmp_path / "x.jsonl", names)
    np.save(tmp_path / "half.npy", x[: n // 2])
    write_ids(tmp_path / "half.jsonl", names[: n // 2])
    np.save(tmp_path / "rest.npy", x[n // 2:])
    write_ids(tmp_path / "rest.jsonl", names[n // 2:])
    hnsw = ["--hnsw-m", "8", "--ef-construction", "40"]
    killed = rebuilt = 0
    for attempt in range(3):
        db = tmp_path / ("k%d.db" % attempt)
        if op == "build":
            cmd = [cli.path, "index", "build", "--vectors", str(tmp_path / "x.npy"), "-i",
                   str(tmp_path / "x.jsonl"), "-o", str(db), "--batch-size", "200"] + hnsw
        else:
            src = "x" if op == "delete" else "half"
            cli.ok(["index", "build", "--vectors", tmp_path / (src + ".npy"), "-i",
                    tmp_path / (src + ".jsonl"), "-o", db] + hnsw)
            if op == "add":
                cmd = [cli.path, "index", "add", "--index", str(db), "--vectors",
                       str(tmp_path / "rest.npy"), "-i", str(tmp_path / "rest.jsonl"),
                       "--batch-size", "200"]
            else:
                cmd = [cli.path, "index", "delete", "--index", str(db)]
                for i in range(0, n, 7):
                    cmd += ["--id", names[i]]
        rc = run_killed(cmd, pick.uniform(0.01, 0.5))
        killed += rc == -signal.SIGKILL
        if not os.path.exists(db):
            continue  # killed before the build created its file
        ids, xs = stored(db)
        first = cli.run(["index", "info", "--index", db])
        if first.returncode != 0:
            # killed between claiming the file and writing its schema: a build only
            assert op == "build" and b"not a medembed index" in first.stderr, first.stderr
            continue
        info = json.loads(first.stdout)
        assert info["n_docs"] == len(ids)
        assert info["hnsw"]["graph"] in ("stored", "rebuilt")
        rebuilt += info["hnsw"]["graph"] == "rebuilt"
        # whatever the first open found, the next ones load the graph
        for _ in range(2):
            info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
            assert info["hnsw"]["graph"] == "stored"
        if ids:
            # what SQLite holds is whole batches of what was given, and search agrees
            pos = {nm: i for i, nm in enumerate(names)}
            for nm, v in zip(ids, xs):
                assert np.array_equal(v, x[pos[nm]])
            check_search(cli, db, tmp_path, ids, xs, rng, recall_min=0.85)
    print("%s: %d of 3 runs killed, %d left a stale graph" % (op, killed, rebuilt))


# ------------------------------------------------------------ delete, failed build


def test_delete_is_all_or_nothing(cli, tmp_path):
    rng = np.random.default_rng(5)
    x = unit_rows(rng, 10, 8)
    np.save(tmp_path / "x.npy", x)
    write_ids(tmp_path / "x.jsonl", ["d%d" % i for i in range(10)])
    db = tmp_path / "d.db"
    cli.ok(["index", "build", "--vectors", tmp_path / "x.npy", "-i", tmp_path / "x.jsonl",
            "-o", db, "--hnsw-m", "4"])
    r = cli.run(["index", "delete", "--index", db, "--id", "missing", "--id", "d3",
                 "--id", "gone"])
    assert r.returncode == 1
    err = r.stderr.decode()
    assert '"missing"' in err and '"gone"' in err and "nothing was deleted" in err
    assert json.loads(r.stdout)["deleted"] == 0
    ids, _ = stored(db)
    assert sorted(ids) == sorted("d%d" % i for i in range(10))
    # a valid list is deleted whole, an id named twice once
    r = cli.ok(["index", "delete", "--index", db, "--id", "d3", "--id", "d5", "--id", "d3"])
    assert json.loads(r.stdout) == {"deleted": 2, "n_docs": 8, "n_chunks": 8}
    ids, xs = stored(db)
    assert sorted(ids) == sorted("d%d" % i for i in range(10) if i not in (3, 5))
    r = cli.ok(["search", "--index", db, "--query-vectors", tmp_path / "x.npy", "-k", "8",
                "--exact"])
    for qi, hits in hits_by_query(r.stdout).items():
        want = np.argsort(-(xs @ x[qi]), kind="stable")
        assert [h["id"] for h in hits] == [ids[j] for j in want]


def test_failed_build_leaves_no_file(cli, tmp_path):
    rng = np.random.default_rng(6)
    np.save(tmp_path / "x.npy", unit_rows(rng, 20, 8))
    # a duplicate id in the second batch fails the build after its first commit
    write_ids(tmp_path / "dup.jsonl", ["a%d" % i for i in range(15)] + ["a1"] +
              ["z%d" % i for i in range(4)])
    db = tmp_path / "f.db"
    r = cli.run(["index", "build", "--vectors", tmp_path / "x.npy", "-i", tmp_path / "dup.jsonl",
                 "-o", db, "--batch-size", "10"])
    assert r.returncode == 1 and b'duplicate id "a1"' in r.stderr, r.stderr
    assert b"partial index was removed" in r.stderr
    assert not [p for p in os.listdir(tmp_path) if p.startswith("f.db")]
    write_ids(tmp_path / "ok.jsonl", ["a%d" % i for i in range(20)])
    cli.ok(["index", "build", "--vectors", tmp_path / "x.npy", "-i", tmp_path / "ok.jsonl",
            "-o", db, "--batch-size", "10"])
    assert len(stored(db)[0]) == 20
    # an existing index is never removed by a refused build
    r = cli.run(["index", "build", "--vectors", tmp_path / "x.npy", "-o", db])
    assert r.returncode == 2 and b"already exists" in r.stderr
    assert len(stored(db)[0]) == 20


# ------------------------------------------------------------ --vectors input


def npy_bytes(arr):
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def test_vectors_bad_input_is_refused(cli, tmp_path):
    rng = np.random.default_rng(8)
    good = rng.standard_normal((10, 4)).astype(np.float32)
    raw = npy_bytes(good)
    cases = {
        "3d": (npy_bytes(rng.standard_normal((10, 4, 2)).astype(np.float32)),
               b"3-D array: need a 2-D (N, D) array"),
        "1d": (npy_bytes(np.zeros(10, np.float32)), b"1-D array"),
        "f64": (npy_bytes(good.astype(np.float64)), b"dtype '<f8'"),
        "be": (npy_bytes(good.astype(">f4")), b"dtype '>f4'"),
        "fortran": (npy_bytes(np.asfortranarray(good)), b"Fortran-order"),
        "truncated": (raw[:-6], b"truncated"),
        "trailing": (raw + b"\0" * 8, b"trailing bytes"),
        "magic": (b"NUMPY" + raw[6:], b"bad magic"),
    }
    db = tmp_path / "v.db"
    write_ids(tmp_path / "ten.jsonl", ["r%d" % i for i in range(10)])
    np.save(tmp_path / "ten.npy", good)
    cli.ok(["index", "build", "--vectors", tmp_path / "ten.npy", "-i", tmp_path / "ten.jsonl",
            "-o", db])
    for name, (data, msg) in cases.items():
        path = tmp_path / (name + ".npy")
        path.write_bytes(data)
        out = tmp_path / (name + ".db")
        r = cli.run(["index", "build", "--vectors", path, "-o", out])
        assert r.returncode != 0 and msg in r.stderr, (name, r.stderr)
        assert not os.path.exists(out), name
        r = cli.run(["index", "add", "--index", db, "--vectors", path])
        assert r.returncode != 0 and msg in r.stderr, (name, r.stderr)
    # ids and vectors must match one to one, checked before anything is written
    for n_ids, word in ((11, b"more than 10 records"), (9, b"has 9 records")):
        write_ids(tmp_path / "ids.jsonl", ["n%d" % i for i in range(n_ids)])
        r = cli.run(["index", "add", "--index", db, "--vectors", tmp_path / "ten.npy", "-i",
                     tmp_path / "ids.jsonl"])
        assert r.returncode == 1 and word in r.stderr and b"10 vectors" in r.stderr, r.stderr
        out = tmp_path / ("m%d.db" % n_ids)
        r = cli.run(["index", "build", "--vectors", tmp_path / "ten.npy", "-i",
                     tmp_path / "ids.jsonl", "-o", out])
        assert r.returncode == 1 and word in r.stderr, r.stderr
        assert not os.path.exists(out)
    ids, xs = stored(db)
    assert ids == ["r%d" % i for i in range(10)] and np.array_equal(xs, good)
