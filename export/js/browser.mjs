#!/usr/bin/env node
// Run a bundle in headless Chromium (onnxruntime-web, WASM) through demo.html: the browser twin of
// predict.mjs, for tests and benchmarks.
//
//   node export/js/browser.mjs BUNDLE [--threads N] [--batch-size N] < items.jsonl > predictions.jsonl
//   node export/js/browser.mjs BUNDLE --bench [--n 200] [--warmup 10] [--threads N] [--times] < items.jsonl   -> one JSON line
//
// Chromium: $CHROMIUM or /usr/bin/chromium (Debian: apt-get install chromium), driven by playwright-core.
// It is started with no network beyond the local server this script starts (127.0.0.1, random port).
// App-only models the bundle lists (format 2: text_model.onnx) are skipped, as predict.mjs: stderr says so.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { serve } from "./serve.mjs";

export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                              "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-extensions"];

/** Open demo.html in headless Chromium with the bundle mounted at /bundle/; calls fn(page, url), then cleans up. */
export async function withPage(bundle, fn, { executablePath = process.env.CHROMIUM || "/usr/bin/chromium", log = () => {} } = {}) {
  const srv = await serve({ mounts: { "/bundle/": resolve(bundle) } });
  const browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage();
    const requests = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("console", (m) => log(`[page ${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => log(`[page error] ${e.message}`));
    await page.goto(`${srv.url}demo.html`);
    await page.waitForFunction(() => window.edgedistillReady === true);
    const result = await fn(page, srv.url);
    const outside = requests.filter((u) => !u.startsWith(srv.url) && !u.startsWith("data:") && !u.startsWith("blob:"));
    if (outside.length) throw new Error(`the page requested URLs outside the local server: ${outside.slice(0, 5).join(", ")}`);
    return { result, requests };
  } finally {
    await browser.close();
    await srv.close();
  }
}

async function main() {
  const args = process.argv.slice(2);
  const opts = { threads: null, batchSize: undefined, bench: false, n: 200, warmup: 10, times: false };
  let bundle = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--threads") opts.threads = Number(args[++i]);
    else if (a === "--batch-size") opts.batchSize = Number(args[++i]);
    else if (a === "--bench") opts.bench = true;
    else if (a === "--times") opts.times = true;
    else if (a === "--n") opts.n = Number(args[++i]);
    else if (a === "--warmup") opts.warmup = Number(args[++i]);
    else if (a.startsWith("-") || bundle) throw new Error(`unexpected argument ${a}`);
    else bundle = a;
  }
  if (!bundle) throw new Error("usage: node browser.mjs BUNDLE [--threads N] [--batch-size N] [--bench] < items.jsonl");
  const items = readFileSync(0, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const log = (s) => process.stderr.write(`${s}\n`);
  const { result } = await withPage(bundle, async (page) => {
    if (opts.bench) {
      const r = await page.evaluate(async ({ items, opts }) => {
        const { timeModel } = await import("./bench.mjs");
        const r = await timeModel("/bundle/", items, opts);
        return { runtime: `chromium ${navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1]}, onnxruntime-web wasm`, crossOriginIsolated, ...r };
      }, { items, opts: { n: opts.n, warmup: opts.warmup, threads: opts.threads } });
      if (!opts.times) delete r.times_ms;
      return r;
    }
    await page.evaluate(({ threads }) => window.edgedistill.load("/bundle/", { threads }), { threads: opts.threads });
    for (const note of await page.evaluate(() => window.edgedistill.skippedNotes())) log(note);
    return page.evaluate(({ items, batchSize }) => window.edgedistill.predict(items, { batchSize }), { items, batchSize: opts.batchSize });
  }, { log });
  process.stdout.write(opts.bench ? `${JSON.stringify(result)}\n` : result.map((p) => JSON.stringify(p)).join("\n") + (result.length ? "\n" : ""));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    process.stderr.write(`error: ${e.stack ?? e}\n`);
    process.exit(1);
  });
}
