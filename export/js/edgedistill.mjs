// Run an edgedistill bundle in JavaScript: onnxruntime-node under Node, onnxruntime-web (WASM) in the
// browser, the bundle's tokenizer.json through @huggingface/tokenizers. The same predictions as the
// Python runtime (edgedistill/edge/runtime.py, EdgeModel.predict): the task's input template, truncation
// to the manifest's max_length (longest_first, as HF tokenizers), batches padded to their longest item
// (one item per call for a dynamic INT8 bundle, else 32: answer_batch_size in Python), multiple choice
// as (input, choice) pairs, softmax in float64.
//
//   import { EdgeModel } from "./edgedistill.mjs";
//   const model = await EdgeModel.load("runs/x/bundle");          // a directory (Node) or a URL (browser)
//   await model.predict([{ text: "my card was charged twice" }]);
//   // -> [{ label: "billing", probs: { billing: 0.93, ... } }]
//   // a numeric task's ranking student (expressions.mjs): [{ label: "84 / 2", answer: "42", probs: { ... } }]
//
// In the browser, map the bare imports (see demo.html):
//   "onnxruntime-web": ".../onnxruntime-web/dist/ort.wasm.min.mjs",
//   "@huggingface/tokenizers": ".../@huggingface/tokenizers/dist/tokenizers.mjs"
// Nothing is fetched but the bundle's own files (and, in the browser, onnxruntime-web's .wasm).
//
// Bundle format 2 (an `export --text-model` bundle) lists app-only models (APP_ROLES: the text-in model,
// whose tokenizer op needs onnxruntime-extensions) beside the token-id model: they are read by no
// runtime, so load skips them (not fetched, not hashed) and says so in `model.skippedModels`.
// Format 3 (export --cascade): a static bundle in cascade/ answers where its top probability >= cascade.threshold.

import { Tokenizer } from "@huggingface/tokenizers";
import { candidates, valueOf } from "./expressions.mjs";

// As edgedistill/edge/runtime.py (tests/test_js_runtime.py checks they are equal): the newest bundle format
// this runtime reads, and the models for apps that a bundle lists but no runtime loads.
export const FORMAT_VERSION = 3;
export const APP_ROLES = ["text"];
export const SUPPORTED_FAMILIES = ["sequence-classification", "multiple-choice"];
const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";

export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

// ------------------------------------------------------------------ files

