/**
 * The proxy's own endpoints (they never wake the GPU): what each needs,
 * the shape of a handler, and the table from {@link OwnRoute} to handler.
 * Adding one is a line in `routes.ts` (path → route name) and a handler in
 * the file of its family (`probes.ts`, `models_list.ts`, `admin.ts`, or a
 * new one spread into {@link createOwnHandlers}); the compiler refuses a
 * route without a handler.
 *
 * @module
 */
import type { ChillConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { ModelRegistry } from "../models/registry.ts";
import type { Gate } from "../scaler/types.ts";
import type { KeyChecker } from "./auth.ts";
import { createAdminHandlers } from "./admin.ts";
import { createModelListHandlers } from "./models_list.ts";
import { createProbeHandlers } from "./probes.ts";
import type { OwnRoute } from "./routes.ts";

/**
 * The gate key of every request in scale-only mode (the body is not routed on).
 *
 * @example
 * ```ts
 * import { SCALE_ONLY_KEY } from "./own.ts";
 * SCALE_ONLY_KEY; // "*"
 * ```
 */
export const SCALE_ONLY_KEY = "*";

/**
 * What the own endpoints are built from.
 *
 * @example
 * ```ts
 * import type { OwnDeps } from "./own.ts";
 * const ready: OwnDeps["ready"] = () => true;
 * ```
 */
export interface OwnDeps {
  /** The validated config. */
  config: Readonly<ChillConfig>;
  /** The scaler as the proxy sees it. */
  gate: Gate;
  /** Known models (config + VLLMModel objects). */
  registry: ModelRegistry;
  /** Metrics (rendered by GET /metrics). */
  metrics: Metrics;
  /** Where warnings go. */
  log: Logger;
  /** Whether the proxy is ready to take traffic (GET /readyz). */
  ready: () => boolean;
  /** The client API keys (GET /v1/models needs one when any is configured). */
  keys: KeyChecker;
}

/**
 * An own endpoint: a web-standard handler; `param` is the path's variable
 * part when the route has one (`/admin/models/{name}/load`).
 *
 * @example
 * ```ts
 * import type { OwnHandler } from "./own.ts";
 * const hello: OwnHandler = () => new Response("hello");
 * ```
 */
export type OwnHandler = (req: Request, param?: string) => Response | Promise<Response>;

/**
 * A handler for every own route.
 *
 * @example
 * ```ts
 * import type { OwnHandlers } from "./own.ts";
 * type Health = OwnHandlers["healthz"];
 * ```
 */
export type OwnHandlers = Record<OwnRoute, OwnHandler>;

/**
 * Builds every own endpoint's handler.
 *
 * @example
 * ```ts
 * import { createOwnHandlers } from "./own.ts";
 * import { createKeyChecker } from "./auth.ts";
 * import { defineVllmChill } from "../config/define.ts";
 * import { ModelRegistry } from "../models/registry.ts";
 * import { createMetrics } from "../metrics.ts";
 * import { silentLogger } from "../log.ts";
 * import type { Gate } from "../scaler/types.ts";
 * const config = defineVllmChill({});
 * const own = createOwnHandlers({
 *   config, gate: {} as Gate, registry: new ModelRegistry(), metrics: createMetrics(), log: silentLogger,
 *   ready: () => true, keys: createKeyChecker([]),
 * });
 * (await own.healthz(new Request("http://proxy/healthz"))).status; // 200
 * ```
 */
export function createOwnHandlers(deps: OwnDeps): OwnHandlers {
  return { ...createProbeHandlers(deps), ...createModelListHandlers(deps), ...createAdminHandlers(deps) };
}
