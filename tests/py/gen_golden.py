#!/usr/bin/python3
"""gen_golden.py - the generated golden set: tiny random-weight models + float64 references.

`make unit` runs this before the unit tests (Makefile target golden-gen), so a fresh clone
tests the engine's headline promises (tests/unit/test_golden.c, test_determinism.c,
test_levels.c) without ../shared. It needs only numpy:

    python3 tests/py/gen_golden.py --out build/golden

writes one folder per model, laid out like ../shared/golden/embeddings/<name>/:

    <name>/config.json, model.safetensors (or shards), tokenizer files, modules.json, ...
                       from gen_model.make_model (synthetic ~280-token vocabulary)
    <name>/golden.jsonl one line per text: {"text", "ids", "embedding", "cls"[, "hidden"]}
    .complete          written last; the Makefile's stamp

Each golden.jsonl line is what ../shared/golden/embeddings/README.md describes:
  ids        [CLS] + the first max_length - 2 WordPiece pieces + [SEP], from wordpiece_ref
             (an ASCII oracle of HF tokenizers; sentence-transformers' do_lower_case applied)
  embedding  the pooled vector, L2-normalised when modules.json has Normalize
  cls        the raw last-layer hidden state of token 0
  hidden     the whole last hidden state, on the lines marked below
all from numpy_ref (float64, shares no code with the engine). Values are written with 10
significant digits (relative error <= 5e-11, far below the tests' 1e-5).

The texts (ASCII) cover: the empty text, one word, case/whitespace/punctuation/digits, words
outside the vocabulary (split into ##pieces), log-uniform lengths up to 400 words, and, per
model, texts of exactly max_length - 2 pieces (the limit, no truncation), max_length - 1
(truncated by one) and twice the limit. The first GEN_TEXTS lines are the same for every
model (test_determinism.c embeds them as texts).

Without numpy this prints a SKIP line, writes nothing and exits 0; the unit tests that need
the set then skip visibly.
"""
import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# name -> gen_model.make_model options. Between them: F32/F16/BF16 weight files; CLS, mean,
# max and mean_sqrt_len pooling; with and without Normalize; one sharded (with a bert. prefix
# and the I64 position_ids buffer); limits 512 (the BERT maximum), 384 and 128 with 512
# positions, 256, 128, 96 and 64; hidden sizes 64 (head 16) and ragged 40 (5 heads of 8, FFN 72), so
# the SIMD kernels' tails run. test_determinism.c and test_levels.c name some of these.
MODELS = {
    "cls-f32": dict(dtype="f32", pooling="cls", normalize=True, max_seq_length=512,
                    max_position_embeddings=512, hidden=64, heads=4, ffn=256, seed=11),
    "cls-f16": dict(dtype="f16", pooling="cls", normalize=True, max_seq_length=384,
                    max_position_embeddings=512, hidden=64, heads=4, ffn=256, seed=12),
    "cls-bf16-raw": dict(dtype="bf16", pooling="cls", normalize=False, max_seq_length=256,
                         max_position_embeddings=256, hidden=64, heads=4, ffn=256, seed=13),
    "mean-128": dict(dtype="f32", pooling="mean", normalize=False, max_seq_length=128,
                     max_position_embeddings=512, hidden=64, heads=4, ffn=256, seed=14),
    "max-64-ragged-raw": dict(dtype="f32", pooling="max", normalize=False, max_seq_length=64,
                              max_position_embeddings=64, hidden=40, heads=5, ffn=72, seed=15),
    "mean-f16-sharded": dict(dtype="f16", pooling="mean", normalize=True, max_seq_length=96,
                             max_position_embeddings=128, hidden=64, heads=4, ffn=256,
                             shards=2, bert_prefix=True, position_ids=True, seed=16),
    # Normalized: a raw mean_sqrt_len vector grows as sqrt(tokens), and so does its error
    # (1.4e-5 at 128 tokens), past an absolute 1e-5.
    "sqrt-bf16-ragged": dict(dtype="bf16", pooling="mean_sqrt_len", normalize=True,
                             max_seq_length=128, max_position_embeddings=128, hidden=40,
                             heads=5, ffn=72, seed=17),
}

GEN_TEXTS = 48  # texts shared by every model (test_determinism.c reads this many)
N_HIDDEN_FIRST = 4  # the first lines also carry the whole hidden state

FIXED_TEXTS = [
    "",
    "a",
    "The patient",
    "Chest pain, 3 days; BP 120/80 mmHg.",
    "UPPER case Words and MiXeD CaSe",
    "tabs\tand\nnewlines  and   spaces\r\nhere",
    "95% CI 1.2-4.6; p < 0.05 (n=273) vs. [controls]",
    "xylophone quixotic zygote jejunum",
    "the [SEP] token and [CLS] written in text",
    "a" * 99 + " " + "b" * 101,  # a word at and over max_input_chars_per_word
    "!!! ??? ... ---",
    "3.14159 2.71828 1e-12 100000",
]