function joinPath(base, name) {
  if (IS_NODE && !/^[a-z]+:\/\//i.test(String(base))) return `${String(base).replace(/\/+$/, "")}/${name}`;
  return new URL(name, String(base).endsWith("/") ? String(base) : `${base}/`).href;
}

async function readBytes(base, name) {
  const where = joinPath(base, name);
  if (IS_NODE && !/^[a-z]+:\/\//i.test(where)) {
    const { readFile } = await import("node:fs/promises");
    try {
      return new Uint8Array(await readFile(where));
    } catch (e) {
      if (e.code === "ENOENT") return null;
      throw e;
    }
  }
  const r = await fetch(where);
  if (r.status === 404) return null;
  if (!r.ok) throw new BundleError(`${where}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function sha256Hex(bytes) {
  if (IS_NODE) {
    const { createHash } = await import("node:crypto");
    return createHash("sha256").update(bytes).digest("hex");
  }
  if (!globalThis.crypto?.subtle) return null; // not a secure context (http:// other than localhost): cannot hash
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

const utf8 = new TextDecoder("utf-8", { fatal: true }); // a manifest or tokenizer that is not UTF-8 is refused

/** Node: the bundle's file `name`, symlinks resolved, lies inside the bundle (a URL bundle: the server decides). */
async function checkInside(bundle, name) {
  if (!IS_NODE || /^[a-z]+:\/\//i.test(String(bundle))) return;
  const { realpath } = await import("node:fs/promises");
  const { isAbsolute, relative } = await import("node:path");
  let real;
  try {
    real = await realpath(joinPath(bundle, name));
  } catch (e) {
    if (e.code === "ENOENT") return; // reading it says it is missing
    throw e;
  }
  const rel = relative(await realpath(String(bundle)), real);
  if (rel === ".." || rel.startsWith("../") || rel.startsWith("..\\") || isAbsolute(rel)) {
    throw new BundleError(`${joinPath(bundle, name)}: a symlink that resolves outside the bundle (to ${real}); a bundle ` +
      "holds its own files: copy the real file in, or re-export the bundle");
  }
}

// ------------------------------------------------------------------ manifest

/** role -> file of the models this runtime runs: the manifest's models but the app-only ones (APP_ROLES),
 * as Python's runtime_models. */
export function runtimeModels(manifest) {
  return Object.fromEntries(Object.entries(manifest.models ?? {}).filter(([role]) => !APP_ROLES.includes(role)));
}

/** The files load reads and hashes, [model, tokenizer] (as Python's loaded_files: not the app-only models). */
export function loadedFiles(manifest) {
  return [runtimeModels(manifest).model ?? "model.onnx", manifest.tokenizer?.file ?? "tokenizer.json"];
}

/** The app-only models a bundle lists, which load skips: [{role, file, reason}]. */
export function appModels(manifest) {
  const runs = `this runtime answers with ${loadedFiles(manifest).join(" and ")}`;
  const ops = manifest.text_model?.custom_ops;
  return Object.entries(manifest.models ?? {}).filter(([role]) => APP_ROLES.includes(role)).map(([role, file]) => ({
    role, file,
    reason: role === "text"
      ? `the text-in model for apps tokenizes in its graph with onnxruntime-extensions' custom ops` +
        `${ops ? ` (${ops.join(", ")})` : ""}, which edgedistill's runtimes do not load; ${runs}`
      : `an app-only model, which edgedistill's runtimes do not load; ${runs}`,
  }));
}

/** The line predict.mjs and browser.mjs print (stderr) for a model load skipped. */
export function skippedNote({ role, file, reason }) {
  return `skipped app-only model ${role} (${file}): ${reason}`;
}

// What a manifest may say: the rules of Python's validate_manifest (edgedistill/edge/runtime.py), checked by load
// before anything else is read (tests/test_fuzz_bundle.py runs the same tampered bundles through both).
export const MANIFEST_LIMITS = { maxManifestBytes: 16 << 20, maxTokens: 1 << 20, maxTokenId: 2 ** 31 - 1 };
const FAMILY_ROLES = { "sequence-classification": ["model"], "multiple-choice": ["model"],
  seq2seq: ["encoder", "decoder", "decoder_with_past"] };
const OPTIONAL_ROLES = ["decoder_with_past"]; // a bert2bert student's decoder has no past keys/values
const TASK_TYPES = ["classification", "multiple-choice", "numeric"];
const SHA256_HEX = /^[0-9a-f]{64}$/;
export const INTEGRITY_NOTE = "The sha256 hashes in manifest.json prove integrity, not origin: they show that a file " +
  "is the one the manifest lists, not who made the bundle (anyone who can change a file can change the manifest " +
  "too). Load bundles only from a source you trust.";

/** A path that stays inside the folder it is joined to (as Python's relative_name): / separators, no absolute
 * path, drive, backslash, NUL, '..', '.' or empty part. */
export function relativeName(name) {
  return typeof name === "string" && name !== "" && !name.includes("\\") && !name.includes("\0") &&
    !/^[A-Za-z]:/.test(name) && name.split("/").every((p) => p !== "" && p !== "." && p !== "..");
}

function jsonType(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v === "object" ? "object" : typeof v;
}

function badKey(where, dotted, parent, key, expected) {
  const got = key in parent ? `${jsonType(parent[key])} ${JSON.stringify(parent[key]).slice(0, 80)}` : "missing";
  return new BundleError(`${where}: \`${dotted}\` must be ${expected}, not ${got}; re-export the bundle (edgedistill export)`);
}

