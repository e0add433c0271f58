/**
 * The `VLLMModel` CustomResourceDefinition, its `spec` schema generated from
 * the same zod schema as a model in the config file, and the check of a
 * VLLMModel object the way the API server would do it.
 *
 * @module
 */
import type { ICustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition";
import { z } from "zod";
import { describeIssue, formatPath } from "../config/define.ts";
import { type ModelSpec, ModelSpecSchema } from "../config/schema.ts";
import { CRD_GROUP, CRD_KIND, CRD_PLURAL, CRD_VERSION, type KubeObject, labelsFor } from "./labels.ts";

/** A JSON Schema node as Kubernetes' openAPIV3Schema holds it. */
export type OpenApiSchema = { [key: string]: unknown };

/**
 * Makes a JSON Schema structural as Kubernetes requires: drops `$schema`,
 * `propertyNames`, `additionalProperties: false` and `additionalProperties`
 * beside `properties`, and the ±2^53 integer bounds zod adds.
 *
 * @example
 * ```ts
 * import { toStructural } from "./crd.ts";
 * toStructural({ type: "object", properties: { a: { type: "integer", maximum: 9007199254740991 } }, additionalProperties: false });
 * // { type: "object", properties: { a: { type: "integer" } } }
 * ```
 */
export function toStructural(node: OpenApiSchema): OpenApiSchema {
  const out: OpenApiSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === "$schema" || key === "propertyNames") continue;
    if (key === "maximum" && typeof value === "number" && value >= Number.MAX_SAFE_INTEGER) continue;
    if (key === "minimum" && typeof value === "number" && value <= Number.MIN_SAFE_INTEGER) continue;
    if (key === "additionalProperties" && (value === false || node.properties !== undefined)) continue;
    if (key === "properties") {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, OpenApiSchema>).map(([name, child]) => [name, toStructural(child)]),
      );
    } else if ((key === "items" || key === "additionalProperties") && value && typeof value === "object") {
      out[key] = toStructural(value as OpenApiSchema);
    } else out[key] = value;
  }
  return out;
}

/**
 * The openAPIV3Schema of a VLLMModel's `spec`, from {@link ModelSpecSchema}.
 *
 * @example
 * ```ts
 * import { vllmModelSpecSchema } from "./crd.ts";
 * vllmModelSpecSchema().required; // ["modelName"]
 * ```
 */
export function vllmModelSpecSchema(): OpenApiSchema {
  return toStructural(z.toJSONSchema(ModelSpecSchema, { io: "input", target: "openapi-3.0" }) as OpenApiSchema);
}

/**
 * The VLLMModel CRD: namespaced, `v1alpha1`, status subresource, printer
 * columns Model, Served and Age.
 *
 * @example
 * ```ts
 * import { renderCrd } from "./crd.ts";
 * renderCrd().metadata?.name; // "vllmmodels.vllm.efortin.github.io"
 * ```
 */
export function renderCrd(): KubeObject {
  const crd: ICustomResourceDefinition = {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${CRD_PLURAL}.${CRD_GROUP}`, labels: labelsFor("vllm-chill", "crd") },
    spec: {
      group: CRD_GROUP,
      scope: "Namespaced",
      names: {
        kind: CRD_KIND,
        listKind: `${CRD_KIND}List`,
        plural: CRD_PLURAL,
        singular: "vllmmodel",
        shortNames: ["vllmm"],
        categories: ["vllm-chill"],
      },
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: "Model", type: "string", jsonPath: ".spec.modelName" },
            { name: "Served", type: "string", jsonPath: ".spec.servedModelName" },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              description:
                "A model vllm-chill can serve; its name is the model's key unless spec.servedModelName is set.",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: vllmModelSpecSchema(),
                status: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
              },
            } as never,
          },
        },
      ],
    },
  };
  return crd as unknown as KubeObject;
}

/** One problem of a VLLMModel object, with the path the API server would name. */
export interface ObjectIssue {
  /** e.g. "spec.gpuMemoryUtilization", "metadata.name", "kind". */
  path: string;
  /** What is wrong and what is allowed. */
  message: string;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const TOP_LEVEL = new Set(["apiVersion", "kind", "metadata", "spec", "status"]);

/**
 * Checks a VLLMModel object (e.g. parsed from YAML) as the API server would:
 * apiVersion, kind, metadata.name, no unknown fields, and `spec` against
 * {@link ModelSpecSchema}. Returns every problem; empty when valid.
 *
 * @example
 * ```ts
 * import { validateVllmModelObject } from "./crd.ts";
 * validateVllmModelObject({
 *   apiVersion: "vllm.efortin.github.io/v1alpha1",
 *   kind: "VLLMModel",
 *   metadata: { name: "qwen3-8b" },
 *   spec: { modelName: "Qwen/Qwen3-8B", gpuMemoryUtilization: 1.5 },
 * })[0].path; // "spec.gpuMemoryUtilization"
 * ```
 */
export function validateVllmModelObject(object: unknown): ObjectIssue[] {
  if (object === null || typeof object !== "object" || Array.isArray(object)) {
    return [{ path: "", message: "expected a VLLMModel object" }];
  }
  const obj = object as Record<string, unknown>;
  const issues: ObjectIssue[] = [];
  const apiVersion = `${CRD_GROUP}/${CRD_VERSION}`;
  if (obj.apiVersion !== apiVersion) {
    issues.push({ path: "apiVersion", message: `must be "${apiVersion}", got ${JSON.stringify(obj.apiVersion)}` });
  }
  if (obj.kind !== CRD_KIND) {
    issues.push({ path: "kind", message: `must be "${CRD_KIND}", got ${JSON.stringify(obj.kind)}` });
  }
  for (const key of Object.keys(obj)) {
    if (!TOP_LEVEL.has(key)) issues.push({ path: key, message: `unknown field "${key}"` });
  }
  const metadata = obj.metadata as Record<string, unknown> | undefined;
  const name = metadata && typeof metadata === "object" ? metadata.name : undefined;
  if (typeof name !== "string" || name.length > 253 || !NAME_RE.test(name)) {
    issues.push({
      path: "metadata.name",
      message: `must be a lowercase DNS name (a-z, 0-9, '-', '.'), got ${JSON.stringify(name)}`,
    });
  }
  if (obj.spec === undefined) {
    issues.push({ path: "spec", message: "required" });
  } else {
    const result = ModelSpecSchema.safeParse(obj.spec, { reportInput: true });
    if (!result.success) {
      for (const issue of result.error.issues) {
        issues.push({ path: formatPath(["spec", ...issue.path]), message: describeIssue(issue) });
      }
    }
  }
  return issues;
}

/**
 * Validates a VLLMModel object and returns its name and parsed spec; throws
 * an Error listing every problem (one `path: message` per line).
 *
 * @example
 * ```ts
 * import { parseVllmModelObject } from "./crd.ts";
 * parseVllmModelObject({
 *   apiVersion: "vllm.efortin.github.io/v1alpha1",
 *   kind: "VLLMModel",
 *   metadata: { name: "bge-m3" },
 *   spec: { modelName: "BAAI/bge-m3" },
 * }).name; // "bge-m3"
 * ```
 */
export function parseVllmModelObject(object: unknown): { name: string; spec: ModelSpec } {
  const issues = validateVllmModelObject(object);
  if (issues.length > 0) {
    throw new Error(`invalid VLLMModel:\n${issues.map((i) => `  - ${i.path || "(root)"}: ${i.message}`).join("\n")}`);
  }
  const obj = object as { metadata: { name: string }; spec: unknown };
  return { name: obj.metadata.name, spec: ModelSpecSchema.parse(obj.spec) };
}
