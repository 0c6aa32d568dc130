"""test_server_rerank.py - POST /rerank (TEI) in `medembed serve`, with a cross-encoder.

A random-weight cross-encoder folder (tests/py/gen_model.py, as sentence-transformers'
CrossEncoder saves one) is served alone (`-m CE`, as TEI serves a reranker) and beside an
embedding model (`-m EMB --rerank CE`). The reference for every score is `medembed rerank`, the
CLI, for the same pairs and options (itself checked against a float64 reference and against
sentence-transformers' CrossEncoder in tests/py/test_rerank.py): the server must return the same
float32 scores, in the order a sort of those scores gives. Also: raw_scores (the logit, whose
sigmoid is the default score), return_text, truncation (422 without it, both directions with
it), TEI's error statuses (400 empty, 422 too many texts, 424 for a route the model cannot do),
/info, metrics, and the start-up refusals.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_server import (BIN, TEXTS, Server, _build_index, _clean_env,  # noqa: E402
                         _generate, openai_error, tei_error)

try:
    import gen_model  # tests/py/gen_model.py
except ImportError:  # pragma: no cover
    gen_model = None

DOCS = [
    "metformin is first-line therapy for type 2 diabetes",
    "aspirin for secondary stroke prevention",
    "",
    "HbA1c 8.1% despite insulin glargine",
    "the patient denies chest pain",
    "E11.9 type 2 diabetes mellitus without complications",
]
QUERY = "what lowers HbA1c in type 2 diabetes?"


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="medembed-rerank-serve-")
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture(scope="module")
def ce(workdir):
    if not os.access(BIN, os.X_OK):
        pytest.skip("%s not built" % BIN)
    if gen_model is None:
        pytest.skip("tests/py/gen_model.py is absent: no cross-encoder generator")
    out = os.path.join(workdir, "ce")
    gen_model.make_model(out, layers=2, hidden=64, heads=4, ffn=128, max_seq_length=128,
                         max_position_embeddings=128, cross_encoder=True, seed=3)
    return out


@pytest.fixture(scope="module")
def emb(workdir):
    out = os.path.join(workdir, "emb")
    _generate(out)
    return out


@pytest.fixture(scope="module")
def server(ce):
    s = Server(ce)
    yield s
    assert s.close() == 0


def cli_rerank(ce, query, texts, *args):
    """{index: score} from `medembed rerank` for the same pairs."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    try:
        r = subprocess.run([BIN, "rerank", "-m", ce, "-q", query, "-i", f.name] + list(args),
                           capture_output=True, timeout=120, env=_clean_env())
    finally:
        os.unlink(f.name)
    assert r.returncode == 0, r.stderr.decode()
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert sorted(row["index"] for row in rows) == list(range(len(texts)))
    return {row["index"]: row["score"] for row in rows}


def check_ranking(got, want, texts=None):
    """got: the server's answer; want: {index: score} from the CLI."""
    assert isinstance(got, list) and len(got) == len(want)
    for row in got:
        assert set(row) == ({"index", "score", "text"} if texts else {"index", "score"}), row
        assert np.float32(row["score"]) == np.float32(want[row["index"]]), (row, want)
        if texts:
            assert row["text"] == texts[row["index"]]
    # best first, ties by index: the order a sort of the CLI's scores gives
    order = sorted(want, key=lambda i: (-np.float32(want[i]), i))
    assert [row["index"] for row in got] == order


def test_scores_equal_the_cli(server, ce):
    status, body = server.post("/rerank", {"query": QUERY, "texts": DOCS})
    assert status == 200, body
    check_ranking(body, cli_rerank(ce, QUERY, DOCS))
    assert all(0 < row["score"] < 1 for row in body)  # one label: a sigmoid


def test_raw_scores_and_return_text(server, ce):
    status, raw = server.post("/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True,
                                          "return_text": True})
    assert status == 200, raw
    check_ranking(raw, cli_rerank(ce, QUERY, DOCS, "--raw-scores"), texts=DOCS)
    status, sig = server.post("/rerank", {"query": QUERY, "texts": DOCS})
    by_index = {row["index"]: row["score"] for row in sig}
    for row in raw:  # the default score is the sigmoid of the logit
        assert by_index[row["index"]] == pytest.approx(1 / (1 + np.exp(-row["score"])),
                                                       rel=1e-5, abs=1e-6)
    # a sigmoid keeps the order
    assert [r["index"] for r in raw] == [r["index"] for r in sig]


