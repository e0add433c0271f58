/**
 * The proxy's request handler for Deno.serve: routing (`routes.ts`) to the
 * own endpoints (`own.ts`: health, readiness, metrics, model list, admin API
 * — none of them wakes the GPU) and forwarding of the vLLM routes (auth,
 * bounded body read, model lookup, hold until the engine is ready, streaming
 * pass-through).
 *
 * Statuses (OpenAI error body `{"error":{"message","type","param","code"}}`):
 * 400 malformed JSON / multipart, `model` missing or not a string · 401
 * missing or wrong API key (`invalid_api_key`) or admin token · 403 wrong
 * admin token, key not allowed for the model (`model_not_allowed`) · 404
 * unknown path (`not_found`), unknown model (`model_not_found`) · 405 wrong
 * method · 413 body over `maxBodyBytes` (`request_too_large`) · 414 path over
 * 2048 characters · 415 a body that is neither JSON nor multipart/form-data
 * when models are switched · 429/503 (+ Retry-After)/504 from the scaler ·
 * 502 engine unreachable (`upstream_error`) · 499 (logged only) client left.
 *
 * With API keys configured the client's `Authorization` and `x-api-key`
 * headers are not forwarded: the engine behind the proxy has no key.
 *
 * @module
 */
import type { NamedModel } from "../config/schema.ts";
import { type Lease, Rejection } from "../scaler/types.ts";
import { delay } from "../delay.ts";
import { type ApiKeyIdentity, bearerToken, createKeyChecker, mayUse } from "./auth.ts";
import { clientRefusal, clip, errorResponse } from "./errors.ts";
import { createEngineClient, EngineError, type EngineResponse } from "./engine_client.ts";
import { BUFFER_LIMIT, relayResponse, upstreamHeaderList } from "./forward.ts";
import { heartbeatResponse } from "./heartbeat.ts";
import { type JsonScan, NOT_A_STRING, scanJsonObject, setJsonModel } from "./json_scan.ts";
import { findMultipartModel, type MultipartModel, setMultipartModel } from "./model.ts";
import { type BodyRefusal, createUploadGuard } from "./uploads.ts";
import { createOwnHandlers, type OwnDeps, SCALE_ONLY_KEY } from "./own.ts";
import type { ConnectionInfo } from "./listener.ts";
import { matchRoute, type OwnRoute } from "./routes.ts";

export { SCALE_ONLY_KEY };

/**
 * What the handler needs.
 *
 * @example
 * ```ts
 * import type { HandlerDeps } from "./handler.ts";
 * const ready: HandlerDeps["ready"] = () => true;
 * ```
 */
export interface HandlerDeps extends Omit<OwnDeps, "keys"> {
  /** A request body with no new bytes for this long is dropped with 408 (default 30 s; tests inject less). */
  bodyStallMs?: number;
}

/**
 * A Deno.serve handler that owns its engine connections (`close` ends them).
 *
 * @example
 * ```ts
 * import type { ProxyHandler } from "./handler.ts";
 * const handler: ProxyHandler = Object.assign(() => Promise.resolve(new Response("ok")), { close() {} });
 * // Deno.serve({ port: 8080 }, handler);
 * ```
 */
export interface ProxyHandler {
  /** Answers one request. */
  (req: Request, info?: ConnectionInfo): Promise<Response>;
  /** Closes the connections kept to engines (in-flight requests to them fail). */
  close(): void;
}

const MESSAGES_PATH = "/v1/messages";
const REQUEST_ID = /^[\w.:@-]{1,128}$/;

/** Per-request bookkeeping for the log line and metrics. */
interface Ctx {
  id: string;
  method: string;
  path: string;
  started: number;
  model: string;
  keyName?: string;
  bytesIn: number;
}

/** A body with no new bytes for this long is dropped (408). */
const BODY_STALL_MS = 30_000;
/** The default `maxUploadingBytes`: this many times `maxBodyBytes`. */
const UPLOAD_BUDGET_FACTOR = 4;

/** Attempts at connecting to the engine before a 502 (the first plus re-holds after a refused connection). */
const CONNECT_ATTEMPTS = 3;
/** Pause before re-holding a request whose connection was refused (× attempt). */
const CONNECT_RETRY_MS = 200;

