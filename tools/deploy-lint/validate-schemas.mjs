// Offline schema check of Kubernetes manifests: every document of every file given is
// validated against the OpenAPI schemas bundled in the npm package kubernetes-models (core
// API groups) and @kubernetes-models/prometheus-operator (ServiceMonitor); no cluster needed.
// Checks types, required fields and enums; an apiVersion/kind pair without a schema is an
// error. The bundled validators accept unknown fields, so a second pass walks each object
// against the packages' type declarations (.d.ts) and reports fields that do not exist (a
// typo such as `readinessProbes` would otherwise pass, and be rejected or dropped by the API
// server). Usage: node validate-schemas.mjs FILE.yaml...   Exit 0 when all are valid.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));

// ---- unknown-field check from the .d.ts declarations ----
// A type node: {t:"obj", props:Map, open:bool} | {t:"arr", item} | {t:"ref", name, file} | {t:"any"}
const dtsCache = new Map();

function findPackageDir(fromDir, pkg) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const cand = path.join(dir, "node_modules", pkg);
    if (existsSync(cand)) return cand;
    if (path.dirname(dir) === dir) return null;
  }
}

function resolveSpecifier(spec, fromFile) {
  if (spec.startsWith(".")) return path.resolve(path.dirname(fromFile), spec + ".d.ts");
  const parts = spec.split("/");
  const pkgLen = spec.startsWith("@") ? 2 : 1;
  const dir = findPackageDir(path.dirname(fromFile), parts.slice(0, pkgLen).join("/"));
  return dir === null ? null : path.join(dir, ...parts.slice(pkgLen)) + ".d.ts";
}

function parseTypeText(rest, lines, i, file) {
  // Returns [node, next line index].
  if (rest === "{") {
    const [obj, next] = parseBody(lines, i, file);
    return [obj, next];
  }
  if (rest === "Array<{") {
    const [obj, next] = parseBody(lines, i, file);
    return [{ t: "arr", item: obj }, next];
  }
  if (rest.endsWith("{")) {
    const [, next] = parseBody(lines, i, file);
    return [{ t: "any" }, next];
  }
  let m = /^Array<(I\w+)>;$/.exec(rest);
  if (m) return [{ t: "arr", item: { t: "ref", name: m[1], file } }, i];
  m = /^(I\w+);$/.exec(rest);
  if (m) return [{ t: "ref", name: m[1], file }, i];
  return [{ t: "any" }, i];
}

function parseBody(lines, i, file) {
  const obj = { t: "obj", props: new Map(), open: false };
  while (i < lines.length) {
    const line = lines[i];
    const trimmed = line.trim();
    if (trimmed.startsWith("}")) return [obj, i + 1];
    i++;
    if (/^\[key: string\]/.test(trimmed)) {
      obj.open = true;
      if (trimmed.endsWith("{")) [, i] = parseBody(lines, i, file);
      continue;
    }
    const m = /^"([^"]+)"\??: (.*)$/.exec(trimmed);
    if (!m) continue; // comments and anything unexpected
    const [node, next] = parseTypeText(m[2], lines, i, file);
    obj.props.set(m[1], node);
    i = next;
  }
  return [obj, i];
}

function loadDts(file) {
  if (dtsCache.has(file)) return dtsCache.get(file);
  let entry = { imports: new Map(), root: null };
  if (file !== null && existsSync(file)) {
    const lines = readFileSync(file, "utf8").split("\n");
    for (const line of lines) {
      const m = /^import \{ ([^}]+) \} from "([^"]+)";/.exec(line);
      if (!m) continue;
      for (const name of m[1].split(",")) {
        const alias = name.trim().split(/\s+as\s+/).pop();
        entry.imports.set(alias, m[2]);
      }
    }
    const start = lines.findIndex((l) => /^export interface \w+( extends [\w, ]+)? \{$/.test(l));
    if (start >= 0) entry.root = parseBody(lines, start + 1, file)[0];
  }
  dtsCache.set(file, entry);
  return entry;
}

function resolveRef(node) {
  const spec = loadDts(node.file).imports.get(node.name);
  if (spec === undefined) return { t: "any" };
  const target = loadDts(resolveSpecifier(spec, node.file));
  return target.root ?? { t: "any" };
}

function unknownFields(value, node, where, out) {
  if (node.t === "ref") node = resolveRef(node);
  if (node.t === "arr") {
    if (Array.isArray(value)) value.forEach((v, k) => unknownFields(v, node.item, `${where}[${k}]`, out));
    return;
  }
  if (node.t !== "obj" || value === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [key, v] of Object.entries(value)) {
    const child = node.props.get(key);
    if (child === undefined) {
      if (!node.open) out.push(`${where}.${key}: unknown field`);
      continue;
    }
    unknownFields(v, child, `${where}.${key}`, out);
  }
}

function modelDtsFile(apiVersion, kind) {
  return resolveSpecifier(modulePath(apiVersion, kind), path.join(here, "index.d.ts"));
}

// apiVersion -> module path prefix. Core "v1" lives at kubernetes-models/v1.
function modulePath(apiVersion, kind) {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

async function loadModel(apiVersion, kind) {
  if (!/^[a-z0-9.\-]*\/?v[0-9a-z]+$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return null;
  }
  try {
    const mod = await import(modulePath(apiVersion, kind));
    return mod[kind] ?? null;
  } catch {
    return null;
  }
}

function formatError(err) {
  // kubernetes-models throws an Error whose message lists the ajv errors.
  return String(err && err.message ? err.message : err).trim();
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate-schemas.mjs FILE.yaml...");
  process.exit(2);
}

let problems = 0;
let checked = 0;
for (const file of files) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const [index, doc] of docs.entries()) {
    const where = `${file} document ${index + 1}`;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) console.error(`${where}: YAML: ${e.message}`);
      problems++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue; // empty document
    const { apiVersion, kind } = obj;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
      console.error(`${where}: apiVersion and kind are required`);
      problems++;
      continue;
    }
    const Model = await loadModel(apiVersion, kind);
    if (Model === null) {
      console.error(`${where}: no schema for ${apiVersion} ${kind} (unknown apiVersion/kind pair)`);
      problems++;
      continue;
    }
    const errors = [];
    try {
      new Model(obj).validate();
    } catch (err) {
      errors.push(formatError(err));
    }
    const root = loadDts(modelDtsFile(apiVersion, kind)).root;
    if (root === null) errors.push(`no type declarations for ${apiVersion} ${kind}`);
    else unknownFields(obj, root, kind, errors);
    const name = obj.metadata?.name ?? "(no name)";
    if (errors.length > 0) {
      console.error(`${where}: ${kind} ${name}: ${errors.join("; ")}`);
      problems++;
    } else {
      checked++;
      console.log(`  schema ok: ${file}: ${apiVersion} ${kind} ${name}`);
    }
  }
}
console.log(`schema check: ${checked} objects valid, ${problems} problems`);
process.exit(problems === 0 ? 0 : 1);
