/**
 * Names and labels shared by every rendered object, and by the Kubernetes
 * layer that looks those objects up.
 *
 * @module
 */

/** The VLLMModel API group. */
export const CRD_GROUP = "vllm.efortin.github.io";
/** The VLLMModel API version. */
export const CRD_VERSION = "v1alpha1";
/** The VLLMModel kind. */
export const CRD_KIND = "VLLMModel";
/** The VLLMModel plural resource name. */
export const CRD_PLURAL = "vllmmodels";
/** Annotation on the vLLM ConfigMap naming the active model's key. */
export const ACTIVE_MODEL_ANNOTATION = "vllm.efortin.github.io/active-model";
/** Label naming the model of a per-model Deployment, ConfigMap, Service and pod (`layout: "per-model"`). */
export const MODEL_LABEL = "vllm.efortin.github.io/model";
/**
 * Annotation on a vLLM Deployment while its engine sleeps: the vLLM sleep level ("1" or "2"), written before
 * `POST /sleep` and removed once a wake is complete, so that a restarted proxy wakes it as deep as it slept and
 * `status --cluster` can tell a sleeping engine from an awake one.
 */
export const SLEEP_LEVEL_ANNOTATION = "vllm.efortin.github.io/sleep-level";
/** Name of the proxy's ServiceAccount, Role, RoleBinding, Deployment, Service. */
export const PROXY_NAME = "vllm-chill";
/** Secret the proxy reads its admin token and API keys from (keys `admin-token`, `api-keys`). */
export const PROXY_SECRET = "vllm-chill-secrets";
/** Labels selecting the vLLM pods (Deployment selector and Service selector). */
export const VLLM_SELECTOR: Readonly<Record<string, string>> = Object.freeze({ app: "vllm" });
/** Labels selecting the proxy's pods. */
export const PROXY_SELECTOR: Readonly<Record<string, string>> = Object.freeze({ app: PROXY_NAME });

/**
 * The labels every object vllm-chill renders or creates carries.
 *
 * @example
 * ```ts
 * import { labelsFor } from "./labels.ts";
 * labelsFor("vllm")["managed-by"]; // "vllm-chill"
 * ```
 */
export function labelsFor(app: "vllm" | "vllm-chill", component?: string): Record<string, string> {
  return {
    app,
    "managed-by": "vllm-chill",
    "app.kubernetes.io/name": app,
    ...(component ? { "app.kubernetes.io/component": component } : {}),
    "app.kubernetes.io/managed-by": "vllm-chill",
    "app.kubernetes.io/part-of": "vllm-chill",
  };
}

/**
 * A Kubernetes object as rendered.
 *
 * @example
 * ```ts
 * import type { KubeObject } from "./labels.ts";
 * const ns: KubeObject = { apiVersion: "v1", kind: "Namespace", metadata: { name: "ai-apps" } };
 * ```
 */
export interface KubeObject {
  /** e.g. "apps/v1". */
  apiVersion: string;
  /** e.g. "Deployment". */
  kind: string;
  /** Name, namespace, labels, annotations. */
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  /** Everything else. */
  [key: string]: unknown;
}