/** parent[key] when ok(it), else a BundleError naming prefix.key and what it must be; optional: absent or null is fine. */
function checked(where, parent, key, ok, expected, { prefix = "", optional = false } = {}) {
  if (optional && (parent[key] ?? null) === null) return null;
  if (!(key in parent) || !ok(parent[key])) throw badKey(where, prefix ? `${prefix}.${key}` : key, parent, key, expected);
  return parent[key];
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const intIn = (lo, hi = Infinity) => (v) => Number.isInteger(v) && v >= lo && v <= hi;
const NAME_RULE = "a file name inside the bundle (a relative path with / separators and no '..', '.', empty part, " +
  "absolute path or backslash)";

function checkTemplate(where, template) {
  // as Python's string.Formatter: {{ and }} are braces; every other { opens a field that } closes
  for (const m of template.matchAll(/\{\{|\}\}|\{([^{}]*)\}|[{}]/g)) {
    if (m[0] === "{{" || m[0] === "}}") continue;
    if (m[1] === undefined) {
      throw new BundleError(`${where}: \`task.input\` ${JSON.stringify(template)} is not a template (a lone ${m[0]}); re-export the bundle`);
    }
    if (!/^[\p{L}_][\p{L}\p{N}_]*$/u.test(m[1])) {
      throw new BundleError(`${where}: \`task.input\` uses ${m[0]}: only plain {field} names are allowed (no position, ` +
        "attribute, index, conversion or format spec); re-export the bundle");
    }
  }
}

/** Throw a BundleError naming the key and what it must be, unless the manifest is one a runtime can load (Python's
 * validate_manifest): the keys present with their types, every model and the tokenizer a relative path inside the
 * bundle, the roles its family runs, and (hashed) every file load reads listed in `files` with its sha256. */
export function validateManifest(manifest, where = "manifest.json", { hashed = true } = {}) {
  if (!isObject(manifest)) {
    throw new BundleError(`${where}: a JSON ${jsonType(manifest)} where a JSON object was expected; re-export the bundle`);
  }
  const version = manifest.format_version;
  if (Number.isInteger(version) && version > FORMAT_VERSION) {
    throw new BundleError(`${where}: bundle format ${version} is newer than this runtime understands (${FORMAT_VERSION}); upgrade export/js or re-export`);
  }
  checked(where, manifest, "format_version", intIn(1, FORMAT_VERSION), `an integer from 1 to ${FORMAT_VERSION}`);
  if (manifest.cascade !== undefined) checkCascade(where, manifest);
  const families = Object.keys(FAMILY_ROLES);
  const family = checked(where, manifest, "family", (v) => families.includes(v), `one of ${families.join(", ")}`);
  const task = checked(where, manifest, "task", isObject, "an object with `type` and `input`");
  checked(where, task, "type", (v) => TASK_TYPES.includes(v), `one of ${TASK_TYPES.join(", ")}`, { prefix: "task" });
  checkTemplate(where, checked(where, task, "input", (v) => typeof v === "string",
    'a template of the input\'s fields, as "{text}"', { prefix: "task" }));
  checked(where, task, "choices", (v) => typeof v === "string", "the name of the field that holds the options",
    { prefix: "task", optional: true });
  const { maxTokens, maxTokenId } = MANIFEST_LIMITS;
  checked(where, manifest, "max_length", intIn(1, maxTokens), `an integer from 1 to ${maxTokens}`);
  const tokenizer = checked(where, manifest, "tokenizer", isObject, "an object with `file` and `pad_token_id`");
  checked(where, tokenizer, "file", relativeName, NAME_RULE, { prefix: "tokenizer" });
  checked(where, tokenizer, "pad_token_id", intIn(0, maxTokenId), "a token id (an integer >= 0)", { prefix: "tokenizer" });
  const models = checked(where, manifest, "models", isObject, "an object of role -> file");
  const roles = FAMILY_ROLES[family];
  for (const role of Object.keys(models)) {
    if (!roles.includes(role) && !APP_ROLES.includes(role)) {
      throw new BundleError(`${where}: \`models.${role}\`: not a role of a ${family} bundle (those are ` +
        `${[...roles, ...APP_ROLES].join(", ")}); re-export the bundle`);
    }
    checked(where, models, role, relativeName, NAME_RULE, { prefix: "models" });
  }
  for (const role of roles) {
    if (!(role in models) && !OPTIONAL_ROLES.includes(role)) {
      throw badKey(where, `models.${role}`, {}, role, `the file of the ${family} bundle's \`${role}\` model`);
    }
  }
  const labelList = (v) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string") && new Set(v).size === v.length;
  checked(where, manifest, "labels", labelList, "a list of the model's output labels (distinct texts, in output order)" +
    (family === "sequence-classification" ? "" : " or null"), { optional: family !== "sequence-classification" });
  if (family === "seq2seq") {
    for (const key of ["decoder_start_token_id", "eos_token_id"]) checked(where, manifest, key, intIn(0, maxTokenId), "a token id (an integer >= 0)");
    checked(where, manifest, "max_answer_tokens", intIn(1, maxTokens), `an integer from 1 to ${maxTokens}`, { optional: true });
  }
  const quantization = checked(where, manifest, "quantization", isObject, "an object", { optional: true });
  checked(where, quantization ?? {}, "mode", (v) => typeof v === "string", "text", { prefix: "quantization", optional: true });
  const files = checked(where, manifest, "files", isObject, "an object of file -> {sha256, bytes}");
  for (const [name, entry] of Object.entries(files)) {
    const key = `files[${JSON.stringify(name)}]`;
    if (!isObject(entry)) throw badKey(where, key, files, name, "an object with the file's `sha256`");
    checked(where, entry, "sha256", (v) => typeof v === "string" && SHA256_HEX.test(v), "a sha256 (64 lowercase hex digits)", { prefix: key });
    checked(where, entry, "bytes", intIn(0), "the file's size (an integer >= 0)", { prefix: key, optional: true });
  }
  if (!hashed) return;
  for (const [key, name] of Object.entries(loadedKeys(manifest))) {
    if (!(name in files)) {
      throw new BundleError(`${where}: \`${key}\` is ${JSON.stringify(name)}, which \`files\` does not list with a sha256: ` +
        "the runtime loads only files it can verify; re-export the bundle");
    }
  }
}

/** The bundle's manifest.json: UTF-8 JSON, an object, inside the bundle, and valid (validateManifest). */
export const CASCADE_FORMAT = 3;
export const CASCADE_DIR = "cascade";

/** Python's _check_cascade: a classifier bundle of format 3 whose static tier lies in cascade/, P in (0, 1]. */
function checkCascade(where, manifest) {
  const c = checked(where, manifest, "cascade", isObject, "an object (bundle, threshold, manifest_sha256)");
  if (manifest.family !== "sequence-classification") {
    throw new BundleError(`${where}: cascade: only classifier bundles cascade (family ${JSON.stringify(manifest.family)}); re-export the bundle`);
  }
  checked(where, manifest, "format_version", (v) => v === CASCADE_FORMAT, `${CASCADE_FORMAT} (the bundle has a cascade)`);
  checked(where, c, "bundle", (v) => v === CASCADE_DIR, JSON.stringify(CASCADE_DIR), { prefix: "cascade" });
  checked(where, c, "threshold", (v) => typeof v === "number" && v > 0 && v <= 1, "a probability in (0, 1]", { prefix: "cascade" });
  checked(where, c, "manifest_sha256", (v) => typeof v === "string" && v.length === 64,
    "the sha256 of the static bundle's manifest.json", { prefix: "cascade" });
}

async function readManifest(bundle, hashed) {
  const where = joinPath(bundle, "manifest.json");
  await checkInside(bundle, "manifest.json");
  const bytes = await readBytes(bundle, "manifest.json");
  if (bytes === null) throw new BundleError(`${bundle}: no manifest.json; is this a bundle made by \`edgedistill export\`?`);
  if (bytes.length > MANIFEST_LIMITS.maxManifestBytes) {
    throw new BundleError(`${where}: ${bytes.length} bytes, more than a manifest holds (${MANIFEST_LIMITS.maxManifestBytes}); re-export the bundle`);
  }
  let text, manifest;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new BundleError(`${where}: not UTF-8 text; re-export the bundle`);
  }
  try {
    manifest = JSON.parse(text);
  } catch (e) {
    throw new BundleError(`${where}: corrupt manifest (${e.message}); re-export the bundle`);
  }
  validateManifest(manifest, where, { hashed });
  return manifest;
}

