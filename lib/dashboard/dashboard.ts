/**
 * The dashboard's endpoints, in front of the proxy's handler:
 *
 * - `GET /ui` — the page (and `/ui/app.js`, `/ui/style.css`): static files
 *   from this folder, no admin token needed (the page holds no data), served
 *   with a Content-Security-Policy that allows this origin only.
 * - `GET /admin/events` — the server-sent events of {@link EventHub}. Admin
 *   token rule of the other admin endpoints (`Authorization: Bearer`), and,
 *   on this endpoint only, the token as the query parameter `token` since a
 *   browser's `EventSource` cannot send headers. The token is compared in
 *   constant time and never logged.
 *
 * Every other request goes to the proxy's handler untouched. Snapshots are
 * that handler's own GET /admin/status answer, so they cannot drift from it.
 *
 * @module
 */
import type { Logger, LogSink } from "../log.ts";
import { createAdminCheck } from "../proxy/auth.ts";
import { errorResponse } from "../proxy/errors.ts";
import type { ProxyHandler } from "../proxy/handler.ts";
import type { ConnectionInfo } from "../proxy/listener.ts";
import { PAGE_ASSETS } from "./assets.ts";
import { EventHub, type EventHubTuning } from "./event_hub.ts";

/**
 * What the dashboard needs before the proxy exists.
 *
 * @example
 * ```ts
 * import type { DashboardOptions } from "./dashboard.ts";
 * import { silentLogger } from "../log.ts";
 * const options: DashboardOptions = { adminToken: "admin-secret", log: silentLogger };
 * ```
 */
export interface DashboardOptions {
  /** Protects /admin/events as it protects the other admin endpoints. */
  adminToken?: string;
  /** Where the dashboard's own lines go (dropped clients): the untapped logger, so they stay off the tail. */
  log: Logger;
  /** Overrides of the hub's limits (tests, benchmarks). */
  tuning?: Partial<EventHubTuning>;
}

const EVENTS_PATH = "/admin/events";
const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  // no-transform also keeps Deno.serve from compressing (and so buffering) the stream.
  "cache-control": "no-store, no-transform",
  "x-accel-buffering": "no",
};

/**
 * The dashboard: its log sink (give it to `tapLogger` before anything
 * logs), then {@link Dashboard.wrap} around the proxy's handler.
 *
 * @example
 * ```ts
 * import { Dashboard } from "./dashboard.ts";
 * import { silentLogger } from "../log.ts";
 * const dashboard = new Dashboard({ log: silentLogger });
 * const api = Object.assign(() => Promise.resolve(Response.json({ state: "idle" })), { close() {} });
 * const handler = dashboard.wrap(api, () => () => {});
 * (await handler(new Request("http://proxy/ui"))).headers.get("content-type"); // "text/html; charset=utf-8"
 * dashboard.close();
 * ```
 */
export class Dashboard {
  readonly #adminCheck: (authorization: string | null) => Promise<"ok" | "missing" | "wrong">;
  readonly #statusRequest: () => Request;
  readonly #hub: EventHub;
  #api: ProxyHandler | null = null;
  #onChange: ((listener: () => void) => () => void) | null = null;

  /** Creates the dashboard; nothing runs until an event stream is opened. */
  constructor(options: DashboardOptions) {
    const token = options.adminToken;
    this.#adminCheck = createAdminCheck(token);
    this.#statusRequest = () =>
      new Request("http://vllm-chill.internal/admin/status", {
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });
    this.#hub = new EventHub({
      snapshot: () => this.#readStatus(),
      onChange: (listener) => this.#onChange?.(listener) ?? (() => {}),
      log: options.log.with({ component: "dashboard" }),
      tuning: options.tuning,
    });
  }

  /** Where the proxy's log lines go for the live log tail (see `tapLogger` in lib/log.ts). */
  get logSink(): LogSink {
    return this.#hub;
  }

  /** The event hub (open streams, events sent). */
  get hub(): EventHub {
    return this.#hub;
  }

  /**
   * A handler that answers the dashboard's paths and passes everything else to `api`; `onChange` is the
   * scaler's change signal (`Scaler.onChange`).
   */
  wrap(api: ProxyHandler, onChange: (listener: () => void) => () => void): ProxyHandler {
    this.#api = api;
    this.#onChange = onChange;
    const handler = (req: Request, info?: ConnectionInfo) => {
      // Warm path: a string comparison, no URL parsing, for every path that is not the dashboard's.
      const url = req.url;
      const path = url.indexOf("/", url.indexOf("//") + 2);
      if (path < 0 || !(url.startsWith("/ui", path) || url.startsWith(EVENTS_PATH, path))) return api(req, info);
      return this.#serve(req, new URL(url), api, info);
    };
    return Object.assign(handler, { close: () => api.close() });
  }

  /** Ends every event stream (at shutdown: an open stream would hold the server's graceful shutdown). */
  close(): void {
    this.#hub.close();
  }

  async #serve(req: Request, url: URL, api: ProxyHandler, info?: ConnectionInfo): Promise<Response> {
    const path = url.pathname;
    if (path === EVENTS_PATH) {
      if (req.method !== "GET") return methodNotAllowed(req.method, path);
      return await this.#events(req, url);
    }
    if (path === "/ui/") return new Response(null, { status: 308, headers: { location: "../ui" } });
    const asset = PAGE_ASSETS.get(path);
    if (!asset) return api(req, info);
    if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed(req.method, path);
    return new Response(asset.body, { headers: asset.headers });
  }

  async #events(req: Request, url: URL): Promise<Response> {
    const header = req.headers.get("authorization");
    const query = url.searchParams.get("token");
    const verdict = await this.#adminCheck(header ?? (query === null ? null : `Bearer ${query}`));
    if (verdict === "missing") {
      return errorResponse(
        401,
        "Admin endpoints need 'Authorization: Bearer <adminToken>' (on /admin/events also '?token=<adminToken>')",
        "admin_token_required",
      );
    }
    if (verdict === "wrong") return errorResponse(403, "Incorrect admin token", "admin_token_invalid");
    const stream = this.#hub.connect();
    if (stream === null) {
      return errorResponse(503, "Too many dashboards are open; close one or retry later", "too_many_dashboards", {
        retryAfter: 5,
      });
    }
    return new Response(stream, { headers: SSE_HEADERS });
  }

  async #readStatus(): Promise<string> {
    if (this.#api === null) throw new Error("the dashboard is not attached to the proxy yet");
    const res = await this.#api(this.#statusRequest());
    const text = await res.text();
    if (res.status !== 200) throw new Error(`GET /admin/status answered ${res.status}`);
    return text;
  }
}

function methodNotAllowed(method: string, path: string): Response {
  return errorResponse(405, `${method} is not allowed on ${path}; use GET`, "method_not_allowed", {
    headers: { allow: "GET" },
  });
}
