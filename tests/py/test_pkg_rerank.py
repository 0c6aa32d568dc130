"""medembed.CrossEncoder and Index.search(rerank=...) (bindings/python): the same scores as
`medembed rerank` / `search --rerank` (whose values test_rerank.py checks against the float64
reference and sentence-transformers), multi-label output and an empty query against the float64
reference directly, and clear errors for the wrong kind of model."""
import json
import os
import re

import numpy as np
import pytest

import pkg_support as ps
from test_rerank import ce_model, hf_reference, numpy_scores, words

medembed = ps.import_medembed()


def test_predict_and_rank_equal_the_cli(cli, models, tmp_path):
    m = ce_model(models, seed=21)
    rng = np.random.default_rng(7)
    query = words(rng, 4)
    docs = [words(rng, int(n)) for n in (1, 6, 12, 30, 45)]
    inp = "".join(json.dumps(d) + "\n" for d in docs)
    out = cli.ok(["rerank", "-m", m["dir"], "-q", query, "-i", "-"], input=inp)
    recs = [json.loads(x) for x in out.stdout.decode().splitlines()]
    with medembed.CrossEncoder(m["dir"]) as ce:
        assert ce.num_labels == 1 and ce.info["kind"] == "cross-encoder"
        s = ce.predict([(query, d) for d in docs])
        assert s.shape == (len(docs),) and s.dtype == np.float32
        for r in recs:
            assert float(s[r["index"]]) == pytest.approx(r["score"], abs=1e-9)
        ranked = ce.rank(query, docs, top_k=3, return_documents=True)
        assert [r["corpus_id"] for r in ranked] == [r["index"] for r in recs[:3]]
        assert ranked[0]["text"] == docs[ranked[0]["corpus_id"]]
        assert ce.rerank(query, docs, top_k=3) == [
            {"corpus_id": r["corpus_id"], "score": r["score"]} for r in ranked]
        assert ce.predict((query, docs[0])) == s[0]
        # mixed queries in one call are grouped per query; the order is kept
        mixed = ce.predict([(query, docs[0]), ("other", docs[1]), (query, docs[2])])
        assert mixed[0] == s[0] and mixed[2] == s[2]
        assert mixed[1] == ce.predict(("other", docs[1]))


def test_multi_label_and_empty_query_match_float64_reference(models, tmp_path):
    """A 3-label model returns (n, 3) logits (identity activation, as CrossEncoder uses for
    more than one label) and apply_softmax normalises them; an empty query is [CLS] [SEP]
    text [SEP], as tokenizers encodes it."""
    m = ce_model(models, num_labels=3, seed=22)
    rng = np.random.default_rng(8)
    docs = [words(rng, int(n)) for n in (2, 9, 40)]
    pairs = [[q, d] for q in ("", words(rng, 3)) for d in docs]
    enc = hf_reference(tmp_path, m["dir"], pairs, m["max_length"])
    want = numpy_scores(models, m["dir"], enc["pairs"], False)
    with medembed.CrossEncoder(m["dir"]) as ce:
        got = ce.predict(pairs)
        assert got.shape == (len(pairs), 3)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
        sm = ce.predict(pairs, apply_softmax=True)
        np.testing.assert_allclose(sm.sum(axis=1), 1.0, atol=1e-6)
        with pytest.raises(medembed.InvalidArgument, match="one label"):
            ce.rank("q", docs)


def test_wrong_kind_and_bad_input_raise(models):
    emb = ps.make_model(str(models.root) + "/pkg_emb")
    ce = ce_model(models, seed=21)
    with pytest.raises(medembed.Mismatch, match="is an embedder, not a cross-encoder"):
        medembed.CrossEncoder(emb)
    with medembed.Model(ce["dir"]) as m:
        assert (m.kind, m.num_labels) == ("cross-encoder", 1)
        with pytest.raises(medembed.Mismatch, match="is a cross-encoder"):
            m.encode(["heart"])
    with medembed.CrossEncoder(ce["dir"]) as c:
        with pytest.raises(medembed.TextTooLong, match="over the model's limit"):
            c.predict([("q", "heart " * 100)], truncate=False)
        with pytest.raises(ValueError, match="truncation_direction"):
            c.predict([("q", "heart")], truncation_direction="up")
        with pytest.raises(medembed.InvalidArgument, match="pair 0"):
            c.predict([("only one",)])


