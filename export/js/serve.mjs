#!/usr/bin/env node
// A static file server for demo.html: serves export/js/ (the page, the module, node_modules) and mounts
// bundle directories under URL prefixes. It sends the cross-origin isolation headers (COOP/COEP) that
// onnxruntime-web needs for multi-threaded WASM. Local use only: it binds 127.0.0.1.
//
//   node export/js/serve.mjs [--port 8000] [--mount /bundle/=runs/x/bundle ...]
//   -> open http://127.0.0.1:8000/demo.html?bundle=/bundle/
import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = dirname(fileURLToPath(import.meta.url));

const TYPES = {
  ".html": "text/html; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
  ".ort": "application/octet-stream", ".map": "application/json", ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8", ".css": "text/css; charset=utf-8",
};

/** Start serving; mounts: {"/bundle/": "/path/to/bundle", ...}. Resolves to {server, url, close()}. */
export function serve({ root = HERE, mounts = {}, port = 0, host = "127.0.0.1" } = {}) {
  const table = Object.entries(mounts)
    .map(([prefix, dir]) => [`/${prefix.replace(/^\/+|\/+$/g, "")}/`, resolve(dir)])
    .concat([["/", resolve(root)]])
    .sort((a, b) => b[0].length - a[0].length);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const [prefix, dir] = table.find(([p]) => path.startsWith(p) || `${path}/` === p);
    let file = join(dir, path.slice(prefix.length));
    if (file !== dir && !file.startsWith(dir + sep)) file = null; // no ../ out of a mount
    let st = null;
    try {
      st = file && statSync(file);
      if (st && st.isDirectory()) { file = join(file, "index.html"); st = statSync(file); }
    } catch { st = null; }
    const headers = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                      "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store" };
    if (!st || !st.isFile()) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
      res.end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, { ...headers, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Content-Length": st.size });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => {
      const url = `http://${host}:${server.address().port}/`;
      ok({ server, url, close: () => new Promise((done) => { server.closeAllConnections?.(); server.close(done); }) });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let port = 8000;
  const mounts = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") port = Number(args[++i]);
    else if (args[i] === "--mount") {
      const [prefix, dir] = args[++i].split("=");
      mounts[prefix] = dir;
    } else {
      console.error("usage: node serve.mjs [--port 8000] [--mount /bundle/=BUNDLE_DIR ...]");
      process.exit(2);
    }
  }
  const { url } = await serve({ mounts, port });
  console.log(`serving ${HERE} at ${url}${Object.entries(mounts).map(([p, d]) => `\n  ${p} -> ${resolve(d)}`).join("")}`);
  console.log(`open ${url}demo.html${Object.keys(mounts)[0] ? `?bundle=${Object.keys(mounts)[0]}` : ""}`);
}
