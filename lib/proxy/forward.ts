/**
 * Sending a request on to the engine and relaying its answer: hop-by-hop
 * headers dropped, `x-request-id` and `x-forwarded-*` set, the response body
 * passed through chunk by chunk (never buffered) while counting bytes, and
 * the lease released exactly once — when the body ends, fails, or the
 * client goes away (which also cancels the upstream request).
 *
 * @module
 */
import type { Lease } from "../scaler/types.ts";
import type { EngineResponse } from "./engine_client.ts";
import { errorEvent } from "./errors.ts";
import { encodeText } from "./model.ts";

/** Request headers never forwarded (hop-by-hop, or set by the engine client). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
  "accept-encoding",
]);

/** Response headers never relayed to the client. */
const RESPONSE_HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * What {@link upstreamHeaderList} needs besides the request.
 *
 * @example
 * ```ts
 * import type { UpstreamHeaderOptions } from "./forward.ts";
 * const options: UpstreamHeaderOptions = { requestId: "r1", clientIp: "10.0.0.7", proto: "https", stripAuth: true };
 * ```
 */
export interface UpstreamHeaderOptions {
  /** The request id (propagated or generated). */
  requestId: string;
  /** The client's address for `x-forwarded-for`, if known. */
  clientIp?: string;
  /** Protocol the client used ("http" / "https"). */
  proto: string;
  /** Drop `authorization` and `x-api-key` (the proxy checked them; vLLM has no key). */
  stripAuth: boolean;
}

/**
 * The headers sent upstream, as a list of `[name, value]` pairs (what the
 * proxy gives the engine client): the client's minus hop-by-hop ones (and
 * those its `Connection` header names), plus `x-request-id`,
 * `x-forwarded-for`, `x-forwarded-proto`. `accept-encoding` is set to
 * identity so bytes are relayed exactly as the engine wrote them.
 *
 * @example
 * ```ts
 * import { upstreamHeaderList } from "./forward.ts";
 * const req = new Request("http://proxy/v1/completions", { headers: { connection: "close", "x-a": "1" } });
 * upstreamHeaderList(req.headers, { requestId: "r1", proto: "http", stripAuth: false });
 * // [["x-a", "1"], ["x-request-id", "r1"], ["accept-encoding", "identity"], ["x-forwarded-proto", "http"]]
 * ```
 */
export function upstreamHeaderList(incoming: Headers, options: UpstreamHeaderOptions): [string, string][] {
  const out: [string, string][] = [];
  const named = incoming.get("connection");
  const extra = named ? new Set(named.toLowerCase().split(",").map((s) => s.trim())) : null;
  const clientIp = options.clientIp;
  let prior: string | null = null;
  let hasProto = false;
  // forEach, not for…of: the same pairs without an iterator and a result object per header (about half the cost
  // for a served request's headers).
  incoming.forEach((value, name) => {
    if (HOP_BY_HOP.has(name) || extra?.has(name)) return;
    if (options.stripAuth && (name === "authorization" || name === "x-api-key")) return;
    if (name === "x-request-id") return;
    if (name === "x-forwarded-for") {
      if (clientIp) {
        prior = value;
        return;
      }
    } else if (name === "x-forwarded-proto") hasProto = true;
    out.push([name, value]);
  });
  out.push(["x-request-id", options.requestId], ["accept-encoding", "identity"]);
  if (clientIp) out.push(["x-forwarded-for", prior ? `${prior}, ${clientIp}` : clientIp]);
  if (!hasProto) out.push(["x-forwarded-proto", options.proto]);
  return out;
}

/**
 * The engine's response headers for the client: hop-by-hop ones dropped, `x-request-id` set; `content-length`
 * dropped when the runtime sets it from the body bytes anyway.
 */
function responseHeaderList(
  upstream: [string, string][],
  requestId: string,
  lengthFromBody: boolean,
): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of upstream) {
    if (RESPONSE_HOP_BY_HOP.has(name) || name === "x-request-id") continue;
    if (lengthFromBody && name === "content-length") continue;
    out.push([name, value]);
  }
  out.push(["x-request-id", requestId]);
  return out;
}

/**
 * Why a relayed body ended.
 *
 * @example
 * ```ts
 * import type { RelayEnd } from "./forward.ts";
 * const end: RelayEnd = "client_closed";
 * ```
 */
export type RelayEnd = "complete" | "upstream_error" | "client_closed";

