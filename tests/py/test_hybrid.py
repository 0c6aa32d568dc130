"""Keyword (BM25) and hybrid search: `medembed search --mode bm25|hybrid`.

References, all independent of the code under test:
- BM25: FTS5's documented bm25() (k1 1.2, b 0.75, idf floor 1e-6) over the unicode61
  tokenizer's rule (letters, digits and private-use characters are token characters;
  lower-cased; diacritics removed), written here in Python, with every query word
  matched as a phrase and the phrases OR-ed;
- hybrid: reciprocal rank fusion (k = 60) and min-max weighted fusion computed in Python
  from the dense and bm25 runs of the same CLI;
- the stored keyword table read back with Python's sqlite3.
"""
import json
import math
import os
import sqlite3
import unicodedata

import pytest

from conftest import need_shared, read_jsonl


@pytest.fixture(scope="module")
def model(models):
    return models.get(hidden=32, ffn=64, max_seq_length=128, max_position_embeddings=128,
                      seed=5)["dir"]


CODES = [
    {"_id": "c1", "title": "Type 2 diabetes", "text": "Coded E11.9 in the record; HbA1c was 7.2%."},
    {"_id": "c2", "title": "Other diabetes", "text": "Coded E11.8, with HbA1c not measured."},
    {"_id": "c3", "title": "Colorectal cancer", "text": "Treated with 5-FU and leucovorin."},
    {"_id": "c4", "title": "Café au lait", "text": "Spots in neurofibromatosis; fluorouracil 5 FU-free."},
    {"_id": "c5", "title": "Unrelated", "text": "Hip fracture in the elderly (E11 9 not a code)."},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    src = need_shared("data", "pubmedqa")
    docs = read_jsonl(os.path.join(src, "corpus.jsonl"))[:120]
    for i, x in enumerate(docs):
        x["year"] = 2000 + i % 20
    docs += [dict(x, year=2030) for x in CODES]
    queries = [q for q in read_jsonl(os.path.join(src, "queries.jsonl"))
               if q["_id"][1:] in {x["_id"] for x in docs}][:12]
    d = tmp_path_factory.mktemp("hy")
    path = d / "corpus.jsonl"
    with open(path, "w") as f:
        for x in docs:
            f.write(json.dumps(x) + "\n")
    return {"path": path, "docs": docs, "queries": queries, "dir": d}


@pytest.fixture(scope="module")
def db(cli, model, corpus):
    p = corpus["dir"] / "h.db"
    cli.ok(["index", "build", "-m", model, "-i", corpus["path"], "-o", p, "--chunk-tokens",
            "64"])
    return p


# ------------------------------------------------------------ reference BM25

def tokens(text):
    out, cur = [], []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LN" or cat == "Co":
            base = "".join(c for c in unicodedata.normalize("NFD", ch.lower())
                           if not unicodedata.combining(c))
            cur.append(base)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def phrases(query):
    """Each whitespace-separated word with a letter or digit is one phrase."""
    words = [w for w in query.split() if any(c.isascii() and c.isalnum() or not c.isascii()
                                             for c in w)]
    return [tokens(w) for w in words]


def count(doc, ph):
    if not ph:
        return 0
    n = len(ph)
    return sum(1 for i in range(len(doc) - n + 1) if doc[i:i + n] == ph)


def bm25_ref(docs, query, allowed=None, k=10):
    toks = [tokens((x["title"] + " " + x["text"]).strip()) for x in docs]
    N = len(docs)
    avgdl = sum(len(t) for t in toks) / N
    phs = phrases(query)
    idf = []
    for ph in phs:
        nhit = sum(1 for t in toks if count(t, ph) > 0)
        v = math.log((N - nhit + 0.5) / (nhit + 0.5))
        idf.append(v if v > 0 else 1e-6)
    scored = []
    for i, t in enumerate(toks):
        if allowed is not None and not allowed(docs[i]):
            continue
        f = [count(t, ph) for ph in phs]
        if not any(f):
            continue
        s = sum(w * (x * 2.2) / (x + 1.2 * (0.25 + 0.75 * len(t) / avgdl))
                for w, x in zip(idf, f))
        scored.append((s, i))
    scored.sort(key=lambda p: (-float("%.9g" % p[0]), p[1]))  # near-ties: insertion order
    return [(docs[i]["_id"], s) for s, i in scored[:k]]


def search(cli, model, db, q, *extra):
    r = cli.ok(["search", "-m", model, "--index", db, "-q", q] + [str(x) for x in extra])
    return [json.loads(line) for line in r.stdout.decode().splitlines()]


def check_bm25(hits, want):
    assert [h["id"] for h in hits] == [w[0] for w in want]
    for h, (_, s) in zip(hits, want):
        assert h["score"] == pytest.approx(s, rel=1e-4)
        assert h["chunk"] is None


# ------------------------------------------------------------------ tests

def test_bm25_matches_reference(cli, model, db, corpus):
    for q in corpus["queries"]:
        hits = search(cli, model, db, q["text"], "--mode", "bm25", "-k", 10)
        check_bm25(hits, bm25_ref(corpus["docs"], q["text"]))
        assert len(hits) == 10


def test_bm25_needs_no_model(cli, db, corpus):
    q = corpus["queries"][0]["text"]
    r = cli.ok(["search", "--index", db, "-q", q, "--mode", "bm25"])
    hits = [json.loads(line) for line in r.stdout.decode().splitlines()]
    check_bm25(hits, bm25_ref(corpus["docs"], q))


@pytest.mark.parametrize("q,want", [
    ("E11.9", ["c1", "c5"]),   # the phrase e11 9; c5 spells it "E11 9"
    ("e11.8", ["c2"]),
    ("HbA1c", ["c1", "c2"]),
    ("hba1c", ["c1", "c2"]),
    ("5-FU", ["c3", "c4"]),
    ("cafe", ["c4"]),           # diacritics removed on both sides
    ("café", ["c4"]),
])
def test_codes_stay_searchable(cli, model, db, corpus, q, want):
    hits = search(cli, model, db, q, "--mode", "bm25", "--filter", "year=2030")
    assert sorted(h["id"] for h in hits) == want
    check_bm25(hits, bm25_ref(corpus["docs"], q, lambda x: x["year"] == 2030))


HOSTILE = ['"', '""', 'lace"plant', 'NEAR(lace plant)', 'lace NEAR/2 plant', 'plant*', '*',
           '^lace', 'text:lace', 'title : plant', '(lace', 'lace)', ')) ((', 'AND', 'OR NOT',
           'lace AND NOT plant', '{text}: lace', '-plant', '+', "'", 'lace\tplant\n',
           'lace "plant', '\\"', 'rank:1', 'fts MATCH 1', "x'00'", '; DROP TABLE docs; --']


def test_fts5_syntax_is_only_words(cli, model, db, corpus, tmp_path):
    # one CLI run per mode over every hostile query (-i JSONL, query_id = the line's _id)
    path = tmp_path / "hostile.jsonl"
    with open(path, "w") as f:
        for i, q in enumerate(HOSTILE):
            f.write(json.dumps({"_id": str(i), "text": q}) + "\n")
    for mode in ("bm25", "hybrid"):
        r = cli.ok(["search", "-m", model, "--index", db, "-i", path, "--mode", mode, "-k", "20"])
        by_q = {}
        for line in r.stdout.decode().splitlines():
            h = json.loads(line)
            by_q.setdefault(int(h["query_id"]), []).append(h)
        for i, q in enumerate(HOSTILE):
            if mode == "bm25":
                check_bm25(by_q.get(i, []), bm25_ref(corpus["docs"], q, k=20))
            else:
                assert len(by_q.get(i, [])) == 20  # the dense leg always answers


def rrf(dense, bm25, k):
    s = {}
    for leg in (dense, bm25):
        for i, h in enumerate(leg):
            s[h["id"]] = s.get(h["id"], 0) + 1 / (60 + i + 1)
    return s


def weighted(dense, bm25, alpha):
    s = {}
    for leg, w in ((dense, alpha), (bm25, 1 - alpha)):
        if not leg:
            continue
        lo, hi = min(h["score"] for h in leg), max(h["score"] for h in leg)
        for h in leg:
            v = (h["score"] - lo) / (hi - lo) if hi > lo else 1.0
            s[h["id"]] = s.get(h["id"], 0) + w * v
    return s


@pytest.mark.parametrize("alpha", [None, 0.3, 1.0])
@pytest.mark.parametrize("filt", [None, "year>=2010"])
def test_hybrid_fuses_both_legs(cli, model, db, corpus, alpha, filt):
    extra = ["--filter", filt] if filt else []
    for q in corpus["queries"][:5]:
        t = q["text"]
        dense = search(cli, model, db, t, "--mode", "dense", "-k", 100, "--exact", *extra)
        bm = search(cli, model, db, t, "--mode", "bm25", "-k", 100, *extra)
        args = ["--mode", "hybrid", "-k", 10, "--exact", *extra]
        if alpha is not None:
            args += ["--alpha", alpha]
        hyb = search(cli, model, db, t, *args)
        want = rrf(dense, bm, 10) if alpha is None else weighted(dense, bm, alpha)
        order = sorted(want.items(), key=lambda p: -p[1])
        assert len(hyb) == 10
        for h in hyb:
            assert h["score"] == pytest.approx(want[h["id"]], rel=1e-5, abs=1e-7)
        # best first, and nothing better left out
        assert all(a["score"] >= b["score"] for a, b in zip(hyb, hyb[1:]))
        assert hyb[-1]["score"] >= order[10][1] - 1e-6 if len(order) > 10 else True
        dpos = {h["id"]: (i + 1, h) for i, h in enumerate(dense)}
        bpos = {h["id"]: (i + 1, h) for i, h in enumerate(bm)}
        for h in hyb:
            if h["id"] in dpos:
                r, d = dpos[h["id"]]
                assert h["dense"]["rank"] == r
                assert h["dense"]["score"] == pytest.approx(d["score"], rel=1e-6)
                assert h["chunk"] == d["chunk"]
            else:
                assert h["dense"] is None
            if h["id"] in bpos:
                r, b = bpos[h["id"]]
                assert h["bm25"] == {"rank": r, "score": pytest.approx(b["score"], rel=1e-6)}
            else:
                assert h["bm25"] is None
        if filt:
            years = {x["_id"]: x["year"] for x in corpus["docs"]}
            assert all(years[h["id"]] >= 2010 for h in hyb + bm)


def fts_rows(db):
    con = sqlite3.connect(str(db))
    rows = con.execute("SELECT d.ext_id, f.text FROM fts f JOIN docs d ON d.id = f.rowid "
                       "ORDER BY d.id").fetchall()
    n_docs = con.execute("SELECT count(*) FROM docs").fetchone()[0]
    con.close()
    return rows, n_docs


def test_add_and_delete_keep_keywords(cli, model, corpus, tmp_path):
    p = tmp_path / "ad.db"
    docs = corpus["docs"]
    first = tmp_path / "a.jsonl"
    with open(first, "w") as f:
        for x in docs[:60]:
            f.write(json.dumps(x) + "\n")
    more = tmp_path / "b.jsonl"
    with open(more, "w") as f:
        for x in docs[60:]:
            f.write(json.dumps(x) + "\n")
    cli.ok(["index", "build", "-m", model, "-i", first, "-o", p])
    cli.ok(["index", "add", "-m", model, "-i", more, "--index", p])
    rows, n = fts_rows(p)
    assert n == len(docs) and [r[0] for r in rows] == [x["_id"] for x in docs]
    assert [r[1] for r in rows] == [(x["title"] + " " + x["text"]).strip() for x in docs]
    cli.ok(["index", "delete", "--index", p, "--id", "c1", "--id", docs[0]["_id"]])
    rows, n = fts_rows(p)
    left = [x for x in docs if x["_id"] not in ("c1", docs[0]["_id"])]
    assert n == len(left) and [r[0] for r in rows] == [x["_id"] for x in left]
    hits = search(cli, model, p, "E11.9", "--mode", "bm25")
    check_bm25(hits, bm25_ref(left, "E11.9"))
    # a failed add (duplicate id) leaves the keyword table untouched
    r = cli.run(["index", "add", "-m", model, "-i", more, "--index", p])
    assert r.returncode != 0
    assert fts_rows(p)[0] == rows


def test_fts_rebuild_for_an_older_file(cli, model, corpus, tmp_path):
    p = tmp_path / "old.db"
    cli.ok(["index", "build", "-m", model, "-i", corpus["path"], "-o", p])
    con = sqlite3.connect(str(p))
    con.execute("DROP TABLE fts")  # a file written before the keyword index existed
    con.commit()
    con.close()
    r = cli.run(["search", "--index", p, "-q", "lace", "--mode", "bm25"])
    assert r.returncode == 1 and b"no keyword index" in r.stderr and b"fts-rebuild" in r.stderr
    assert json.loads(cli.ok(["index", "info", "--index", p]).stdout)["bm25_docs"] is None
    out = json.loads(cli.ok(["index", "fts-rebuild", "--index", p, "-i", corpus["path"]]).stdout)
    n = len(corpus["docs"])
    assert out == {"indexed": n, "not_in_index": 0, "n_docs": n, "bm25_docs": n}
    q = corpus["queries"][1]["text"]
    check_bm25(search(cli, model, p, q, "--mode", "bm25"), bm25_ref(corpus["docs"], q))
    # rebuilding again replaces, never duplicates
    cli.ok(["index", "fts-rebuild", "--index", p, "-i", corpus["path"]])
    rows, n_docs = fts_rows(p)
    assert len(rows) == n_docs == n


def test_bad_mode_and_alpha(cli, model, db):
    for args, msg in [(["--mode", "sparse"], b"--mode expects dense, bm25 or hybrid"),
                      (["--mode", "hybrid", "--alpha", "1.5"], b"--alpha expects"),
                      (["--mode", "hybrid", "--alpha", "nan"], b"--alpha expects"),
                      (["--alpha", "0.5"], b"--alpha applies to --mode hybrid")]:
        r = cli.run(["search", "-m", model, "--index", db, "-q", "x"] + args)
        assert r.returncode == 2 and msg in r.stderr, r.stderr


@pytest.mark.parametrize("mode", [["bm25"], ["hybrid"], ["hybrid", "--alpha", "0.4"]])
def test_eval_mode_ranks_as_search_does(cli, model, corpus, tmp_path, mode):
    """eval --mode retrieves what search --mode returns on an index of the same corpus."""
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    qs = corpus["queries"][:4]
    with open(beir / "corpus.jsonl", "w") as f:
        for x in corpus["docs"]:
            f.write(json.dumps(x) + "\n")
    with open(beir / "queries.jsonl", "w") as f:
        for q in qs:
            f.write(json.dumps(q) + "\n")
    with open(beir / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in qs:
            f.write("%s\t%s\t1\n" % (q["_id"], q["_id"][1:]))
    run = tmp_path / "run.trec"
    got = json.loads(cli.ok(["eval", "-m", model, "--beir", beir, "--json", "--run", run,
                             "-k", "20", "--mode"] + mode).stdout)
    assert got["mode"] == {"bm25": "bm25", "hybrid": "hybrid-rrf"}.get(
        mode[0] if len(mode) == 1 else "", "hybrid-weighted")
    ranked = {}
    for line in open(run):
        qid, _, doc, rank, score, _ = line.split()
        ranked.setdefault(qid, []).append(doc)
    db = tmp_path / "same.db"
    cli.ok(["index", "build", "-m", model, "-i", beir / "corpus.jsonl", "-o", db, "--no-chunk"])
    for q in qs:
        hits = search(cli, model, db, q["text"], "-k", 20, "--exact", "--mode", *mode)
        assert ranked[q["_id"]] == [h["id"] for h in hits]