def test_truncation(server, ce):
    long_doc = " ".join(["hyperglycemia"] * 150)
    texts = [long_doc, "metformin", long_doc + " insulin"]
    status, body = server.post("/rerank", {"query": QUERY, "texts": texts})
    tei_error(status, body, 422, "Validation")
    assert "token" in body["error"] or "long" in body["error"]
    for direction, flag in (("right", []), ("left", ["--truncation-direction", "left"])):
        status, body = server.post("/rerank", {"query": QUERY, "texts": texts, "truncate": True,
                                               "truncation_direction": direction})
        assert status == 200, body
        check_ranking(body, cli_rerank(ce, QUERY, texts, *flag))
    left = server.post("/rerank", {"query": QUERY, "texts": texts, "truncate": True,
                                   "truncation_direction": "left"})[1]
    right = server.post("/rerank", {"query": QUERY, "texts": texts, "truncate": True})[1]
    # the two long texts differ only at their end: cut on the right they score the same
    rs = {r["index"]: r["score"] for r in right}
    ls = {r["index"]: r["score"] for r in left}
    assert rs[0] == rs[2] and ls[0] != ls[2]


def test_auto_truncate(ce):
    long_doc = " ".join(["hyperglycemia"] * 150)
    s = Server(ce, "--auto-truncate", "true")
    try:
        status, body = s.post("/rerank", {"query": QUERY, "texts": [long_doc, "x"]})
        assert status == 200, body
        check_ranking(body, cli_rerank(ce, QUERY, [long_doc, "x"]))
        status, body = s.post("/rerank", {"query": QUERY, "texts": [long_doc],
                                          "truncate": False})
        tei_error(status, body, 422)
    finally:
        assert s.close() == 0


def test_bad_requests(server):
    for bad, want in (({"query": QUERY, "texts": []}, 400),
                      ({"query": "", "texts": ["a"]}, 400),
                      ({"texts": ["a"]}, 422),
                      ({"query": QUERY}, 422),
                      ({"query": QUERY, "texts": "a"}, 422),
                      ({"query": QUERY, "texts": ["a", 3]}, 422),
                      ({"query": 1, "texts": ["a"]}, 422),
                      ({"query": QUERY, "texts": ["a"], "raw_scores": "yes"}, 422),
                      ({"query": QUERY, "texts": ["a"], "truncation_direction": "up"}, 422),
                      ({"query": QUERY, "texts": ["a"], "top_n": 2}, 422)):
        status, body = server.post("/rerank", bad)
        tei_error(status, body, want, "Empty" if want == 400 else "Validation")
    status, body = server.post("/rerank", {"query": QUERY, "texts": ["a"] * 513})
    tei_error(status, body, 422, "Validation")
    assert body["error"] == "batch size 513 > maximum allowed batch size 512"


def test_strict_client_batch(ce):
    s = Server(ce, "--strict-client-batch")
    try:
        status, body = s.post("/rerank", {"query": QUERY, "texts": ["a"] * 33})
        tei_error(status, body, 422, "Validation")
        status, body = s.post("/rerank", {"query": QUERY, "texts": ["a"] * 32})
        assert status == 200 and len(body) == 32
    finally:
        assert s.close() == 0


def test_cross_encoder_alone_refuses_embedding_routes(server):
    status, body = server.post("/embed", {"inputs": "chest pain"})
    tei_error(status, body, 424, "Backend")
    assert body["error"].startswith("model is not an embedding model")
    status, body = server.post("/v1/embeddings", {"input": "chest pain"})
    openai_error(status, body, 424, "model_type")
    status, body = server.post("/search", {"query": "chest pain"})
    tei_error(status, body, 424, "Backend")
    status, body = server.post("/tokenize", {"inputs": "chest pain"})
    assert status == 200 and body[0][0]["special"] is True
    status, _, data = server.request("GET", "/info")
    info = json.loads(data)
    assert status == 200 and "reranker" in info["model_type"]
    assert "embedding" not in info["model_type"] and info["reranker"] is None
    assert info["medembed"]["kind"] == "cross-encoder"
    m = server.metrics()
    assert m['te_request_failure{err="model_type"}'] >= 3
    assert m['te_request_success{route="/rerank",method="batch"}'] >= 1


def test_embedder_with_rerank(emb, ce):
    s = Server(emb, "--rerank", ce)
    try:
        status, body = s.post("/rerank", {"query": QUERY, "texts": DOCS})
        assert status == 200, body
        check_ranking(body, cli_rerank(ce, QUERY, DOCS))
        status, body = s.post("/embed", {"inputs": ["chest pain"]})
        assert status == 200 and len(body) == 1
        status, _, data = s.request("GET", "/info")
        info = json.loads(data)
        assert "embedding" in info["model_type"]
        assert info["reranker"]["model_id"] == "ce"
        assert info["reranker"]["medembed"]["kind"] == "cross-encoder"
    finally:
        assert s.close() == 0
    s = Server(emb)  # no cross-encoder: /rerank is 424, as TEI answers for an embedder
    try:
        status, body = s.post("/rerank", {"query": QUERY, "texts": DOCS})
        tei_error(status, body, 424, "Backend")
        assert body["error"].startswith("model is not a re-ranker model")
    finally:
        assert s.close() == 0


