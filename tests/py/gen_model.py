#!/usr/bin/python3
"""gen_model.py - write a random-weight BERT sentence-transformers model folder.

medembed's own test-model generator: it needs only numpy, so a fresh clone can test the
engine without downloading anything. The folder has the files `huggingface-cli download`
gives for a sentence-transformers BERT model such as MedEmbed-base-v0.1:

    config.json                        BertConfig (model_type bert, BertModel)
    model.safetensors                  or 2 shards + model.safetensors.index.json
    vocab.txt, tokenizer.json          a small synthetic WordPiece vocabulary (see make_vocab)
    tokenizer_config.json, special_tokens_map.json
    modules.json                       Transformer -> Pooling [-> Normalize]
    1_Pooling/config.json              cls | mean | max | mean_sqrt_len
    sentence_bert_config.json          max_seq_length, do_lower_case
    config_sentence_transformers.json  prompts, default_prompt_name

The vocabulary is small (a few hundred tokens) and puts the special tokens at ids 0..4
([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4), not at bert-base's 0/100/101/102/103, so an
engine that hard-codes those ids fails. Every ASCII letter and digit exists as a word start
and as a ##piece, so any ASCII word tokenizes without [UNK].

Weights are N(0, std) (std 0.3 by default: with BERT's 0.02 a random model's outputs barely
depend on the input), biases too (so a missing bias add shows), LayerNorm gamma 1 + N(0, std);
the [PAD] row of the word embeddings is zero as in HF init.

Usage:
    /usr/bin/python3 tests/py/gen_model.py --out /tmp/m --layers 2 --hidden 32 --heads 4 \\
        --ffn 64 [--dtype f32|f16|bf16] [--pooling cls|mean|max|mean_sqrt_len] [--no-normalize] \\
        [--max-seq-length N] [--max-position-embeddings N] [--bert-prefix] [--position-ids] \\
        [--shards 2] [--prompt NAME=TEXT ...] [--default-prompt NAME] [--cased] [--seed N] \\
        [--vocab VOCAB_TXT]

Library use:
    import gen_model
    info = gen_model.make_model("/tmp/m", hidden=32, pooling="mean")
"""
import argparse
import json
import os
import struct

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = [chr(c) for c in range(33, 127) if not chr(c).isalnum()]
SUFFIXES = ["s", "es", "ed", "ing", "ly", "er", "ers", "est", "tion", "tions", "al", "ic",
            "ity", "ment", "ness", "ous", "ive", "able", "ia", "itis", "osis", "emia", "logy",
            "th", "st", "nd", "rd", "in", "an", "on", "en", "at", "or", "is", "ar", "re"]
WORDS = """the of and in to a with for is was were that by on as at from be this are or an
which not we it have has been no than after before between during among both all more
most other these those there their can may also only one two three four five ten first
patient patients study studies disease treatment clinical risk blood cell cells heart
acute chronic cancer therapy result results method methods effect effects group groups
age year years trial use used pain dose drug drugs care health medical hospital surgery
infection outcome outcomes rate rates level levels increase increased reduce reduced high
low significant significantly associated analysis data test tests case cases control
controls children women men adult adults mean median compared total time day days month
months week weeks follow up however whether our we aim aims objective conclusion background
diagnosis diagnostic therapy primary secondary severe mild mortality survival lung liver
kidney brain bone skin tumor tumour stroke diabetes insulin glucose pressure ratio odds
confidence interval randomized retrospective prospective cohort vs did do does""".split()


