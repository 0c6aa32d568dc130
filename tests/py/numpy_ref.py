#!/usr/bin/python3
"""numpy_ref.py - an independent float64 NumPy reference for BERT sentence-embedding folders.

The tests judge the C engine against this file, so it shares no code with it and follows
the published definitions directly:

  * safetensors (https://github.com/huggingface/safetensors#format): 8-byte little-endian
    header length, a JSON header {name: {dtype, shape, data_offsets}} (+ "__metadata__"),
    then raw little-endian data; offsets are relative to the end of the header. A sharded
    checkpoint has model.safetensors.index.json with {"weight_map": {name: file}}.
  * BERT (Devlin et al. 2019; HF modeling_bert.py): word + absolute position + token-type[0]
    embeddings -> LayerNorm -> N post-LN encoder layers [multi-head self-attention with
    softmax(QK^T / sqrt(d_head)) V -> output dense -> +residual -> LayerNorm -> dense ->
    exact erf GELU -> dense -> +residual -> LayerNorm]. torch.nn.Linear stores weights as
    (out, in), so y = x W^T + b.
  * sentence-transformers: Pooling (1_Pooling/config.json) over every real token, [CLS] and
    [SEP] included; cls / mean / max / mean_sqrt_len (sum / sqrt(n)); then, when modules.json
    lists a Normalize module, x / max(||x||_2, 1e-12) as torch.nn.functional.normalize does.
    sentence_bert_config.json's max_seq_length caps the sequence length.

Everything is computed in float64 from weights converted exactly (F16 and BF16 widen without
rounding). The reference does not tokenize: callers pass token ids.

Library use:
    import numpy_ref
    m = numpy_ref.load("model_dir")
    h = numpy_ref.hidden(m, [cls_id, ..., sep_id])     # (n, dim) float64 last hidden state
    e = numpy_ref.embed(m, [cls_id, ..., sep_id])      # (dim,) pooled (+ normalized) float64

CLI (for quick looks):
    /usr/bin/python3 numpy_ref.py MODEL_DIR 2,45,3 [--no-normalize] [--output pooled|cls|hidden]
"""
import json
import math
import os
import struct
import sys

import numpy as np

try:  # scipy's erf is exact to double precision and fast; math.erf is the fallback
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - depends on the machine
    _erf = np.frompyfunc(math.erf, 1, 1)

# bytes per element of each safetensors dtype we can read
_ST_FLOAT = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2")}
_ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1}

POOLING_KEYS = (  # sentence-transformers Pooling config key -> our mode name
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)


class RefError(ValueError):
    """A model folder the reference cannot (or must not) read."""


# --------------------------------------------------------------------------- safetensors

def read_safetensors(path):
    """Return {name: float64 ndarray} for the float tensors of one .safetensors file.

    Integer tensors (the I64 `embeddings.position_ids` buffer of older checkpoints) are
    skipped. Offsets, sizes and dtypes are checked so a broken file raises RefError.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise RefError("%s: shorter than the 8-byte header length" % path)
    (hlen,) = struct.unpack("<Q", blob[:8])
    if hlen > len(blob) - 8:
        raise RefError("%s: header length %d exceeds file size" % (path, hlen))
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        if dt not in _ST_SIZES:
            raise RefError("%s: tensor %s has unknown dtype %s" % (path, name, dt))
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != numel * _ST_SIZES[dt]:
            raise RefError("%s: tensor %s has bad data_offsets %r" % (path, name, [begin, end]))
        raw = data[begin:end]
        if dt == "BF16":
            # bfloat16 is the top half of a float32: widen by shifting, exactly
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).astype(np.float64)
        elif dt in _ST_FLOAT:
            arr = np.frombuffer(raw, dtype=_ST_FLOAT[dt]).astype(np.float64)
        else:
            continue  # integer buffers (position_ids) carry no weights
        out[name] = arr.reshape(shape)
    return out


def read_weights(model_dir):
    """All float tensors of a folder (single file or sharded index), names without 'bert.'."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(single):
        tensors = read_safetensors(single)
    elif os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(model_dir, shard))
            for name in part:
                if weight_map.get(name) != shard:
                    raise RefError("%s: tensor %s is not mapped to this shard" % (shard, name))
            tensors.update(part)
        missing = [n for n, s in weight_map.items() if n not in tensors
                   and not n.endswith("position_ids")]
        if missing:
            raise RefError("index lists tensors not found in shards: %s" % missing[:3])
    else:
        raise RefError("%s: no model.safetensors or model.safetensors.index.json" % model_dir)
    out = {}
    for name, arr in tensors.items():
        short = name[len("bert."):] if name.startswith("bert.") else name
        if short in out:
            raise RefError("tensor %s appears with and without the bert. prefix" % short)
        out[short] = arr
    return out


# --------------------------------------------------------------------------- folder config

