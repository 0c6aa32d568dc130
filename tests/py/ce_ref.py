"""Hugging Face's own pair encoding and sentence-transformers' CrossEncoder as references for
`medembed rerank`, run in their own process.

    python ce_ref.py MODEL_DIR PAIRS.jsonl OUT.npz --max-length N [--direction right,left]
                     [--st]

PAIRS.jsonl holds one JSON array [query, text] per line. OUT.npz gets, for each truncation
direction D given (right, left or both), keys suffixed "_D":
  ids, types, lens  the pair encodings of the `tokenizers` package (tokenizer.json, template
                    [CLS] $A [SEP] $B:1 [SEP]:1) with truncation "longest_first" at
                    max_length in the given direction: token ids and token_type_ids, flat,
                    with each pair's count in lens;
  st_scores         (--st) CrossEncoder(MODEL_DIR).predict(pairs): the model's default
                    activation applied, as users call it;
  st_logits         (--st) the same with activation_fct=Identity.
It runs as a separate process so that the tests' own process (which may carry a sanitizer
runtime) never loads PyTorch or the Rust tokenizers.
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("pairs")
    ap.add_argument("out")
    ap.add_argument("--max-length", type=int, required=True)
    ap.add_argument("--direction", default="right",
                    help="comma-separated truncation directions: right, left")
    ap.add_argument("--st", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    with open(a.pairs, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    out, st = {}, None
    for d in a.direction.split(","):
        if d not in ("right", "left"):
            ap.error("direction %r" % d)
        tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(a.max_length, strategy="longest_first", direction=d)
        ids, types, lens = [], [], []
        for q, t in pairs:
            e = tok.encode(q, t)
            ids += e.ids
            types += e.type_ids
            lens.append(len(e.ids))
        out["ids_" + d] = np.asarray(ids, np.int32)
        out["types_" + d] = np.asarray(types, np.int32)
        out["lens_" + d] = np.asarray(lens, np.int32)
        if a.st:
            import torch
            from sentence_transformers import CrossEncoder

            torch.set_num_threads(2)
            if st is None:
                st = CrossEncoder(a.model, device="cpu", max_length=a.max_length)
            st.tokenizer.truncation_side = d
            out["st_scores_" + d] = np.asarray(st.predict(pairs, batch_size=16), np.float64)
            out["st_logits_" + d] = np.asarray(
                st.predict(pairs, batch_size=16, activation_fct=torch.nn.Identity()), np.float64)
    np.savez(a.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
