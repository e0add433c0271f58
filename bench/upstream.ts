/**
 * The benchmark's engine: a lean fake vLLM that answers as fast as it can so
 * that the proxy, not the engine, is what the warm-path figures measure. It
 * serves `/health` (503 until `--load-ms` has passed), a fixed small
 * non-streaming completion, and SSE streams at `--tokens-per-sec`, and it
 * prints timestamped lines the bench reads back (through the proxy's log when
 * the process backend runs it):
 *
 * - `bench-upstream: listening on http://127.0.0.1:<port>`
 * - `bench-upstream: ready_at=<epoch ms> /health is 200` (the moment it turned healthy)
 * - `bench-upstream: sigterm_at=<epoch ms>` and `bench-upstream: exit_at=<epoch ms>`
 *
 * ```sh
 * deno run -A bench/upstream.ts --port 0 --model m [--load-ms 0] [--tokens-per-sec 1000] [--stop-ms 0]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Options of {@link startUpstream}. */
export interface UpstreamOptions {
  /** Port (0 picks a free one). */
  port?: number;
  /** Served model name echoed in answers. */
  model: string;
  /** Milliseconds before /health turns 200. */
  loadMs?: number;
  /** Token rate of streams (default 1000). */
  tokensPerSec?: number;
  /** Called once, at the moment /health turns 200, with the epoch time in ms. */
  onReady?: (epochMs: number) => void;
}

/** A running bench upstream. */
export interface Upstream {
  /** Base URL. */
  readonly url: string;
  /** Bound port. */
  readonly port: number;
  /** Epoch ms at which /health turned 200 (NaN before). */
  readonly readyAt: number;
  /** Stops listening and ends open streams. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");

/**
 * Epoch time in milliseconds with sub-millisecond resolution (comparable across processes).
 *
 * @example
 * ```ts
 * import { epochMs } from "./upstream.ts";
 * epochMs() > 0; // true
 * ```
 */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Starts the lean fake engine in this process.
 *
 * @example
 * ```ts
 * import { startUpstream } from "./upstream.ts";
 * const up = await startUpstream({ model: "m" });
 * const res = await fetch(`${up.url}/v1/completions`, { method: "POST", body: '{"model":"m","prompt":"hi"}' });
 * (await res.json()).model; // "m"
 * await up.close();
 * ```
 */
export async function startUpstream(options: UpstreamOptions): Promise<Upstream> {
  const model = options.model;
  const intervalMs = 1000 / (options.tokensPerSec ?? 1000);
  const completion = JSON.stringify({
    id: "cmpl-bench",
    object: "text_completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, text: " the quick brown fox", logprobs: null, finish_reason: "length", stop_reason: null }],
    usage: { prompt_tokens: 4, total_tokens: 8, completion_tokens: 4 },
  });
  const chunkHead = `data: {"id":"cmpl-bench","object":"text_completion","created":0,"model":${
    JSON.stringify(model)
  },"choices":[{"index":0,"text":" tok","logprobs":null,"finish_reason":null}]}\n\n`;
  const chunk = encoder.encode(chunkHead);
  const streams = new Set<() => void>();
  let readyAt = NaN;
  const loadMs = options.loadMs ?? 0;
  const readyTimer = setTimeout(markReady, loadMs);
  function markReady() {
    readyAt = epochMs();
    options.onReady?.(readyAt);
  }

  const stream = (tokens: number): Response => {
    let sent = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const started = performance.now();
    let stop = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stop = () => {
          clearTimeout(timer);
          streams.delete(stop);
          try {
            controller.close();
          } catch { /* closed */ }
        };
        streams.add(stop);
      },
      pull(controller) {
        if (sent >= tokens) {
          controller.enqueue(DONE);
          stop();
          return;
        }
        // Token n is due n intervals after the first (no drift: scheduled against the start time).
        const wait = sent * intervalMs - (performance.now() - started);
        if (wait <= 0) {
          sent++;
          controller.enqueue(chunk);
          return;
        }
        return new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            sent++;
            controller.enqueue(chunk);
            resolve();
          }, wait);
        });
      },
      cancel() {
        clearTimeout(timer);
        streams.delete(stop);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { "content-type": "text/event-stream; charset=utf-8" } });
  };

  const handler = async (req: Request): Promise<Response> => {
    const url = req.url;
    const path = url.slice(url.indexOf("/", 8));
    if (path === "/health") return new Response(null, { status: Number.isNaN(readyAt) ? 503 : 200 });
    if (Number.isNaN(readyAt)) return new Response('{"error":"loading"}', { status: 503 });
    if (req.method !== "POST") return new Response('{"error":"not found"}', { status: 404 });
    const text = await req.text();
    if (text.includes('"stream":true')) {
      const m = /"max_tokens":(\d+)/.exec(text);
      return stream(m ? Number(m[1]) : 16);
    }
    return new Response(completion, { headers: { "content-type": "application/json" } });
  };

  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: options.port ?? 0,
    hostname: "127.0.0.1",
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, handler);
  const addr = await promise;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    get readyAt() {
      return readyAt;
    },
    close: () =>
      closing ??= (async () => {
        clearTimeout(readyTimer);
        for (const stop of [...streams]) stop();
        await server.shutdown();
      })(),
  };
}

/**
 * CLI entry (see the module doc); resolves when stopped by SIGTERM/SIGINT.
 *
 * @example
 * ```ts ignore
 * import { runUpstreamCli } from "./upstream.ts";
 * await runUpstreamCli(["--port", "0", "--model", "m"]);
 * ```
 */
export async function runUpstreamCli(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string", default: "0" },
      model: { type: "string", default: "bench" },
      "load-ms": { type: "string", default: "0" },
      "tokens-per-sec": { type: "string", default: "1000" },
      "stop-ms": { type: "string", default: "0" },
    },
  });
  const say = (line: string) => console.log(`bench-upstream: ${line}`);
  const up = await startUpstream({
    port: Number(values.port),
    model: values.model!,
    loadMs: Number(values["load-ms"]),
    tokensPerSec: Number(values["tokens-per-sec"]),
    onReady: (at) => say(`ready_at=${at.toFixed(3)} /health is 200`),
  });
  const { promise: stopped, resolve } = Promise.withResolvers<void>();
  const onSignal = () => {
    say(`sigterm_at=${epochMs().toFixed(3)}`);
    setTimeout(resolve, Number(values["stop-ms"]));
  };
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  say(`listening on ${up.url} started_at=${performance.timeOrigin.toFixed(3)}`);
  await stopped;
  await up.close();
  say(`exit_at=${epochMs().toFixed(3)}`);
  Deno.exit(0);
}

if (import.meta.main) await runUpstreamCli(Deno.args);