def make_vocab(cased=False):
    """The synthetic vocabulary as a list of tokens (index = id)."""
    toks = list(SPECIALS) + ["[unused%d]" % i for i in range(3)]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    if cased:
        letters += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    digits = [str(d) for d in range(10)]
    toks += PUNCT + digits + letters
    toks += ["##" + c for c in letters + digits]
    toks += ["##" + s for s in SUFFIXES]
    toks += WORDS
    seen, out = set(), []
    for t in toks:  # keep the first occurrence of each token
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def read_vocab(path):
    """The tokens of a vocab.txt (one a line), which must hold the five special tokens."""
    with open(path, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    missing = [t for t in SPECIALS if t not in vocab]
    if missing:
        raise ValueError("%s: no %s token" % (path, ", ".join(missing)))
    return vocab


# --------------------------------------------------------------------------- weights

def make_weights(layers, hidden, heads, ffn, vocab_size, max_pos, type_vocab, seed, std,
                 pooler=True):
    """name -> float32 array, names without the 'bert.' prefix."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def gamma(n):
        return (1.0 + rng.normal(0.0, std, size=(n,))).astype(np.float32)

    w = {}
    word = normal(vocab_size, hidden)
    word[0, :] = 0.0  # [PAD] row, as nn.Embedding(padding_idx=0)
    w["embeddings.word_embeddings.weight"] = word
    w["embeddings.position_embeddings.weight"] = normal(max_pos, hidden)
    w["embeddings.token_type_embeddings.weight"] = normal(type_vocab, hidden)
    w["embeddings.LayerNorm.weight"] = gamma(hidden)
    w["embeddings.LayerNorm.bias"] = normal(hidden)
    for i in range(layers):
        p = "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            w[p + "attention.self.%s.weight" % n] = normal(hidden, hidden)  # (out, in)
            w[p + "attention.self.%s.bias" % n] = normal(hidden)
        w[p + "attention.output.dense.weight"] = normal(hidden, hidden)
        w[p + "attention.output.dense.bias"] = normal(hidden)
        w[p + "attention.output.LayerNorm.weight"] = gamma(hidden)
        w[p + "attention.output.LayerNorm.bias"] = normal(hidden)
        w[p + "intermediate.dense.weight"] = normal(ffn, hidden)
        w[p + "intermediate.dense.bias"] = normal(ffn)
        w[p + "output.dense.weight"] = normal(hidden, ffn)
        w[p + "output.dense.bias"] = normal(hidden)
        w[p + "output.LayerNorm.weight"] = gamma(hidden)
        w[p + "output.LayerNorm.bias"] = normal(hidden)
    if pooler:  # BertModel checkpoints carry the (unused by sentence-transformers) pooler
        w["pooler.dense.weight"] = normal(hidden, hidden)
        w["pooler.dense.bias"] = normal(hidden)
    return w


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bits (uint16)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def encode_tensor(arr, dtype):
    """(safetensors dtype, little-endian bytes) of one tensor stored as `dtype`."""
    if arr.dtype == np.int64:
        return "I64", arr.astype("<i8").tobytes()
    if dtype == "f32":
        return "F32", arr.astype("<f4").tobytes()
    if dtype == "f16":
        return "F16", arr.astype("<f2").tobytes()
    if dtype == "bf16":
        return "BF16", f32_to_bf16_bits(arr).astype("<u2").tobytes()
    raise ValueError("dtype %r" % dtype)


def write_safetensors(path, tensors, dtype, metadata=None):
    """Write {name: array} as one safetensors file (sorted names, header padded to 8)."""
    header = {"__metadata__": metadata or {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        st_dtype, data = encode_tensor(tensors[name], dtype)
        header[name] = {"dtype": st_dtype, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return offset


def read_header(path):
    """(header dict, data bytes) of a safetensors file; for tests that corrupt headers."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + hlen].decode("utf-8")), blob[8 + hlen:]


def write_raw(path, header, data):
    """Write a safetensors file from a header dict and raw data, as given (no checks)."""
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        f.write(data)


# --------------------------------------------------------------------------- tokenizer files

def _added_token(i, t):
    return {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(vocab, lowercase=True):
    """tokenizer.json in the layout HF `tokenizers` writes for BertTokenizerFast."""
    ids = {t: i for i, t in enumerate(vocab)}
    cls, sep = ids["[CLS]"], ids["[SEP]"]

    def special(name, type_id):
        return {"SpecialToken": {"id": name, "type_id": type_id}}

    def seq(name, type_id):
        return {"Sequence": {"id": name, "type_id": type_id}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added_token(ids[t], t) for t in SPECIALS],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1),
                     special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids},
    }


def tokenizer_config(vocab, lowercase=True, model_max_length=512):
    ids = {t: i for i, t in enumerate(vocab)}
    return {
        "added_tokens_decoder": {
            str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True} for t in SPECIALS},
        "clean_up_tokenization_spaces": False,
        "cls_token": "[CLS]",
        "do_basic_tokenize": True,
        "do_lower_case": lowercase,
        "mask_token": "[MASK]",
        "model_max_length": model_max_length,
        "never_split": None,
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer",
        "unk_token": "[UNK]",
    }


