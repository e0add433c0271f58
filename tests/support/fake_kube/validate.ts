/**
 * Admission-time validation the fake applies on create/update: object names,
 * unknown fields (`fieldValidation` Strict/Warn/Ignore), Deployment
 * invariants, and the VLLMModel `spec` checked against the same zod schema
 * the CRD's openAPIV3Schema is generated from.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import { checkSchema, vllmModelSchema } from "./crd_schema.ts";
import { ApiError } from "./status.ts";
import { apiVersionOf, type ResourceInfo } from "./resources.ts";

/** One field error, as in a Status' details.causes. */
export interface Cause {
  reason: string;
  message: string;
  field: string;
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function show(value: unknown): string {
  return JSON.stringify(value) ?? "null";
}

/**
 * 422 Invalid for `causes` on `<Kind>.<group> "name"`.
 *
 * @example
 * ```ts
 * import { invalid } from "./validate.ts";
 * import { RESOURCES } from "./resources.ts";
 * invalid(RESOURCES.configmaps, "x", [{ reason: "FieldValueRequired", message: "Required value", field: "data" }]).code; // 422
 * ```
 */
export function invalid(info: ResourceInfo, name: string, causes: Cause[]): ApiError {
  const qualifiedKind = info.group ? `${info.kind}.${info.group}` : info.kind;
  const list = causes.map((c) => `${c.field}: ${c.message}`);
  const joined = list.length === 1 ? list[0] : `[${list.join(", ")}]`;
  const details: Record<string, unknown> = { name, kind: info.kind, causes };
  if (info.group) details.group = info.group;
  return new ApiError(422, "Invalid", `${qualifiedKind} "${name}" is invalid: ${joined}`, details);
}

/**
 * Finds unknown fields (paths like "spec.foo") the type does not declare.
 *
 * @example
 * ```ts
 * import { unknownFields } from "./validate.ts";
 * import { RESOURCES } from "./resources.ts";
 * unknownFields(RESOURCES.configmaps, { metadata: {}, data: {}, extra: 1 }); // ["extra"]
 * ```
 */
export function unknownFields(info: ResourceInfo, obj: any): string[] {
  if (info.name === "vllmmodels") return checkSchema(vllmModelSchema(), obj).unknown;
  return Object.keys(obj ?? {}).filter((k) => !info.fields.includes(k));
}

/**
 * Removes the given dotted paths from `obj` (pruning of unknown fields).
 *
 * @example
 * ```ts
 * import { prune } from "./validate.ts";
 * prune({ spec: { a: 1, b: 2 } }, ["spec.b"]); // { spec: { a: 1 } }
 * ```
 */
export function prune(obj: any, paths: string[]): any {
  for (const path of paths) {
    const parts = path.split(".");
    let node = obj;
    for (const p of parts.slice(0, -1)) node = node?.[p];
    if (node && typeof node === "object") delete node[parts[parts.length - 1]];
  }
  return obj;
}

/**
 * Applies `fieldValidation` (Strict → 400, Warn → warnings, Ignore →
 * silent) to unknown fields; returns the warnings to send and prunes `obj`.
 *
 * @example
 * ```ts
 * import { checkUnknownFields } from "./validate.ts";
 * import { RESOURCES } from "./resources.ts";
 * checkUnknownFields(RESOURCES.configmaps, { data: {}, x: 1 }, "Warn"); // ['unknown field "x"']
 * ```
 */
export function checkUnknownFields(info: ResourceInfo, obj: any, mode: string | null): string[] {
  const directive = mode ?? "Warn";
  if (!["Strict", "Warn", "Ignore"].includes(directive)) {
    throw new ApiError(
      400,
      "BadRequest",
      `fieldValidation must be one of "Ignore", "Warn", or "Strict", got: "${directive}"`,
    );
  }
  const unknown = unknownFields(info, obj);
  if (unknown.length === 0) return [];
  if (directive === "Strict") {
    throw new ApiError(
      400,
      "BadRequest",
      `${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: strict decoding error: ` +
        unknown.map((f) => `unknown field "${f}"`).join(", "),
    );
  }
  prune(obj, unknown);
  return directive === "Warn" ? unknown.map((f) => `unknown field "${f}"`) : [];
}

function vllmModelCauses(obj: any): Cause[] {
  return checkSchema(vllmModelSchema(), obj).causes;
}

function labelsMatch(selector: any, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector?.matchExpressions ?? []) {
    const v = labels[e.key];
    if (e.operator === "In" && !(v !== undefined && e.values?.includes(v))) return false;
    if (e.operator === "NotIn" && v !== undefined && e.values?.includes(v)) return false;
    if (e.operator === "Exists" && v === undefined) return false;
    if (e.operator === "DoesNotExist" && v !== undefined) return false;
  }
  return true;
}

