#!/usr/bin/env node
// ONNX Runtime on a real corpus: the ids `medembed tokenize` prints (one
// {"ids": [...]} per line), sorted by length and run in padded batches, which
// is how a serving stack feeds ORT. Reports the wall time of a whole pass
// (median over --runs) as docs/s and real tokens/s (padding is not counted
// as tokens), and the process CPU time of a pass.
//
//   node ort_corpus.js --model model.onnx --ids ids.jsonl [--batch 32]
//        [--threads 2] [--runs 3] [--warmup 1] [--json out.json]
//
// onnxruntime-node is found as in ../shared/tools/ort_bench.js
// ($ORT_NODE_DIR first).
'use strict';

const fs = require('fs');

function loadOrt() {
  const tries = [];
  if (process.env.ORT_NODE_DIR) tries.push(process.env.ORT_NODE_DIR);
  tries.push('onnxruntime-node');
  for (const t of tries) {
    try { return require(t); } catch (e) { /* next */ }
  }
  throw new Error('onnxruntime-node not found; set ORT_NODE_DIR');
}

function parseArgs(argv) {
  const a = { batch: 32, threads: 2, runs: 3, warmup: 1 };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i], v = argv[i + 1];
    switch (k) {
      case '--model': a.model = v; i++; break;
      case '--ids': a.ids = v; i++; break;
      case '--batch': a.batch = parseInt(v, 10); i++; break;
      case '--threads': a.threads = parseInt(v, 10); i++; break;
      case '--runs': a.runs = parseInt(v, 10); i++; break;
      case '--warmup': a.warmup = parseInt(v, 10); i++; break;
      case '--json': a.json = v; i++; break;
      default: throw new Error('unknown argument ' + k);
    }
  }
  if (!a.model || !a.ids) throw new Error('--model and --ids are required');
  return a;
}

function feeds(ort, seqs) {
  const B = seqs.length, S = Math.max(...seqs.map(s => s.length));
  const ids = new BigInt64Array(B * S), mask = new BigInt64Array(B * S), tt = new BigInt64Array(B * S);
  seqs.forEach((seq, b) => seq.forEach((t, s) => { ids[b * S + s] = BigInt(t); mask[b * S + s] = 1n; }));
  return {
    input_ids: new ort.Tensor('int64', ids, [B, S]),
    attention_mask: new ort.Tensor('int64', mask, [B, S]),
    token_type_ids: new ort.Tensor('int64', tt, [B, S]),
  };
}

const median = xs => { const s = [...xs].sort((p, q) => p - q); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };

async function main() {
  const a = parseArgs(process.argv);
  const ort = loadOrt();
  const seqs = fs.readFileSync(a.ids, 'utf8').split('\n').filter(l => l.trim()).map(l => JSON.parse(l).ids);
  const order = seqs.map((s, i) => i).sort((p, q) => seqs[q].length - seqs[p].length);
  const batches = [];
  for (let i = 0; i < order.length; i += a.batch) batches.push(feeds(ort, order.slice(i, i + a.batch).map(j => seqs[j])));
  const tokens = seqs.reduce((t, s) => t + s.length, 0);
  const padded = batches.reduce((t, f) => t + f.input_ids.dims[0] * f.input_ids.dims[1], 0);
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'], intraOpNumThreads: a.threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: '1' } } },
  });
  // warmup: the first (longest) batches, which size ORT's arenas
  for (let r = 0; r < a.warmup; r++)
    for (const f of batches.slice(0, 2)) await session.run(f);
  const times = [], cpu = [];
  for (let r = 0; r < a.runs; r++) {
    const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
    for (const f of batches) await session.run(f);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e3);
  }
  const med = median(times);
  const res = { engine: 'onnxruntime-node', workload: 'corpus', docs: seqs.length, tokens, padded_tokens: padded,
                batch: a.batch, threads: a.threads, runs: times.length, ms_median: med, ms_all: times,
                cpu_ms_median: median(cpu),
                docs_per_s: seqs.length / (med / 1e3), tokens_per_s: tokens / (med / 1e3) };
  console.log(JSON.stringify(res));
  if (a.json) fs.writeFileSync(a.json, JSON.stringify(res));
}

main().catch(e => { console.error(e && e.stack || e); process.exit(1); });