/**
 * Creates the handler.
 *
 * @example
 * ```ts
 * import { createHandler } from "./handler.ts";
 * import { defineVllmChill } from "../config/define.ts";
 * import { ModelRegistry } from "../models/registry.ts";
 * import { createMetrics } from "../metrics.ts";
 * import { silentLogger } from "../log.ts";
 * import type { Gate } from "../scaler/types.ts";
 * const config = defineVllmChill({});
 * const gate = {} as Gate; // the scaler's gate in real use
 * const handler = createHandler({
 *   config, gate, registry: new ModelRegistry(), metrics: createMetrics(), log: silentLogger, ready: () => true,
 * });
 * (await handler(new Request("http://proxy/healthz"))).status; // 200
 * handler.close();
 * ```
 */
export function createHandler(deps: HandlerDeps): ProxyHandler {
  const { config, gate, registry, metrics, log } = deps;
  const keys = createKeyChecker(config.apiKeys);
  const own = createOwnHandlers({ ...deps, keys });
  const engines = createEngineClient({ bufferLimit: BUFFER_LIMIT });
  const uploads = createUploadGuard({
    budgetBytes: config.maxUploadingBytes ?? UPLOAD_BUDGET_FACTOR * config.maxBodyBytes,
    stallMs: deps.bodyStallMs ?? BODY_STALL_MS,
  });
  const switching = config.enableModelSwitch;
  const maxBody = config.maxBodyBytes;
  const heartbeatMs = config.heartbeatInterval;

  function done(ctx: Ctx, status: number, bytesOut: number, heldMs: number, reason?: string): void {
    const durationMs = performance.now() - ctx.started;
    metrics.requestsTotal.inc({ model: ctx.model, code: String(status) });
    metrics.requestDuration.observe({ model: ctx.model }, durationMs / 1000);
    if (reason) metrics.rejectedRequestsTotal.inc({ reason });
    log.info("request", {
      id: ctx.id,
      method: ctx.method,
      path: ctx.path,
      model: ctx.model,
      status,
      durationMs: Math.round(durationMs * 100) / 100,
      heldMs,
      bytesIn: ctx.bytesIn,
      bytesOut,
      apiKey: ctx.keyName,
    });
  }

  function reject(
    ctx: Ctx,
    status: number,
    message: string,
    code: string,
    reason: string | undefined,
    extra: { retryAfter?: number; heldMs?: number; headers?: HeadersInit } = {},
  ): Response {
    done(ctx, status, 0, extra.heldMs ?? 0, reason);
    return errorResponse(status, message, code, {
      retryAfter: extra.retryAfter,
      headers: { "x-request-id": ctx.id, ...extra.headers as Record<string, string> },
    });
  }

  async function forwardRoute(
    req: Request,
    url: URL,
    route: { method: string; hasBody: boolean; xApiKey: boolean },
    info: ConnectionInfo | undefined,
  ): Promise<Response> {
    const given = req.headers.get("x-request-id");
    const ctx: Ctx = {
      id: given && REQUEST_ID.test(given) ? given : crypto.randomUUID(),
      method: req.method,
      path: url.pathname,
      started: performance.now(),
      model: "",
      bytesIn: 0,
    };
    if (req.method !== route.method) {
      return reject(
        ctx,
        405,
        `${req.method} is not allowed on ${url.pathname}; use ${route.method}`,
        "method_not_allowed",
        "bad_request",
        {
          headers: { allow: route.method },
        },
      );
    }
    let identity: ApiKeyIdentity | null = null;
    if (keys.enabled) {
      const token = bearerToken(req.headers.get("authorization")) ??
        (route.xApiKey ? req.headers.get("x-api-key") : null);
      identity = await keys.check(token);
      if (!identity) {
        const message = token === null
          ? "Missing API key: send it as 'Authorization: Bearer <key>'"
          : "Incorrect API key provided";
        return reject(ctx, 401, message, "invalid_api_key", "unauthorized");
      }
      ctx.keyName = identity.name;
    }

    let body: Uint8Array | null = null;
    if (route.hasBody) {
      const read = await uploads.read(req, maxBody);
      if (!read.ok) {
        // A stalled client's connection is not kept for its next request.
        if (read.refusal === "stalled") info?.closeAfterAnswer?.();
        return refuseBody(ctx, read.refusal);
      }
      body = read.bytes;
      ctx.bytesIn = body.byteLength;
    }

    const contentType = req.headers.get("content-type") ?? "";
    const media = mediaType(contentType);
    let json: JsonScan | null = null;
    let key = SCALE_ONLY_KEY;

    if (switching && body) {
      let requested: unknown;
      let multipart: MultipartModel | null = null;
      if (media === "json") {
        const scanned = scanJsonObject(body);
        if (typeof scanned === "string") return reject(ctx, 400, scanned, "invalid_json", "bad_request");
        json = scanned;
        requested = scanned.model;
        if (requested === NOT_A_STRING) {
          return reject(ctx, 400, "'model' must be a string", "invalid_model", "bad_request", {});
        }
      } else if (media === "multipart") {
        const found = findMultipartModel(body, contentType);
        if (typeof found === "string") return reject(ctx, 400, found, "invalid_multipart", "bad_request");
        multipart = found;
        requested = found.model;
      } else {
        return reject(
          ctx,
          415,
          `Content-Type must be application/json (or multipart/form-data for audio), got '${contentType}'`,
          "unsupported_media_type",
          "bad_request",
        );
      }
      const model = resolveModel(ctx, requested || undefined);
      if (model instanceof Response) return model;
      if (!mayUse(identity, [model.name, model.servedModelName])) return notAllowed(ctx, model.name);
      if (requested !== model.servedModelName) {
        body = multipart
          ? setMultipartModel(body, multipart, model.servedModelName)
          : setJsonModel(body, json!, model.servedModelName);
      }
      key = model.name;
    } else if (switching) {
      // Body-less routes (GET /v1/responses/{id}): whatever the engine serves now, else the default model.
      const active = gate.status().activeModel ?? (config.defaultModel && registry.resolve(config.defaultModel)?.name);
      if (!active) {
        return reject(
          ctx,
          404,
          "No model is loaded, so there is nothing to ask for this",
          "model_not_found",
          "unknown_model",
        );
      }
      if (!mayUse(identity, [active, registry.resolve(active)?.servedModelName])) return notAllowed(ctx, active);
      key = active;
    } else if (identity?.models && body) {
      // Scale-only mode never routes on the body, but a key limited to some models must be checked.
      let requested: string | undefined;
      if (media === "multipart") {
        const found = findMultipartModel(body, contentType);
        if (typeof found !== "string") requested = found.model;
      } else {
        const scanned = scanJsonObject(body);
        if (typeof scanned !== "string") {
          json = scanned;
          if (typeof scanned.model === "string") requested = scanned.model;
        }
      }
      const model = requested === undefined ? undefined : registry.resolve(requested);
      if (!mayUse(identity, [requested, model?.name, model?.servedModelName])) {
        return notAllowed(ctx, requested ?? "(none)");
      }
    }

    return hold(req, url, ctx, key, body, json ? json.stream : null, identity !== null, info);
  }

  function refuseBody(ctx: Ctx, refusal: BodyRefusal): Response {
    switch (refusal) {
      case "too_large":
        return reject(
          ctx,
          413,
          `The request body is larger than maxBodyBytes (${maxBody} bytes)`,
          "request_too_large",
          "body_too_large",
        );
      case "over_budget":
        log.warn("request bodies over the upload budget: refusing new ones", { id: ctx.id, inUse: uploads.inUse() });
        return reject(
          ctx,
          503,
          "The proxy is receiving too many request bodies at once; retry shortly",
          "upload_budget_exceeded",
          "upload_budget",
          { retryAfter: 1 },
        );
      case "stalled":
        metrics.slowClientsTotal.inc({ phase: "body" });
        return reject(ctx, 408, "The request body stopped arriving", "request_timeout", "slow_client", {
          headers: { connection: "close" },
        });
      case "client_closed":
        return clientLeft(ctx, 0);
    }
  }

  /** The client left before its answer: logged as 499 (nobody reads the response). */
  function clientLeft(ctx: Ctx, heldMs: number): Response {
    done(ctx, 499, 0, heldMs, "client_closed");
    return new Response(null, { status: 499 });
  }

  function resolveModel(ctx: Ctx, requested: unknown): NamedModel | Response {
    const name = (requested as string | undefined) ?? config.defaultModel;
    if (name === undefined) {
      return reject(
        ctx,
        400,
        "The request names no 'model' and no defaultModel is configured; set 'model' to one of GET /v1/models",
        "model_required",
        "bad_request",
        {},
      );
    }
    const model = registry.resolve(name);
    if (!model) {
      return reject(
        ctx,
        404,
        `The model '${clip(name)}' does not exist; GET /v1/models lists the models this proxy serves`,
        "model_not_found",
        "unknown_model",
      );
    }
    return model;
  }

  function notAllowed(ctx: Ctx, model: string): Response {
    return reject(ctx, 403, `This API key may not use the model '${clip(model)}'`, "model_not_allowed", "forbidden");
  }

  async function hold(
    req: Request,
    url: URL,
    ctx: Ctx,
    key: string,
    body: Uint8Array | null,
    stream: boolean | null,
    stripAuth: boolean,
    info: ConnectionInfo | undefined,
  ): Promise<Response> {
    ctx.model = key;
    const target = url.pathname + url.search;
    const proto = url.protocol === "https:" ? "https" : "http";
    // Built once the request is granted: a held request keeps only what it came with.
    let headers: [string, string][] | null = null;
    const send = (lease: Lease, signal: AbortSignal) =>
      engines.send({
        upstream: lease.upstream,
        path: target,
        method: req.method,
        headers: headers ??= upstreamHeaderList(req.headers, {
          requestId: ctx.id,
          clientIp: (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname,
          proto,
          stripAuth,
        }),
        body,
        signal,
      });

    let lease = gate.tryAcquire(key);
    if (!lease) {
      if (heartbeatMs > 0 && body && stream === null && !switching) stream = isStreaming(body);
      if (stream && heartbeatMs > 0) {
        return heartbeatResponse({
          model: key === SCALE_ONLY_KEY ? "the model" : key,
          intervalMs: heartbeatMs,
          requestId: ctx.id,
          anthropic: ctx.path === MESSAGES_PATH,
          // The response is already sent: the client leaving shows up as a cancelled body, not as req.signal.
          acquire: (signal) => gate.acquire(key, { signal }),
          connect: (granted, signal) => send(granted, signal),
          // Rejections are counted by the scaler, under their code.
          onEnd: (status, bytesOut, heldMs, end) =>
            done(ctx, status, bytesOut, heldMs, end === "complete" || end === "rejected" ? undefined : end),
        });
      }
      const heldFrom = performance.now();
      try {
        lease = await gate.acquire(key, { signal: req.signal });
      } catch (error) {
        const heldMs = Math.round(performance.now() - heldFrom);
        if (req.signal.aborted) {
          return clientLeft(ctx, heldMs);
        }
        // The scaler already counted its own rejections in rejected_requests_total{reason=<code>}.
        const counted = error instanceof Rejection;
        if (!counted) log.error("holding a request failed", { id: ctx.id, error: (error as Error)?.message });
        const r = clientRefusal(error, key);
        return reject(ctx, r.status, r.message, r.code, counted ? undefined : r.code, {
          retryAfter: r.retryAfter,
          heldMs,
        });
      }
    }
    let granted = lease;
    let upstream: EngineResponse;
    // The client's signal aborts the engine request until the engine's answer is handed over (the engine client
    // stops listening then); after that, a client that leaves cancels the relayed body, which closes the engine's
    // connection.
    for (let attempt = 1;; attempt++) {
      try {
        upstream = await send(granted, req.signal);
        break;
      } catch (error) {
        granted.release();
        if (req.signal.aborted) {
          return clientLeft(ctx, granted.heldMs);
        }
        // The engine refused the connection (it went away between the grant and the connection: a pod that
        // died before the watch said so): the request never left, so it may wait for the scaler to notice and
        // be held again. Anything else may have reached an engine and is never sent twice.
        const refused = error instanceof EngineError && error.kind === "refused" && !error.sent;
        if (attempt < CONNECT_ATTEMPTS && refused) {
          log.warn("engine refused the connection; holding the request again", {
            id: ctx.id,
            upstream: granted.upstream,
            attempt,
          });
          await delay(CONNECT_RETRY_MS * attempt, req.signal);
          try {
            granted = gate.tryAcquire(key) ?? await gate.acquire(key, { signal: req.signal });
          } catch (rejection) {
            if (req.signal.aborted) {
              return clientLeft(ctx, granted.heldMs);
            }
            if (!(rejection instanceof Rejection)) throw rejection;
            const r = clientRefusal(rejection, key);
            return reject(ctx, r.status, r.message, r.code, undefined, { retryAfter: r.retryAfter });
          }
          continue;
        }
        const message = (error as Error)?.message;
        if (error instanceof EngineError && error.kind === "exhausted") {
          log.warn("no file descriptor left to reach the engine", { id: ctx.id, upstream: granted.upstream });
          return reject(ctx, 503, message, "proxy_overloaded", "overloaded", {
            retryAfter: 1,
            heldMs: granted.heldMs,
          });
        }
        log.warn("upstream unreachable", {
          id: ctx.id,
          upstream: granted.upstream,
          error: message,
          sent: error instanceof EngineError ? error.sent : undefined,
        });
        return reject(
          ctx,
          502,
          `The model server could not be reached: ${message}`,
          "upstream_error",
          "upstream_error",
          { heldMs: granted.heldMs },
        );
      }
    }
    const lastLease = granted;
    const status = upstream.status;
    return relayResponse(upstream, {
      lease: lastLease,
      requestId: ctx.id,
      anthropic: ctx.path === MESSAGES_PATH,
      onEnd: (end, bytesOut) =>
        done(
          ctx,
          end === "complete" ? status : end === "upstream_error" ? 502 : 499,
          bytesOut,
          lastLease.heldMs,
          end === "complete" ? undefined : end,
        ),
    });
  }

  function ownRoute(req: Request, path: string, route: OwnRoute, method: string, param?: string) {
    if (req.method !== method && !(method === "GET" && req.method === "HEAD")) {
      return errorResponse(405, `${req.method} is not allowed on ${path}; use ${method}`, "method_not_allowed", {
        headers: { allow: method },
      });
    }
    return own[route](req, param);
  }

  const handle = async (req: Request, info?: ConnectionInfo): Promise<Response> => {
    const url = new URL(req.url);
    const route = matchRoute(url.pathname);
    switch (route.kind) {
      case "forward":
      case "own":
        try {
          return route.kind === "forward"
            ? await forwardRoute(req, url, route, info)
            : await ownRoute(req, url.pathname, route.route, route.method, route.param);
        } catch (error) {
          // A client that left while its body was being read, or a bug: never an unhandled rejection.
          if (req.signal.aborted) return new Response(null, { status: 499 });
          log.error("request failed", { path: url.pathname, error: (error as Error)?.message });
          return errorResponse(500, "The proxy failed to handle the request", "internal_error");
        }
      case "too_long":
        metrics.rejectedRequestsTotal.inc({ reason: "bad_request" });
        return errorResponse(414, `The path is longer than 2048 characters`, "uri_too_long");
      default:
        metrics.rejectedRequestsTotal.inc({ reason: "unknown_path" });
        return errorResponse(404, `Unknown path ${url.pathname.slice(0, 200)}`, "not_found");
    }
  };
  return Object.assign(handle, {
    close: () => {
      engines.close();
      uploads.close();
    },
  });
}

function mediaType(contentType: string): "json" | "multipart" | "other" {
  if (contentType === "" || contentType.startsWith("application/json")) return "json";
  const semi = contentType.indexOf(";");
  const type = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  if (type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"))) return "json";
  if (type === "multipart/form-data") return "multipart";
  return "other";
}

const STREAM_MARK = new TextEncoder().encode('"stream"');

/** Whether a body that was not scanned asks for a stream (scale-only mode, cold path only). */
function isStreaming(body: Uint8Array): boolean {
  if (!includesBytes(body, STREAM_MARK)) return false;
  const scanned = scanJsonObject(body);
  return typeof scanned !== "string" && scanned.stream;
}

function includesBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}
