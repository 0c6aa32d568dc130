"""One prompt rule, one pipeline: every surface gives the same vectors for the same model,
text and prompt.

The model defines three prompts and a default one ("clinical"). The library's rule
(medembed_resolve_prompt) gives plain texts the default prompt, queries the "query" prompt
and documents the "passage" prompt. The reference for each surface is independent of that
rule: `medembed embed --prompt ""` (no prompt at all) of the prompt text concatenated by
hand. Each surface must match it:
- CLI embed, Python encode / encode_query / encode_document, server /embed and
  /v1/embeddings: bit for bit;
- index build (vectors read back from the SQLite file), with and without chunking: bit for
  bit;
- search and the server's /search: the query vector is checked through the scores, which
  must equal `search --query-vectors` of the reference vector exactly;
- eval: the run file's scores equal the dot products of reference vectors (1e-6).
sentence-transformers' own encode() is the independent reference for the default prompt when
the peer environment is there.
"""
import json
import os
import sqlite3
import subprocess

import numpy as np
import pytest

import pkg_support as ps
from conftest import clean_env, peer_python
from test_server import Server

PROMPTS = {"query": "query: ", "passage": "passage: ", "clinical": "clinical note: "}
TEXTS = ["aspirin for stroke prevention in atrial fibrillation",
         "statins lower ldl cholesterol",
         "metformin is first line in type 2 diabetes",
         "ace inhibitors cause a dry cough",
         " ".join(["hypertension treated with ace inhibitors"] * 40)]  # over the limit
QUERIES = ["which drug prevents stroke", "cough after starting lisinopril"]


@pytest.fixture(scope="module")
def pm(tmp_path_factory):
    return ps.make_model(str(tmp_path_factory.mktemp("surf") / "m"), seed=11, prompts=PROMPTS,
                         default_prompt_name="clinical")


def ref(cli, model, texts, prefix, tmp_path, args=()):
    """The reference: no prompt, the prefix written into the texts by hand."""
    return cli.embed_npy(model, [prefix + t for t in texts], ["--prompt", ""] + list(args),
                         tmp_path, name="ref-%d.npy" % abs(hash((prefix, tuple(texts)))))


def corpus(tmp_path):
    path = tmp_path / "docs.jsonl"
    with open(path, "w") as f:
        for i, t in enumerate(TEXTS):
            f.write(json.dumps({"_id": "d%d" % i, "title": "", "text": t}) + "\n")
    return path


def stored_vectors(db):
    con = sqlite3.connect(str(db))
    rows = con.execute("SELECT d.ext_id, c.chunk_no, c.vec FROM chunks c JOIN docs d "
                       "ON d.id = c.doc ORDER BY c.id").fetchall()
    con.close()
    return {(ext, no): np.frombuffer(blob, dtype="<f4") for ext, no, blob in rows}


def test_the_rule_changes_the_vectors(cli, pm, tmp_path):
    """The three prompts give three different vectors, so the checks below can fail."""
    a = ref(cli, pm, TEXTS[:2], PROMPTS["clinical"], tmp_path)
    b = ref(cli, pm, TEXTS[:2], PROMPTS["query"], tmp_path)
    c = ref(cli, pm, TEXTS[:2], PROMPTS["passage"], tmp_path)
    none = cli.embed_npy(pm, TEXTS[:2], ["--prompt", ""], tmp_path, name="none.npy")
    for x, y in [(a, b), (a, c), (b, c), (a, none)]:
        assert np.max(np.abs(x - y)) > 1e-3


def test_cli_embed_applies_the_default_prompt(cli, pm, tmp_path):
    want = ref(cli, pm, TEXTS, PROMPTS["clinical"], tmp_path)
    got = cli.embed_npy(pm, TEXTS, [], tmp_path)
    assert got.tobytes() == want.tobytes()
    named = cli.embed_npy(pm, TEXTS, ["--prompt-name", "query"], tmp_path, name="q.npy")
    assert named.tobytes() == ref(cli, pm, TEXTS, PROMPTS["query"], tmp_path).tobytes()
    text = cli.embed_npy(pm, TEXTS, ["--prompt", "passage: "], tmp_path, name="p.npy")
    assert text.tobytes() == ref(cli, pm, TEXTS, PROMPTS["passage"], tmp_path).tobytes()


def test_python_encode_query_and_document(cli, pm, tmp_path):
    medembed = ps.import_medembed()
    with medembed.Model(pm) as m:
        assert m.encode(TEXTS).tobytes() == \
            ref(cli, pm, TEXTS, PROMPTS["clinical"], tmp_path).tobytes()
        assert m.encode_query(QUERIES).tobytes() == \
            ref(cli, pm, QUERIES, PROMPTS["query"], tmp_path).tobytes()
        assert m.encode_document(TEXTS).tobytes() == \
            ref(cli, pm, TEXTS, PROMPTS["passage"], tmp_path).tobytes()
        # an explicit choice wins over the role
        assert m.encode_query(QUERIES, prompt="").tobytes() == \
            ref(cli, pm, QUERIES, "", tmp_path).tobytes()
        with pytest.raises(ValueError, match=r'"nope" is not among the model\'s prompts '
                                             r'\(query, passage, clinical\)'):
            m.encode(TEXTS, prompt_name="nope")


