/**
 * The three PATCH flavours the API server speaks: JSON merge patch
 * (RFC 7386), strategic merge patch (lists merged by their merge key, `$patch`
 * directives) and JSON patch (RFC 6902).
 *
 * @module
 */
import { ApiError } from "./status.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

function isObject(v: Json): v is Record<string, Json> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces.
 *
 * @example
 * ```ts
 * import { mergePatch } from "./patch.ts";
 * mergePatch({ spec: { replicas: 0, x: 1 } }, { spec: { replicas: 1, x: null } }); // { spec: { replicas: 1 } }
 * ```
 */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** Merge keys of the lists our resources use (from the Kubernetes types). */
const MERGE_KEYS: Record<string, string> = {
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  env: "name",
  volumes: "name",
  volumeMounts: "mountPath",
  volumeDevices: "devicePath",
  ports: "containerPort",
  conditions: "type",
  imagePullSecrets: "name",
  hostAliases: "ip",
  topologySpreadConstraints: "topologyKey",
  ownerReferences: "uid",
  finalizers: "",
};

/**
 * Strategic merge patch for built-in types: like a merge patch, but lists
 * with a merge key (containers by name, env by name, ports by containerPort…)
 * are merged element by element; `$patch: delete|replace|merge`,
 * `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`
 * are honoured.
 *
 * @example
 * ```ts
 * import { strategicMergePatch } from "./patch.ts";
 * strategicMergePatch(
 *   { containers: [{ name: "a", image: "x" }, { name: "b", image: "y" }] },
 *   { containers: [{ name: "b", image: "z" }] },
 * ); // { containers: [{ name: "a", image: "x" }, { name: "b", image: "z" }] }
 * ```
 */
export function strategicMergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  if (patch.$patch === "replace") {
    const { $patch: _, ...rest } = patch;
    return structuredClone(rest);
  }
  if (patch.$patch === "delete") return undefined;
  let out: Record<string, Json> = isObject(target) ? { ...target } : {};
  const orders: Record<string, Json[]> = {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$patch") continue;
    if (key === "$retainKeys") continue;
    if (key.startsWith("$setElementOrder/")) {
      orders[key.slice("$setElementOrder/".length)] = value as Json[];
      continue;
    }
    if (key.startsWith("$deleteFromPrimitiveList/")) {
      const list = key.slice("$deleteFromPrimitiveList/".length);
      if (Array.isArray(out[list])) out[list] = out[list].filter((x: Json) => !(value as Json[]).includes(x));
      continue;
    }
    if (value === null) {
      delete out[key];
      continue;
    }
    const mergeKey = MERGE_KEYS[key];
    if (Array.isArray(value) && mergeKey !== undefined && Array.isArray(out[key])) {
      out[key] = mergeList(out[key], value, mergeKey);
    } else if (Array.isArray(value)) {
      out[key] = value.filter((v) => !(isObject(v) && v.$patch === "delete")).map((v) => stripDirectives(v));
    } else {
      const merged = strategicMergePatch(out[key], value);
      if (merged === undefined) delete out[key];
      else out[key] = merged;
    }
  }
  if (Array.isArray(patch.$retainKeys)) {
    const keep = new Set<string>(patch.$retainKeys);
    out = Object.fromEntries(Object.entries(out).filter(([k]) => keep.has(k)));
  }
  for (const [list, order] of Object.entries(orders)) {
    const mergeKey = MERGE_KEYS[list];
    if (!Array.isArray(out[list]) || !mergeKey) continue;
    const rank = (item: Json) => order.findIndex((o: Json) => isObject(o) && o[mergeKey] === item?.[mergeKey]);
    out[list] = [...out[list]].sort((a, b) => {
      const ra = rank(a), rb = rank(b);
      return (ra < 0 ? Infinity : ra) - (rb < 0 ? Infinity : rb);
    });
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObject(v)) return v;
  return Object.fromEntries(
    Object.entries(v).filter(([k]) => !k.startsWith("$")).map(([k, x]) => [k, stripDirectives(x)]),
  );
}

