/**
 * The dashboard: `GET /ui` (one page, no build step, no external URL) and
 * `GET /admin/events` (server-sent events), in front of the proxy's handler.
 *
 * @example
 * ```ts
 * import { Dashboard } from "./mod.ts";
 * typeof Dashboard; // "function"
 * ```
 *
 * @module
 */
export { Dashboard, type DashboardOptions } from "./dashboard.ts";
export { DEFAULT_HUB_TUNING, EventHub, type EventHubOptions, type EventHubTuning, frame } from "./event_hub.ts";