def test_index_stores_document_prompt_vectors(cli, pm, tmp_path):
    docs = corpus(tmp_path)
    db = tmp_path / "a.db"
    cli.ok(["index", "build", "-m", pm, "-i", docs, "-o", db, "--no-chunk"])
    got = stored_vectors(db)
    want = ref(cli, pm, TEXTS, PROMPTS["passage"], tmp_path)
    for i in range(len(TEXTS)):
        assert got[("d%d" % i, 0)].tobytes() == want[i].tobytes()
    # --prompt-name picks another one; --prompt "" none
    db2 = tmp_path / "b.db"
    cli.ok(["index", "build", "-m", pm, "-i", docs, "-o", db2, "--no-chunk", "--prompt", ""])
    none = ref(cli, pm, TEXTS, "", tmp_path)
    assert stored_vectors(db2)[("d1", 0)].tobytes() == none[1].tobytes()


def test_chunks_carry_the_document_prompt(cli, pm, tmp_path):
    """Chunked: each window is [CLS] prompt window [SEP]; window 0 of a short document is the
    whole text, so it equals the reference; windows leave room for the prompt."""
    docs = corpus(tmp_path)
    db = tmp_path / "c.db"
    cli.ok(["index", "build", "-m", pm, "-i", docs, "-o", db])
    got = stored_vectors(db)
    want = ref(cli, pm, TEXTS, PROMPTS["passage"], tmp_path)
    for i in range(4):
        assert got[("d%d" % i, 0)].tobytes() == want[i].tobytes()
    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    n_prompt = len(cli.tokenize(pm, [PROMPTS["passage"].strip()])[0]) - 2
    assert info["chunking"]["chunk_tokens"] == 128 - 2 - n_prompt
    assert got[("d4", 1)] is not None  # the long text was cut into windows
    r = cli.run(["index", "build", "-m", pm, "-i", docs, "-o", tmp_path / "d.db",
                 "--chunk-tokens", "126"])
    assert r.returncode != 0 and b"do not fit the model's limit of 128" in r.stderr


def search_hits(cli, args):
    r = cli.ok(["search"] + [str(a) for a in args])
    return [(h["id"], np.float32(h["score"])) for h in map(json.loads,
                                                           r.stdout.decode().splitlines())]


def test_search_and_server_use_the_query_prompt(cli, pm, tmp_path):
    docs = corpus(tmp_path)
    db = tmp_path / "s.db"
    cli.ok(["index", "build", "-m", pm, "-i", docs, "-o", db, "--no-chunk"])
    q = ref(cli, pm, QUERIES[:1], PROMPTS["query"], tmp_path)
    qpath = tmp_path / "q.npy"
    np.save(qpath, q)
    want = search_hits(cli, ["--index", db, "--query-vectors", qpath, "-k", 5])
    assert search_hits(cli, ["-m", pm, "--index", db, "-q", QUERIES[0], "-k", 5]) == want
    # the default prompt instead would give other scores
    other = ref(cli, pm, QUERIES[:1], PROMPTS["clinical"], tmp_path)
    np.save(qpath, other)
    assert search_hits(cli, ["--index", db, "--query-vectors", qpath, "-k", 5]) != want

    s = Server(pm, "--index", db)
    try:
        status, body = s.post("/search", {"query": QUERIES[0], "k": 5})
        assert status == 200, body
        assert [(h["id"], np.float32(h["score"])) for h in body["hits"]] == want
        status, body = s.post("/embed", {"inputs": TEXTS, "truncate": True})
        assert status == 200, body
        assert np.array(body, np.float32).tobytes() == \
            ref(cli, pm, TEXTS, PROMPTS["clinical"], tmp_path).tobytes()
        # OpenAI's API has no prompt field: the default prompt applies
        status, body = s.post("/v1/embeddings", {"input": TEXTS[:2], "model": "m"})
        assert status == 200, body
        got = np.array([d["embedding"] for d in body["data"]], np.float32)
        assert got.tobytes() == ref(cli, pm, TEXTS[:2], PROMPTS["clinical"], tmp_path).tobytes()
        status, body = s.post("/embed", {"inputs": TEXTS[:2], "prompt_name": "passage"})
        assert status == 200, body
        assert np.array(body, np.float32).tobytes() == \
            ref(cli, pm, TEXTS[:2], PROMPTS["passage"], tmp_path).tobytes()
        status, body = s.post("/embed", {"inputs": "a", "prompt_name": "nope"})
        assert status == 422 and "(query, passage, clinical)" in body["error"], body
    finally:
        assert s.close() == 0


