/**
 * The admin API: `GET /admin/status` (the scaler's state — every model and
 * GPU —, the backend's details, a config summary without secrets),
 * `POST /admin/models/{name}/load` (wake or start),
 * `POST /admin/models/{name}/sleep`, `POST /admin/models/{name}/unload` and
 * `POST /admin/unload` (all models): 202 at once, or `?wait=true` to wait for
 * the outcome. Every admin endpoint needs `Authorization: Bearer <adminToken>`
 * when a token is configured (401 without, 403 with a wrong one).
 *
 * @module
 */
import { Rejection } from "../scaler/types.ts";
import { createAdminCheck } from "./auth.ts";
import { clientRefusal, clip, errorResponse } from "./errors.ts";
import { type OwnDeps, type OwnHandler, SCALE_ONLY_KEY } from "./own.ts";

const JSON_HEADERS = { "content-type": "application/json" };
const PENDING = Symbol("pending");

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
): {
  admin_status: OwnHandler;
  admin_load: OwnHandler;
  admin_sleep: OwnHandler;
  admin_unload_model: OwnHandler;
  admin_unload: OwnHandler;
} {
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

  /** The model key a path names (404 when unknown); "*" in scale-only mode. */
  const keyOf = (name: string): string | Response => {
    if (!config.enableModelSwitch) return SCALE_ONLY_KEY;
    const model = registry.resolve(name);
    return model ? model.name : errorResponse(404, `The model '${clip(name)}' does not exist`, "model_not_found");
  };

  /**
   * Runs an admin operation: with `?wait=true` until it is done (200 with `done`, or the refusal); else 202 at
   * once (its outcome in the log) — unless the scaler refused it at once (e.g. 409: that model may not sleep).
   */
  const operation = async (
    req: Request,
    what: string,
    model: string | null,
    run: (signal: AbortSignal) => Promise<void>,
    accepted: Record<string, unknown>,
    done: Record<string, unknown>,
  ): Promise<Response> => {
    const outcome = run(waits(req) ? req.signal : new AbortController().signal);
    try {
      // A promise the scaler settled in the same turn is listed first: it wins the race against the resolved one.
      // A refusal in the same turn throws here; anything else without ?wait=true is accepted.
      await Promise.race([outcome, Promise.resolve(PENDING)]);
      if (!waits(req)) {
        outcome.catch((error) => log.warn(`admin ${what} failed`, { model, error: (error as Error)?.message }));
        return Response.json(accepted, { status: 202 });
      }
      await outcome;
      return Response.json(done);
    } catch (error) {
      return failure(error, model);
    }
  };

  /** An operation on the model the path names: its 202 body says `accepted`, its 200 body `done`. */
  const onModel = (
    what: string,
    run: (key: string, signal: AbortSignal) => Promise<void>,
    accepted: string,
    done: string,
  ): OwnHandler =>
    guarded((req, name) => {
      const key = keyOf(name!);
      if (key instanceof Response) return key;
      return operation(req, what, key, (signal) => run(key, signal), { status: accepted, model: key }, {
        status: done,
        model: key,
      });
    });

  return {
    admin_status: guarded(() => new Response(JSON.stringify(status()), { headers: JSON_HEADERS })),

    admin_load: onModel("load", (key, signal) => gate.load(key, { signal }), "loading", "ready"),
    admin_sleep: onModel("sleep", (key, signal) => gate.sleep(key, { signal }), "sleeping", "asleep"),
    admin_unload_model: onModel("unload", (key, signal) => gate.unload(key, { signal }), "unloading", "stopped"),

    admin_unload: guarded((req) =>
      operation(
        req,
        "unload",
        null,
        (signal) => gate.unload(null, { signal }),
        { status: "unloading" },
        { status: "stopped" },
      )
    ),
  };
}