def special_tokens_map():
    def tok(t):
        return {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False}
    return {"cls_token": tok("[CLS]"), "mask_token": tok("[MASK]"), "pad_token": tok("[PAD]"),
            "sep_token": tok("[SEP]"), "unk_token": tok("[UNK]")}


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


# --------------------------------------------------------------------------- the folder

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len")


def make_model(out, layers=2, hidden=32, heads=4, ffn=64, dtype="f32", pooling="cls",
               normalize=True, max_seq_length=128, max_position_embeddings=128,
               bert_prefix=False, position_ids=False, shards=1, prompts=None,
               default_prompt_name=None, cased=False, seed=0, std=0.3, extra_head=False,
               type_vocab_size=2, vocab_file=None, cross_encoder=False, num_labels=1,
               activation=None):
    """Write a complete model folder to `out` and return a dict describing it.

    extra_head adds BertForMaskedLM's `cls.predictions.*` tensors, which an embedding engine
    must ignore. vocab_file (a vocab.txt, one token a line, with the five special tokens)
    replaces the synthetic vocabulary, e.g. bert-base-uncased's for realistic token counts.
    cross_encoder writes the folder sentence-transformers' CrossEncoder saves instead: a
    BertForSequenceClassification config with id2label (num_labels entries), weights named
    bert.* plus bert.pooler.dense.* and classifier.weight/bias, the tokenizer files, and no
    sentence-transformers module files; activation (a class path such as
    "torch.nn.modules.linear.Identity") goes to sbert_ce_default_activation_function.
    Returns {"dir", "vocab", "n_params", "n_params_encoder", ...}.
    """
    if pooling not in POOLING_MODES:
        raise ValueError("pooling %r" % pooling)
    if hidden % heads:
        raise ValueError("hidden %d not divisible by heads %d" % (hidden, heads))
    if shards not in (1, 2):
        raise ValueError("shards must be 1 or 2")
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    vocab = read_vocab(vocab_file) if vocab_file else make_vocab(cased)
    lowercase = not cased

    config = {
        "_name_or_path": "medembed-random-bert",
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": ffn,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_position_embeddings,
        "model_type": "bert",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype],
        "transformers_version": "4.44.2",
        "type_vocab_size": type_vocab_size,
        "use_cache": True,
        "vocab_size": len(vocab),
    }
    if extra_head:
        config["architectures"] = ["BertForMaskedLM"]
    if cross_encoder:
        config["architectures"] = ["BertForSequenceClassification"]
        config["id2label"] = {str(i): "LABEL_%d" % i for i in range(num_labels)}
        config["label2id"] = {"LABEL_%d" % i: i for i in range(num_labels)}
        if activation:
            config["sbert_ce_default_activation_function"] = activation
        bert_prefix = True
    _write_json(os.path.join(out, "config.json"), config)

    w = make_weights(layers, hidden, heads, ffn, len(vocab), max_position_embeddings,
                     type_vocab_size, seed, std)
    n_params = sum(int(a.size) for a in w.values())
    n_params_encoder = sum(int(a.size) for n, a in w.items() if not n.startswith("pooler."))
    if position_ids:
        w["embeddings.position_ids"] = np.arange(max_position_embeddings,
                                                 dtype=np.int64).reshape(1, -1)
    if bert_prefix:
        w = {"bert." + n: a for n, a in w.items()}
    if cross_encoder:
        rng = np.random.default_rng(seed + 2)
        w["classifier.weight"] = rng.normal(0, std, (num_labels, hidden)).astype(np.float32)
        w["classifier.bias"] = rng.normal(0, std, num_labels).astype(np.float32)
        n_params += hidden * num_labels + num_labels
    if extra_head:
        rng = np.random.default_rng(seed + 1)
        w["cls.predictions.bias"] = rng.normal(0, 0.3, len(vocab)).astype(np.float32)
        w["cls.predictions.transform.dense.weight"] = rng.normal(
            0, 0.3, (hidden, hidden)).astype(np.float32)
        w["cls.predictions.transform.dense.bias"] = rng.normal(0, 0.3, hidden).astype(np.float32)

    for f in ("model.safetensors", "model.safetensors.index.json",
              "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
    if shards == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), w, dtype)
    else:
        names = sorted(w)
        # split so that the embeddings land in one shard and the layers mostly in the other
        half = len(names) // 2
        parts = [names[:half], names[half:]]
        files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        weight_map, total = {}, 0
        for part, fname in zip(parts, files):
            total += write_safetensors(os.path.join(out, fname), {n: w[n] for n in part}, dtype)
            for n in part:
                weight_map[n] = fname
        _write_json(os.path.join(out, "model.safetensors.index.json"),
                    {"metadata": {"total_size": total}, "weight_map": weight_map})

    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    _write_json(os.path.join(out, "tokenizer.json"), tokenizer_json(vocab, lowercase))
    _write_json(os.path.join(out, "tokenizer_config.json"),
                tokenizer_config(vocab, lowercase, max_seq_length))
    _write_json(os.path.join(out, "special_tokens_map.json"), special_tokens_map())
    if cross_encoder:
        os.rmdir(os.path.join(out, "1_Pooling"))
        return {
            "dir": out, "vocab": vocab, "config": config, "dtype": dtype,
            "max_length": min(max_position_embeddings, max_seq_length),
            "n_params": n_params, "num_labels": num_labels, "cased": cased,
        }

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    _write_json(os.path.join(out, "modules.json"), modules)
    _write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": pooling == "mean_sqrt_len",
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    _write_json(os.path.join(out, "sentence_bert_config.json"),
                {"max_seq_length": max_seq_length, "do_lower_case": lowercase})
    _write_json(os.path.join(out, "config_sentence_transformers.json"), {
        "__version__": {"sentence_transformers": "3.1.1", "transformers": "4.44.2",
                        "pytorch": "2.4.1"},
        "prompts": dict(prompts or {}),
        "default_prompt_name": default_prompt_name,
        "similarity_fn_name": "cosine",
    })
    return {
        "dir": out, "vocab": vocab, "config": config, "dtype": dtype, "pooling": pooling,
        "normalize": normalize, "max_length": min(max_position_embeddings, max_seq_length),
        "n_params": n_params, "n_params_encoder": n_params_encoder,
        "prompts": dict(prompts or {}), "default_prompt_name": default_prompt_name,
        "cased": cased,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=64)
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--pooling", choices=POOLING_MODES, default="cls")
    ap.add_argument("--no-normalize", action="store_true", help="omit the Normalize module")
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--max-position-embeddings", type=int, default=128)
    ap.add_argument("--bert-prefix", action="store_true", help="name tensors bert.*")
    ap.add_argument("--position-ids", action="store_true", help="store the I64 position_ids")
    ap.add_argument("--shards", type=int, choices=[1, 2], default=1)
    ap.add_argument("--prompt", action="append", default=[], metavar="NAME=TEXT")
    ap.add_argument("--default-prompt", default=None)
    ap.add_argument("--cased", action="store_true", help="no lowercasing; A-Z in the vocab")
    ap.add_argument("--extra-head", action="store_true", help="add cls.predictions.* tensors")
    ap.add_argument("--vocab", default=None, metavar="VOCAB_TXT",
                    help="use this vocab.txt instead of the synthetic vocabulary")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.3)
    a = ap.parse_args(argv)
    prompts = dict(p.split("=", 1) for p in a.prompt)
    info = make_model(a.out, a.layers, a.hidden, a.heads, a.ffn, a.dtype, a.pooling,
                      not a.no_normalize, a.max_seq_length, a.max_position_embeddings,
                      a.bert_prefix, a.position_ids, a.shards, prompts, a.default_prompt,
                      a.cased, a.seed, a.std, a.extra_head, vocab_file=a.vocab)
    print("wrote %s: layers=%d hidden=%d heads=%d ffn=%d dtype=%s pooling=%s normalize=%s "
          "max_length=%d vocab=%d params=%d" % (
              a.out, a.layers, a.hidden, a.heads, a.ffn, a.dtype, a.pooling,
              not a.no_normalize, info["max_length"], len(info["vocab"]), info["n_params"]))


if __name__ == "__main__":
    main()
