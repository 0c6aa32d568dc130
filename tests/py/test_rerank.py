"""Cross-encoder reranking (`medembed rerank`, search --rerank) against independent references.

* numpy_ref (float64): token_type_ids, the pooler and the classification head on random
  weights (gen_model cross_encoder folders), fed the pair encodings of Hugging Face's
  `tokenizers` package (ce_ref.py, its own process);
* sentence-transformers 3.3.1's CrossEncoder.predict on the same folders (scores and ranking);
* pair truncation ("longest_first", both directions) against `tokenizers` on every length
  combination around the limit: a pair cut differently scores differently on random weights.
"""
import json
import os
import subprocess

import numpy as np
import pytest

import gen_model
import numpy_ref
from conftest import clean_env, cpu_flags, peer_python

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = gen_model.WORDS


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def ce_model(models, **kw):
    base = dict(cross_encoder=True, num_labels=1, max_seq_length=32,
                max_position_embeddings=48, seed=11)
    base.update(kw)
    return models.get(**base)


def hf_reference(tmp_path, model_dir, pairs, max_length, direction="right", st=False):
    """ce_ref.py's output for pairs: {"pairs": [(ids, type_ids)], "st_scores", "st_logits"}
    for one truncation direction, or a dict of those by direction for a tuple of them (one
    process for all)."""
    py = peer_python("sentence_transformers" if st else "tokenizers")
    dirs = (direction,) if isinstance(direction, str) else tuple(direction)
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    out = tmp_path / "ref.npz"
    cmd = [py, os.path.join(HERE, "ce_ref.py"), model_dir, str(src), str(out),
           "--max-length", str(max_length), "--direction", ",".join(dirs)]
    r = subprocess.run(cmd + (["--st"] if st else []), capture_output=True, env=clean_env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
    z = np.load(out)
    res = {}
    for d in dirs:
        one, off = {"pairs": []}, 0
        for n in z["lens_" + d]:
            one["pairs"].append((z["ids_" + d][off:off + n].tolist(),
                                 z["types_" + d][off:off + n].tolist()))
            off += n
        for k in ("st_scores", "st_logits"):
            if k + "_" + d in z:
                one[k] = z[k + "_" + d]
        res[d] = one
    return res[direction] if isinstance(direction, str) else res


def numpy_scores(models, model_dir, encoded, raw):
    ref = models.ref(model_dir)
    return np.array([numpy_ref.ce_score(ref, ids, types, raw=raw) for ids, types in encoded])


def rerank(cli, model_dir, query, texts, args=(), env=None):
    """Runs medembed rerank; returns scores in input order (and the printed order)."""
    inp = "".join(json.dumps({"text": t, "id": "d%d" % i}) + "\n" for i, t in enumerate(texts))
    r = cli.run(["rerank", "-m", model_dir, "-q", query, "-i", "-"] + list(args), input=inp,
                env=env)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    recs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    scores = np.full(len(texts), np.nan)
    for rec in recs:
        assert rec["id"] == "d%d" % rec["index"]
        scores[rec["index"]] = rec["score"]
    return scores, [rec["index"] for rec in recs]


def test_scores_match_float64_reference(cli, models, tmp_path):
    """f32 scores (sigmoid and raw logits) equal the float64 reference on HF's encodings, for
    pairs under and over the limit; the printed order is by score."""
    m = ce_model(models)
    rng = np.random.default_rng(1)
    query = words(rng, 5)
    texts = [words(rng, int(n)) for n in (0, 1, 3, 8, 20, 27, 40, 90)] + ["x" * 50]
    enc = hf_reference(tmp_path, m["dir"], [[query, t] for t in texts], m["max_length"])
    assert any(len(ids) == m["max_length"] for ids, _ in enc["pairs"])  # truncation exercised
    for raw in (False, True):
        got, order = rerank(cli, m["dir"], query, texts, ["--raw-scores"] if raw else [])
        want = numpy_scores(models, m["dir"], enc["pairs"], raw)[:, 0]
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 if raw else 5e-6)
        assert order == sorted(range(len(texts)), key=lambda i: (-got[i], i))


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512", "amx-emu"])
def test_every_kernel_level_matches_reference(cli, models, tmp_path, isa):
    """MEDEMBED_ISA forces a kernel level; f32 logits equal the float64 reference at each
    (pairs of several lengths, batched together, token types 0 and 1)."""
    need = {"scalar": None, "avx2": "avx2", "avx512": "avx512f", "amx-emu": "avx512f"}[isa]
    if need and need not in cpu_flags():
        pytest.skip("this CPU lacks %s" % need)
    m = ce_model(models, hidden=40, heads=5, ffn=72, layers=3, seed=19)
    rng = np.random.default_rng(6)
    query = words(rng, 4)
    texts = [words(rng, int(n)) for n in (1, 7, 15, 26, 50)]
    enc = hf_reference(tmp_path, m["dir"], [[query, t] for t in texts], m["max_length"])
    want = numpy_scores(models, m["dir"], enc["pairs"], True)[:, 0]
    got, _ = rerank(cli, m["dir"], query, texts, ["--raw-scores"], env={"MEDEMBED_ISA": isa})
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("dtype,tol,min_rho", [("bf16", 0.04, 0.95), ("int8", 0.06, 0.9)])
def test_low_precision_dtypes_track_reference(cli, models, tmp_path, dtype, tol, min_rho):
    """bf16 and int8 logits stay within a measured tolerance of the float64 reference, as a
    fraction of the logits' spread (random weights with std 0.3 amplify rounding; measured
    on a Zen 4: bf16 0.021, int8 0.028), and rank the candidates nearly as it does."""
    m = ce_model(models, hidden=64, heads=4, ffn=128, seed=12)
    rng = np.random.default_rng(2)
    query = words(rng, 6)
    texts = [words(rng, int(n)) for n in rng.integers(1, 40, 24)]
    enc = hf_reference(tmp_path, m["dir"], [[query, t] for t in texts], m["max_length"])
    want = numpy_scores(models, m["dir"], enc["pairs"], True)[:, 0]
    got, _ = rerank(cli, m["dir"], query, texts, ["--raw-scores", "--dtype", dtype])
    rel = np.abs(got - want).max() / (want.max() - want.min())
    rho = spearman(got, want)
    print("%s max |logit error| / spread %.4f, spearman %.4f" % (dtype, rel, rho))
    assert rel < tol and rho > min_rho