def test_eval_uses_query_and_document_prompts(cli, pm, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    os.replace(corpus(tmp_path), beir / "corpus.jsonl")
    with open(beir / "queries.jsonl", "w") as f:
        for i, q in enumerate(QUERIES):
            f.write(json.dumps({"_id": "q%d" % i, "text": q}) + "\n")
    with open(beir / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td3\t1\n")
    run = tmp_path / "run.trec"
    cli.ok(["eval", "-m", pm, "--beir", beir, "--run", run, "-k", 5])
    dv = ref(cli, pm, TEXTS, PROMPTS["passage"], tmp_path).astype(np.float64)
    qv = ref(cli, pm, QUERIES, PROMPTS["query"], tmp_path).astype(np.float64)
    n = 0
    for line in open(run):
        qid, _, did, _, score, _ = line.split()
        want = dv[int(did[1:])] @ qv[int(qid[1:])]
        assert abs(float(score) - want) < 1e-5, (qid, did, score, want)
        n += 1
    assert n == 2 * 5


def test_default_prompt_matches_sentence_transformers(cli, pm, tmp_path):
    """sentence-transformers' encode() applies default_prompt_name too."""
    py = peer_python("sentence_transformers")
    code = ("import sys, json, numpy as np\n"
            "from sentence_transformers import SentenceTransformer\n"
            "m = SentenceTransformer(sys.argv[1], device='cpu')\n"
            "t = json.loads(sys.argv[2])\n"
            "np.save(sys.argv[3], m.encode(t, convert_to_numpy=True).astype(np.float32))\n")
    out = tmp_path / "st.npy"
    r = subprocess.run([py, "-c", code, pm, json.dumps(TEXTS[:4]), str(out)],
                       capture_output=True, timeout=600, env=clean_env())
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    st = np.load(out)
    got = cli.embed_npy(pm, TEXTS[:4], [], tmp_path, name="st-cli.npy")
    np.testing.assert_allclose(got, st, atol=1e-5)
    assert np.max(np.abs(ref(cli, pm, TEXTS[:4], "", tmp_path) - st)) > 1e-3


def test_eval_doc_prompt_overrides(cli, pm, tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    os.replace(corpus(tmp_path), beir / "corpus.jsonl")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": QUERIES[0]}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    run = tmp_path / "run.trec"
    cli.ok(["eval", "-m", pm, "--beir", beir, "--run", run, "-k", 5, "--prompt", "",
            "--doc-prompt-name", "clinical"])
    dv = ref(cli, pm, TEXTS, PROMPTS["clinical"], tmp_path).astype(np.float64)
    qv = ref(cli, pm, QUERIES[:1], "", tmp_path).astype(np.float64)
    for line in open(run):
        _, _, did, _, score, _ = line.split()
        assert abs(float(score) - dv[int(did[1:])] @ qv[0]) < 1e-5
    r = cli.run(["eval", "-m", pm, "--beir", beir, "--doc-prompt-name", "nope"])
    assert r.returncode == 2 and b'prompt_name "nope" is not among' in r.stderr
    r = cli.run(["index", "build", "-m", pm, "-i", beir / "corpus.jsonl", "-o", tmp_path / "x.db",
                 "--prompt", "a", "--prompt-name", "query"])
    assert r.returncode == 2 and b"not both" in r.stderr and not (tmp_path / "x.db").exists()


def test_index_keeps_its_document_prompt(cli, pm, tmp_path):
    """The first add records the documents' prompt; a later add without one uses it, and
    another explicit one is refused, so the index never mixes two prompts."""
    docs = corpus(tmp_path)
    db = tmp_path / "k.db"
    cli.ok(["index", "build", "-m", pm, "-i", docs, "-o", db, "--no-chunk", "--prompt",
            "note: "])
    info = json.loads(cli.ok(["index", "info", "--index", db]).stdout)
    assert info["model"]["doc_prompt"] == "note: "
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"_id": "e0", "text": QUERIES[1]}) + "\n")
    cli.ok(["index", "add", "-m", pm, "-i", more, "--index", db])
    got = stored_vectors(db)[("e0", 0)]
    assert got.tobytes() == ref(cli, pm, QUERIES[1:], "note: ", tmp_path)[0].tobytes()
    more.write_text(json.dumps({"_id": "e1", "text": QUERIES[0]}) + "\n")
    r = cli.run(["index", "add", "-m", pm, "-i", more, "--index", db, "--prompt-name",
                 "passage"])
    assert r.returncode != 0 and b'embedded with the prompt "note: "' in r.stderr
    assert ("e1", 0) not in stored_vectors(db)
    cli.ok(["index", "add", "-m", pm, "-i", more, "--index", db, "--prompt", "note: "])
    assert ("e1", 0) in stored_vectors(db)
