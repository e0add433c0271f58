/**
 * Liveness, readiness and metrics: `GET /healthz` (the process answers),
 * `GET /readyz` (the backend's state is known), `GET /metrics` (Prometheus
 * text).
 *
 * @module
 */
import type { OwnDeps, OwnHandler } from "./own.ts";

/**
 * The probe handlers.
 *
 * @example
 * ```ts
 * import { createProbeHandlers } from "./probes.ts";
 * import { createMetrics } from "../metrics.ts";
 * const probes = createProbeHandlers({ metrics: createMetrics(), ready: () => false });
 * (await probes.readyz(new Request("http://proxy/readyz"))).status; // 503
 * ```
 */
export function createProbeHandlers(
  deps: Pick<OwnDeps, "metrics" | "ready">,
): { healthz: OwnHandler; readyz: OwnHandler; metrics: OwnHandler } {
  return {
    healthz: () => Response.json({ status: "ok" }),
    readyz: () =>
      deps.ready() ? Response.json({ status: "ready" }) : Response.json({ status: "not ready" }, { status: 503 }),
    metrics: () =>
      new Response(deps.metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      }),
  };
}