function mergeList(current: Json[], patch: Json[], mergeKey: string): Json[] {
  if (mergeKey === "") {
    // A set of primitives (finalizers): union.
    const out = [...current];
    for (const v of patch) if (!out.includes(v)) out.push(v);
    return out;
  }
  if (patch.some((v) => isObject(v) && v.$patch === "replace")) {
    return patch.filter((v) => !(isObject(v) && v.$patch === "replace")).map(stripDirectives);
  }
  const out = [...current];
  for (const item of patch) {
    if (!isObject(item) || !(mergeKey in item)) {
      out.push(stripDirectives(item));
      continue;
    }
    const idx = out.findIndex((c) => isObject(c) && c[mergeKey] === item[mergeKey]);
    if (item.$patch === "delete") {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMergePatch(out[idx], item);
    else out.push(stripDirectives(item));
  }
  return out;
}

function unescapePointer(token: string): string {
  return token.replaceAll("~1", "/").replaceAll("~0", "~");
}

function parsePointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw invalidPatch(`invalid JSON pointer "${path}"`);
  return path.slice(1).split("/").map(unescapePointer);
}

function invalidPatch(message: string): ApiError {
  return new ApiError(422, "Invalid", message);
}

function resolveParent(doc: Json, tokens: string[], path: string): [Json, string] {
  let node = doc;
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(node)) node = node[Number(token)];
    else if (isObject(node)) node = node[token];
    else node = undefined;
    if (node === undefined) throw invalidPatch(`doc is missing path: "${path}": missing value`);
  }
  return [node, tokens[tokens.length - 1]];
}

function getAt(doc: Json, path: string): Json {
  let node = doc;
  for (const token of parsePointer(path)) {
    if (Array.isArray(node)) node = node[Number(token)];
    else if (isObject(node)) node = node[token];
    else node = undefined;
    if (node === undefined) throw invalidPatch(`doc is missing path: "${path}": missing value`);
  }
  return node;
}

function removeAt(doc: Json, path: string): Json {
  const tokens = parsePointer(path);
  const [parent, last] = resolveParent(doc, tokens, path);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) {
      throw invalidPatch(`doc is missing path: "${path}": missing value`);
    }
    return parent.splice(i, 1)[0];
  }
  if (!isObject(parent) || !(last in parent)) throw invalidPatch(`doc is missing path: "${path}": missing value`);
  const old = parent[last];
  delete parent[last];
  return old;
}

function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return structuredClone(value);
  const [parent, last] = resolveParent(doc, tokens, path);
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (replace && i >= parent.length)) {
      throw invalidPatch(`unable to ${replace ? "replace" : "add"} value at "${path}": index out of range`);
    }
    if (replace) parent[i] = structuredClone(value);
    else parent.splice(i, 0, structuredClone(value));
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) {
      throw invalidPatch(`replace operation does not apply: doc is missing key: ${path}: missing value`);
    }
    parent[last] = structuredClone(value);
  } else {
    throw invalidPatch(`doc is missing path: "${path}": missing value`);
  }
  return doc;
}

/**
 * RFC 6902 JSON patch (add, remove, replace, move, copy, test).
 *
 * @example
 * ```ts
 * import { jsonPatch } from "./patch.ts";
 * jsonPatch({ spec: { replicas: 0 } }, [{ op: "replace", path: "/spec/replicas", value: 1 }]); // { spec: { replicas: 1 } }
 * ```
 */
export function jsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) {
    throw new ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch");
  }
  let doc = structuredClone(target);
  for (const op of ops) {
    if (!isObject(op) || typeof op.path !== "string") throw invalidPatch("invalid JSON patch operation");
    switch (op.op) {
      case "add":
        doc = addAt(doc, op.path, op.value, false);
        break;
      case "replace":
        doc = addAt(doc, op.path, op.value, true);
        break;
      case "remove":
        removeAt(doc, op.path);
        break;
      case "move": {
        const value = removeAt(doc, op.from);
        doc = addAt(doc, op.path, value, false);
        break;
      }
      case "copy":
        doc = addAt(doc, op.path, getAt(doc, op.from), false);
        break;
      case "test": {
        const actual = getAt(doc, op.path);
        if (JSON.stringify(actual) !== JSON.stringify(op.value)) {
          throw invalidPatch(`testing value ${op.path} failed: test failed`);
        }
        break;
      }
      default:
        throw invalidPatch(`Unexpected kind: ${op.op}`);
    }
  }
  return doc;
}