@pytest.mark.parametrize("activation", [None, "torch.nn.modules.linear.Identity"])
def test_matches_sentence_transformers_cross_encoder(cli, models, tmp_path, activation):
    """Scores, logits and ranking equal CrossEncoder(folder).predict on the same pairs,
    with pairs over the limit truncated from the right and from the left; the default
    activation (sigmoid for one label) and one named by sbert_ce_default_activation_function
    (Identity, as ms-marco cross-encoders set it)."""
    m = ce_model(models, seed=13, activation=activation)
    rng = np.random.default_rng(3)
    query = words(rng, 4)
    texts = [words(rng, int(n)) for n in (2, 5, 9, 14, 22, 29, 35, 60)]
    both = hf_reference(tmp_path, m["dir"], [[query, t] for t in texts], m["max_length"],
                        direction=("right", "left"), st=True)
    ref, ref_left = both["right"], both["left"]
    # the float64 reference itself agrees with sentence-transformers (torch, float32)
    np.testing.assert_allclose(numpy_scores(models, m["dir"], ref["pairs"], True)[:, 0],
                               ref["st_logits"], rtol=0, atol=5e-5)
    got, order = rerank(cli, m["dir"], query, texts)
    np.testing.assert_allclose(got, ref["st_scores"], rtol=0, atol=2e-5)
    assert order == list(np.argsort(-ref["st_scores"], kind="stable"))
    raw, _ = rerank(cli, m["dir"], query, texts, ["--raw-scores"])
    np.testing.assert_allclose(raw, ref["st_logits"], rtol=0, atol=5e-5)
    left, _ = rerank(cli, m["dir"], query, texts, ["--truncation-direction", "left"])
    np.testing.assert_allclose(left, ref_left["st_scores"], rtol=0, atol=2e-5)
    assert np.abs(left - got).max() > 1e-3  # the direction matters on these pairs


