/**
 * Validation of a custom resource against its CRD's structural
 * openAPIV3Schema, with the API server's error wording, and detection of
 * fields the schema does not declare (pruned, or rejected with
 * fieldValidation=Strict). The VLLMModel CRD comes from lib/manifests, so the
 * fake enforces exactly what a real cluster would after `kubectl apply` of it.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import { renderCrd } from "../../../lib/manifests/crd.ts";
import type { Cause } from "./validate.ts";

function show(value: unknown): string {
  return JSON.stringify(value) ?? "null";
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(type: string, value: unknown): boolean {
  switch (type) {
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "number":
      return typeof value === "number";
    case "string":
      return typeof value === "string";
    case "boolean":
      return typeof value === "boolean";
    case "array":
      return Array.isArray(value);
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value);
  }
  return true;
}

/** Causes and unknown field paths found in one object. */
export interface SchemaReport {
  causes: Cause[];
  unknown: string[];
}

/**
 * Walks `value` against a structural schema.
 *
 * @example
 * ```ts
 * import { checkSchema } from "./crd_schema.ts";
 * checkSchema({ type: "object", properties: { n: { type: "integer", minimum: 1 } } }, { n: 0, x: 1 }).unknown; // ["x"]
 * ```
 */
export function checkSchema(schema: any, value: unknown, path = ""): SchemaReport {
  const report: SchemaReport = { causes: [], unknown: [] };
  walk(schema, value, path, report);
  return report;
}

function walk(schema: any, value: any, path: string, report: SchemaReport): void {
  const where = path || "<root>";
  const invalid = (message: string, reason = "FieldValueInvalid") =>
    report.causes.push({ reason, message: `Invalid value: ${show(value)}: ${message}`, field: where });
  if (value === null && schema.nullable) return;
  if (schema.type && !typeMatches(schema.type, value)) {
    report.causes.push({
      reason: "FieldValueTypeInvalid",
      message: `Invalid value: ${show(value)}: ${where} in body must be of type ${schema.type}: ${
        show(jsonType(value))
      }`,
      field: where,
    });
    return;
  }
  if (schema.enum && !schema.enum.includes(value)) {
    report.causes.push({
      reason: "FieldValueNotSupported",
      message: `Unsupported value: ${show(value)}: supported values: ${schema.enum.map(show).join(", ")}`,
      field: where,
    });
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined) {
      if (schema.exclusiveMinimum === true && value <= schema.minimum) {
        invalid(`${where} in body should be greater than ${schema.minimum}`);
      } else if (value < schema.minimum) {
        invalid(`${where} in body should be greater than or equal to ${schema.minimum}`);
      }
    }
    if (schema.maximum !== undefined) {
      if (schema.exclusiveMaximum === true && value >= schema.maximum) {
        invalid(`${where} in body should be less than ${schema.maximum}`);
      } else if (value > schema.maximum) invalid(`${where} in body should be less than or equal to ${schema.maximum}`);
    }
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && [...value].length < schema.minLength) {
      invalid(`${where} in body should be at least ${schema.minLength} chars long`);
    }
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength) {
      invalid(`${where} in body should be at most ${schema.maxLength} chars long`);
    }
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) {
      invalid(`${where} in body should match '${schema.pattern}'`);
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      invalid(`${where} in body should have at least ${schema.minItems} items`);
    }
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      invalid(`${where} in body should have at most ${schema.maxItems} items`);
    }
    if (schema.items) value.forEach((item, i) => walk(schema.items, item, `${path}[${i}]`, report));
  }
  if (typeMatches("object", value) && schema.type === "object") {
    for (const key of schema.required ?? []) {
      if (value[key] === undefined) {
        report.causes.push({
          reason: "FieldValueRequired",
          message: "Required value",
          field: path ? `${path}.${key}` : key,
        });
      }
    }
    const props = schema.properties;
    for (const [key, child] of Object.entries(value)) {
      const childPath = path ? `${path}.${key}` : key;
      if (props && key in props) {
        if (path === "" && key === "metadata") continue;
        walk(props[key], child, childPath, report);
      } else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
        walk(schema.additionalProperties, child, childPath, report);
      } else if (!schema["x-kubernetes-preserve-unknown-fields"] && props) {
        report.unknown.push(childPath);
      }
    }
  }
}

let cached: any;

/**
 * The openAPIV3Schema of the VLLMModel CRD (rendered by lib/manifests).
 *
 * @example
 * ```ts
 * import { vllmModelSchema } from "./crd_schema.ts";
 * vllmModelSchema().type; // "object"
 * ```
 */
export function vllmModelSchema(): any {
  cached ??= (renderCrd() as any).spec.versions[0].schema.openAPIV3Schema;
  return cached;
}

/**
 * The VLLMModel CRD's names and printer columns.
 *
 * @example
 * ```ts
 * import { vllmModelCrd } from "./crd_schema.ts";
 * vllmModelCrd().names.plural; // "vllmmodels"
 * ```
 */
export function vllmModelCrd(): { group: string; names: any; version: any } {
  const crd: any = renderCrd();
  return { group: crd.spec.group, names: crd.spec.names, version: crd.spec.versions[0] };
}
