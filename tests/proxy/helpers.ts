/**
 * Test helpers for the proxy: a small controllable upstream (a real HTTP
 * server on 127.0.0.1 that records what it receives) and a proxy wired to a
 * {@link FakeGate}, callable directly or served over real HTTP.
 *
 * @module
 */
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log.ts";
import { createMetrics, type Metrics } from "../../lib/metrics.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { createHandler, type ProxyHandler } from "../../lib/proxy/mod.ts";
import { serveGuarded } from "../../lib/proxy/listener.ts";
import { FakeGate } from "./fake_gate.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One request as the upstream received it. */
export interface Recorded {
  method: string;
  path: string;
  headers: Headers;
  body: Uint8Array;
}

/** The controllable upstream. */
export interface TestUpstream {
  url: string;
  requests: Recorded[];
  /** Lets a "hold-stream" response send its second chunk. */
  releaseStream(): void;
  /** Resolves when a response body was cancelled by the proxy (client left). */
  cancelled: Promise<void>;
  close(): Promise<void>;
}

/** An OpenAI chat chunk as vLLM streams it. */
export function chunk(model: string, content: string, finish: string | null = null): string {
  return `data: ${
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      created: 1,
      model,
      choices: [{ index: 0, delta: { content }, finish_reason: finish }],
    })
  }\n\n`;
}

/**
 * Starts the upstream. The request header `x-test` picks a behaviour:
 * (none) answer normally; "hold-stream" SSE that waits for releaseStream()
 * between chunks; "reset" SSE then a broken connection; "reset-json" a
 * partial JSON body then a broken connection; "error" vLLM's 400 body.
 */
export function startUpstream(): Promise<TestUpstream> {
  const requests: Recorded[] = [];
  let release!: () => void;
  let released = new Promise<void>((r) => release = r);
  let markCancelled!: () => void;
  const cancelled = new Promise<void>((r) => markCancelled = r);
  const ac = new AbortController();
  return new Promise((resolve) => {
    const server = Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      signal: ac.signal,
      onListen: () => {},
    }, async (req) => {
      const url = new URL(req.url);
      const body = new Uint8Array(await req.arrayBuffer());
      requests.push({ method: req.method, path: url.pathname + url.search, headers: req.headers, body });
      const mode = req.headers.get("x-test");
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(new TextDecoder().decode(body));
      } catch { /* multipart or empty */ }
      const model = typeof parsed.model === "string" ? parsed.model : "none";
      if (mode === "error") {
        return Response.json({ error: { message: "bad param", type: "BadRequestError", param: null, code: 400 } }, {
          status: 400,
        });
      }
      if (mode === "reset-json") {
        return new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(encoder.encode('{"partial":'));
            },
            pull(c) {
              return new Promise((r) => setTimeout(r, 20)).then(() => c.error(new Error("boom")));
            },
          }),
          { headers: { "content-type": "application/json" } },
        );
      }
      if (parsed.stream === true || mode === "hold-stream" || mode === "reset") {
        let step = 0;
        return new Response(
          new ReadableStream({
            async pull(c) {
              step++;
              if (step === 1) return c.enqueue(encoder.encode(chunk(model, "Hello")));
              if (mode === "reset") {
                await new Promise((r) => setTimeout(r, 20));
                return c.error(new Error("engine died"));
              }
              if (mode === "hold-stream" && step === 2) {
                await released;
                released = new Promise<void>((r) => release = r);
              }
              if (step === 2) return c.enqueue(encoder.encode(chunk(model, " world", "stop")));
              c.enqueue(encoder.encode("data: [DONE]\n\n"));
              c.close();
            },
            cancel() {
              markCancelled();
            },
          }, { highWaterMark: 0 }),
          { headers: { "content-type": "text/event-stream" } },
        );
      }
      if (url.pathname === "/v1/chat/completions") {
        return Response.json({
          id: "chatcmpl-1",
          object: "chat.completion",
          created: 1,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: "Hi!" }, finish_reason: "stop" }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }, { headers: { "x-upstream": "yes", connection: "keep-alive" } });
      }
      return Response.json({ path: url.pathname, model, bytes: body.length });
    });
    resolve({
      url: `http://127.0.0.1:${server.addr.port}`,
      requests,
      releaseStream: () => release(),
      cancelled,
      close: async () => {
        ac.abort();
        await server.finished;
      },
    });
  });
}

/** A proxy under test. */
export interface TestProxy {
  handler: ProxyHandler;
  gate: FakeGate;
  metrics: Metrics;
  registry: ModelRegistry;
  logs: Record<string, unknown>[];
  upstream: TestUpstream;
  /** Serves the handler on 127.0.0.1 behind the guarded listener (as the proxy does); returns its base URL. */
  serve(): string;
  close(): Promise<void>;
}

/** Starts an upstream and builds a proxy (config `input` layered on test defaults). */
export async function startProxy(
  input: ChillConfigInput = {},
  options: { ready?: () => boolean; bodyStallMs?: number } = {},
): Promise<TestProxy> {
  const upstream = await startUpstream();
  const config = parseConfig({ heartbeatInterval: "0s", ...input });
  const gate = new FakeGate(upstream.url);
  const metrics = createMetrics();
  const registry = new ModelRegistry(config.models);
  const logs: Record<string, unknown>[] = [];
  const log = createLogger({ write: (line) => logs.push(JSON.parse(line)), level: "debug" });
  const handler = createHandler({
    config,
    gate,
    registry,
    metrics,
    log,
    ready: options.ready ?? (() => true),
    bodyStallMs: options.bodyStallMs,
  });
  const servers: { shutdown: () => Promise<void> }[] = [];
  return {
    handler,
    gate,
    metrics,
    registry,
    logs,
    upstream,
    serve() {
      const server = serveGuarded({
        hostname: "127.0.0.1",
        port: 0,
        handler,
        onError: () => new Response(null, { status: 500 }),
        log,
        metrics,
      });
      servers.push({
        shutdown: () => {
          server.close();
          return server.finished;
        },
      });
      return `http://127.0.0.1:${server.addr.port}`;
    },
    async close() {
      await Promise.all(servers.map((s) => s.shutdown()));
      handler.close();
      await upstream.close();
    },
  };
}

/** A JSON POST request to the handler. */
export function post(path: string, body: unknown, headers: Record<string, string> = {}): Request {
  return new Request(`http://proxy${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Models used by most tests. */
export const MODELS = {
  qwen: { modelName: "Qwen/Qwen3-8B", servedModelName: "qwen3-8b" },
  llama: { modelName: "meta/llama" },
};

/**
 * Reads a raw socket until EOF or `limitMs`, whichever comes first; then resolves with the text received and
 * whether the other side closed (a reset counts as a close; the limit closes the socket and reports it open).
 *
 * @example
 * ```ts ignore
 * import { readToEnd } from "./helpers.ts";
 * const { text, closed } = await readToEnd(await Deno.connect({ hostname: "127.0.0.1", port }), 5000);
 * ```
 */
export async function readToEnd(conn: Deno.Conn, limitMs: number): Promise<{ text: string; closed: boolean }> {
  const buf = new Uint8Array(4096);
  let text = "";
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, limitMs);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return { text, closed: true };
      text += decoder.decode(buf.subarray(0, n));
    }
  } catch {
    return { text, closed: !timedOut }; // a reset is a close by the proxy too
  } finally {
    clearTimeout(timer);
  }
}