@pytest.mark.parametrize("direction", ["right", "left"])
def test_pair_truncation_matches_hf_tokenizers(cli, models, tmp_path, direction):
    """Every (query, text) length combination from 1 to 18 pieces for the query and 0 to 18
    for the text at a limit of 16 (ties, one side short, both long) is cut as `tokenizers`
    cuts it: the raw logits equal the float64 reference run on HF's encodings."""
    m = ce_model(models, max_seq_length=16, seed=14)
    rng = np.random.default_rng(4)
    pool_q = [str(rng.choice(WORDS)) for _ in range(18)]
    pool_d = [str(rng.choice(WORDS)) for _ in range(18)]
    pairs = [[" ".join(pool_q[:a]), " ".join(pool_d[:b])]
             for a in range(1, 19) for b in range(19)]
    ref = hf_reference(tmp_path, m["dir"], pairs, 16, direction=direction)
    assert sum(len(ids) == 16 for ids, _ in ref["pairs"]) > 200
    want = numpy_scores(models, m["dir"], ref["pairs"], True)[:, 0]
    flags = ["--raw-scores", "--truncation-direction", direction]
    got = []
    for a in range(1, 19):  # one query per call, its 19 texts
        s, _ = rerank(cli, m["dir"], " ".join(pool_q[:a]),
                      [" ".join(pool_d[:b]) for b in range(19)], flags)
        got.extend(s)
    np.testing.assert_allclose(np.array(got), want, rtol=0, atol=2e-5)


def _err(r):
    return r.stderr.decode("utf-8", "replace")


def test_kinds_are_refused_where_the_other_is_needed(cli, models, tmp_path):
    """A cross-encoder to embed / index / search and an embedder to rerank fail with a
    message naming the kind; info reports kind and num_labels."""
    ce = ce_model(models)
    emb = models.get(pooling="mean", seed=15)
    info = json.loads(cli.ok(["info", "-m", ce["dir"]]).stdout)
    assert (info["kind"], info["num_labels"]) == ("cross-encoder", 1)
    info = json.loads(cli.ok(["info", "-m", emb["dir"]]).stdout)
    assert (info["kind"], info["num_labels"]) == ("embedder", 0)
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"_id": "1", "text": "heart disease"}\n')
    r = cli.run(["embed", "-m", ce["dir"]], input="heart\n")
    assert r.returncode == 1 and "is a cross-encoder" in _err(r)
    r = cli.run(["index", "build", "-m", ce["dir"], "-i", docs, "-o", tmp_path / "x.db"])
    assert r.returncode == 1 and "is a cross-encoder" in _err(r)
    assert not (tmp_path / "x.db").exists()
    cli.ok(["index", "build", "-m", emb["dir"], "-i", docs, "-o", tmp_path / "e.db", "--quiet"])
    r = cli.run(["search", "-m", ce["dir"], "--index", tmp_path / "e.db", "-q", "heart"])
    assert r.returncode == 1 and "is a cross-encoder" in _err(r)
    r = cli.run(["rerank", "-m", emb["dir"], "-q", "heart", "-i", docs])
    assert r.returncode == 1 and "is an embedder, not a cross-encoder" in _err(r)


def test_bad_input_is_refused_with_a_clear_message(cli, models, tmp_path):
    ce = ce_model(models)
    cands = tmp_path / "c.jsonl"
    cands.write_text('{"text": "heart", "id": 1}\n"blood"\n')
    r = cli.run(["rerank", "-m", ce["dir"], "-q", "", "-i", cands])
    assert r.returncode == 2 and "query is empty" in _err(r)
    (tmp_path / "e.jsonl").write_text("\n")
    r = cli.run(["rerank", "-m", ce["dir"], "-q", "a", "-i", tmp_path / "e.jsonl"])
    assert r.returncode == 1 and "no candidates" in _err(r)
    r = cli.run(["rerank", "-m", ce["dir"], "-q", "a", "-i", "-"],
                input='"ok"\n{"text": "fine"}\n{broken\n')
    assert r.returncode == 1 and "line 3: invalid JSON" in _err(r)
    r = cli.run(["rerank", "-m", ce["dir"], "-q", "a", "-i", "-"], input='"ok"\n{"id": 2}\n')
    assert r.returncode == 1 and 'line 2: no string field "text"' in _err(r)
    long = json.dumps(" ".join(["heart"] * 40))
    r = cli.run(["rerank", "-m", ce["dir"], "-q", "a", "-i", "-", "--no-truncate"],
                input='"ok"\n' + long + "\n")
    assert r.returncode == 1 and "line 2: pair 1: 44 tokens" in _err(r), _err(r)
    assert "limit of %d" % ce["max_length"] in _err(r)
    r = cli.run(["rerank", "-m", ce["dir"], "-q", "a", "-i", cands,
                 "--truncation-direction", "up"])
    assert r.returncode == 2 and "left or right" in _err(r)


