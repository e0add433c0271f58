/**
 * The proxy: a Deno.serve handler with the scaler and registry injected, and
 * the guarded listener that serves it.
 *
 * @example
 * ```ts
 * import { createHandler } from "./mod.ts";
 * typeof createHandler; // "function"
 * ```
 *
 * @module
 */
export { createHandler, type HandlerDeps, type ProxyHandler, SCALE_ONLY_KEY } from "./handler.ts";
export { errorBody, errorEvent, errorResponse, type OpenAiErrorBody } from "./errors.ts";
export { matchRoute, MAX_PATH_LENGTH, type RouteMatch } from "./routes.ts";
export {
  type ConnectionInfo,
  type ConnectionLimits,
  fileDescriptorLimits,
  type GuardedServer,
  serveGuarded,
} from "./listener.ts";