function deploymentCauses(obj: any, old: any | undefined): Cause[] {
  const causes: Cause[] = [];
  const spec = obj.spec ?? {};
  if (spec.replicas !== undefined && (!Number.isInteger(spec.replicas) || spec.replicas < 0)) {
    causes.push({
      reason: "FieldValueInvalid",
      message: `Invalid value: ${show(spec.replicas)}: must be greater than or equal to 0`,
      field: "spec.replicas",
    });
  }
  const selector = spec.selector;
  if (!selector || (!selector.matchLabels && !selector.matchExpressions)) {
    causes.push({ reason: "FieldValueRequired", message: "Required value", field: "spec.selector" });
  } else {
    const labels = spec.template?.metadata?.labels ?? {};
    if (!labelsMatch(selector, labels)) {
      causes.push({
        reason: "FieldValueInvalid",
        message: `Invalid value: ${show(labels)}: \`selector\` does not match template \`labels\``,
        field: "spec.template.metadata.labels",
      });
    }
  }
  const containers = spec.template?.spec?.containers;
  if (!Array.isArray(containers) || containers.length === 0) {
    causes.push({ reason: "FieldValueRequired", message: "Required value", field: "spec.template.spec.containers" });
  } else {
    containers.forEach((c: any, i: number) => {
      if (!c?.name) {
        causes.push({
          reason: "FieldValueRequired",
          message: "Required value",
          field: `spec.template.spec.containers[${i}].name`,
        });
      }
      if (!c?.image) {
        causes.push({
          reason: "FieldValueRequired",
          message: "Required value",
          field: `spec.template.spec.containers[${i}].image`,
        });
      }
    });
  }
  if (old && JSON.stringify(old.spec?.selector) !== JSON.stringify(spec.selector)) {
    causes.push({
      reason: "FieldValueInvalid",
      message: `Invalid value: ${show(spec.selector)}: field is immutable`,
      field: "spec.selector",
    });
  }
  return causes;
}

function podCauses(obj: any): Cause[] {
  const containers = obj.spec?.containers;
  if (!Array.isArray(containers) || containers.length === 0) {
    return [{ reason: "FieldValueRequired", message: "Required value", field: "spec.containers" }];
  }
  return [];
}

/**
 * Validates an object about to be stored; throws a 422 ApiError listing
 * every problem. `old` is the stored version on update.
 *
 * @example
 * ```ts
 * import { validateObject } from "./validate.ts";
 * import { RESOURCES } from "./resources.ts";
 * validateObject(RESOURCES.configmaps, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "ok" } });
 * ```
 */
export function validateObject(info: ResourceInfo, obj: any, old?: any): void {
  const name = obj?.metadata?.name ?? "";
  const causes: Cause[] = [];
  if (!name) {
    causes.push({
      reason: "FieldValueRequired",
      message: "Required value: name or generateName is required",
      field: "metadata.name",
    });
  } else if (!DNS1123.test(name) || name.length > 253) {
    causes.push({
      reason: "FieldValueInvalid",
      message: `Invalid value: ${show(name)}: a lowercase RFC 1123 subdomain must consist of lower case ` +
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character " +
        "(e.g. 'example.com', regex used for validation is " +
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
      field: "metadata.name",
    });
  }
  if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersionOf(info)) {
    throw new ApiError(
      400,
      "BadRequest",
      `the API version in the data (${obj.apiVersion}) does not match the expected API version (${apiVersionOf(info)})`,
    );
  }
  if (obj.kind !== undefined && obj.kind !== info.kind) {
    throw new ApiError(
      400,
      "BadRequest",
      `${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: ` +
        `the kind in the data (${obj.kind}) does not match the expected kind (${info.kind})`,
    );
  }
  if (info.name === "vllmmodels") causes.push(...vllmModelCauses(obj));
  if (info.name === "deployments") causes.push(...deploymentCauses(obj, old));
  if (info.name === "pods") causes.push(...podCauses(obj));
  if (causes.length) throw invalid(info, name, causes);
}