/**
 * Options of {@link relayResponse}.
 *
 * @example
 * ```ts
 * import type { RelayOptions } from "./forward.ts";
 * const options: RelayOptions = {
 *   lease: { model: "m", upstream: "http://x", heldMs: 0, release() {} },
 *   requestId: "r1",
 *   onEnd: (end, bytes) => console.log(end, bytes),
 * };
 * ```
 */
export interface RelayOptions {
  /** Released exactly once when the body is over, whatever the reason. */
  lease: Lease;
  /** The request id, echoed as `x-request-id`. */
  requestId: string;
  /** Called once when the body is over, with the bytes relayed. */
  onEnd: (end: RelayEnd, bytesOut: number) => void;
  /** Write a broken stream's error event in the Anthropic shape (/v1/messages). */
  anthropic?: boolean;
}

/**
 * Wraps the engine's answer for the client: same status and headers (minus
 * hop-by-hop). A small body the engine client already read whole is answered
 * at once (the lease released first); any other body is relayed chunk by
 * chunk. If the engine's connection breaks mid-body, an SSE stream ends with
 * a final `data: {"error":…}` event (which OpenAI SDKs raise as an APIError)
 * and any other body ends with an error (the client sees a truncated
 * response). A client that leaves cancels the engine's body, which closes the
 * engine connection.
 *
 * @example
 * ```ts
 * import { relayResponse } from "./forward.ts";
 * const lease = { model: "m", upstream: "http://x", heldMs: 0, release() {} };
 * const answer = { status: 200, statusText: "OK", headers: [], bytes: new TextEncoder().encode("hi"), body: null };
 * const res = relayResponse(answer, { lease, requestId: "r1", onEnd: () => {} });
 * await res.text(); // "hi"
 * ```
 */
export function relayResponse(upstream: EngineResponse, options: RelayOptions): Response {
  const bytes = upstream.bytes;
  const headers = responseHeaderList(upstream.headers, options.requestId, !upstream.body && !!bytes?.byteLength);
  const init = { status: upstream.status, statusText: upstream.statusText, headers };
  if (!upstream.body) {
    // The request's line first: whatever its release sets off (a sleep, a stop) is logged after it.
    options.onEnd("complete", bytes?.byteLength ?? 0);
    options.lease.release();
    return new Response(bytes?.byteLength ? bytes : null, init);
  }
  const sse = isEventStream(upstream.headers);
  return new Response(relayBody(upstream.body, sse, options), init);
}

/**
 * Largest body the engine client reads whole before answering when the
 * engine declared its length (a small JSON answer): one read and one write
 * instead of a JavaScript stream between two sockets. SSE and bodies of
 * unknown length are always streamed.
 *
 * @example
 * ```ts
 * import { BUFFER_LIMIT } from "./forward.ts";
 * BUFFER_LIMIT; // 65536
 * ```
 */
export const BUFFER_LIMIT = 64 * 1024;

/**
 * Whether an answer's headers say `text/event-stream`.
 *
 * @example
 * ```ts
 * import { isEventStream } from "./forward.ts";
 * isEventStream([["content-type", "text/event-stream; charset=utf-8"]]); // true
 * ```
 */
export function isEventStream(headers: [string, string][]): boolean {
  for (const [name, value] of headers) {
    if (name === "content-type") return value.toLowerCase().startsWith("text/event-stream");
  }
  return false;
}

/**
 * The pass-through body stream used by {@link relayResponse} (also after
 * heartbeats). `sse` selects how a broken upstream is reported.
 *
 * @example
 * ```ts
 * import { relayBody } from "./forward.ts";
 * const lease = { model: "m", upstream: "http://x", heldMs: 0, release() {} };
 * const body = relayBody(new Response("abc").body!, false, { lease, requestId: "r", onEnd: () => {} });
 * await new Response(body).text(); // "abc"
 * ```
 */
export function relayBody(
  source: ReadableStream<Uint8Array>,
  sse: boolean,
  options: RelayOptions,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let bytesOut = 0;
  let ended = false;
  const end = (why: RelayEnd) => {
    if (ended) return;
    ended = true;
    // The request's line first: whatever its release sets off (a sleep, a stop) is logged after it.
    options.onEnd(why, bytesOut);
    options.lease.release();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          end("complete");
          return;
        }
        bytesOut += value.byteLength;
        controller.enqueue(value);
      } catch (error) {
        if (ended) return;
        if (sse) {
          controller.enqueue(
            encodeText(
              errorEvent(502, "The model server's connection broke mid-stream", "upstream_error", options.anthropic),
            ),
          );
          controller.close();
        } else {
          controller.error(error);
        }
        end("upstream_error");
      }
    },
    cancel(reason) {
      end("client_closed");
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
