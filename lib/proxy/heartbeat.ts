/**
 * Heartbeats for held streaming requests: the response head goes out at
 * once (200, text/event-stream) and an SSE comment line every interval
 * (`: waiting for <model> (cold start, 12s)`), which every SSE client
 * ignores, so ingress and client idle timeouts do not fire during a long
 * cold start. Once the engine answers, its stream follows unchanged; if the
 * hold is refused or the engine answers with an error, the stream ends with
 * one OpenAI-style error event (`data: {"error":{...}}`).
 *
 * @module
 */
import type { Lease } from "../scaler/types.ts";
import { clientRefusal, errorEvent } from "./errors.ts";
import type { EngineResponse } from "./engine_client.ts";
import { isEventStream, relayBody, type RelayEnd } from "./forward.ts";
import { encodeText } from "./model.ts";

/**
 * Options of {@link heartbeatResponse}.
 *
 * @example
 * ```ts
 * import type { HeartbeatOptions } from "./heartbeat.ts";
 * const options: Partial<HeartbeatOptions> = { model: "qwen3-8b", intervalMs: 10_000 };
 * ```
 */
export interface HeartbeatOptions {
  /** Model name shown in the comment lines. */
  model: string;
  /** Milliseconds between comment lines (> 0). */
  intervalMs: number;
  /** The request id, echoed as `x-request-id`. */
  requestId: string;
  /** Holds until the model is ready (the gate's acquire); rejects with a Rejection. */
  acquire: (signal: AbortSignal) => Promise<Lease>;
  /** Sends the request upstream; throws when the engine cannot be reached. */
  connect: (lease: Lease, signal: AbortSignal) => Promise<EngineResponse>;
  /** Write error events in the Anthropic shape (/v1/messages). */
  anthropic?: boolean;
  /** Called once when the stream is over: the effective status, bytes written, ms held. */
  onEnd: (status: number, bytesOut: number, heldMs: number, end: RelayEnd | "rejected") => void;
}

const MAX_ERROR_BODY = 64 * 1024;

/**
 * A 200 `text/event-stream` response that sends heartbeats until the lease
 * arrives, then the upstream stream.
 *
 * @example
 * ```ts
 * import { heartbeatResponse } from "./heartbeat.ts";
 * const lease = { model: "m", upstream: "http://x", heldMs: 5, release() {} };
 * const res = heartbeatResponse({
 *   model: "m", intervalMs: 1000, requestId: "r1",
 *   acquire: () => Promise.resolve(lease),
 *   connect: () => Promise.resolve({
 *     status: 200, statusText: "OK", headers: [["content-type", "text/event-stream"]], body: null,
 *     bytes: new TextEncoder().encode("data: [DONE]\n\n"),
 *   }),
 *   onEnd: () => {},
 * });
 * (await res.text()).endsWith("data: [DONE]\n\n"); // true
 * ```
 */
export function heartbeatResponse(options: HeartbeatOptions): Response {
  const abort = new AbortController();
  const started = Date.now();
  let timer: ReturnType<typeof setInterval> | undefined;
  let upstream: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let finished = false;
  let bytesOut = 0;
  let heldMs = 0;
  const stopBeats = () => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
  const finish = (status: number, end: RelayEnd | "rejected") => {
    if (finished) return;
    finished = true;
    stopBeats();
    options.onEnd(status, bytesOut, heldMs, end);
  };
  let ready: Promise<void>;

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (text: string) => {
        const bytes = encodeText(text);
        bytesOut += bytes.byteLength;
        controller.enqueue(bytes);
      };
      const beat = () =>
        write(`: waiting for ${options.model} (cold start, ${Math.round((Date.now() - started) / 1000)}s)\n\n`);
      beat();
      timer = setInterval(beat, options.intervalMs);
      ready = (async () => {
        let lease: Lease;
        try {
          lease = await options.acquire(abort.signal);
        } catch (error) {
          heldMs = Date.now() - started;
          if (finished) return;
          const rejection = clientRefusal(error, options.model === "the model" ? null : options.model);
          stopBeats();
          write(errorEvent(rejection.status, rejection.message, rejection.code, options.anthropic));
          controller.close();
          finish(rejection.status, "rejected");
          return;
        }
        heldMs = lease.heldMs || Date.now() - started;
        stopBeats();
        if (finished) {
          lease.release();
          return;
        }
        let res: EngineResponse;
        try {
          res = await options.connect(lease, abort.signal);
        } catch (error) {
          lease.release();
          if (finished) return;
          write(
            errorEvent(
              502,
              `The model server could not be reached: ${(error as Error)?.message}`,
              "upstream_error",
              options.anthropic,
            ),
          );
          controller.close();
          finish(502, "upstream_error");
          return;
        }
        if (res.status < 200 || res.status > 299) {
          const detail = await upstreamError(res);
          lease.release();
          if (finished) return;
          write(errorEvent(res.status, detail.message, detail.code, options.anthropic));
          controller.close();
          finish(res.status, "upstream_error");
          return;
        }
        upstream = relayBody(bodyOf(res), isEventStream(res.headers), {
          lease,
          anthropic: options.anthropic,
          requestId: options.requestId,
          onEnd: (end, n) => {
            bytesOut += n;
            finish(end === "complete" ? 200 : end === "upstream_error" ? 502 : 499, end);
          },
        }).getReader();
      })().catch((error) => {
        // Never an unhandled rejection (it would end the process): fail this stream only.
        stopBeats();
        try {
          controller.error(error);
        } catch { /* already closed */ }
        finish(500, "upstream_error");
      });
    },
    async pull(controller) {
      await ready;
      if (!upstream) return;
      try {
        const { done, value } = await upstream.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        controller.error(error);
      }
    },
    async cancel(reason) {
      // A client that leaves while still held was held until now.
      if (heldMs === 0) heldMs = Date.now() - started;
      abort.abort(reason ?? new DOMException("client closed the stream", "AbortError"));
      if (upstream) await upstream.cancel(reason).catch(() => {});
      finish(499, "client_closed");
    },
  }, { highWaterMark: 0 });

  return new Response(body, {
    status: 200,
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
      "x-request-id": options.requestId,
    },
  });
}

/** The answer's body as a stream (a small one the engine client read whole becomes one chunk). */
function bodyOf(res: EngineResponse): ReadableStream<Uint8Array> {
  if (res.body) return res.body;
  const bytes = res.bytes;
  return new ReadableStream({
    start(controller) {
      if (bytes?.byteLength) controller.enqueue(bytes);
      controller.close();
    },
  });
}

async function upstreamError(res: EngineResponse): Promise<{ message: string; code: string }> {
  let text = "";
  try {
    if (res.bytes) text = new TextDecoder().decode(res.bytes.subarray(0, MAX_ERROR_BODY));
    else if (res.body) {
      const reader = res.body.getReader();
      const chunks: Uint8Array[] = [];
      let total = 0;
      while (total < MAX_ERROR_BODY) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        total += value.byteLength;
      }
      await reader.cancel().catch(() => {});
      text = new TextDecoder().decode(await new Blob(chunks as BlobPart[]).arrayBuffer());
    }
    const parsed = JSON.parse(text);
    const error = parsed?.error ?? parsed;
    const message = typeof error?.message === "string" ? error.message : typeof error === "string" ? error : text;
    const code = typeof error?.code === "string" ? error.code : "upstream_error";
    return { message: message || `The model server answered ${res.status}`, code };
  } catch {
    return { message: text.slice(0, 1000) || `The model server answered ${res.status}`, code: "upstream_error" };
  }
}
