/**
 * All manifests at once, and their multi-document YAML.
 *
 * @module
 */
import { stringify } from "yaml";
import type { ChillConfig } from "../config/schema.ts";
import { renderCrd } from "./crd.ts";
import type { KubeObject } from "./labels.ts";
import { renderProxy } from "./proxy.ts";
import { renderRbac } from "./rbac.ts";
import { renderPerModelResources } from "./per_model.ts";
import { renderVllmResources } from "./vllm.ts";

export type { KubeObject };

/** The groups of objects `manifests --only` selects. */
export const MANIFEST_PARTS = ["crd", "rbac", "vllm", "proxy"] as const;
/** One group of objects. */
export type ManifestPart = (typeof MANIFEST_PARTS)[number];

/**
 * Renders the objects of `config`, all parts or those in `only`, in apply
 * order: CRD, RBAC, vLLM objects (per-model layout: each config model's
 * ConfigMap, Service and Deployment), the proxy.
 *
 * @example
 * ```ts
 * import { renderManifests } from "./render.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderManifests(parseConfig({}), { only: ["rbac"] }).map((o) => o.kind); // ["ServiceAccount", "Role", "RoleBinding"]
 * ```
 */
export function renderManifests(
  config: Readonly<ChillConfig>,
  options: { only?: readonly ManifestPart[] } = {},
): KubeObject[] {
  const only = new Set<ManifestPart>(options.only?.length ? options.only : MANIFEST_PARTS);
  const objects: object[] = [];
  if (only.has("crd")) objects.push(renderCrd());
  if (only.has("rbac")) objects.push(...renderRbac(config));
  if (only.has("vllm")) {
    // Per-model layout: each config model's own objects; the shared ones are not created then.
    objects.push(...(config.layout === "per-model" ? renderPerModelResources(config) : renderVllmResources(config)));
  }
  if (only.has("proxy")) objects.push(...renderProxy(config));
  return objects as KubeObject[];
}

/**
 * Multi-document YAML for `kubectl apply -f -`.
 *
 * @example
 * ```ts
 * import { toYaml } from "./render.ts";
 * toYaml([{ apiVersion: "v1", kind: "Namespace", metadata: { name: "ai-apps" } }]);
 * // "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ai-apps\n"
 * ```
 */
export function toYaml(objects: readonly object[]): string {
  return objects.map((object) => "---\n" + stringify(object, { lineWidth: 0, aliasDuplicateObjects: false })).join("");
}
