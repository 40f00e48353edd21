#!/usr/bin/env node
// node export/js/predict.mjs BUNDLE [--batch-size N] [--threads N] [--no-verify] [--encode] < items.jsonl > predictions.jsonl
//
// Each stdin line is one item: a JSON object of the task's fields (multiple choice: with its choices),
// or a JSON string (an already-rendered input). Each stdout line is its prediction, as the Python
// runtime's EdgeModel.predict: {"label": ..., "probs": {...}}. Lines are predicted in batches of
// --batch-size (default: 1 for a dynamic INT8 bundle, else 32, as Python), as they arrive. --encode writes each item's model inputs instead (input_ids,
// token_type_ids; multiple choice: one list per choice), to compare tokenization with Python's.
// An app-only model the bundle lists (format 2, `export --text-model`: text_model.onnx) is skipped, and
// stderr says so: "skipped app-only model text (text_model.onnx): <why>".
import { createInterface } from "node:readline";

import { BundleError, EdgeModel, skippedNote } from "./edgedistill.mjs";

const USAGE = "usage: node predict.mjs BUNDLE [--batch-size N] [--threads N] [--no-verify] [--encode] < items.jsonl";

function parseArgs(argv) {
  const opts = { bundle: null, batchSize: null, threads: null, verify: true, encode: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--batch-size") opts.batchSize = Number(argv[++i]);
    else if (a === "--threads") opts.threads = Number(argv[++i]);
    else if (a === "--no-verify") opts.verify = false;
    else if (a === "--encode") opts.encode = true;
    else if (a === "-h" || a === "--help") { console.log(USAGE); process.exit(0); }
    else if (a.startsWith("-") || opts.bundle) throw new BundleError(`unexpected argument ${a}\n${USAGE}`);
    else opts.bundle = a;
  }
  if (!opts.bundle) throw new BundleError(USAGE);
  if (opts.batchSize !== null && !(opts.batchSize >= 1)) throw new BundleError("--batch-size must be a positive integer");
  return opts;
}

function encoded(model, item) {
  const text = model.render(item);
  const encs = model.family === "multiple-choice" ? model.choicesOf(item).map((c) => model.encodeOne(text, c)) : [model.encodeOne(text)];
  const one = model.family === "multiple-choice" ? (f) => encs.map(f) : (f) => f(encs[0]);
  return { input_ids: one((e) => e.ids), token_type_ids: one((e) => e.types) };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const model = await EdgeModel.load(opts.bundle, { verify: opts.verify, threads: opts.threads });
  for (const m of model.skippedModels) process.stderr.write(`${skippedNote(m)}\n`);
  opts.batchSize ??= model.batchSize; // 1 for dynamic INT8 bundles, else 32, as Python
  let batch = [];
  let n = 0;
  const flush = async () => {
    if (!batch.length) return;
    const preds = opts.encode ? batch.map((it) => encoded(model, it)) : await model.predict(batch, { batchSize: opts.batchSize });
    process.stdout.write(preds.map((p) => JSON.stringify(p)).join("\n") + "\n");
    batch = [];
  };
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    n++;
    if (!line.trim()) continue;
    try {
      batch.push(JSON.parse(line));
    } catch (e) {
      throw new BundleError(`stdin:${n}: malformed JSON line (${e.message}); each line must be one JSON object or string`);
    }
    if (batch.length >= opts.batchSize) await flush();
  }
  await flush();
}

main().catch((e) => {
  process.stderr.write(`error: ${e instanceof BundleError ? e.message : e.stack ?? e}\n`);
  process.exit(e instanceof BundleError ? 2 : 1);
});
