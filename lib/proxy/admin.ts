/**
 * The admin API: `GET /admin/status` (the scaler's state, the backend's
 * details, a config summary without secrets), `POST /admin/models/{name}/load`
 * and `POST /admin/unload` (202 at once, or `?wait=true` to wait for the
 * outcome). Every admin endpoint needs `Authorization: Bearer <adminToken>`
 * when a token is configured (401 without, 403 with a wrong one).
 *
 * @module
 */
import { Rejection } from "../scaler/types.ts";
import { createAdminCheck } from "./auth.ts";
import { clientRefusal, clip, errorResponse } from "./errors.ts";
import { type OwnDeps, type OwnHandler, SCALE_ONLY_KEY } from "./own.ts";

const JSON_HEADERS = { "content-type": "application/json" };

/**
 * The admin handlers, each behind the admin token check.
 *
 * @example
 * ```ts
 * import { createAdminHandlers } from "./admin.ts";
 * import { defineVllmChill } from "../config/define.ts";
 * import { ModelRegistry } from "../models/registry.ts";
 * import { silentLogger } from "../log.ts";
 * import type { Gate } from "../scaler/types.ts";
 * const admin = createAdminHandlers({
 *   config: defineVllmChill({ adminToken: "admin-secret" }), gate: {} as Gate, registry: new ModelRegistry(),
 *   log: silentLogger,
 * });
 * (await admin.admin_status(new Request("http://proxy/admin/status"))).status; // 401
 * ```
 */
export function createAdminHandlers(
  deps: Pick<OwnDeps, "config" | "gate" | "registry" | "log">,
): { admin_status: OwnHandler; admin_load: OwnHandler; admin_unload: OwnHandler } {
  const { config, gate, registry, log } = deps;
  const adminCheck = createAdminCheck(config.adminToken);
  if (config.adminToken === undefined) {
    log.warn("admin endpoints are open: set adminToken to protect /admin/*");
  }

  /** Wraps `handler` in the admin token check. */
  const guarded = (handler: OwnHandler): OwnHandler => async (req, param) => {
    const verdict = await adminCheck(req.headers.get("authorization"));
    if (verdict === "missing") {
      return errorResponse(401, "Admin endpoints need 'Authorization: Bearer <adminToken>'", "admin_token_required");
    }
    if (verdict === "wrong") return errorResponse(403, "Incorrect admin token", "admin_token_invalid");
    return handler(req, param);
  };

  const waits = (req: Request) => new URL(req.url).searchParams.get("wait") === "true";

  function status(): Record<string, unknown> {
    return {
      // The backend's details are the scaler's `backend` (one key, not repeated).
      ...gate.status(),
      config: {
        namespace: config.namespace,
        backend: config.backend,
        enableModelSwitch: config.enableModelSwitch,
        idleTimeoutMs: config.idleTimeout,
        holdTimeoutMs: config.holdTimeout,
        startTimeoutMs: config.startTimeout,
        drainTimeoutMs: config.drainTimeout,
        minLoadedTimeMs: config.minLoadedTime,
        heartbeatIntervalMs: config.heartbeatInterval,
        maxHeldRequests: config.maxHeldRequests,
        maxBodyBytes: config.maxBodyBytes,
        apiKeys: config.apiKeys.length,
        adminToken: config.adminToken !== undefined,
        target: { ...config.target },
        defaultModel: config.defaultModel ?? null,
        models: registry.list().map((m) => ({ name: m.name, servedModelName: m.servedModelName, source: m.source })),
      },
    };
  }

  function failure(error: unknown, model: string | null): Response {
    if (!(error instanceof Rejection)) log.error("admin operation failed", { model, error: (error as Error)?.message });
    const r = clientRefusal(error, model);
    return errorResponse(r.status, r.message, r.code, { retryAfter: r.retryAfter });
  }

  return {
    admin_status: guarded(() => new Response(JSON.stringify(status()), { headers: JSON_HEADERS })),

    admin_load: guarded(async (req, name) => {
      let key = SCALE_ONLY_KEY;
      if (config.enableModelSwitch) {
        const model = registry.resolve(name!);
        if (!model) return errorResponse(404, `The model '${clip(name!)}' does not exist`, "model_not_found");
        key = model.name;
      }
      if (!waits(req)) {
        gate.load(key, { signal: new AbortController().signal }).catch((error) =>
          log.warn("admin load failed", { model: key, error: (error as Error)?.message })
        );
        return Response.json({ status: "loading", model: key }, { status: 202 });
      }
      try {
        await gate.load(key, { signal: req.signal });
        return Response.json({ status: "ready", model: key });
      } catch (error) {
        return failure(error, key);
      }
    }),

    admin_unload: guarded(async (req) => {
      if (!waits(req)) {
        gate.unload({ signal: new AbortController().signal }).catch((error) =>
          log.warn("admin unload failed", { error: (error as Error)?.message })
        );
        return Response.json({ status: "unloading" }, { status: 202 });
      }
      try {
        await gate.unload({ signal: req.signal });
        return Response.json({ status: "stopped" });
      } catch (error) {
        return failure(error, null);
      }
    }),
  };
}
