"""Search index, search and eval commands against independent references.

- exact top-k equals a NumPy brute force on the same vectors; HNSW recall is measured
  against it;
- chunk vectors stored in the index (read back with Python's sqlite3) equal numpy_ref's
  embedding of [CLS] window [SEP] cut in Python from `medembed tokenize --no-truncate` ids;
- eval's metrics equal a Python implementation of pytrec_eval's definitions applied to the
  --run file it wrote;
- PubMedQA end to end (a 120-document slice of ../shared/data/pubmedqa, to stay fast):
  build, search, eval, add, delete, filter;
- crash safety: SIGKILL during `index add`, then the file opens, passes SQLite's
  integrity_check and holds exactly a prefix of whole committed batches;
- bad input: malformed JSONL (line number, reason, --skip-bad), duplicate ids, missing
  qrels, model mismatch, corrupt index.
"""
import json
import math
import os
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest

import numpy_ref
from conftest import need_shared, read_jsonl


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def hits_by_query(stdout):
    out = {}
    for line in stdout.decode("utf-8").splitlines():
        j = json.loads(line)
        out.setdefault(j["query_id"], []).append(j)
    return out


@pytest.fixture(scope="module")
def model(models):
    return models.get(hidden=32, ffn=64, max_seq_length=128, max_position_embeddings=128,
                      seed=5)["dir"]


@pytest.fixture(scope="module")
def other_model(models):
    return models.get(hidden=32, ffn=64, max_seq_length=128, max_position_embeddings=128,
                      seed=6)["dir"]


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    """A 120-document slice of PubMedQA in BEIR layout, with one extra query that has
    only non-relevant judgments."""
    src = need_shared("data", "pubmedqa")
    d = tmp_path_factory.mktemp("beir")
    docs = read_jsonl(os.path.join(src, "corpus.jsonl"))[:120]
    ids = {x["_id"] for x in docs}
    queries = [q for q in read_jsonl(os.path.join(src, "queries.jsonl")) if q["_id"][1:] in ids]
    with open(d / "corpus.jsonl", "w") as f:
        for x in docs:
            f.write(json.dumps(x) + "\n")
    with open(d / "queries.jsonl", "w") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
        f.write(json.dumps({"_id": "qnone", "text": "no relevant document here"}) + "\n")
    os.makedirs(d / "qrels")
    with open(d / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            f.write("%s\t%s\t1\n" % (q["_id"], q["_id"][1:]))
        f.write("qnone\t%s\t0\n" % docs[0]["_id"])
    return {"dir": str(d), "docs": docs, "queries": queries}


# ------------------------------------------------------------------ exact and HNSW


def test_exact_topk_equals_numpy(cli, tmp_path):
    rng = np.random.default_rng(0)
    x, q = unit_rows(rng, 2000, 48), unit_rows(rng, 25, 48)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    db = tmp_path / "x.db"
    cli.ok(["index", "build", "--vectors", tmp_path / "x.npy", "-o", db])
    for threads in ("1", "2"):
        r = cli.ok(["search", "--index", db, "--query-vectors", tmp_path / "q.npy", "-k", "10",
                    "--exact", "--threads", threads])
        got = hits_by_query(r.stdout)
        scores = q.astype(np.float64) @ x.astype(np.float64).T
        for i in range(len(q)):
            want = np.argsort(-scores[i], kind="stable")[:10]
            assert [int(h["id"]) for h in got[i]] == list(want)
            assert [h["rank"] for h in got[i]] == list(range(1, 11))
            np.testing.assert_allclose([h["score"] for h in got[i]], scores[i][want], atol=1e-5)


def test_hnsw_recall_against_numpy(cli, tmp_path):
    rng = np.random.default_rng(1)
    x, q = unit_rows(rng, 3000, 32), unit_rows(rng, 50, 32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    db = tmp_path / "h.db"
    cli.ok(["index", "build", "--vectors", tmp_path / "x.npy", "-o", db, "--hnsw-m", "16"])
    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    assert info["hnsw"] == {"m": 16, "ef_construction": 200, "graph": "stored"}
    r = cli.ok(["search", "--index", db, "--query-vectors", tmp_path / "q.npy", "-k", "10"])
    got = hits_by_query(r.stdout)
    top = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len({int(h["id"]) for h in got[i]} & set(top[i])) / 10
                      for i in range(len(q))])
    assert recall >= 0.95, recall


