/**
 * RBAC evaluation from one Role, with the API server's exact "forbidden"
 * message.
 *
 * @module
 */
import { ApiError, qualified } from "./status.ts";

/** One PolicyRule of a Role. */
export interface PolicyRuleLike {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** The part of a rbac.authorization.k8s.io/v1 Role the fake reads. */
export interface RoleLike {
  metadata?: { name?: string; namespace?: string };
  rules: PolicyRuleLike[];
}

/** What a request asks to do. */
export interface Attributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace: string;
}

/** The identity of the kubeconfig's token. */
export const FAKE_USER = "system:serviceaccount:ai-apps:vllm-chill";

function has(list: string[] | undefined, value: string): boolean {
  return !!list && (list.includes("*") || list.includes(value));
}

/**
 * True when the Role allows the request (its namespace must match).
 *
 * @example
 * ```ts
 * import { allows } from "./rbac.ts";
 * const role = { metadata: { namespace: "ai-apps" }, rules: [{ apiGroups: [""], resources: ["pods"], verbs: ["list"] }] };
 * allows(role, "ai-apps", { verb: "list", group: "", resource: "pods", namespace: "ai-apps" }); // true
 * ```
 */
export function allows(role: RoleLike, roleNamespace: string, a: Attributes): boolean {
  if (a.namespace !== (role.metadata?.namespace ?? roleNamespace)) return false;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  return role.rules.some((rule) =>
    has(rule.apiGroups, a.group) &&
    (has(rule.resources, resource) || (!!a.subresource && has(rule.resources, `*/${a.subresource}`)) ||
      (!a.subresource && has(rule.resources, "*"))) &&
    has(rule.verbs, a.verb) &&
    (!rule.resourceNames || rule.resourceNames.length === 0 || (!!a.name && rule.resourceNames.includes(a.name)))
  );
}

/**
 * The 403 Forbidden a real server returns.
 *
 * @example
 * ```ts
 * import { forbidden } from "./rbac.ts";
 * forbidden({ verb: "patch", group: "apps", resource: "deployments", subresource: "scale", name: "vllm", namespace: "ai-apps" }).message;
 * // 'deployments.apps "vllm" is forbidden: User "system:serviceaccount:ai-apps:vllm-chill" cannot patch resource "deployments/scale" in API group "apps" in the namespace "ai-apps"'
 * ```
 */
export function forbidden(a: Attributes): ApiError {
  const subject = qualified(a.resource, a.group) + (a.name ? ` "${a.name}"` : "");
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const details: Record<string, string> = { kind: a.resource };
  if (a.name) details.name = a.name;
  if (a.group) details.group = a.group;
  return new ApiError(
    403,
    "Forbidden",
    `${subject} is forbidden: User "${FAKE_USER}" cannot ${a.verb} resource "${resource}" in API group "${a.group}" ` +
      (a.namespace ? `in the namespace "${a.namespace}"` : "at the cluster scope"),
    details,
  );
}
