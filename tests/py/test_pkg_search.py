"""medembed.Index (bindings/python): search in every mode answers what `medembed search`
prints for the same index (the CLI's values are checked against Python references in
tests/py/test_hybrid.py), and bad arguments raise clear errors."""
import json

import pytest

import pkg_support as ps

medembed = ps.import_medembed()

DOCS = [
    {"_id": "a", "title": "Stroke", "text": "Aspirin for secondary stroke prevention.", "year": 2001},
    {"_id": "b", "title": "Diabetes", "text": "Coded E11.9; HbA1c 8.1% on metformin.", "year": 2010},
    {"_id": "c", "title": "Colorectal", "text": "5-FU with leucovorin after resection.", "year": 2015},
    {"_id": "d", "title": "Lipids", "text": "Statins lower LDL cholesterol and stroke risk.", "year": 2020},
    {"_id": "e", "title": "Café", "text": "Café-au-lait spots and stroke in NF1.", "year": 2021},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg_search")
    model_dir = ps.make_model(str(root / "m"))
    corpus = root / "c.jsonl"
    with open(corpus, "w") as f:
        for d in DOCS:
            f.write(json.dumps(d) + "\n")
    db = str(root / "ix.db")
    ps.cli(["index", "build", "-m", model_dir, "-i", str(corpus), "-o", db])
    return model_dir, db


def cli_search(model_dir, db, q, *args):
    out = ps.cli(["search", "-m", model_dir, "--index", db, "-q", q, "--metadata"] + list(args))
    return [json.loads(line) for line in out.stdout.decode().splitlines()]


@pytest.mark.parametrize("mode,alpha", [("dense", None), ("bm25", None), ("hybrid", None),
                                        ("hybrid", 0.7)])
@pytest.mark.parametrize("q", ["stroke aspirin", "E11.9 HbA1c", "cafe", '"5-FU" NEAR( *'])
def test_search_equals_cli(built, mode, alpha, q):
    model_dir, db = built
    args = ["--mode", mode, "-k", "4"] + (["--alpha", str(alpha)] if alpha is not None else [])
    want = cli_search(model_dir, db, q, *args)
    with medembed.Model(model_dir) as m, medembed.Index(db) as ix:
        assert len(ix) == len(DOCS)
        got = ix.search(q, model=m if mode != "bm25" else None, k=4, mode=mode, alpha=alpha)
    assert [h["id"] for h in got] == [w["id"] for w in want]
    for h, w in zip(got, want):
        assert h["score"] == pytest.approx(w["score"], rel=1e-6)
        assert h["metadata"] == w["metadata"]
        if w["chunk"] is None:
            assert h["chunk"] is None and h["start"] is None
        else:
            assert (h["chunk"], h["start"], h["end"]) == (
                w["chunk"]["index"], w["chunk"]["start"], w["chunk"]["end"])
        if mode == "hybrid":
            for leg in ("dense", "bm25"):
                assert (h[leg] is None) == (w[leg] is None)
                if w[leg]:
                    assert h[leg]["rank"] == w[leg]["rank"]
                    assert h[leg]["score"] == pytest.approx(w[leg]["score"], rel=1e-6)


def test_filters_apply_to_every_mode(built):
    model_dir, db = built
    with medembed.Model(model_dir) as m, medembed.Index(db) as ix:
        for mode in ("dense", "bm25", "hybrid"):
            hits = ix.search("stroke", model=m, mode=mode, filters="year>=2015")
            assert hits and all(h["metadata"]["year"] >= 2015 for h in hits)
            assert {h["id"] for h in hits} <= {"c", "d", "e"}


def test_bad_arguments(built):
    model_dir, db = built
    with medembed.Index(db) as ix:
        with pytest.raises(ValueError, match="mode must be"):
            ix.search("x", mode="sparse")
        with pytest.raises(ValueError, match="needs the model"):
            ix.search("x", mode="hybrid")
        with pytest.raises(ValueError, match="alpha applies"):
            ix.search("x", mode="bm25", alpha=0.5)
        with pytest.raises(medembed.InvalidArgument, match="alpha"):
            ix.search("x", mode="hybrid", alpha=1.5, model=medembed.Model(model_dir))
        with pytest.raises(medembed.InvalidArgument, match="filter|year"):
            ix.search("x", mode="bm25", filters="year>>")
    with pytest.raises(medembed.NotFound):
        medembed.Index(db + ".missing")
