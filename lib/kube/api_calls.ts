/**
 * Every Kubernetes API call vllm-chill makes, as one table. The Role in the
 * rendered manifests is generated from it, the RBAC self-check asks about
 * each entry, and a test fails when code calls the API in a way the table
 * does not list — so permissions and code cannot drift apart.
 *
 * @module
 */

/** One kind of call: an API group, a resource (with subresource), verbs. */
export interface ApiCall {
  /** API group ("" for core). */
  group: string;
  /** Plural resource name. */
  resource: string;
  /** Subresource such as "scale", if any. */
  subresource?: string;
  /** RBAC verbs used. */
  verbs: readonly ("get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection")[];
  /** Why the proxy needs it (rendered as a comment in docs). */
  why: string;
}

/**
 * The table. SelfSubjectAccessReviews are not listed: every authenticated
 * identity may create them (system:basic-user), so the Role needs no rule.
 *
 * @example
 * ```ts
 * import { API_CALLS } from "./api_calls.ts";
 * API_CALLS.some((c) => c.resource === "deployments" && c.subresource === "scale"); // true
 * ```
 */
export const API_CALLS: readonly ApiCall[] = [
  {
    group: "apps",
    resource: "deployments",
    verbs: ["get", "list", "watch", "create", "patch"],
    why: "read state (per-model layout: every model's Deployment, by the model label); create the vLLM " +
      "Deployments; give a pod template the model's shape (at 0 replicas); record the sleep level while asleep",
  },
  {
    group: "apps",
    resource: "deployments",
    subresource: "scale",
    verbs: ["get", "patch"],
    why: "read and set replicas (scale to zero and back)",
  },
  {
    group: "",
    resource: "pods",
    verbs: ["list", "watch", "delete"],
    why: "wait until a pod is Ready / really gone; force-delete on switch",
  },
  {
    group: "",
    resource: "configmaps",
    verbs: ["get", "create", "update"],
    why: "write the model's configuration (per-model layout: each model's ConfigMap)",
  },
  { group: "", resource: "services", verbs: ["get", "create"], why: "ensure the vLLM Service(s)" },
  {
    group: "vllm.efortin.github.io",
    resource: "vllmmodels",
    verbs: ["list", "watch"],
    why: "models declared as VLLMModel resources",
  },
];