def _copy_model(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return str(dst)


def test_broken_cross_encoder_folders_are_refused(cli, models, tmp_path):
    """Missing classifier weights, a label count that disagrees with the classifier's
    shape, an unknown activation and a single token type: each named on load."""
    emb = models.get(pooling="cls", seed=16)  # has bert pooler weights, no classifier
    d = _copy_model(emb["dir"], tmp_path / "noclf")
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["architectures"] = ["BertForSequenceClassification"]
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    r = cli.run(["info", "-m", d])
    assert r.returncode == 1 and '"classifier.weight" is missing' in _err(r), _err(r)

    ce = ce_model(models)
    for name, edit, msg in [
        ("labels", lambda c: c.update(id2label={"0": "a", "1": "b"}),
         'tensor "classifier.weight" has shape [1, 32] but the config needs [2, 32]'),
        ("act", lambda c: c.update(sbert_ce_default_activation_function="torch.nn.ReLU"),
         '"torch.nn.ReLU" is not supported'),
        ("types", lambda c: c.update(type_vocab_size=1), "type_vocab_size >= 2"),
    ]:
        d = _copy_model(ce["dir"], tmp_path / name)
        cfg = json.load(open(os.path.join(d, "config.json")))
        edit(cfg)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        r = cli.run(["info", "-m", d])
        assert r.returncode == 1 and msg in _err(r), (name, _err(r))


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_rerank_reorders_the_first_stage(cli, models, tmp_path, mode):
    """search --rerank: the first --rerank-top hits of the mode, scored on (query, document
    text as indexed: title + " " + text) as the float64 reference scores them, best first;
    first_stage keeps the plain search's rank and score."""
    emb = models.get(pooling="mean", seed=17)
    ce = ce_model(models, seed=18)
    rng = np.random.default_rng(5)
    docs = [{"_id": "d%d" % i, "title": words(rng, 2), "text": words(rng, int(n))}
            for i, n in enumerate(rng.integers(3, 40, 30))]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    ix = tmp_path / "ix.db"
    cli.ok(["index", "build", "-m", emb["dir"], "-i", corpus, "-o", ix, "--quiet"])
    query = " ".join(docs[3]["text"].split()[:3])
    base = ["search", "--index", ix, "-q", query, "--mode", mode]
    if mode != "bm25":
        base += ["-m", emb["dir"]]
    plain = [json.loads(x) for x in cli.ok(base + ["-k", "12"]).stdout.decode().splitlines()]
    assert len(plain) >= 6
    out = cli.ok(base + ["-k", "5", "--rerank", ce["dir"], "--rerank-top", "12"])
    hits = [json.loads(x) for x in out.stdout.decode().splitlines()]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    by_id = {d["_id"]: d["title"] + " " + d["text"] for d in docs}
    enc = hf_reference(tmp_path, ce["dir"], [[query, by_id[p["id"]]] for p in plain],
                       ce["max_length"])
    want = numpy_scores(models, ce["dir"], enc["pairs"], False)[:, 0]
    best = sorted(range(len(plain)), key=lambda i: (-want[i], i))[:5]
    assert [h["id"] for h in hits] == [plain[i]["id"] for i in best]
    for h, i in zip(hits, best):
        assert h["first_stage"] == {"rank": plain[i]["rank"], "score": plain[i]["score"]}
        assert abs(h["score"] - want[i]) < 5e-6
        if mode == "hybrid":
            assert h["dense"] == plain[i]["dense"] and h["bm25"] == plain[i]["bm25"]


def test_search_rerank_bad_input(cli, models, tmp_path):
    import sqlite3
    emb = models.get(pooling="mean", seed=17)
    ce = ce_model(models, seed=18)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "heart disease"}\n{"_id": "b", "text": "lung"}\n')
    ix = tmp_path / "ix.db"
    cli.ok(["index", "build", "-m", emb["dir"], "-i", corpus, "-o", ix, "--quiet"])
    base = ["search", "-m", emb["dir"], "--index", ix, "-q", "heart"]
    r = cli.run(base + ["-k", "60", "--rerank", ce["dir"], "--rerank-top", "50"])
    assert r.returncode == 2 and "-k 60 is more than --rerank-top 50" in _err(r)
    r = cli.run(base + ["--rerank-top", "5"])
    assert r.returncode == 2 and "--rerank-top applies to --rerank" in _err(r)
    r = cli.run(base + ["--rerank", emb["dir"]])
    assert r.returncode == 1 and "is an embedder, not a cross-encoder" in _err(r)
    db = sqlite3.connect(str(ix))  # a file whose texts are gone (as before the keyword index)
    db.execute("DROP TABLE fts")
    db.commit()
    db.close()
    r = cli.run(base + ["--rerank", ce["dir"]])
    assert r.returncode == 1 and "stores no document texts" in _err(r), _err(r)
    assert "fts-rebuild" in _err(r)