/** A classification model has a label per output: checked at load where the output width is static, else at predict. */
/** A cascade's static tier: its own bundle in cascade/, whose manifest.json the top manifest seals. */
async function loadStaticTier(bundle, manifest, options) {
  const name = `${CASCADE_DIR}/manifest.json`;
  await checkInside(bundle, name);
  const bytes = await readBytes(bundle, name);
  if (bytes === null) throw new BundleError(`${joinPath(bundle, name)}: missing; copy the whole bundle directory`);
  if (options.verify && (await sha256Hex(bytes)) !== manifest.cascade.manifest_sha256) {
    throw new BundleError(`${joinPath(bundle, name)}: sha256 mismatch with cascade.manifest_sha256; re-export the bundle. ${INTEGRITY_NOTE}`);
  }
  const tier = await EdgeModel.load(joinPath(bundle, CASCADE_DIR), options);
  if (JSON.stringify(tier.labels) !== JSON.stringify(manifest.labels) || tier.family !== "sequence-classification") {
    throw new BundleError(`${joinPath(bundle, name)}: the static tier's labels ${JSON.stringify(tier.labels)} differ from the bundle's; re-export`);
  }
  return tier;
}

function checkLabelWidth(where, manifest, width) {
  if (manifest.family === "sequence-classification" && typeof width === "number" && width !== manifest.labels.length) {
    throw new BundleError(`${where}: \`labels\` lists ${manifest.labels.length} labels but the model outputs ${width} ` +
      "scores per input: each output needs its label, in order; re-export the bundle");
  }
}

