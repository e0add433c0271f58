/**
 * ServiceAccount, Role and RoleBinding of the proxy, with least privilege:
 * the Role's rules are generated from `API_CALLS`, the table of every
 * Kubernetes API call the code makes, so permissions and code cannot drift.
 *
 * @module
 */
import type { IRole } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import type { IRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import type { IServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import type { ChillConfig } from "../config/schema.ts";
import { API_CALLS, type ApiCall } from "../kube/api_calls.ts";
import { labelsFor, PROXY_NAME } from "./labels.ts";

/** One RBAC PolicyRule. */
export interface PolicyRule {
  /** API groups ("" = core). */
  apiGroups: string[];
  /** Resources, "deployments/scale" for a subresource. */
  resources: string[];
  /** Verbs. */
  verbs: string[];
}

/**
 * Role rules from an API call table: one rule per apiGroup + resource(/subresource), verbs merged.
 *
 * @example
 * ```ts
 * import { roleRules } from "./rbac.ts";
 * roleRules([{ group: "apps", resource: "deployments", subresource: "scale", verbs: ["get", "patch"], why: "" }]);
 * // [{ apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get", "patch"] }]
 * ```
 */
export function roleRules(calls: readonly ApiCall[] = API_CALLS): PolicyRule[] {
  const rules = new Map<string, PolicyRule>();
  for (const call of calls) {
    const resource = call.subresource ? `${call.resource}/${call.subresource}` : call.resource;
    const key = `${call.group}\u0000${resource}`;
    const rule = rules.get(key) ?? { apiGroups: [call.group], resources: [resource], verbs: [] };
    for (const verb of call.verbs) if (!rule.verbs.includes(verb)) rule.verbs.push(verb);
    rules.set(key, rule);
  }
  return [...rules.values()];
}

/**
 * ServiceAccount `vllm-chill`, Role `vllm-chill` (from `API_CALLS`) and the RoleBinding between them.
 *
 * @example
 * ```ts
 * import { renderRbac } from "./rbac.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderRbac(parseConfig({})).map((o) => o.kind); // ["ServiceAccount", "Role", "RoleBinding"]
 * ```
 */
export function renderRbac(config: Readonly<ChillConfig>): [IServiceAccount, IRole, IRoleBinding] {
  const metadata = () => ({ name: PROXY_NAME, namespace: config.namespace, labels: labelsFor(PROXY_NAME, "rbac") });
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: metadata() },
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: metadata(), rules: roleRules() },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: metadata(),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: PROXY_NAME },
      subjects: [{ kind: "ServiceAccount", name: PROXY_NAME, namespace: config.namespace }],
    },
  ];
}
