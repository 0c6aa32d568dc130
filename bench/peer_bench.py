"""bench/peer_bench.py - the PyPI engines medembed is compared with (bench/peers.sh).

Run with the Python tool environment (.venv/, requirements-dev.txt: numpy, onnx,
onnxruntime, openvino). Three commands:

    peer_bench.py export MODEL_DIR OUT_DIR
        ONNX graph of the model folder's encoder + pooling (+ Normalize) in fp32, written
        from the BERT definition with onnx.helper from model.safetensors (no PyTorch):
        OUT_DIR/model.onnx; its ONNX Runtime int8 twin, quantize_dynamic with QInt8 weights:
        OUT_DIR/model.int8.onnx; and OpenVINO's fp32 IR (compress_to_fp16=False):
        OUT_DIR/model.xml. Inputs input_ids and attention_mask (int64, batch x seq),
        output "embedding" (batch x hidden). A cross-encoder folder
        (BertForSequenceClassification) adds the input token_type_ids and ends in the tanh
        pooler and the classifier: output "logits" (batch x num_labels).
    peer_bench.py time --engine ort|ov --precision f32|int8|bf16 --dir OUT_DIR
                       [--shapes 1x16,32x128] [--corpus IDS.jsonl] [--threads 2]
                       [--runs 5] [--warmup 2] [--vocab N]
        One JSON object on stdout: every call's milliseconds per shape, or the corpus time.
    peer_bench.py embed --engine ort|ov --precision P --dir OUT_DIR --ids IDS.jsonl
        The embeddings of each {"ids": [...]} line, one JSON list per line (for checks).

Shapes get the ids of `medembed bench` (the same generator as tools/cli/cmd_bench.c:
[CLS], pieces from a fixed-seed LCG, [SEP]), so every engine sees the same tokens. The
corpus is fed as length-sorted batches of 32, each padded to its longest text.

ONNX Runtime: intra-op threads = --threads, one inter-op thread, sequential execution,
graph optimisation level "all". OpenVINO (CPU): INFERENCE_PRECISION_HINT set to the asked
precision and read back from the compiled model (a mismatch is recorded and the run exits
with status 3), INFERENCE_NUM_THREADS = --threads, PERFORMANCE_HINT LATENCY, static shapes
(one compiled model per shape; the corpus, whose batches each have their own length,
compiles one dynamic-shape model). Compilation and the first inference are never timed.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np

OPSET = 17
CORPUS_BATCH = 32


# --------------------------------------------------------------------------- the model

def read_safetensors(path):
    """name -> float32 array (F32, F16 and BF16 tensors; others are skipped)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, h in header.items():
            if name == "__metadata__":
                continue
            a, b = h["data_offsets"]
            f.seek(base + a)
            raw = f.read(b - a)
            dt = h["dtype"]
            if dt == "F32":
                arr = np.frombuffer(raw, "<f4")
            elif dt == "F16":
                arr = np.frombuffer(raw, "<f2").astype(np.float32)
            elif dt == "BF16":
                arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                continue
            out[name] = arr.reshape(h["shape"]).astype(np.float32)
    return out


