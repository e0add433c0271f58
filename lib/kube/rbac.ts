/**
 * The RBAC self-check at start: one SelfSubjectAccessReview per (entry, verb)
 * of the API-call table, and every missing permission in one message.
 *
 * @module
 */
import { API_CALLS, type ApiCall } from "./api_calls.ts";
import { callOptions, type KubeContext } from "./context.ts";
import { toKubeError } from "./errors.ts";
import { retryUnavailable } from "./retry.ts";

/** One permission the self-check asked about. */
export interface Permission {
  /** API group ("" for core). */
  group: string;
  /** Plural resource. */
  resource: string;
  /** Subresource, if any. */
  subresource?: string;
  /** RBAC verb. */
  verb: string;
}

/** Result of {@link rbacSelfCheck}. */
export interface RbacReport {
  /** True when every permission is granted. */
  ok: boolean;
  /** The permissions denied. */
  missing: Permission[];
  /** One readable message (empty when ok). */
  message: string;
}

/**
 * Formats a permission as `patch deployments/scale (apps)`.
 *
 * @example
 * ```ts
 * import { formatPermission } from "./rbac.ts";
 * formatPermission({ group: "", resource: "pods", verb: "watch" }); // "watch pods (core)"
 * ```
 */
export function formatPermission(p: Permission): string {
  return `${p.verb} ${p.resource}${p.subresource ? `/${p.subresource}` : ""} (${p.group || "core"})`;
}

/**
 * Asks the API server, for every (entry, verb) of `calls` (default
 * API_CALLS), whether this identity may make it in the namespace.
 *
 * @example
 * ```ts ignore
 * const report = await rbacSelfCheck(ctx);
 * if (!report.ok) log.error(report.message);
 * ```
 */
export async function rbacSelfCheck(
  ctx: KubeContext,
  options: { signal?: AbortSignal; deadline?: number; calls?: readonly ApiCall[] } = {},
): Promise<RbacReport> {
  const wanted: Permission[] = (options.calls ?? API_CALLS).flatMap((c) =>
    c.verbs.map((verb) => ({ group: c.group, resource: c.resource, subresource: c.subresource, verb }))
  );
  const answers = await Promise.all(wanted.map(async (p) => {
    try {
      const review = await retryUnavailable(
        () =>
          ctx.authz.createSelfSubjectAccessReview({
            body: {
              apiVersion: "authorization.k8s.io/v1",
              kind: "SelfSubjectAccessReview",
              spec: {
                resourceAttributes: {
                  namespace: ctx.namespace,
                  group: p.group,
                  resource: p.resource,
                  subresource: p.subresource,
                  verb: p.verb,
                },
              },
            },
          }, callOptions(options)),
        options,
      );
      return review.status?.allowed === true;
    } catch (error) {
      throw toKubeError(error, `asking whether ${formatPermission(p)} is allowed`);
    }
  }));
  const missing = wanted.filter((_, i) => !answers[i]);
  const message = missing.length === 0
    ? ""
    : `the service account lacks ${missing.length} permission${
      missing.length > 1 ? "s" : ""
    } in namespace "${ctx.namespace}":\n${
      missing.map((p) => `  - ${formatPermission(p)}`).join("\n")
    }\ngrant them with the Role from \`vllm-chill manifests --only rbac\``;
  return { ok: missing.length === 0, missing, message };
}