def _read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Model:
    """A loaded folder: config values and float64 weights (names without 'bert.')."""

    def __init__(self, model_dir):
        self.dir = model_dir
        cfg = _read_json(os.path.join(model_dir, "config.json"))
        if cfg is None:
            raise RefError("%s: no config.json" % model_dir)
        if cfg.get("model_type", "bert") != "bert":
            raise RefError("model_type %r is not bert" % cfg.get("model_type"))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise RefError("hidden_act %r: only exact erf gelu is implemented" % cfg["hidden_act"])
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise RefError("only absolute position embeddings are implemented")
        self.config = cfg
        self.dim = int(cfg["hidden_size"])
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.ffn = int(cfg["intermediate_size"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.max_position_embeddings = int(cfg["max_position_embeddings"])
        if self.dim % self.heads:
            raise RefError("hidden_size %d not divisible by heads %d" % (self.dim, self.heads))

        # modules.json: which sentence-transformers modules follow the Transformer
        modules = _read_json(os.path.join(model_dir, "modules.json"), [])
        types = [m.get("type", "") for m in modules]
        self.normalize = any(t.endswith("models.Normalize") for t in types)
        pool_dir = "1_Pooling"
        for m in modules:
            if m.get("type", "").endswith("models.Pooling"):
                pool_dir = m.get("path", pool_dir)
        pool_cfg = _read_json(os.path.join(model_dir, pool_dir, "config.json"))
        if pool_cfg is None:
            modes = ["mean"]  # sentence-transformers' default for a bare Transformer
        else:
            modes = [name for key, name in POOLING_KEYS if pool_cfg.get(key)]
        if len(modes) != 1 or modes[0] not in ("cls", "max", "mean", "mean_sqrt_len"):
            raise RefError("unsupported pooling %r" % modes)
        self.pooling = modes[0]

        st_cfg = _read_json(os.path.join(model_dir, "sentence_bert_config.json"), {})
        self.max_seq_length = st_cfg.get("max_seq_length")
        self.do_lower_case = bool(st_cfg.get("do_lower_case", False))
        limit = self.max_position_embeddings
        if self.max_seq_length:
            limit = min(limit, int(self.max_seq_length))
        self.max_length = limit  # tokens incl. [CLS]/[SEP] the model accepts

        self.w = read_weights(model_dir)
        self.wt = {}  # name -> contiguous transposed weight, filled on first use
        self._check_shapes()

    def _check_shapes(self):
        d, f = self.dim, self.ffn
        want = {
            "embeddings.word_embeddings.weight": (int(self.config["vocab_size"]), d),
            "embeddings.position_embeddings.weight": (self.max_position_embeddings, d),
            "embeddings.token_type_embeddings.weight": (
                int(self.config.get("type_vocab_size", 2)), d),
            "embeddings.LayerNorm.weight": (d,),
            "embeddings.LayerNorm.bias": (d,),
        }
        for i in range(self.layers):
            p = "encoder.layer.%d." % i
            for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                      "attention.output.dense"):
                want[p + n + ".weight"] = (d, d)
                want[p + n + ".bias"] = (d,)
            for n in ("attention.output.LayerNorm", "output.LayerNorm"):
                want[p + n + ".weight"] = (d,)
                want[p + n + ".bias"] = (d,)
            want[p + "intermediate.dense.weight"] = (f, d)
            want[p + "intermediate.dense.bias"] = (f,)
            want[p + "output.dense.weight"] = (d, f)
            want[p + "output.dense.bias"] = (d,)
        for name, shape in want.items():
            if name not in self.w:
                raise RefError("missing tensor %s" % name)
            if self.w[name].shape != shape:
                raise RefError("tensor %s has shape %s, want %s"
                               % (name, self.w[name].shape, shape))


def load(model_dir):
    """Load a model folder; raises RefError (a ValueError) on anything it cannot read."""
    return Model(model_dir)


# --------------------------------------------------------------------------- forward pass

def _layer_norm(x, gamma, beta, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # biased variance, as torch
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (HF 'gelu', not the tanh form)."""
    return 0.5 * x * (1.0 + np.asarray(_erf(x / math.sqrt(2.0)), dtype=np.float64))


def _linear(x, model, name):
    # y = x W^T + b; W^T is cached contiguous (2x faster with Debian's reference BLAS)
    wt = model.wt.get(name)
    if wt is None:
        wt = model.wt[name] = np.ascontiguousarray(model.w[name + ".weight"].T)
    return x @ wt + model.w[name + ".bias"]


def hidden(model, ids, type_ids=None):
    """Last hidden state (len(ids), dim) float64 for one sequence of token ids.

    The ids are used as given (the caller adds [CLS]/[SEP] and truncates); every position is
    attended, as a single unpadded sequence is in HF. type_ids: one token type per id
    (token_type_ids; None: all 0).
    """
    ids = np.asarray(list(ids), dtype=np.int64)
    n = ids.shape[0]
    w = model.w
    vocab = w["embeddings.word_embeddings.weight"].shape[0]
    if n == 0 or n > model.max_position_embeddings:
        raise RefError("sequence length %d outside 1..%d" % (n, model.max_position_embeddings))
    if ids.min() < 0 or ids.max() >= vocab:
        raise RefError("token id outside 0..%d" % (vocab - 1))

    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][
             np.zeros(n, dtype=np.int64) if type_ids is None
             else np.asarray(list(type_ids), dtype=np.int64)])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], model.eps)

    nh = model.heads
    hd = model.dim // nh
    scale = 1.0 / math.sqrt(hd)
    for i in range(model.layers):
        p = "encoder.layer.%d." % i
        q = _linear(x, model, p + "attention.self.query").reshape(n, nh, hd).transpose(1, 0, 2)
        k = _linear(x, model, p + "attention.self.key").reshape(n, nh, hd).transpose(1, 0, 2)
        v = _linear(x, model, p + "attention.self.value").reshape(n, nh, hd).transpose(1, 0, 2)
        scores = (q @ k.transpose(0, 2, 1)) * scale                # (nh, n, n)
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, model.dim)  # heads concatenated
        a = _linear(ctx, model, p + "attention.output.dense")
        x = _layer_norm(a + x, w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"], model.eps)
        h = _gelu(_linear(x, model, p + "intermediate.dense"))
        o = _linear(h, model, p + "output.dense")
        x = _layer_norm(o + x, w[p + "output.LayerNorm.weight"],
                        w[p + "output.LayerNorm.bias"], model.eps)
    return x


def pool(model, h):
    """sentence-transformers pooling of a (n, dim) hidden state over all n tokens."""
    if model.pooling == "cls":
        return h[0].copy()
    if model.pooling == "max":
        return h.max(axis=0)
    s = h.sum(axis=0)
    if model.pooling == "mean":
        return s / h.shape[0]
    return s / math.sqrt(h.shape[0])  # mean_sqrt_len


def l2_normalize(v):
    return v / max(float(np.linalg.norm(v)), 1e-12)


def embed(model, ids, normalize=None):
    """Pooled embedding (dim,) float64; normalized when the folder has a Normalize module.

    normalize=False/True overrides the folder (the CLI's --no-normalize is False).
    """
    v = pool(model, hidden(model, ids))
    if model.normalize if normalize is None else normalize:
        v = l2_normalize(v)
    return v


def embed_many(model, id_lists, normalize=None):
    return np.stack([embed(model, ids, normalize) for ids in id_lists])


# --------------------------------------------------------------------------- cross-encoder

def pair_ids(cls_id, sep_id, a, b):
    """[CLS] a [SEP] b [SEP] and its token_type_ids (0 for [CLS] a [SEP], 1 for b [SEP])."""
    ids = [cls_id] + list(a) + [sep_id] + list(b) + [sep_id]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    return ids, types


def ce_logits(model, ids, type_ids):
    """BertForSequenceClassification logits (num_labels,) float64: the pooler
    tanh(W h[CLS] + b), then the classifier."""
    h = hidden(model, ids, type_ids)[0]
    w = model.w
    pooled = np.tanh(w["pooler.dense.weight"] @ h + w["pooler.dense.bias"])
    return w["classifier.weight"] @ pooled + w["classifier.bias"]


def ce_activation(model):
    """The activation sentence-transformers 3.3.1's CrossEncoder.predict applies: the
    config's sbert_ce_default_activation_function, else Sigmoid for one label, else
    Identity."""
    name = model.config.get("sbert_ce_default_activation_function")
    if name is None:
        name = (model.config.get("sentence_transformers") or {}).get("activation_fn")
    labels = len(model.config.get("id2label") or {}) or int(model.config.get("num_labels", 2))
    if name is None:
        name = "Sigmoid" if labels == 1 else "Identity"
    base = name.rsplit(".", 1)[-1]
    return {"Sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "Identity": lambda z: z,
            "Tanh": np.tanh}[base]


def ce_score(model, ids, type_ids, raw=False):
    z = ce_logits(model, ids, type_ids)
    return z if raw else ce_activation(model)(z)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("ids", nargs="+", help="comma-separated ids, one argument per sequence")
    ap.add_argument("--output", choices=["pooled", "cls", "hidden"], default="pooled")
    ap.add_argument("--no-normalize", action="store_true")
    args = ap.parse_args(argv)
    m = load(args.model_dir)
    for s in args.ids:
        ids = [int(t) for t in s.split(",") if t.strip()]
        if args.output == "pooled":
            out = embed(m, ids, False if args.no_normalize else None).tolist()
        elif args.output == "cls":
            out = hidden(m, ids)[0].tolist()
        else:
            out = hidden(m, ids).tolist()
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