# ------------------------------------------------------------------ chunking


def chunk_windows(n, w, overlap):
    """The chunking rule of docs/SEARCH.md, written from the text: a document
    of at most w pieces is one window; otherwise full windows every w - overlap
    pieces while they end before the document, then one full window ending at
    the document's end."""
    if n <= w:
        return [(0, n)]
    return [(s, s + w) for s in range(0, n - w, w - overlap)] + [(n - w, n)]


@pytest.mark.parametrize("chunk,overlap", [(40, 8), (40, None), (23, 0)])
def test_chunks_are_token_exact(cli, model, models, beir, tmp_path, chunk, overlap):
    docs = beir["docs"][:6]
    path = tmp_path / "c.jsonl"
    with open(path, "w") as f:
        for x in docs:
            f.write(json.dumps(x) + "\n")
    db = tmp_path / "c.db"
    args = ["index", "build", "-m", model, "-i", path, "-o", db, "--chunk-tokens", str(chunk)]
    if overlap is not None:
        args += ["--overlap", str(overlap)]
    cli.ok(args)
    if overlap is None:  # the default: min(64, window / 2)
        overlap = min(64, chunk // 2)
        assert json.loads(cli.ok(["index", "info", "--index", db]).stdout)["chunking"] == {
            "chunk_tokens": chunk, "overlap": overlap}
    texts = [(x["title"] + " " + x["text"]).strip() for x in docs]
    ids = cli.tokenize(model, texts, ["--no-truncate"])
    ref = models.ref(model)
    con = sqlite3.connect(str(db))
    rows = con.execute("SELECT d.ext_id, c.chunk_no, c.tok_start, c.tok_end, c.vec FROM chunks c "
                       "JOIN docs d ON d.id = c.doc ORDER BY c.id").fetchall()
    con.close()
    by_doc = {}
    for ext, no, s, e, blob in rows:
        by_doc.setdefault(ext, []).append((no, s, e, np.frombuffer(blob, dtype="<f4")))
    n_multi = 0
    for x, tok in zip(docs, ids):
        pieces = tok[1:-1]
        spans = chunk_windows(len(pieces), chunk, overlap)
        got = by_doc[x["_id"]]
        assert [(s, e) for _, s, e, _ in got] == spans
        assert [no for no, _, _, _ in got] == list(range(len(spans)))
        # no scraps: every chunk has min(document, window) pieces
        assert all(e - s == min(len(pieces), chunk) for _, s, e, _ in got)
        n_multi += len(spans) > 1
        for (s, e), (_, _, _, vec) in zip(spans, got):
            want = numpy_ref.embed(ref, [tok[0]] + pieces[s:e] + [tok[-1]])
            np.testing.assert_allclose(vec, want, atol=1e-5)
    assert n_multi > 0  # the documents are long enough to be cut


# ------------------------------------------------------------------ metrics


def trec_metrics(run, qrels, k):
    """pytrec_eval's ndcg_cut / map_cut / recip_rank / recall / P for one query."""
    ranked = sorted(run.items(), key=lambda t: t[0], reverse=True)
    ranked = sorted(ranked, key=lambda t: t[1], reverse=True)[:k]
    rels = [qrels.get(d, 0) for d, _ in ranked]
    num_rel = sum(1 for v in qrels.values() if v >= 1)
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rels) if r > 0)
    ideal = sorted((v for v in qrels.values() if v > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    hits, ap, rr = 0, 0.0, 0.0
    for i, r in enumerate(rels):
        if r >= 1:
            hits += 1
            ap += hits / (i + 1)
            rr = rr or 1 / (i + 1)
    return {"ndcg": dcg / idcg if idcg else 0, "map": ap / num_rel if num_rel else 0, "mrr": rr,
            "recall": hits / num_rel if num_rel else 0, "p": hits / k}


def test_pubmedqa_end_to_end(cli, model, other_model, beir, tmp_path):
    db = tmp_path / "pm.db"
    corpus = os.path.join(beir["dir"], "corpus.jsonl")
    cli.ok(["index", "build", "-m", model, "-i", corpus, "-o", db, "--chunk-tokens", "100",
            "--overlap", "20", "--batch-size", "16"])
    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    assert info["n_docs"] == 120 and info["n_chunks"] > 120
    assert info["chunking"] == {"chunk_tokens": 100, "overlap": 20}
    assert info["dim"] == 32 and info["dtype"] == "f32"
    assert info["model"]["pooling"] == "cls" and len(info["model"]["weights_hash"]) == 64

    # search: one line per hit, fields and ranks in order; chunk spans within the window
    q = beir["queries"][0]["text"]
    r = cli.ok(["search", "-m", model, "--index", db, "-q", q, "-k", "5"])
    hits = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert list(hits[0]) == ["query_id", "id", "score", "chunk", "rank"]
    assert all(0 <= h["chunk"]["start"] <= h["chunk"]["end"] <= h["chunk"]["start"] + 100
               for h in hits)
    assert all(hits[i]["score"] >= hits[i + 1]["score"] for i in range(4))

    # filters apply during the search: every hit matches and k hits come back
    years = {x["_id"]: int(x["year"]) for x in beir["docs"] if x.get("year") is not None}
    n_new = sum(1 for y in years.values() if y >= 2010)
    r = cli.ok(["search", "-m", model, "--index", db, "-q", q, "-k", "200", "--filter",
                "year>=2010", "--metadata"])
    hits = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(hits) == n_new
    assert all(int(h["metadata"]["year"]) >= 2010 for h in hits)
    r = cli.ok(["search", "-m", model, "--index", db, "-q", q, "-k", "3", "--filter",
                "year>=2010", "--filter", "year<2012"])
    assert all(2010 <= years[json.loads(l)["id"]] < 2012 for l in r.stdout.decode().splitlines())

    # eval: the metrics equal pytrec_eval's definitions applied to its own run file
    run_path = tmp_path / "run.trec"
    r = cli.ok(["eval", "-m", model, "--beir", beir["dir"], "--json", "--run", run_path,
                "--chunk-tokens", "100", "--overlap", "20"])
    got = json.loads(r.stdout)
    assert set(got) == {"ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10",
                        "recall_at_100", "precision_at_10", "n_queries", "mode", "ms_per_query"}
    assert got["mode"] == "dense" and got["ms_per_query"] > 0
    assert got["n_queries"] == len(beir["queries"]) + 1  # qnone counts, as in pytrec_eval
    runs = {}
    for line in open(run_path):
        qid, _, doc, rank, score, _ = line.split()
        runs.setdefault(qid, {})[doc] = float(score)
    qrels = {}
    with open(os.path.join(beir["dir"], "qrels", "test.tsv")) as f:
        next(f)
        for line in f:
            a, b, c = line.split()
            qrels.setdefault(a, {})[b] = int(c)
    m10 = [trec_metrics(runs[qq], qrels[qq], 10) for qq in qrels]
    m100 = [trec_metrics(runs[qq], qrels[qq], 100) for qq in qrels]
    mean = lambda key, ms: sum(m[key] for m in ms) / len(ms)  # noqa: E731
    assert got["ndcg_at_10"] == pytest.approx(mean("ndcg", m10), abs=1e-5)
    assert got["map_at_10"] == pytest.approx(mean("map", m10), abs=1e-5)
    assert got["mrr_at_10"] == pytest.approx(mean("mrr", m10), abs=1e-5)
    assert got["recall_at_10"] == pytest.approx(mean("recall", m10), abs=1e-5)
    assert got["recall_at_100"] == pytest.approx(mean("recall", m100), abs=1e-5)
    assert got["precision_at_10"] == pytest.approx(mean("p", m10), abs=1e-5)
    table = cli.ok(["eval", "-m", model, "--beir", beir["dir"], "-k", "10"]).stdout.decode()
    assert "nDCG@10" in table and "Recall@100" in table

    # add and delete, incrementally
    extra = tmp_path / "extra.jsonl"
    with open(extra, "w") as f:
        f.write(json.dumps({"_id": "new1", "title": "aspirin", "text": q, "year": "2020"}) + "\n")
        f.write(json.dumps({"_id": "new2", "title": "", "text": "heart failure", "year": 1999})
                + "\n")
    cli.ok(["index", "add", "-m", model, "--index", db, "-i", extra])
    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    assert info["n_docs"] == 122
    r = cli.ok(["search", "-m", model, "--index", db, "-q", q, "-k", "200", "--filter", "id=new1"])
    assert [json.loads(l)["id"] for l in r.stdout.decode().splitlines()] == ["new1"]
    r = cli.ok(["index", "delete", "--index", db, "--id", "new1", "--id", "new2"])
    assert json.loads(r.stdout)["n_docs"] == 120
    r = cli.ok(["search", "-m", model, "--index", db, "-q", q, "-k", "200"])
    assert "new1" not in {json.loads(l)["id"] for l in r.stdout.decode().splitlines()}
    r = cli.run(["index", "delete", "--index", db, "--id", "new1"])
    assert r.returncode == 1 and b'no document with id "new1"' in r.stderr

    # a different model is refused
    r = cli.run(["search", "-m", other_model, "--index", db, "-q", q])
    assert r.returncode == 1 and b"model mismatch" in r.stderr
    r = cli.run(["index", "add", "-m", other_model, "--index", db, "-i", extra])
    assert r.returncode == 1 and b"model mismatch" in r.stderr


# ------------------------------------------------------------------ crash safety


def test_kill_during_add_keeps_last_commit(cli, tmp_path):
    rng = np.random.default_rng(3)
    base, more = unit_rows(rng, 200, 64), unit_rows(rng, 60000, 64)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "more.npy", more)
    ids = tmp_path / "more.jsonl"
    with open(ids, "w") as f:
        for i in range(len(more)):
            f.write('{"_id": "m%d", "text": ""}\n' % i)
    db = tmp_path / "k.db"
    cli.ok(["index", "build", "--vectors", tmp_path / "base.npy", "-o", db, "--hnsw-m", "8",
            "--ef-construction", "40"])
    p = subprocess.Popen([cli.path, "index", "add", "--index", str(db), "--vectors",
                          str(tmp_path / "more.npy"), "-i", str(ids), "--batch-size", "500"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    n = 200
    while time.time() < deadline and p.poll() is None:
        con = sqlite3.connect(str(db), timeout=10)
        n = con.execute("SELECT count(*) FROM docs").fetchone()[0]
        con.close()
        if n >= 1200:
            break
        time.sleep(0.05)
    assert p.poll() is None, "index add finished before it could be killed; grow the input"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL

    con = sqlite3.connect(str(db))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = [r[0] for r in con.execute("SELECT ext_id FROM docs ORDER BY id")]
    n_chunks = con.execute("SELECT count(*) FROM chunks").fetchone()[0]
    con.close()
    added = len(got) - 200
    assert added >= 1000 and added % 500 == 0 and added < len(more)  # whole batches only
    assert got[200:] == ["m%d" % i for i in range(added)] and n_chunks == len(got)

    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    assert info["n_docs"] == len(got)
    # the stale graph is rebuilt by the first open, a read-only one, and saved once: the
    # next opens load it (the graph row now carries the data's generation)
    assert info["hnsw"]["graph"] == "rebuilt"
    con = sqlite3.connect(str(db))
    gen = con.execute("SELECT value FROM settings WHERE key = 'generation'").fetchone()[0]
    assert con.execute("SELECT generation FROM graph").fetchone()[0] == gen
    con.close()
    assert json.loads(cli.ok(["index", "info", "--index", db]).stdout)["hnsw"]["graph"] == \
        "stored"
    # HNSW results match exact ones on the stored prefix
    allx = np.concatenate([base, more[:added]])
    q = unit_rows(rng, 5, 64)
    np.save(tmp_path / "q.npy", q)
    r = cli.ok(["search", "--index", db, "--query-vectors", tmp_path / "q.npy", "-k", "5",
                "--ef-search", "400"])
    got_h = hits_by_query(r.stdout)
    names = ["%d" % i for i in range(200)] + ["m%d" % i for i in range(added)]
    top = np.argsort(-(q @ allx.T), axis=1)[:, :5]
    recall = np.mean([len({h["id"] for h in got_h[i]} & {names[j] for j in top[i]}) / 5
                      for i in range(5)])
    assert recall >= 0.8
    # and the index accepts changes afterwards
    r = cli.ok(["index", "delete", "--index", db, "--id", "m0"])
    assert json.loads(r.stdout)["n_docs"] == len(got) - 1


# ------------------------------------------------------------------ bad input


def test_bad_input_messages(cli, model, other_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    with open(bad, "w") as f:
        f.write('{"_id": "a", "text": "fine"}\n')
        f.write('{"_id": "b", "text": "fine too"}\n')
        f.write('{"_id": "c", "text": \n')          # line 3: invalid JSON
        f.write('{"text": "no id"}\n')              # line 4
        f.write('{"_id": "a", "text": "again"}\n')  # line 5: duplicate
        f.write('["not", "an", "object"]\n')        # line 6
        f.write('{"_id": "d", "text": 5}\n')        # line 7
    db = tmp_path / "b.db"
    r = cli.run(["index", "build", "-m", model, "-i", bad, "-o", db])
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "bad.jsonl: line 3: invalid JSON" in err and "--skip-bad" in err
    # the failed build removed its partial file, so the rerun is not blocked
    assert "partial index was removed" in err
    assert not [p for p in os.listdir(tmp_path) if p.startswith("b.db")]
    r = cli.run(["index", "build", "-m", model, "-i", bad, "-o", db, "--skip-bad"])
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "line 4: no \"_id\" or \"id\" field" in err
    assert 'line 5: duplicate id "a" (first seen on line 1)' in err
    assert "line 6: not a JSON object" in err and 'line 7: field "text" is not a string' in err
    assert "5 skipped" in err
    assert json.loads(cli.ok(["index", "info", "--index", db]).stdout)["n_docs"] == 2

    # a duplicate of a document already in the index
    again = tmp_path / "again.jsonl"
    with open(again, "w") as f:
        f.write('{"_id": "b", "text": "x"}\n')
    r = cli.run(["index", "add", "-m", model, "--index", db, "-i", again])
    assert r.returncode == 1 and b'line 1: duplicate id "b" (already in the index)' in r.stderr

    # building over an existing file is refused
    r = cli.run(["index", "build", "-m", model, "-i", again, "-o", db])
    assert r.returncode == 2 and b"already exists" in r.stderr

    # eval without qrels
    d = tmp_path / "beir"
    os.makedirs(d)
    for name in ("corpus.jsonl", "queries.jsonl"):
        with open(d / name, "w") as f:
            f.write('{"_id": "a", "text": "x"}\n')
    r = cli.run(["eval", "-m", model, "--beir", d])
    assert r.returncode == 1 and b"qrels/test.tsv: missing qrels file" in r.stderr
    os.makedirs(d / "qrels")
    with open(d / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\na\ta\tone\n")
    r = cli.run(["eval", "-m", model, "--beir", d])
    assert r.returncode == 1 and b'line 2: score "one" is not an integer' in r.stderr

    # search errors
    r = cli.run(["search", "-m", model, "--index", db, "-q", "x", "--filter", "year"])
    assert r.returncode == 2 and b'filter "year": no operator' in r.stderr
    r = cli.run(["search", "-m", model, "--index", tmp_path / "nope.db", "-q", "x"])
    assert r.returncode == 1 and b"no such index file" in r.stderr

    # valid SQLite holding invalid index data: a vector blob of the wrong size
    con = sqlite3.connect(str(db))
    con.execute("UPDATE chunks SET vec = x'0000' WHERE id = (SELECT min(id) FROM chunks)")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    r = cli.run(["index", "info", "--index", db])
    assert r.returncode == 1 and b"vector of 2 bytes, expected 128" in r.stderr
    # a damaged file: every page after the first overwritten
    raw = bytearray(open(db, "rb").read())
    for off in range(4096, len(raw), 4096):
        raw[off:off + 4096] = os.urandom(min(4096, len(raw) - off))
    with open(db, "wb") as f:
        f.write(raw)
    r = cli.run(["index", "info", "--index", db])
    assert r.returncode == 1 and r.stderr.startswith(b"medembed: error: ")
    assert b"malformed" in r.stderr or b"not a database" in r.stderr
    with open(tmp_path / "junk.db", "wb") as f:
        f.write(b"not an index" * 100)
    r = cli.run(["search", "--index", tmp_path / "junk.db", "--query-vectors", bad])
    assert r.returncode == 1 and b"not a database" in r.stderr
