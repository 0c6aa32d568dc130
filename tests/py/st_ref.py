"""sentence-transformers itself as the reference, run in its own process.

    python st_ref.py MODEL_DIR TEXTS.jsonl OUT.npz [--max-seq-length N] [--no-embed]

TEXTS.jsonl holds one JSON string per line. OUT.npz gets, per text:
  st_ids    the ids SentenceTransformer.tokenize gives (its own preprocessing: strip, and
            str.lower() when do_lower_case; truncation at max_seq_length), as a flat int32
            array with st_len holding each text's count;
  full_ids  the same preprocessing and tokenizer without truncation (full_len);
  emb       SentenceTransformer(MODEL_DIR).encode(texts, batch_size=32) in float32, the
            model's own modules (pooling, Normalize) applied (absent with --no-embed).
It runs as a separate process so that the tests' own process (which may carry a sanitizer
runtime) never loads PyTorch, and test_real_models.py caches its output.
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("texts")
    ap.add_argument("out")
    ap.add_argument("--max-seq-length", type=int)
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    with open(a.texts, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f]
    m = SentenceTransformer(a.model, device="cpu")
    if a.max_seq_length:
        m.max_seq_length = a.max_seq_length
    tr = m[0]

    st_ids, full_ids = [], []
    for i in range(0, len(texts), 256):
        chunk = texts[i:i + 256]
        f = m.tokenize(chunk)
        for row, mask in zip(f["input_ids"].numpy(), f["attention_mask"].numpy()):
            st_ids.append(row[mask.astype(bool)])
        # Transformer.tokenize's preprocessing, then the same tokenizer, untruncated
        pre = [str(t).strip() for t in chunk]
        if tr.do_lower_case:
            pre = [t.lower() for t in pre]
        full_ids.extend(tr.tokenizer(pre, add_special_tokens=True)["input_ids"])

    out = {
        "st_ids": np.concatenate([np.asarray(x, np.int32) for x in st_ids] or [np.zeros(0, np.int32)]),
        "st_len": np.array([len(x) for x in st_ids], np.int32),
        "full_ids": np.concatenate([np.asarray(x, np.int32) for x in full_ids] or [np.zeros(0, np.int32)]),
        "full_len": np.array([len(x) for x in full_ids], np.int32),
        "max_seq_length": np.int32(m.max_seq_length),
    }
    if not a.no_embed:
        with torch.no_grad():
            out["emb"] = m.encode(texts, batch_size=32, convert_to_numpy=True).astype(np.float32)
    np.savez(a.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