def load_weights(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for fn in files:
        w.update(read_safetensors(os.path.join(model_dir, fn)))
    return {(k[5:] if k.startswith("bert.") else k): v for k, v in w.items()}


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def model_info(model_dir):
    cfg = read_json(os.path.join(model_dir, "config.json"))
    if cfg is None:
        sys.exit("peer_bench: %s: no config.json" % model_dir)
    if cfg.get("model_type", "bert") != "bert":
        sys.exit("peer_bench: %s: model_type %r; only BERT is exported" %
                 (model_dir, cfg.get("model_type")))
    if (cfg.get("architectures") or [""])[0] == "BertForSequenceClassification":
        # a cross-encoder: token types, the pooler and the classifier; logits out
        labels = len(cfg.get("id2label") or {}) or int(cfg.get("num_labels", 2))
        return {"hidden": cfg["hidden_size"], "heads": cfg["num_attention_heads"],
                "layers": cfg["num_hidden_layers"], "ffn": cfg["intermediate_size"],
                "vocab": cfg["vocab_size"], "eps": cfg.get("layer_norm_eps", 1e-12),
                "max_seq": cfg.get("max_position_embeddings", 512),
                "pad": cfg.get("pad_token_id", 0), "pooling": "cls", "normalize": False,
                "cross_encoder": True, "num_labels": labels}
    pool = read_json(os.path.join(model_dir, "1_Pooling", "config.json"),
                     {"pooling_mode_cls_token": True})
    if pool.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif pool.get("pooling_mode_mean_tokens"):
        pooling = "mean"
    else:
        sys.exit("peer_bench: %s: only CLS and mean pooling are exported" % model_dir)
    modules = read_json(os.path.join(model_dir, "modules.json"), [])
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    st = read_json(os.path.join(model_dir, "sentence_bert_config.json"), {})
    return {"hidden": cfg["hidden_size"], "heads": cfg["num_attention_heads"],
            "layers": cfg["num_hidden_layers"], "ffn": cfg["intermediate_size"],
            "vocab": cfg["vocab_size"], "eps": cfg.get("layer_norm_eps", 1e-12),
            "max_seq": st.get("max_seq_length", cfg.get("max_position_embeddings", 512)),
            "pad": cfg.get("pad_token_id", 0), "pooling": pooling, "normalize": normalize}


def build_onnx(model_dir):
    """The fp32 ONNX graph, written as `torch.onnx.export` writes HF's BertModel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    info = model_info(model_dir)
    w = load_weights(model_dir)
    H, nh = info["hidden"], info["heads"]
    dh = H // nh
    inits, nodes = [], []
    n_const = [0]

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.array(arr, order="C"), name))
        return name

    def const(arr):
        n_const[0] += 1
        return init("c%d" % n_const[0], np.asarray(arr))

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x, prefix, out):
        wt = init(prefix + ".weight_t", w[prefix + ".weight"].T)
        mm = node("MatMul", [x, wt], out + "_mm")
        return node("Add", [mm, init(prefix + ".bias", w[prefix + ".bias"])], out)

    def layernorm(x, prefix, out):
        return node("LayerNormalization", [x, init(prefix + ".weight", w[prefix + ".weight"]),
                                           init(prefix + ".bias", w[prefix + ".bias"])],
                    out, axis=-1, epsilon=float(info["eps"]))

    # embeddings: word + token type 0 + position, LayerNorm
    word = node("Gather", [init("word", w["embeddings.word_embeddings.weight"]), "input_ids"],
                "emb_word", axis=0)
    ce = info.get("cross_encoder", False)
    if ce:  # a pair: token type 0 for [CLS] query [SEP], 1 for text [SEP]
        tt = node("Gather", [init("types", w["embeddings.token_type_embeddings.weight"]),
                             "token_type_ids"], "emb_types", axis=0)
        typ = node("Add", [word, tt], "emb_type")
    else:
        typ = node("Add", [word, init("type0",
                                      w["embeddings.token_type_embeddings.weight"][0])],
                   "emb_type")
    seq = node("Shape", ["input_ids"], "seq_len", start=1, end=2)
    pos = node("Slice", [init("pos", w["embeddings.position_embeddings.weight"]),
                         const(np.array([0], np.int64)), seq, const(np.array([0], np.int64))],
               "emb_pos_rows")
    emb = node("Add", [typ, pos], "emb_sum")
    x = layernorm(emb, "embeddings.LayerNorm", "emb")
    # additive mask (1 - mask) * -10000, batch x 1 x 1 x seq
    maskf = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inv = node("Sub", [const(np.array(1.0, np.float32)), maskf], "mask_inv")
    add_mask = node("Mul", [inv, const(np.array(-10000.0, np.float32))], "mask_add2")
    add_mask = node("Unsqueeze", [add_mask, const(np.array([1, 2], np.int64))], "mask_add")
    split_shape = const(np.array([0, 0, nh, dh], np.int64))
    merge_shape = const(np.array([0, 0, H], np.int64))
    scale = const(np.array(math.sqrt(dh), np.float32))
    for i in range(info["layers"]):
        p = "encoder.layer.%d." % i
        a = "l%d_" % i
        heads = {}
        for n in ("query", "key", "value"):
            t = linear(x, p + "attention.self." + n, a + n)
            t = node("Reshape", [t, split_shape], a + n + "_split")
            perm = [0, 2, 3, 1] if n == "key" else [0, 2, 1, 3]
            heads[n] = node("Transpose", [t], a + n + "_heads", perm=perm)
        s = node("MatMul", [heads["query"], heads["key"]], a + "scores_raw")
        s = node("Div", [s, scale], a + "scores_scaled")
        s = node("Add", [s, add_mask], a + "scores")
        pr = node("Softmax", [s], a + "probs", axis=-1)
        c = node("MatMul", [pr, heads["value"]], a + "ctx_heads")
        c = node("Transpose", [c], a + "ctx_t", perm=[0, 2, 1, 3])
        c = node("Reshape", [c, merge_shape], a + "ctx")
        o = linear(c, p + "attention.output.dense", a + "attn_out")
        o = node("Add", [o, x], a + "attn_res")
        x1 = layernorm(o, p + "attention.output.LayerNorm", a + "attn_ln")
        h = linear(x1, p + "intermediate.dense", a + "ffn_in")
        # exact GELU, as torch exports it: x * 0.5 * (1 + erf(x / sqrt 2))
        g = node("Div", [h, const(np.array(math.sqrt(2.0), np.float32))], a + "gelu_div")
        g = node("Erf", [g], a + "gelu_erf")
        g = node("Add", [g, const(np.array(1.0, np.float32))], a + "gelu_add")
        g = node("Mul", [h, g], a + "gelu_mul")
        g = node("Mul", [g, const(np.array(0.5, np.float32))], a + "gelu")
        o = linear(g, p + "output.dense", a + "ffn_out")
        o = node("Add", [o, x1], a + "ffn_res")
        x = layernorm(o, p + "output.LayerNorm", a + "out")
    if info["pooling"] == "cls":
        pooled = node("Gather", [x, const(np.array(0, np.int64))], "pooled", axis=1)
    else:
        m3 = node("Unsqueeze", [maskf, const(np.array([2], np.int64))], "mask_3d")
        xs = node("Mul", [x, m3], "masked")
        sm = node("ReduceSum", [xs, const(np.array([1], np.int64))], "sum_tokens", keepdims=0)
        cnt = node("ReduceSum", [maskf, const(np.array([1], np.int64))], "n_tokens", keepdims=1)
        pooled = node("Div", [sm, cnt], "pooled")
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch", "seq"])]
    if ce:  # BertForSequenceClassification: tanh pooler on [CLS], then the classifier
        pooled = node("Tanh", [linear(pooled, "pooler.dense", "pooler_lin")], "pooler")
        linear(pooled, "classifier", "logits")
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64,
                                                    ["batch", "seq"]))
        output = helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                               ["batch", info["num_labels"]])
    else:
        if info["normalize"]:
            node("LpNormalization", [pooled], "embedding", axis=-1, p=2)
        else:
            node("Identity", [pooled], "embedding")
        output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", H])
    graph = helper.make_graph(nodes, "medembed_peer_bert", inputs, [output], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="medembed bench/peer_bench.py")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m, info


def cmd_export(a):
    import onnx
    os.makedirs(a.out, exist_ok=True)
    f32 = os.path.join(a.out, "model.onnx")
    m, info = build_onnx(a.model)
    onnx.save(m, f32)
    with open(os.path.join(a.out, "model_info.json"), "w") as f:
        json.dump(info, f)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(f32, os.path.join(a.out, "model.int8.onnx"), weight_type=QuantType.QInt8)
    import openvino as ov
    ov.save_model(ov.convert_model(f32), os.path.join(a.out, "model.xml"),
                  compress_to_fp16=False)
    print("peer_bench: exported %s -> %s (model.onnx, model.int8.onnx, model.xml)" %
          (a.model, a.out), file=sys.stderr)


# --------------------------------------------------------------------------- engines

class Engine:
    """One peer at one precision: run(ids, mask) -> embeddings; shape-specific compile."""

    def __init__(self, engine, precision, d, threads):
        self.engine, self.precision, self.threads = engine, precision, threads
        self.compiled_precision = precision
        self.versions, self.ov_props = {}, None
        if engine == "ort":
            import onnxruntime as ort
            if precision not in ("f32", "int8"):
                sys.exit("peer_bench: ONNX Runtime precision is f32 or int8, not %s" % precision)
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            path = os.path.join(d, "model.onnx" if precision == "f32" else "model.int8.onnx")
            self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            self.versions = {"onnxruntime": ort.__version__}
        elif engine == "ov":
            import openvino as ov
            if precision not in ("f32", "bf16"):
                sys.exit("peer_bench: OpenVINO precision is f32 or bf16, not %s" % precision)
            self.ov = ov
            self.core = ov.Core()
            self.model = self.core.read_model(os.path.join(d, "model.xml"))
            self.compiled = {}
            self.versions = {"openvino": ov.get_version()}
        else:
            sys.exit("peer_bench: --engine is ort or ov, not %s" % engine)

    def _ov_compiled(self, shape):
        key = shape or "dynamic"
        if key not in self.compiled:
            m = self.model.clone()
            if shape:
                m.reshape({i.get_any_name(): list(shape) for i in m.inputs})
            cfg = {"INFERENCE_PRECISION_HINT": self.precision,
                   "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"}
            cm = self.core.compile_model(m, "CPU", cfg)
            got = cm.get_property("INFERENCE_PRECISION_HINT")
            got = got.to_string() if hasattr(got, "to_string") else str(got)
            self.compiled_precision = got
            self.ov_props = {k: str(cm.get_property(k)) for k in (
                "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "ENABLE_CPU_PINNING",
                "NUM_STREAMS", "ENABLE_HYPER_THREADING")}
            if got != self.precision:
                print("peer_bench: OpenVINO compiled %s although %s was asked: refusing to "
                      "report it as %s" % (got, self.precision, self.precision), file=sys.stderr)
            self.compiled[key] = cm.create_infer_request()
        return self.compiled[key]

    def prepare(self, shape):
        """Compile for shape (batch, seq), or None: one dynamic-shape model."""
        if self.engine == "ov":
            self._ov_compiled(shape)

    def run(self, ids, mask, static=True, types=None):
        """The graph's one output (embeddings, or a cross-encoder's logits: then types, the
        token_type_ids, is required)."""
        feeds = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            feeds["token_type_ids"] = types
        if self.engine == "ort":
            return self.sess.run(None, feeds)[0]
        req = self._ov_compiled(ids.shape if static else None)
        res = req.infer(feeds)
        return next(iter(res.values()))

    def describe(self):
        return {"engine": self.engine, "precision": self.precision,
                "precision_compiled": self.compiled_precision,
                "precision_ok": self.compiled_precision == self.precision,
                "threads": self.threads, "versions": self.versions}


def bench_ids(batch, seq, vocab):
    """The ids `medembed bench` uses for a shape (tools/cli/cmd_bench.c, bench_shape)."""
    st = (0x9E3779B9 ^ (batch * 131 + seq)) & 0xFFFFFFFF
    lo = 1000 if vocab > 2000 else 1
    span = vocab - lo
    ids = np.empty((batch, seq), np.int64)
    for b in range(batch):
        for t in range(seq):
            st = (st * 1664525 + 1013904223) & 0xFFFFFFFF
            v = lo + (st >> 8) % span
            if t == 0 and seq > 1:
                v = 101 if 101 < vocab else 0
            elif t == seq - 1 and seq > 1:
                v = 102 if 102 < vocab else 0
            ids[b, t] = v
    return ids


def parse_shapes(text):
    out = []
    for part in text.split(","):
        try:
            b, s = (int(v) for v in part.lower().split("x"))
        except ValueError:
            sys.exit("peer_bench: --shapes expects BxS[,BxS...], got %r" % text)
        if b < 1 or s < 1:
            sys.exit("peer_bench: --shapes expects positive sizes, got %r" % part)
        out.append((b, s))
    return out


def read_ids(path):
    seqs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    seqs.append([int(v) for v in json.loads(line)["ids"]])
                except (ValueError, KeyError, TypeError):
                    sys.exit("peer_bench: %s:%d: expected {\"ids\": [int, ...]}" % (path, n))
    return seqs


def padded(seqs, pad):
    n = max(len(s) for s in seqs)
    ids = np.full((len(seqs), n), pad, np.int64)
    mask = np.zeros((len(seqs), n), np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def cmd_time(a):
    info = read_json(os.path.join(a.dir, "model_info.json"))
    if info is None:
        sys.exit("peer_bench: %s: no model_info.json (run `peer_bench.py export` first)" % a.dir)
    eng = Engine(a.engine, a.precision, a.dir, a.threads)
    doc = eng.describe()
    doc["label"] = "%s-%s" % (a.engine, a.precision)
    doc["results"] = []
    if a.corpus:
        seqs = read_ids(a.corpus)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        batches = [padded([seqs[i] for i in order[k:k + CORPUS_BATCH]], info["pad"])
                   for k in range(0, len(order), CORPUS_BATCH)]
        eng.prepare(None)
        eng.run(*batches[0], static=False)  # first inference, untimed
        t0, c0 = time.perf_counter(), time.process_time()
        for ids, mask in batches:
            eng.run(ids, mask, static=False)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = sum(len(s) for s in seqs)
        doc["results"].append({
            "workload": "corpus", "docs": len(seqs), "batches": len(batches),
            "batch": CORPUS_BATCH, "tokens": tokens,
            "padded_tokens": int(sum(i.size for i, _ in batches)),
            "seconds": sec, "cpu_seconds": cpu, "docs_per_s": len(seqs) / sec,
            "tokens_per_s": tokens / sec})
    else:
        for b, s in parse_shapes(a.shapes):
            ids = bench_ids(b, s, info["vocab"])
            mask = np.ones_like(ids)
            eng.prepare((b, s))
            ms, cpu = [], []
            for i in range(a.warmup + a.runs):
                t0, c0 = time.perf_counter(), time.process_time()
                eng.run(ids, mask)
                t1, c1 = time.perf_counter(), time.process_time()
                if i >= a.warmup:
                    ms.append((t1 - t0) * 1e3)
                    cpu.append((c1 - c0) * 1e3)
            med = statistics.median(ms)
            doc["results"].append({
                "workload": "shape", "batch": b, "seq": s, "runs": a.runs,
                "warmup": a.warmup, "ms": ms, "cpu_ms": cpu, "ms_median": med,
                "tokens_per_s": b * s / (med * 1e-3)})
    doc["precision_compiled"] = eng.compiled_precision
    if eng.ov_props:
        doc["openvino_compiled"] = eng.ov_props
    doc["precision_ok"] = eng.compiled_precision == a.precision
    json.dump(doc, sys.stdout)
    print()
    return 0 if doc["precision_ok"] else 3


def cmd_embed(a):
    info = read_json(os.path.join(a.dir, "model_info.json"))
    if info is None:
        sys.exit("peer_bench: %s: no model_info.json (run `peer_bench.py export` first)" % a.dir)
    eng = Engine(a.engine, a.precision, a.dir, a.threads)
    for s in read_ids(a.ids):
        ids, mask = padded([s], info["pad"])
        print(json.dumps([float(v) for v in eng.run(ids, mask)[0]]))
    return 0 if eng.compiled_precision == a.precision else 3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("model")
    e.add_argument("out")
    for name in ("time", "embed"):
        t = sub.add_parser(name)
        t.add_argument("--engine", required=True, choices=["ort", "ov"])
        t.add_argument("--precision", required=True, choices=["f32", "int8", "bf16"])
        t.add_argument("--dir", required=True, help="the folder `export` wrote")
        t.add_argument("--threads", type=int, default=2)
        if name == "time":
            t.add_argument("--shapes", default="1x16,32x128,8x512")
            t.add_argument("--corpus", help="ids JSONL ({\"ids\": [...]} a line)")
            t.add_argument("--runs", type=int, default=5)
            t.add_argument("--warmup", type=int, default=2)
        else:
            t.add_argument("--ids", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "export":
        return cmd_export(a)
    if a.cmd == "embed":
        return cmd_embed(a)
    if a.runs < 1 or a.warmup < 1:
        sys.exit("peer_bench: --runs and --warmup must be at least 1 (the first inference "
                 "is never timed)")
    return cmd_time(a)


if __name__ == "__main__":
    sys.exit(main())
