/**
 * Label and field selectors as the API server parses them
 * (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`).
 *
 * @module
 */
import { badRequest } from "./status.ts";

type Requirement =
  | { key: string; op: "eq" | "neq"; values: string[] }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "exists" | "notexists"; values: string[] };

/** A compiled selector: true when an object's labels/fields match. */
export type Matcher = (values: Record<string, string | undefined>) => boolean;

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(current);
      current = "";
    } else current += ch;
  }
  if (current.trim() !== "") parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.\/]*[a-z0-9A-Z])?)$/;

function parseRequirement(part: string, field: boolean): Requirement {
  let m = part.match(/^(\S+?)\s+(in|notin)\s+\((.*)\)$/);
  if (m && !field) {
    const values = m[3].split(",").map((v) => v.trim()).filter((v) => v !== "");
    return { key: checkKey(m[1], part), op: m[2] as "in" | "notin", values };
  }
  m = part.match(/^([^!=\s]+)\s*(==|!=|=)\s*(.*)$/);
  if (m) {
    return { key: checkKey(m[1], part), op: m[2] === "!=" ? "neq" : "eq", values: [m[3].trim()] };
  }
  if (!field) {
    m = part.match(/^!\s*(\S+)$/);
    if (m) return { key: checkKey(m[1], part), op: "notexists", values: [] };
    if (KEY.test(part)) return { key: part, op: "exists", values: [] };
  }
  throw badRequest(`unable to parse requirement: ${part}`);
}

function checkKey(key: string, part: string): string {
  if (!KEY.test(key)) throw badRequest(`unable to parse requirement: invalid label key "${key}" in "${part}"`);
  return key;
}

function compile(requirements: Requirement[]): Matcher {
  return (values) =>
    requirements.every((r) => {
      const v = values[r.key];
      switch (r.op) {
        case "eq":
          return v === r.values[0];
        case "neq":
          return v !== r.values[0];
        case "in":
          return v !== undefined && r.values.includes(v);
        case "notin":
          return v === undefined || !r.values.includes(v);
        case "exists":
          return v !== undefined;
        case "notexists":
          return v === undefined;
      }
    });
}

/**
 * Parses a labelSelector; throws a 400 ApiError when malformed.
 *
 * @example
 * ```ts
 * import { parseLabelSelector } from "./selectors.ts";
 * parseLabelSelector("app=vllm,tier in (a,b)")({ app: "vllm", tier: "a" }); // true
 * ```
 */
export function parseLabelSelector(text: string | null): Matcher {
  if (!text) return () => true;
  return compile(splitTopLevel(text).map((p) => parseRequirement(p, false)));
}

const SUPPORTED_FIELDS: Record<string, string[]> = {
  pods: ["metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"],
};

/**
 * Parses a fieldSelector; only `metadata.name`, `metadata.namespace` (and
 * `status.phase`, `spec.nodeName` for pods) are accepted, as on a real server.
 *
 * @example
 * ```ts
 * import { parseFieldSelector } from "./selectors.ts";
 * parseFieldSelector("metadata.name=vllm", "pods")({ "metadata.name": "vllm" }); // true
 * ```
 */
export function parseFieldSelector(text: string | null, resource: string): Matcher {
  if (!text) return () => true;
  const requirements = splitTopLevel(text).map((p) => parseRequirement(p, true));
  const allowed = SUPPORTED_FIELDS[resource] ?? ["metadata.name", "metadata.namespace"];
  for (const r of requirements) {
    if (!allowed.includes(r.key)) {
      throw badRequest(`field label not supported: ${r.key}`);
    }
  }
  return compile(requirements);
}

/**
 * The field values a fieldSelector is matched against.
 *
 * @example
 * ```ts
 * import { fieldsOf } from "./selectors.ts";
 * fieldsOf({ metadata: { name: "a", namespace: "ns" } })["metadata.name"]; // "a"
 * ```
 */
// deno-lint-ignore no-explicit-any
export function fieldsOf(obj: any): Record<string, string | undefined> {
  return {
    "metadata.name": obj?.metadata?.name,
    "metadata.namespace": obj?.metadata?.namespace,
    "status.phase": obj?.status?.phase,
    "spec.nodeName": obj?.spec?.nodeName ?? "",
  };
}