def _random_texts(np, rng, words, n):
    """n texts with log-uniform word counts from 1 to 400 (a few over 512 tokens)."""
    letters = list("abcdefghijklmnopqrstuvwxyz")
    punct = list(",.;:()%-/[]")
    out = []
    for i in range(n):
        k = int(round(np.exp(rng.uniform(0.0, np.log(400.0)))))
        toks = []
        for _ in range(k):
            r = rng.uniform()
            if r < 0.75:
                toks.append(words[rng.integers(len(words))])
            elif r < 0.88:  # a word outside the vocabulary: ##pieces
                toks.append("".join(rng.choice(letters, size=int(rng.integers(4, 12)))))
            elif r < 0.95:
                toks.append(str(int(rng.integers(0, 10000))))
            else:
                toks.append(punct[rng.integers(len(punct))])
        t = " ".join(toks)
        out.append(t[:1].upper() + t[1:] + ("." if i % 2 else ""))
    return out


def _texts_of_pieces(rng, words, n):
    """A text of exactly n WordPiece pieces: n whole vocabulary words, one piece each."""
    return " ".join(words[rng.integers(len(words))] for _ in range(n))


def _fmt(values):
    return "[" + ",".join("%.10g" % v for v in values) + "]"


def _golden_line(text, ids, emb, hid, with_hidden):
    import json
    parts = ['"text": ' + json.dumps(text), '"ids": ' + json.dumps([int(i) for i in ids]),
             '"embedding": ' + _fmt(emb), '"cls": ' + _fmt(hid[0])]
    if with_hidden:
        parts.append('"hidden": [' + ",".join(_fmt(r) for r in hid) + "]")
    return "{" + ", ".join(parts) + "}\n"


def write_model(out, name, opts, shared_texts, np):
    import gen_model
    import numpy_ref
    import wordpiece_ref

    d = os.path.join(out, name)
    info = gen_model.make_model(d, layers=2, **opts)
    vocab = {t: i for i, t in enumerate(info["vocab"])}
    limit = info["max_length"]
    rng = np.random.default_rng(opts["seed"] + 1000)
    words = [w for w in gen_model.WORDS if len(wordpiece_ref.pieces(w, vocab)) == 1]
    extra = [_texts_of_pieces(rng, words, limit - 2),   # exactly the limit
             _texts_of_pieces(rng, words, limit - 1),   # one piece over
             _texts_of_pieces(rng, words, 2 * limit)]   # far over
    texts = list(shared_texts) + extra
    ref = numpy_ref.load(d)
    assert ref.max_length == limit, (ref.max_length, limit)
    n_full = 0
    with open(os.path.join(d, "golden.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            ids = wordpiece_ref.encode(t, vocab, lowercase=not info["cased"], max_length=limit,
                                       st_lower=not info["cased"])
            n_full += len(ids) == limit
            hid = numpy_ref.hidden(ref, ids)
            v = numpy_ref.pool(ref, hid)
            if ref.normalize:
                v = numpy_ref.l2_normalize(v)
            with_hidden = i < N_HIDDEN_FIRST or i == len(shared_texts)  # + the full-length one
            f.write(_golden_line(t, ids, v, hid, with_hidden))
    assert n_full >= 2, "%s: no line reaches max_length %d" % (name, limit)
    return len(texts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (replaced)")
    a = ap.parse_args(argv)
    try:
        import numpy as np
    except ImportError:
        print("SKIP: numpy is not importable by %s: generated golden models not written to %s "
              "(the unit tests that need them skip)" % (sys.executable, a.out))
        return 0
    import gen_model

    t0 = time.time()
    rng = np.random.default_rng(2024)
    texts = FIXED_TEXTS + _random_texts(np, rng, gen_model.WORDS, GEN_TEXTS - len(FIXED_TEXTS))
    assert len(texts) == GEN_TEXTS
    # Build beside the target and swap it in, so an interrupted run leaves no half set.
    out = os.path.abspath(a.out)
    tmp = out + ".tmp-%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        lines = 0
        for name, opts in MODELS.items():
            lines += write_model(tmp, name, opts, texts, np)
        with open(os.path.join(tmp, ".complete"), "w") as f:
            f.write("%d models, %d lines\n" % (len(MODELS), lines))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print("golden-gen: %d models, %d reference lines in %s (%.1f s, numpy %s)"
          % (len(MODELS), lines, a.out, time.time() - t0, np.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