/** manifest key -> file, of the files load reads (as Python's loaded_files), once validateManifest has passed. */
function loadedKeys(manifest) {
  return Object.fromEntries([...Object.entries(runtimeModels(manifest)).map(([role, name]) => [`models.${role}`, name]),
    ["tokenizer.file", manifest.tokenizer.file]]);
}

// ------------------------------------------------------------------ text

// The task's input template's field names, as Python's string.Formatter().parse gives them.
function templateFields(template) {
  const fields = [];
  template.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (m, inner) => {
    if (inner !== undefined && inner !== "") fields.push(inner.split(/[!:]/)[0]);
    return m;
  });
  return fields;
}

// str(value) as Python writes it, for the JSON types an item can hold.
function pyStr(v) {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") return v;
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(v); // JSON cannot tell 1 from 1.0
  return JSON.stringify(v);
}

function formatTemplate(template, item) {
  return template.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (m, inner) => {
    if (m === "{{") return "{";
    if (m === "}}") return "}";
    if (/[!:.[]/.test(inner)) throw new BundleError(`the task's input ${JSON.stringify(template)} uses {${inner}}: only plain {field} templates are supported in JS`);
    return pyStr(item[inner]);
  });
}

function softmax(logits) {
  const m = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

// ------------------------------------------------------------------ the model

export class EdgeModel {
  constructor(ort, manifest, session, tokenizer, tokenizerJson = null) {
    this.ort = ort;
    this.manifest = manifest;
    this.session = session;
    this.tokenizer = tokenizer;
    this.family = manifest.family;
    this.task = manifest.task;
    this.maxLength = Number(manifest.max_length);
    this.labels = manifest.labels ?? null;
    this.padId = Number(manifest.tokenizer.pad_token_id);
    // Items per call, as Python's edge.runtime.answer_batch_size: dynamic INT8 scales each activation
    // tensor by its own min/max, so batching would make an item's answer depend on its neighbours.
    this.batchSize = manifest.quantization?.mode === "dynamic" ? 1 : 32;
    // The app-only models the bundle lists (format 2: the text-in model), not loaded: [{role, file, reason}].
    this.skippedModels = appModels(manifest);
    this.static = null; // a cascade's static tier (format 3), loaded by load
    this.inputNames = session.inputNames;
    this.outputName = session.outputNames[0];
    this._fields = templateFields(this.task.input);
    // Tokens the model has no id for become its unk token, as in HF tokenizers. (tokenizers.js runs a
    // WordLevel model, as in tests/tiny.py, as whole pre-tokenized words with no unk of its own.)
    const unk = tokenizer.model.unk_token ?? tokenizerJson?.model?.unk_token;
    this._unkId = tokenizer.model.unk_token_id ?? (unk != null ? tokenizer.token_to_id(unk) : undefined) ?? 0;
    this._added = {
      single: tokenizer.post_processor ? tokenizer.post_processor([], null, true).tokens.length : 0,
      pair: tokenizer.post_processor ? tokenizer.post_processor([], [], true).tokens.length : 0,
    };
  }

  /**
   * Load a bundle: a directory path (Node) or a URL (browser; relative URLs resolve against the page).
   * options: ort (an onnxruntime module; default onnxruntime-node under Node, onnxruntime-web elsewhere),
   *          verify (check the sha256 the manifest lists; default true), threads (intra-op threads),
   *          sessionOptions (merged into onnxruntime's).
   */
  static async load(bundle, { ort = null, verify = true, threads = null, sessionOptions = {} } = {}) {
    if (!IS_NODE && typeof location !== "undefined") bundle = new URL(String(bundle), location.href).href;
    ort = ort ?? (await import(IS_NODE ? "onnxruntime-node" : "onnxruntime-web"));
    const manifest = await readManifest(bundle, verify);
    if (!SUPPORTED_FAMILIES.includes(manifest.family)) {
      throw new BundleError(`${bundle}: the ${manifest.family} family (task type ${manifest.task?.type}) is not supported in JS yet; ` +
        `JS runs ${SUPPORTED_FAMILIES.join(" and ")} bundles (use the Python runtime, edge_runtime.py, for this one)`);
    }
    const [modelFile, tokFile] = loadedFiles(manifest);
    const files = {};
    for (const name of [modelFile, tokFile]) {
      await checkInside(bundle, name);
      const bytes = await readBytes(bundle, name);
      if (bytes === null) throw new BundleError(`${joinPath(bundle, name)}: missing bundle file listed in the manifest; copy the whole bundle directory`);
      if (verify) {
        const got = await sha256Hex(bytes);
        if (got === null) {
          throw new BundleError(`${joinPath(bundle, name)}: cannot check its sha256 here (no crypto.subtle: the page is not ` +
            "a secure context); serve it over https or from localhost, or load with { verify: false }");
        }
        if (got !== manifest.files[name].sha256) {
          throw new BundleError(`${joinPath(bundle, name)}: sha256 mismatch: the file is corrupt or was changed after export; re-copy or re-export the bundle. ${INTEGRITY_NOTE}`);
        }
      }
      files[name] = bytes;
    }
    const opts = { executionProviders: [IS_NODE ? "cpu" : "wasm"], graphOptimizationLevel: "all", ...sessionOptions };
    if (threads) {
      opts.intraOpNumThreads = threads;
      opts.interOpNumThreads = 1;
      if (!IS_NODE && ort.env?.wasm) ort.env.wasm.numThreads = threads;
    }
    let session;
    try {
      session = await ort.InferenceSession.create(files[modelFile], opts);
    } catch (e) {
      throw new BundleError(`${bundle}: onnxruntime cannot load the model (${String(e.message ?? e).slice(0, 200)}); re-export the bundle`);
    }
    checkLabelWidth(joinPath(bundle, "manifest.json"), manifest, session.outputMetadata?.[0]?.shape?.at(-1));
    let tokenizerJson, tokenizer;
    try {
      tokenizerJson = JSON.parse(utf8.decode(files[tokFile]));
      tokenizer = new Tokenizer(tokenizerJson, {});
    } catch (e) {
      throw new BundleError(`${joinPath(bundle, tokFile)}: the tokenizer cannot read it (${String(e.message ?? e).slice(0, 200)}); re-export the bundle`);
    }
    const model = new EdgeModel(ort, manifest, session, tokenizer, tokenizerJson);
    if (manifest.cascade) model.static = await loadStaticTier(bundle, manifest, { ort, verify, threads, sessionOptions });
    return model;
  }

  async close() {
    await this.session.release?.();
    await this.static?.close();
  }

  // ---------------------------------------------------------------- inputs

  /** The model's input text for an item: an object of the task's fields, or an already-rendered string. */
  render(item) {
    if (typeof item === "string") return item;
    const missing = this._fields.filter((f) => !(f in item));
    if (missing.length && "input" in item) return item.input;
    if (missing.length) {
      throw new BundleError(`input is missing the field '${missing[0]}'; the task renders ${JSON.stringify(this.task.input)} ` +
        `from the fields [${this._fields.map((f) => `'${f}'`).join(", ")}], or pass the rendered text as a string`);
    }
    return formatTemplate(this.task.input, item);
  }

  /** What a multiple-choice model ranks for an item: a numeric task's one-operation expressions, else its options. */
  choicesOf(item) {
    if (this.task.type === "numeric") return candidates(this.render(item));
    const field = this.task.choices || "choices";
    if (typeof item === "string" || !(field in item)) throw new BundleError(`a multiple-choice item needs its options in the field '${field}'`);
    return item[field].map(pyStr);
  }

  /** ids / attention mask / type ids of one text (or pair), truncated as tokenizers' enable_truncation(max_length) does. */
  encodeOne(first, second = null) {
    const tok = this.tokenizer;
    let a = tok.encode(first, { add_special_tokens: false }).tokens;
    let b = second === null ? null : tok.encode(second, { add_special_tokens: false }).tokens;
    const added = b === null ? this._added.single : this._added.pair;
    const budget = Math.max(0, this.maxLength - added);
    // HF tokenizers' TruncationStrategy::LongestFirst (utils/truncation.rs), direction right, stride 0
    if (b === null) {
      if (a.length > budget) a = a.slice(0, budget);
    } else if (a.length + b.length > budget) {
      let n1 = a.length, n2 = b.length;
      const swap = n1 > n2;
      if (swap) [n1, n2] = [n2, n1];
      n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
      if (n1 + n2 > budget) {
        n1 = Math.floor(budget / 2);
        n2 = n1 + (budget % 2);
      }
      if (swap) [n1, n2] = [n2, n1];
      a = a.slice(0, n1);
      b = b.slice(0, n2);
    }
    const out = tok.post_processor ? tok.post_processor(a, b, true) : { tokens: b ? a.concat(b) : a };
    const ids = out.tokens.map((t) => tok.token_to_id(t) ?? this._unkId);
    const types = out.token_type_ids ?? new Array(ids.length).fill(0);
    return { ids, types };
  }

  /** Model inputs (onnxruntime tensors) for a batch: (n, seq), or (n, choices, seq) for multiple choice, from
   * the choices given (as predict passes the ones it built) or built here. */
  encode(items, choices = null) {
    const texts = items.map((it) => this.render(it));
    let encs, dims;
    if (this.family === "multiple-choice") {
      choices = choices ?? items.map((it) => this.choicesOf(it));
      if (new Set(choices.map((c) => c.length)).size !== 1) {
        throw new BundleError("all items of one batch need the same number of choices; predict them in separate calls");
      }
      const k = choices[0].length;
      encs = texts.flatMap((t, i) => choices[i].map((c) => this.encodeOne(t, c)));
      dims = [items.length, k];
    } else {
      encs = texts.map((t) => this.encodeOne(t));
      dims = [items.length];
    }
    const length = Math.max(...encs.map((e) => e.ids.length));
    const size = encs.length * length;
    const ids = new BigInt64Array(size).fill(BigInt(this.padId));
    const mask = new BigInt64Array(size);
    const types = new BigInt64Array(size);
    encs.forEach((e, i) => {
      for (let j = 0; j < e.ids.length; j++) {
        ids[i * length + j] = BigInt(e.ids[j]);
        mask[i * length + j] = 1n;
        types[i * length + j] = BigInt(e.types[j] ?? 0);
      }
    });
    const shape = [...dims, length];
    const all = { input_ids: ids, attention_mask: mask, token_type_ids: types };
    const feeds = {};
    for (const name of this.inputNames) {
      feeds[name] = new this.ort.Tensor("int64", all[name] ?? new BigInt64Array(size), shape);
    }
    return feeds;
  }

  // ---------------------------------------------------------------- inference

  /** Raw logits, one Float32Array row per item. */
  async run(feeds) {
    const out = (await this.session.run(feeds))[this.outputName];
    const [n, k] = [out.dims[0], out.dims[out.dims.length - 1]];
    return Array.from({ length: n }, (_, i) => out.data.subarray(i * k, (i + 1) * k));
  }

  /** [{label, probs}] for items, in batches of batchSize (as Python's EdgeModel.predict; default this.batchSize).
   * A cascade adds `tier`: the static model answers where its top probability >= P, the transformer elsewhere. */
  async predict(items, { batchSize = this.batchSize } = {}) {
    items = Array.from(items);
    if (!this.static) return this._predictOwn(items, batchSize);
    const p = this.manifest.cascade.threshold;
    const out = (await this.static.predict(items, { batchSize })).map((a) => ({ ...a, tier: "static" }));
    const hard = out.map((a, i) => (Math.max(...Object.values(a.probs)) < p ? i : -1)).filter((i) => i >= 0);
    const answers = await this._predictOwn(hard.map((i) => items[i]), batchSize);
    hard.forEach((i, j) => { out[i] = { ...answers[j], tier: "transformer" }; });
    return out;
  }

  async _predictOwn(items, batchSize) {
    const out = [];
    for (let i = 0; i < items.length; i += batchSize) {
      const batch = items.slice(i, i + batchSize);
      // built once per item, for encode and answer to reuse (a numeric task's: every expression over its numbers)
      const choices = this.family === "multiple-choice" ? batch.map((it) => this.choicesOf(it)) : null;
      if (choices && new Set(choices.map((c) => c.length)).size > 1) {
        for (let j = 0; j < batch.length; j++) out.push(...(await this._predictGroup([batch[j]], [choices[j]])));
      } else {
        out.push(...(await this._predictGroup(batch, choices)));
      }
    }
    return out;
  }

  /** Answers of items with as many choices each (choices null unless multiple choice), from one run call. */
  async _predictGroup(items, choices) {
    if (choices && choices[0].length === 0) { // a numeric input with under two numbers: no expression to rank, nothing run
      return items.map(() => ({ label: null, probs: {}, answer: null }));
    }
    const rows = await this.run(this.encode(items, choices));
    return rows.map((row, j) => this.answer(items[j], Array.from(row, Number), choices?.[j]));
  }

  /** {label, probs} of one item from its logits (and, for multiple choice, its choices: built again if not given);
   * a numeric task's ranking student adds the label's value as `answer`. */
  answer(item, logits, choices = null) {
    const p = softmax(logits);
    const names = this.family === "multiple-choice" ? (choices ?? this.choicesOf(item)) : this.labels;
    if (this.family !== "multiple-choice") checkLabelWidth("manifest.json", this.manifest, logits.length);
    let best = 0;
    p.forEach((x, c) => { if (x > p[best]) best = c; });
    const probs = {};
    names.forEach((n, c) => { probs[n] = p[c]; });
    return this.task.type === "numeric" ? { label: names[best], answer: valueOf(names[best]), probs } : { label: names[best], probs };
  }
}
