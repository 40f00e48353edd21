#!/usr/bin/env node
// Timing of a bundle in this JS runtime, the same measurement in Node and in the browser (browser.mjs
// --bench runs timeModel inside the page):
//   cold_ms: from before importing the runtime (edgedistill.mjs, the tokenizer, onnxruntime) to the
//            first prediction: import + load (read, sha256, session, tokenizer) + predict one item
//   per-prediction: predict([item]) (batch 1) over n items after `warmup` calls: p50, p90, mean
//
//   node export/js/bench.mjs BUNDLE [--n 200] [--warmup 10] [--threads N] [--times] < items.jsonl   -> one JSON line
//   (--times: with every prediction's time, times_ms)

export async function timeModel(bundle, items, { n = 200, warmup = 10, threads = null, moduleUrl = "./edgedistill.mjs" } = {}) {
  const now = () => globalThis.performance.now();
  const t0 = now();
  const { EdgeModel } = await import(moduleUrl);
  const tImport = now();
  const model = await EdgeModel.load(bundle, { threads });
  const tLoad = now();
  await model.predict([items[0]]);
  const tFirst = now();
  for (let i = 0; i < warmup; i++) await model.predict([items[i % items.length]]);
  const times = [];
  for (let i = 0; i < n; i++) {
    const item = items[i % items.length];
    const s = now();
    await model.predict([item]);
    times.push(now() - s);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return {
    cold_ms: tFirst - t0, import_ms: tImport - t0, load_ms: tLoad - tImport, first_predict_ms: tFirst - tLoad,
    p50_ms: q(0.5), p90_ms: q(0.9), mean_ms: times.reduce((a, b) => a + b, 0) / times.length, n, warmup, threads,
    times_ms: times,
  };
}

const isMain = typeof process !== "undefined" && process.argv?.[1] && (await import("node:url")).fileURLToPath(import.meta.url) === (await import("node:path")).resolve(process.argv[1]);
if (isMain) {
  const args = process.argv.slice(2);
  const opts = { n: 200, warmup: 10, threads: null };
  let bundle = null, keepTimes = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--n") opts.n = Number(args[++i]);
    else if (args[i] === "--warmup") opts.warmup = Number(args[++i]);
    else if (args[i] === "--threads") opts.threads = Number(args[++i]);
    else if (args[i] === "--times") keepTimes = true;
    else if (args[i].startsWith("-") || bundle) { console.error(`unexpected argument ${args[i]}`); process.exit(2); }
    else bundle = args[i];
  }
  const { readFileSync } = await import("node:fs");
  const items = readFileSync(0, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  if (!bundle || !items.length) {
    console.error("usage: node bench.mjs BUNDLE [--n 200] [--warmup 10] [--threads N] < items.jsonl");
    process.exit(2);
  }
  const r = await timeModel(bundle, items, opts);
  if (!keepTimes) delete r.times_ms;
  console.log(JSON.stringify({ runtime: `node ${process.version}, onnxruntime-node`, ...r }));
}