def test_eval_rerank_ranks_as_search_rerank_does(cli, models, tmp_path):
    """eval --rerank scores the ranking search --rerank prints on an index of the same corpus
    (the run file holds it, with the cross-encoder's scores)."""
    emb = models.get(pooling="mean", seed=17)
    ce = ce_model(models, seed=18)
    rng = np.random.default_rng(10)
    docs = [{"_id": "d%d" % i, "title": words(rng, 2), "text": words(rng, int(n))}
            for i, n in enumerate(rng.integers(3, 40, 25))]
    qs = [{"_id": "q%d" % i, "text": " ".join(docs[i]["text"].split()[:3])} for i in range(4)]
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (beir / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("q%d\td%d\t1\n" % (i, i) for i in range(4)))
    run = tmp_path / "run.trec"
    got = json.loads(cli.ok(["eval", "-m", emb["dir"], "--beir", beir, "--json", "--run", run,
                             "-k", "5", "--rerank", ce["dir"], "--rerank-top", "10",
                             "--mode", "hybrid"]).stdout)
    assert got["rerank"] == ce["dir"] and got["rerank_top"] == 10 and got["n_queries"] == 4
    ranked = {}
    for line in open(run):
        qid, _, doc, rank, score, _ = line.split()
        ranked.setdefault(qid, []).append((doc, float(score)))
    db = tmp_path / "same.db"
    cli.ok(["index", "build", "-m", emb["dir"], "-i", beir / "corpus.jsonl", "-o", db,
            "--no-chunk", "--quiet"])
    for q in qs:
        out = cli.ok(["search", "-m", emb["dir"], "--index", db, "-q", q["text"], "-k", "5",
                      "--exact", "--mode", "hybrid", "--rerank", ce["dir"], "--rerank-top", "10"])
        hits = [json.loads(x) for x in out.stdout.decode().splitlines()]
        assert [d for d, _ in ranked[q["_id"]]] == [h["id"] for h in hits]
        for (_, s), h in zip(ranked[q["_id"]], hits):
            assert abs(s - h["score"]) < 1e-6
    dflt = json.loads(cli.ok(["eval", "-m", emb["dir"], "--beir", beir, "--json", "--rerank",
                              ce["dir"]]).stdout)
    assert dflt["rerank_top"] == 100  # -k's default
    r = cli.run(["eval", "-m", emb["dir"], "--beir", beir, "-k", "20", "--rerank", ce["dir"],
                 "--rerank-top", "10"])
    assert r.returncode == 2 and "-k 20 is more than --rerank-top 10" in _err(r)