@pytest.mark.parametrize("args, msg", [
    (lambda emb, ce: [emb, "--rerank", emb], "not a cross-encoder"),
    (lambda emb, ce: [ce, "--rerank", ce], "give the embedding model to -m"),
    (lambda emb, ce: [ce, "--index", os.path.join(os.path.dirname(ce), "none.db")],
     "--index needs an embedding model"),
    (lambda emb, ce: [emb, "--rerank", os.path.join(os.path.dirname(ce), "nope")], "nope"),
])
def test_refused_at_start(emb, ce, args, msg):
    a = args(emb, ce)
    r = subprocess.run([BIN, "serve", "-m", a[0], "--port", "0"] + a[1:], capture_output=True,
                       timeout=120, env=_clean_env())
    assert r.returncode != 0
    assert msg in r.stderr.decode(), r.stderr.decode()


def test_multi_label_classifier_refused(workdir):
    out = os.path.join(workdir, "ce3")
    gen_model.make_model(out, layers=1, hidden=32, heads=4, ffn=64, max_seq_length=32,
                         max_position_embeddings=32, cross_encoder=True, num_labels=3)
    r = subprocess.run([BIN, "serve", "-m", out, "--port", "0"], capture_output=True,
                       timeout=120, env=_clean_env())
    assert r.returncode != 0 and "3 labels" in r.stderr.decode(), r.stderr.decode()


def _cli_search(emb, path, query, *args):
    r = subprocess.run([BIN, "search", "-m", emb, "--index", path, "-q", query, "--metadata"]
                       + list(args), capture_output=True, timeout=120, env=_clean_env())
    assert r.returncode == 0, r.stderr.decode()
    return [json.loads(line) for line in r.stdout.decode().splitlines()]


def test_search_with_rerank(workdir, emb, ce):
    """POST /search with "rerank" returns what `medembed search --rerank` prints: the same
    documents in the same order, the cross-encoder's scores, the search's rank and score kept
    as first_stage, in every mode."""
    docs = [("d%d" % i, t, {"year": 2000 + i}) for i, t in enumerate(TEXTS + DOCS[:2] + DOCS[3:])]
    path = os.path.join(workdir, "rr.db")
    _build_index(emb, path, docs)
    s = Server(emb, "--index", path, "--rerank", ce)
    try:
        for mode in ("dense", "bm25", "hybrid"):
            for k, top in ((3, 8), (5, None)):
                body = {"query": QUERY, "k": k, "mode": mode, "rerank": True}
                args = ["--mode", mode, "-k", str(k), "--rerank", ce]
                if top:
                    body["rerank_top"] = top
                    args += ["--rerank-top", str(top)]
                want = _cli_search(emb, path, QUERY, *args)
                status, got = s.post("/search", body)
                assert status == 200, got
                got = got["hits"]
                assert [h["id"] for h in got] == [w["id"] for w in want], mode
                for h, w in zip(got, want):
                    assert np.float32(h["score"]) == np.float32(w["score"])
                    assert h["first_stage"]["rank"] == w["first_stage"]["rank"]
                    assert np.float32(h["first_stage"]["score"]) == \
                        np.float32(w["first_stage"]["score"])
                    assert h["metadata"] == w["metadata"]
                scores = [np.float32(h["score"]) for h in got]
                assert scores == sorted(scores, reverse=True)
        # without rerank, no first_stage
        status, got = s.post("/search", {"query": QUERY, "k": 3})
        assert status == 200 and all("first_stage" not in h for h in got["hits"])
        for bad in ({"query": QUERY, "rerank_top": 5},
                    {"query": QUERY, "rerank": True, "k": 9, "rerank_top": 5},
                    {"query": QUERY, "rerank": "yes"},
                    {"query": QUERY, "rerank": True, "rerank_top": 0},
                    {"query": "a\u0000b", "rerank": True}):
            status, body = s.post("/search", bad)
            tei_error(status, body, 422, "Validation")
    finally:
        assert s.close() == 0
    s = Server(emb, "--index", path)  # no cross-encoder
    try:
        status, body = s.post("/search", {"query": QUERY, "rerank": True})
        tei_error(status, body, 424, "Backend")
        assert "--rerank" in body["error"]
    finally:
        assert s.close() == 0