def test_index_search_rerank_equals_the_cli(cli, models, tmp_path):
    emb = ps.make_model(str(tmp_path / "emb"))
    ce = ce_model(models, seed=23)
    rng = np.random.default_rng(9)
    docs = [{"_id": "d%d" % i, "title": words(rng, 2), "text": words(rng, int(n))}
            for i, n in enumerate(rng.integers(3, 30, 20))]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    db = str(tmp_path / "ix.db")
    cli.ok(["index", "build", "-m", emb, "-i", corpus, "-o", db, "--quiet"])
    query = words(rng, 3)
    out = cli.ok(["search", "-m", emb, "--index", db, "-q", query, "-k", "4", "--rerank",
                  ce["dir"], "--rerank-top", "10", "--mode", "hybrid"])
    want = [json.loads(x) for x in out.stdout.decode().splitlines()]
    with medembed.Model(emb) as m, medembed.CrossEncoder(ce["dir"]) as c, \
            medembed.Index(db) as ix:
        got = ix.search(query, model=m, k=4, mode="hybrid", rerank=c, rerank_top=10)
        assert [h["id"] for h in got] == [h["id"] for h in want]
        for g, w in zip(got, want):
            assert g["score"] == pytest.approx(w["score"], abs=1e-7)
            assert g["first_stage"]["rank"] == w["first_stage"]["rank"]
            assert g["first_stage"]["score"] == pytest.approx(w["first_stage"]["score"],
                                                              abs=1e-7)
        assert ix.doc_text("d0") == docs[0]["title"] + " " + docs[0]["text"]
        with pytest.raises(ValueError, match="more than rerank_top"):
            ix.search(query, model=m, k=20, rerank=c, rerank_top=10)
        with pytest.raises(medembed.NotFound):
            ix.doc_text("nope")


def test_default_rerank_top_is_the_libraries(cli, models, tmp_path):
    """Without rerank_top, Python reads as many hits as `search --rerank` does (max(50, k),
    MEDEMBED_RERANK_TOP_DEFAULT of the header): 60 documents make the default matter."""
    header = open(os.path.join(ps.REPO, "include", "medembed.h")).read()
    m = re.search(r"#define MEDEMBED_RERANK_TOP_DEFAULT (\d+)", header)
    assert m and int(m.group(1)) == medembed._lib.RERANK_TOP_DEFAULT
    emb = ps.make_model(str(tmp_path / "emb"))
    ce = ce_model(models, seed=29)
    rng = np.random.default_rng(4)
    docs = [{"_id": "d%d" % i, "title": "", "text": words(rng, int(n))}
            for i, n in enumerate(rng.integers(3, 20, 60))]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    db = str(tmp_path / "ix.db")
    cli.ok(["index", "build", "-m", emb, "-i", corpus, "-o", db, "--quiet"])
    query = words(rng, 4)
    with medembed.Model(emb) as mo, medembed.CrossEncoder(ce["dir"]) as c, \
            medembed.Index(db) as ix:
        for k in (3, 55):
            out = cli.ok(["search", "-m", emb, "--index", db, "-q", query, "-k", str(k),
                          "--rerank", ce["dir"]])
            want = [json.loads(x) for x in out.stdout.decode().splitlines()]
            got = ix.search(query, model=mo, k=k, rerank=c)
            assert [h["id"] for h in got] == [h["id"] for h in want]
            assert max(h["first_stage"]["rank"] for h in got) <= max(50, k)
