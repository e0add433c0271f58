/**
 * A fake OpenAI-compatible vLLM server for tests, benchmarks and the demo.
 *
 * It speaks the routes vllm-chill forwards, in vLLM's exact formats:
 * `/health` (503 until the model is "loaded", then 200), `GET /v1/models`,
 * `POST /v1/chat/completions` and `/v1/completions` (streaming or not),
 * `POST /v1/embeddings`, `POST /tokenize` and `/detokenize`. A request for
 * another model gets vLLM's 404 body. Every response names the served model
 * so tests can tell which engine answered.
 *
 * Sleep mode, as strict as vLLM v0.11.0 (every fact, with file:line, in the module doc of
 * {@link ./fake_vllm_sleep.ts}):
 * - `POST /sleep?level=1|2`, `POST /wake_up[?tags=weights&tags=kv_cache]`, `GET /is_sleeping` →
 *   `{"is_sleeping":bool}`, `POST /collective_rpc` `{"method":"reload_weights"}`, `POST /reset_prefix_cache`
 *   exist only with env `VLLM_SERVER_DEV_MODE=1` (else FastAPI's 404 `{"detail":"Not Found"}`). Without
 *   `--enable-sleep-mode` they answer as vLLM does then: /sleep 200 and `is_sleeping` true, but nothing is
 *   freed and the engine keeps serving.
 * - With both, an inference request (chat, completions, embeddings) reaching an engine that is asleep,
 *   falling asleep or waking kills it (vLLM issue 15483): 500, then the process exits 1 (in-process: the
 *   server closes and `crashed` tells why). So does `/sleep` with requests in flight (issues 28714, 45520).
 *   `/health` stays 200 while asleep.
 * - After a level-2 sleep, completions read `<corrupted weights>` until `reload_weights`; whether the prefix
 *   cache was reset after each wake is tracked (`resetSinceWake`, `servedWithoutReset`).
 * - GPU memory: with a ledger (env `FAKE_GPU_LEDGER`, see {@link ./gpu_ledger.ts}) the engine checks at start
 *   that `--gpu-memory-utilization` (default 0.9) is free on every device of `CUDA_VISIBLE_DEVICES` (default
 *   "0") and fails with vLLM's exact message and exit 1 if not; it claims the share at the end of its load,
 *   releases it at sleep (unless `--sleep-frees-nothing`, issue 47654) and exit, and claims it again at wake
 *   (`/wake_up` 500 like a CUDA out-of-memory if it does not fit). A SIGKILLed engine's claim is reaped.
 * - Counters (arrivals per route, sleeps, wakes, reloads, resets, requests forwarded while asleep, …):
 *   `stats()` in-process, `GET /_fake/stats` for a child process (a fake-only path no real client calls).
 *
 * In-process: {@link startFakeVllm}. As a child process (the demo engine):
 *
 * ```sh
 * [VLLM_SERVER_DEV_MODE=1] [CUDA_VISIBLE_DEVICES=0,1] [FAKE_GPU_LEDGER=/tmp/ledger.json] \
 * deno run -A tests/support/fake_vllm.ts --port 0 --model my-served-name \
 *   [--load-ms 500] [--tokens-per-sec 1000] [--crash-after-chunks N] [--crash-mode exit|reset] \
 *   [--stop-delay-ms 0] [--ignore-sigterm] [--exit-after-ms N] [--exit-code 1] [--max-model-len 4096] \
 *   [--enable-sleep-mode] [--sleep-ms 0] [--wake-ms 0] [--fail-wake] [--sleep-frees-nothing] \
 *   [--gpu-memory-utilization 0.9] [--served-model-name NAME] [--tensor-parallel-size 1] [--arrivals-file PATH] \
 *   [other vLLM flags]
 * ```
 *
 * `--arrivals-file` appends one line per request received (every route but `/health`),
 * `<pid> <method> <path> <x-request-id>`, before it is handled: what the engine saw survives a `kill -9`.
 *
 * It accepts the engine flags vllm-chill generates (`{args}`, lib/models/vllm_args.ts) and ignores those it
 * does not model. It prints `listening on http://127.0.0.1:<port>` to stdout once bound.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { VLLM_FLAGS } from "../../lib/models/vllm_args.ts";
import { DEV_ROUTES, EngineGpu, pyInt, pyRepr, SleepMode, type SleepStats } from "./fake_vllm_sleep.ts";

/** Options of {@link startFakeVllm}. */
export interface FakeVllmOptions {
  /** Served model name (what clients send as `model`). */
  model: string;
  /** The underlying model id shown as `root` in /v1/models (default: `model`). */
  modelName?: string;
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Milliseconds before /health turns 200 (default 0). */
  loadMs?: number;
  /** Generation speed; 0 (default) sends every token at once. */
  tokensPerSec?: number;
  /** After this many SSE chunks of a stream, crash (see `crashMode`). */
  crashAfterChunks?: number;
  /** "reset" (default) aborts the connection; "exit" calls `onCrash` (the CLI exits the process). */
  crashMode?: "reset" | "exit";
  /** Called on a crash in "exit" mode. */
  onCrash?: () => void;
  /** Called for every request received (every route but /health), before it is handled. */
  onRequest?: (req: Request, path: string) => void;
  /** `max_model_len` reported by /v1/models and /tokenize (default 4096). */
  maxModelLen?: number;
  /** Dimensions of the embedding vectors (default 8). */
  embeddingDims?: number;
  /** Env `VLLM_SERVER_DEV_MODE` on: the sleep routes exist (default false). */
  devMode?: boolean;
  /** `--enable-sleep-mode`: sleeping unmaps the engine's memory (default false). */
  enableSleepMode?: boolean;
  /** Milliseconds `/sleep` takes (default 0). */
  sleepMs?: number;
  /** Milliseconds `/wake_up` takes (default 0). */
  wakeMs?: number;
  /** Every `/wake_up` answers 500 like a CUDA out-of-memory (default false). */
  failWake?: boolean;
  /** `/sleep` answers 200 but the ledger keeps the memory claimed (vLLM issue 47654; default false). */
  sleepFreesNothing?: boolean;
  /** Path of the shared GPU ledger (the CLI reads env `FAKE_GPU_LEDGER`); unset: no GPU accounting. */
  gpuLedger?: string;
  /** Devices this engine sees (the CLI reads `CUDA_VISIBLE_DEVICES`; default ["0"]). */
  devices?: string[];
  /** Share of each device, vLLM's `--gpu-memory-utilization` (default 0.9). */
  gpuMemoryUtilization?: number;
  /** `--tensor-parallel-size`: workers answering a `collective_rpc` (default 1). */
  tensorParallelSize?: number;
  /** Called once when the engine core dies (a request reached a sleeper, …); the CLI exits 1. */
  onEngineDead?: (reason: string) => void;
  /** Receives the engine's log lines (default: none). */
  log?: (line: string) => void;
}

/** Counters and state of a fake engine (`stats()`, `GET /_fake/stats`). */
export interface FakeVllmStats extends SleepStats {
  /** Served model name. */
  model: string;
  /** Process id of the engine. */
  pid: number;
  /** /health would answer 200 (loaded and alive). */
  loaded: boolean;
  /** Why the engine core died, or null. */
  crashed: string | null;
  /** Requests received on every route except /health and /_fake/*. */
  requests: number;
  /** Requests received per path (inference: /v1/chat/completions, /v1/completions, /v1/embeddings). */
  arrivals: Record<string, number>;
  /** Responses being generated now (streams, paced answers). */
  inflight: number;
  /** The engine's GPU memory, when a ledger is used. */
  gpu: { ledger: string; devices: string[]; share: number; claimed: boolean } | null;
}

/**
 * The engine failed to start (vLLM's startup memory check, or no room at the end of its load). `message` is the
 * Python exception line vLLM prints, e.g. "ValueError: Free memory on device (…) on startup is less than …".
 *
 * @example
 * ```ts
 * import { FakeVllmStartupError, startFakeVllm } from "./fake_vllm.ts";
 * const ledger = Deno.makeTempFileSync();
 * const a = await startFakeVllm({ model: "a", gpuLedger: ledger, gpuMemoryUtilization: 0.6 });
 * try {
 *   await startFakeVllm({ model: "b", gpuLedger: ledger, gpuMemoryUtilization: 0.6 });
 * } catch (e) {
 *   e instanceof FakeVllmStartupError; // true: "ValueError: Free memory on device (32.0/80.0 GiB) on startup …"
 * }
 * await a.close();
 * ```
 */
export class FakeVllmStartupError extends Error {
  override name = "FakeVllmStartupError";
}

/**
 * The fake-only path of {@link FakeVllmStats} for child processes (no real client calls it).
 *
 * @example
 * ```ts
 * import { FAKE_STATS_PATH, startFakeVllm } from "./fake_vllm.ts";
 * const vllm = await startFakeVllm({ model: "m" });
 * (await (await fetch(`${vllm.url}${FAKE_STATS_PATH}`)).json()).requests; // 0
 * await vllm.close();
 * ```
 */
export const FAKE_STATS_PATH = "/_fake/stats";

/** A running fake vLLM. */
export interface FakeVllm {
  /** Base URL, e.g. "http://127.0.0.1:41234" (no trailing slash). */
  readonly url: string;
  /** The bound port. */
  readonly port: number;
  /** Forces the loaded state (true: /health 200; false: 503). */
  setLoaded(loaded: boolean): void;
  /** Requests received on every route except /health and /_fake/stats. */
  readonly requests: number;
  /** Why the engine core died (then the server is closed), or null. */
  readonly crashed: string | null;
  /** Counters and state. */
  stats(): FakeVllmStats;
  /** Stops listening and ends open connections (and releases its GPU memory). */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const VOCAB = [
  "the",
  "quick",
  "brown",
  "fox",
  "jumps",
  "over",
  "a",
  "lazy",
  "dog",
  "and",
  "keeps",
  "running",
  "far",
  "away",
  "from",
  "here",
];
const VOCAB_INDEX = new Map(VOCAB.map((word, i) => [word, i]));
const DEFAULT_MAX_TOKENS = 16;
const DONE = encoder.encode("data: [DONE]\n\n");
/** What a model whose weights were discarded (level-2 sleep, no reload) generates. */
const CORRUPTED = "<corrupted weights>";

type Json = Record<string, unknown>;

/**
 * Starts a fake vLLM in this process.
 *
 * @example
 * ```ts
 * import { startFakeVllm } from "./fake_vllm.ts";
 * const vllm = await startFakeVllm({ model: "qwen3-8b" });
 * const res = await fetch(`${vllm.url}/v1/chat/completions`, {
 *   method: "POST",
 *   body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: "hi" }], max_tokens: 3 }),
 * });
 * (await res.json()).model; // "qwen3-8b"
 * await vllm.close();
 * ```
 */
export async function startFakeVllm(options: FakeVllmOptions): Promise<FakeVllm> {
  let server: Deno.HttpServer | undefined;
  let stopping: Promise<void> | undefined;
  const stopServer = () => (stopping ??= server?.shutdown() ?? Promise.resolve());
  const handler = createFakeVllmHandler({
    ...options,
    onEngineDead: (reason) => {
      // A dead engine's server goes away (its process would exit): the connection is refused from now on.
      void stopServer();
      options.onEngineDead?.(reason);
    },
  });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  try {
    server = Deno.serve({
      port: options.port ?? 0,
      hostname: options.hostname ?? "127.0.0.1",
      onListen: (addr) => resolve(addr as Deno.NetAddr),
    }, handler.fetch);
  } catch (e) {
    handler.shutdown(); // gives its GPU memory back
    throw e;
  }
  const addr = await listening;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${addr.hostname}:${addr.port}`,
    port: addr.port,
    setLoaded: handler.setLoaded,
    get requests() {
      return handler.requests;
    },
    get crashed() {
      return handler.crashed;
    },
    stats: handler.stats,
    close: () => {
      closed ??= (async () => {
        handler.shutdown();
        await stopServer();
      })();
      return closed;
    },
  };
}

/** The request handler behind {@link startFakeVllm}, usable without a socket. */
export interface FakeVllmHandler {
  /** Handles one request. */
  fetch(req: Request): Promise<Response>;
  /** Forces the loaded state. */
  setLoaded(loaded: boolean): void;
  /** Requests received on every route except /health and /_fake/stats. */
  readonly requests: number;
  /** Why the engine core died, or null. */
  readonly crashed: string | null;
  /** Counters and state. */
  stats(): FakeVllmStats;
  /** Ends the streams in progress (so a server shutdown does not wait for them) and releases the GPU memory. */
  shutdown(): void;
}

/**
 * Builds the fake vLLM's request handler.
 *
 * @example
 * ```ts
 * import { createFakeVllmHandler } from "./fake_vllm.ts";
 * const handler = createFakeVllmHandler({ model: "m", loadMs: 0 });
 * (await handler.fetch(new Request("http://x/health"))).status; // 200
 * ```
 */
export function createFakeVllmHandler(options: FakeVllmOptions): FakeVllmHandler {
  const served = options.model;
  const root = options.modelName ?? served;
  const maxModelLen = options.maxModelLen ?? 4096;
  const dims = options.embeddingDims ?? 8;
  const tokensPerSec = options.tokensPerSec ?? 0;
  const created = Math.floor(Date.now() / 1000);
  const loadMs = options.loadMs ?? 0;
  const readyAt = Date.now() + loadMs;
  const log = options.log ?? (() => {});
  let forced: boolean | undefined;
  let requests = 0;
  let counter = 0;
  /** Why the engine core died, or null. */
  let dead: string | null = null;
  const arrivals = new Map<string, number>();
  /** Ends a response being generated: cleanly, or with `error` (the engine died). */
  const streams = new Set<(error?: Error) => void>();
  const isLoaded = () => forced ?? Date.now() >= readyAt;

  const gpu = options.gpuLedger === undefined ? undefined : new EngineGpu({
    ledger: options.gpuLedger,
    model: served,
    devices: options.devices ?? ["0"],
    share: options.gpuMemoryUtilization ?? 0.9,
  });
  if (gpu) {
    const { devices, share } = gpu.request;
    if (devices.length === 0) throw new FakeVllmStartupError("RuntimeError: No CUDA GPUs are available");
    if (!(share > 0 && share <= 1)) throw new Error(`gpu memory utilization must be in (0, 1], got ${share}`);
    const refused = gpu.startupCheck();
    if (refused) throw new FakeVllmStartupError(`ValueError: ${refused}`);
  }
  const sleep = new SleepMode({
    devMode: options.devMode ?? false,
    enabled: options.enableSleepMode ?? false,
    sleepMs: options.sleepMs ?? 0,
    wakeMs: options.wakeMs ?? 0,
    failWake: options.failWake ?? false,
    sleepFreesNothing: options.sleepFreesNothing ?? false,
    workers: options.tensorParallelSize ?? 1,
  }, {
    inflight: () => streams.size,
    die: (reason) => die(reason),
    log,
    gpu,
  });
  const releaseOnExit = () => gpu?.release();
  let loadTimer: ReturnType<typeof setTimeout> | undefined;

  /** The engine core dies: what vLLM does on a CUDA error (the process exits; in-process the server closes). */
  const die = (reason: string) => {
    if (dead !== null) return;
    dead = reason;
    log(`ERROR fake vLLM: engine core died: ${reason}`);
    const crash = new Error(`fake vLLM: engine core died: ${reason}`);
    for (const stop of [...streams]) stop(crash);
    end();
    options.onEngineDead?.(reason);
  };
  /** Stops timers and waits, and returns the GPU memory. */
  const end = () => {
    clearTimeout(loadTimer);
    sleep.close();
    gpu?.release();
    if (gpu) globalThis.removeEventListener("unload", releaseOnExit);
  };
  if (gpu) {
    // The memory is taken during the load, after the check (two engines started together both pass it).
    const claim = () => {
      const oom = gpu.claimLoaded();
      if (oom) die(oom);
    };
    if (loadMs > 0) loadTimer = setTimeout(claim, loadMs);
    else {
      const oom = gpu.claimLoaded();
      if (oom) {
        gpu.release();
        throw new FakeVllmStartupError(oom);
      }
    }
    globalThis.addEventListener("unload", releaseOnExit);
  }

  const modelsBody = JSON.stringify({
    object: "list",
    data: [{
      id: served,
      object: "model",
      created,
      owned_by: "vllm",
      root,
      parent: null,
      max_model_len: maxModelLen,
      permission: [{
        id: `modelperm-${served}`,
        object: "model_permission",
        created,
        allow_create_engine: false,
        allow_sampling: true,
        allow_logprobs: true,
        allow_search_indices: false,
        allow_view: true,
        allow_fine_tuning: false,
        organization: "*",
        group: null,
        is_blocking: false,
      }],
    }],
  });

  const stats = (): FakeVllmStats => ({
    model: served,
    pid: Deno.pid,
    loaded: dead === null && isLoaded(),
    crashed: dead,
    requests,
    arrivals: Object.fromEntries(arrivals),
    inflight: streams.size,
    ...sleep.stats(),
    gpu: gpu
      ? { ledger: gpu.ledger, devices: [...gpu.request.devices], share: gpu.request.share, claimed: gpu.claimed }
      : null,
  });

  /** Undefined if the engine may generate now; else the answer of an engine that just died (vLLM issue 15483). */
  const refuseIfAsleep = (path: string): Response | undefined => {
    if (sleep.admit() === "serve") return undefined;
    die(`${path} reached a sleeping engine (vLLM issue 15483): CUDA error: an illegal memory access was encountered`);
    return new Response(null, { status: 500 });
  };

  const handle = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path === "/health") return new Response(null, { status: dead === null && isLoaded() ? 200 : 503 });
    if (path === FAKE_STATS_PATH) {
      if (req.method !== "GET") return error(405, "Method Not Allowed", "MethodNotAllowed", null);
      return json(200, JSON.stringify(stats()));
    }
    requests++;
    arrivals.set(path, (arrivals.get(path) ?? 0) + 1);
    // A dead engine's API server answers 500 until it has shut down (entrypoints/launcher.py:155-164).
    if (dead !== null) return new Response(null, { status: 500 });
    options.onRequest?.(req, path);
    if (!isLoaded()) return error(503, "The model is still loading.", "ServiceUnavailableError");
    if (Object.hasOwn(DEV_ROUTES, path)) return sleep.handle(req, path);
    if (path === "/v1/models" && req.method === "GET") return json(200, modelsBody);
    if (path === "/version" && req.method === "GET") return json(200, '{"version":"0.0.0-fake"}');
    const route = ROUTES[path];
    if (!route) return error(404, `Not Found: ${path}`, "NotFoundError", null);
    if (req.method !== "POST") return error(405, "Method Not Allowed", "MethodNotAllowed", null);
    let body: Json;
    try {
      const parsed = JSON.parse(await req.text());
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      body = parsed as Json;
    } catch {
      return error(400, "Invalid JSON in request body.", "BadRequestError", null);
    }
    if (body.model !== undefined && body.model !== null && body.model !== served) {
      return error(404, `The model \`${String(body.model)}\` does not exist.`, "NotFoundError", "model");
    }
    return route(body);
  };

  const completion = (body: Json, chat: boolean): Response | Promise<Response> => {
    const maxTokens = Number(body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      return error(400, "max_tokens must be a positive integer.", "BadRequestError", "max_tokens");
    }
    const promptTokens = chat ? countChatTokens(body.messages) : countTokens(body.prompt);
    if (promptTokens + maxTokens > maxModelLen) {
      return error(
        400,
        `This model's maximum context length is ${maxModelLen} tokens. However, you requested ` +
          `${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion). ` +
          "Please reduce the length of the messages or completion.",
        "BadRequestError",
        null,
      );
    }
    const refused = refuseIfAsleep(chat ? "/v1/chat/completions" : "/v1/completions");
    if (refused) return refused;
    const corrupt = sleep.serve();
    const finish = body.max_tokens !== undefined || body.max_completion_tokens !== undefined ? "length" : "stop";
    const id = `${chat ? "chatcmpl" : "cmpl"}-${(++counter).toString(16).padStart(8, "0")}`;
    const now = Math.floor(Date.now() / 1000);
    const usage = { prompt_tokens: promptTokens, total_tokens: promptTokens + maxTokens, completion_tokens: maxTokens };
    if (body.stream === true) {
      const streamOptions = body.stream_options as Json | undefined;
      const includeUsage = !!streamOptions?.include_usage;
      return streamResponse({ id, now, chat, maxTokens, finish, usage, includeUsage, corrupt });
    }
    const text = corrupt ? CORRUPTED : generate(maxTokens);
    const payload = chat
      ? {
        id,
        object: "chat.completion",
        created: now,
        model: served,
        choices: [{
          index: 0,
          message: { role: "assistant", content: text, refusal: null, tool_calls: [] },
          logprobs: null,
          finish_reason: finish,
          stop_reason: null,
        }],
        usage,
        prompt_logprobs: null,
      }
      : {
        id,
        object: "text_completion",
        created: now,
        model: served,
        choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null, prompt_logprobs: null }],
        usage,
      };
    const delay = tokensPerSec > 0 ? (maxTokens * 1000) / tokensPerSec : 0;
    return delay > 0 ? delayed(delay, JSON.stringify(payload)) : json(200, JSON.stringify(payload));
  };

  const streamResponse = (s: {
    id: string;
    now: number;
    chat: boolean;
    maxTokens: number;
    finish: string;
    usage: Json;
    includeUsage: boolean;
    corrupt: boolean;
  }): Response => {
    const object = s.chat ? "chat.completion.chunk" : "text_completion";
    // The envelope is the same for every chunk of a stream: serialize it once.
    const head = `data: {"id":${JSON.stringify(s.id)},"object":"${object}","created":${s.now},"model":${
      JSON.stringify(served)
    },"choices":[`;
    const tail = s.includeUsage ? `],"usage":null}\n\n` : `]}\n\n`;
    const chunk = (choice: Json) => encoder.encode(head + JSON.stringify(choice) + tail);
    const token = (i: number): Uint8Array => {
      const last = i === s.maxTokens - 1;
      const text = (i === 0 ? "" : " ") + (s.corrupt ? CORRUPTED : VOCAB[i % VOCAB.length]);
      const finish_reason = last ? s.finish : null;
      return s.chat
        ? chunk({
          index: 0,
          delta: { content: text },
          logprobs: null,
          finish_reason,
          ...(last ? { stop_reason: null } : {}),
        })
        : chunk({ index: 0, text, logprobs: null, finish_reason, stop_reason: null });
    };
    // Chunks in order: (chat) role, tokens, (usage), [DONE].
    const total = (s.chat ? 1 : 0) + s.maxTokens + (s.includeUsage ? 1 : 0) + 1;
    const make = (n: number): Uint8Array => {
      if (s.chat && n === 0) {
        return chunk({ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
      }
      const t = n - (s.chat ? 1 : 0);
      if (t < s.maxTokens) return token(t);
      if (s.includeUsage && t === s.maxTokens) {
        return encoder.encode(
          `data: ${
            JSON.stringify({ id: s.id, object, created: s.now, model: served, choices: [], usage: s.usage })
          }\n\n`,
        );
      }
      return DONE;
    };
    const offset = s.chat ? 1 : 0;
    const intervalMs = tokensPerSec > 0 ? 1000 / tokensPerSec : 0;
    // When chunk n is due (ms after the start): tokens at the token rate, the rest right after the last token.
    const dueAt = (n: number) => Math.max(0, Math.min(n - offset, s.maxTokens - 1)) * intervalMs;
    const crashAt = options.crashAfterChunks !== undefined && options.crashAfterChunks < total
      ? options.crashAfterChunks
      : Infinity;
    const started = performance.now();
    let sent = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stop: (crash?: Error) => void = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stop = (crash?: Error) => {
          clearTimeout(timer);
          streams.delete(stop);
          try {
            if (crash) controller.error(crash);
            else controller.close();
          } catch { /* already closed or errored */ }
        };
        streams.add(stop);
      },
      pull(controller) {
        if (sent >= crashAt) {
          // Leave the chunks already written time to reach the client, then die.
          return new Promise<void>((resolve) => {
            timer = setTimeout(() => {
              streams.delete(stop);
              // "exit": the process dies and takes the connection with it.
              if (options.crashMode === "exit" && options.onCrash) return resolve(options.onCrash());
              controller.error(new Error("fake vLLM: simulated crash mid-stream (connection reset on purpose)"));
              resolve();
            }, 20);
          });
        }
        const elapsed = performance.now() - started;
        let wrote = false;
        while (sent < total && sent < crashAt && dueAt(sent) <= elapsed) {
          controller.enqueue(make(sent++));
          wrote = true;
        }
        if (sent >= total) {
          stop();
          return;
        }
        if (wrote) return;
        return new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            timer = undefined;
            controller.enqueue(make(sent++));
            resolve();
          }, dueAt(sent) - elapsed);
        });
      },
      cancel() {
        clearTimeout(timer);
        streams.delete(stop);
      },
    }, { highWaterMark: 0 });
    return new Response(body, {
      status: 200,
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    });
  };

  const embeddings = (body: Json): Response => {
    const inputs = Array.isArray(body.input) && body.input.length > 0 && typeof body.input[0] !== "number"
      ? body.input as unknown[]
      : [body.input];
    if (inputs.some((i) => i === undefined || i === null)) {
      return error(400, "input is required.", "BadRequestError", "input");
    }
    const refused = refuseIfAsleep("/v1/embeddings");
    if (refused) return refused;
    const corrupt = sleep.serve();
    let promptTokens = 0;
    const data = inputs.map((input, index) => {
      const text = typeof input === "string" ? input : JSON.stringify(input);
      promptTokens += countTokens(input);
      return { index, object: "embedding", embedding: corrupt ? Array(dims).fill(0) : embed(text, dims) };
    });
    return json(
      200,
      JSON.stringify({
        id: `embd-${(++counter).toString(16).padStart(8, "0")}`,
        object: "list",
        created: Math.floor(Date.now() / 1000),
        model: served,
        data,
        usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0 },
      }),
    );
  };

  const tokenize = (body: Json): Response => {
    const text = body.messages !== undefined ? chatText(body.messages) : String(body.prompt ?? "");
    const tokens = words(text).map(tokenId);
    return json(200, JSON.stringify({ count: tokens.length, max_model_len: maxModelLen, tokens, token_strs: null }));
  };

  const detokenize = (body: Json): Response => {
    if (!Array.isArray(body.tokens)) {
      return error(400, "tokens must be a list of integers.", "BadRequestError", "tokens");
    }
    const prompt = (body.tokens as unknown[]).map((t) => VOCAB[Number(t)] ?? `<${String(t)}>`).join(" ");
    return json(200, JSON.stringify({ prompt }));
  };

  const ROUTES: Record<string, (body: Json) => Response | Promise<Response>> = {
    "/v1/chat/completions": (b) => completion(b, true),
    "/v1/completions": (b) => completion(b, false),
    "/v1/embeddings": embeddings,
    "/tokenize": tokenize,
    "/detokenize": detokenize,
  };

  function delayed(ms: number, payload: string): Promise<Response> {
    // A non-streaming answer takes as long as generating its tokens would, and (as vLLM's JSONResponse) its
    // head is sent only with the body, at the end. An engine that dies meanwhile answers 500.
    return new Promise((resolve) => {
      const stop = (crash?: Error) => {
        clearTimeout(timer);
        streams.delete(stop);
        resolve(crash ? new Response(null, { status: 500 }) : json(200, payload));
      };
      const timer = setTimeout(stop, ms);
      streams.add(stop);
    });
  }

  return {
    fetch: handle,
    setLoaded: (loaded) => {
      forced = loaded;
    },
    get requests() {
      return requests;
    },
    get crashed() {
      return dead;
    },
    stats,
    shutdown: () => {
      for (const stop of [...streams]) stop();
      end();
    },
  };
}

function json(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "application/json" } });
}

function error(status: number, message: string, type: string, param: string | null = null): Response {
  return json(status, JSON.stringify({ error: { message, type, param, code: status } }));
}

function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w.length > 0);
}

function countTokens(input: unknown): number {
  if (typeof input === "string") return Math.max(1, words(input).length);
  if (Array.isArray(input)) return input.length === 0 ? 1 : input.reduce((n, i) => n + countTokens(i), 0);
  return 1;
}

function chatText(messages: unknown): string {
  if (!Array.isArray(messages)) return "";
  let text = "";
  for (const m of messages) {
    const content = (m as Json | null)?.content;
    if (typeof content === "string") text += " " + content;
    else if (Array.isArray(content)) {
      for (const part of content) if (typeof (part as Json)?.text === "string") text += " " + (part as Json).text;
    }
  }
  return text;
}

function countChatTokens(messages: unknown): number {
  // A few template tokens per message, like a chat template adds.
  const n = Array.isArray(messages) ? messages.length : 0;
  return words(chatText(messages)).length + 3 * n + 1;
}

function generate(n: number): string {
  let text = "";
  for (let i = 0; i < n; i++) text += (i === 0 ? "" : " ") + VOCAB[i % VOCAB.length];
  return text;
}

function hash(text: string): number {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function tokenId(word: string): number {
  return VOCAB_INDEX.get(word.toLowerCase()) ?? VOCAB.length + (hash(word) % 100_000);
}

function embed(text: string, dims: number): number[] {
  let state = hash(text) || 1;
  const out: number[] = [];
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const v = ((state >>> 0) / 0xffffffff) * 2 - 1;
    out.push(v);
    norm += v * v;
  }
  norm = Math.sqrt(norm) || 1;
  return out.map((v) => v / norm);
}

/**
 * Runs the fake vLLM from command-line arguments (see the module doc); resolves when it has stopped.
 *
 * @example
 * ```ts ignore
 * import { runFakeVllmCli } from "./fake_vllm.ts";
 * await runFakeVllmCli(["--port", "0", "--model", "demo"]);
 * ```
 */
export async function runFakeVllmCli(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      // vLLM's engine flags (what `{args}` expands to): accepted; those the fake models are read below.
      ...VLLM_ENGINE_OPTIONS,
      port: { type: "string", default: "8000" },
      host: { type: "string", default: "127.0.0.1" },
      model: { type: "string" },
      "model-name": { type: "string" },
      "load-ms": { type: "string", default: "0" },
      "tokens-per-sec": { type: "string", default: "0" },
      "crash-after-chunks": { type: "string" },
      "crash-mode": { type: "string", default: "exit" },
      "stop-delay-ms": { type: "string", default: "0" },
      "ignore-sigterm": { type: "boolean", default: false },
      "exit-after-ms": { type: "string" },
      "exit-code": { type: "string", default: "1" },
      "max-model-len": { type: "string", default: "4096" },
      "served-model-name": { type: "string" },
      "gpu-memory-utilization": { type: "string" },
      "tensor-parallel-size": { type: "string" },
      "enable-sleep-mode": { type: "boolean", default: false },
      "sleep-ms": { type: "string", default: "0" },
      "wake-ms": { type: "string", default: "0" },
      "fail-wake": { type: "boolean", default: false },
      "sleep-frees-nothing": { type: "boolean", default: false },
      "arrivals-file": { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  const flags = values as Record<string, string | boolean | undefined>;
  const num = (name: string): number | undefined => {
    const raw = flags[name];
    if (raw === undefined || typeof raw !== "string") return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got "${raw}"`);
    return n;
  };
  const str = (name: string): string | undefined => {
    const raw = flags[name];
    return typeof raw === "string" ? raw : undefined;
  };
  // `vllm serve MODEL …` forms: an optional "serve", then the model id.
  const rest = positionals[0] === "serve" ? positionals.slice(1) : positionals;
  if (rest.length > 1) throw new Error(`unexpected arguments: ${rest.slice(1).join(" ")}`);
  const served = str("served-model-name") ?? str("model") ?? rest[0];
  if (!served) throw new Error("--model <served name> is required");
  const modelName = str("model-name") ?? rest[0] ?? (str("served-model-name") ? str("model") : undefined);
  const utilization = num("gpu-memory-utilization");
  if (utilization !== undefined && !(utilization > 0 && utilization <= 1)) {
    throw new Error(`--gpu-memory-utilization must be in (0, 1], got "${str("gpu-memory-utilization")}"`);
  }
  const workers = num("tensor-parallel-size");
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 1)) {
    throw new Error(`--tensor-parallel-size must be a positive integer, got "${str("tensor-parallel-size")}"`);
  }
  const crashMode = values["crash-mode"] === "reset" ? "reset" : "exit";
  const exitCode = num("exit-code") ?? 1;
  const log = (line: string) => console.log(line);
  // vllm/envs.py:1028-1029: bool(int(os.getenv("VLLM_SERVER_DEV_MODE", "0"))); not an integer: vLLM never starts.
  const devModeRaw = Deno.env.get("VLLM_SERVER_DEV_MODE") ?? "0";
  const devMode = pyInt(devModeRaw);
  if (devMode === undefined) {
    console.error(`ValueError: invalid literal for int() with base 10: ${pyRepr(devModeRaw)}`);
    Deno.exit(1);
  }
  const ledger = Deno.env.get("FAKE_GPU_LEDGER") || undefined;
  const devices = (Deno.env.get("CUDA_VISIBLE_DEVICES") ?? "0").split(",").map((d) => d.trim()).filter((d) => d);
  log(`INFO fake vLLM: loading model ${modelName ?? served}`);
  const arrivals = str("arrivals-file");
  let vllm: FakeVllm;
  try {
    vllm = await startFakeVllm({
      onRequest: arrivals === undefined ? undefined : (req, path) =>
        Deno.writeTextFileSync(
          arrivals,
          `${Deno.pid} ${req.method} ${path} ${req.headers.get("x-request-id") ?? "-"}\n`,
          { append: true },
        ),
      model: served,
      modelName,
      port: num("port"),
      hostname: str("host"),
      loadMs: num("load-ms"),
      tokensPerSec: num("tokens-per-sec"),
      crashAfterChunks: num("crash-after-chunks"),
      crashMode,
      maxModelLen: num("max-model-len"),
      devMode: devMode !== 0,
      enableSleepMode: values["enable-sleep-mode"] === true,
      sleepMs: num("sleep-ms"),
      wakeMs: num("wake-ms"),
      failWake: values["fail-wake"] === true,
      sleepFreesNothing: values["sleep-frees-nothing"] === true,
      gpuLedger: ledger,
      devices,
      gpuMemoryUtilization: utilization,
      tensorParallelSize: workers,
      log: (line) => line.startsWith("INFO") ? console.log(line) : console.error(line),
      onEngineDead: () => setTimeout(() => Deno.exit(1), 20),
      onCrash: () => {
        console.error("ERROR fake vLLM: engine core died mid-stream (simulated)");
        setTimeout(() => Deno.exit(exitCode), 10);
      },
    });
  } catch (e) {
    if (!(e instanceof FakeVllmStartupError)) throw e;
    // As vLLM v0.11.0 reports it: v1/engine/core.py:708, then v1/engine/utils.py:785-787; exit 1.
    const core = `(EngineCore_DP0 pid=${Deno.pid}) ERROR fake vLLM [core.py:708]`;
    console.error(`${core} EngineCore failed to start.`);
    console.error(`${core} ${e.message}`);
    console.error(
      "RuntimeError: Engine core initialization failed. See root cause above. " +
        "Failed core proc(s): {'EngineCore_DP0': 1}",
    );
    Deno.exit(1);
  }
  const { promise: stopped, resolve: stop } = Promise.withResolvers<number>();
  const loadMs = num("load-ms") ?? 0;
  const loadedTimer = setTimeout(() => log("INFO fake vLLM: model loaded, /health is 200"), loadMs);
  const exitAfter = num("exit-after-ms");
  const exitTimer = exitAfter === undefined ? undefined : setTimeout(() => {
    console.error(`ERROR fake vLLM: exiting with code ${exitCode} (simulated failure)`);
    stop(exitCode);
  }, exitAfter);
  const onSignal = () => {
    if (values["ignore-sigterm"]) {
      console.error("WARN fake vLLM: ignoring SIGTERM");
      return;
    }
    log("INFO fake vLLM: shutting down");
    setTimeout(() => stop(0), num("stop-delay-ms") ?? 0);
  };
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  // Printed last: once a parent reads it, signals are handled.
  log(`listening on ${vllm.url}`);
  const code = await stopped;
  clearTimeout(loadedTimer);
  clearTimeout(exitTimer);
  Deno.removeSignalListener("SIGTERM", onSignal);
  Deno.removeSignalListener("SIGINT", onSignal);
  await vllm.close();
  Deno.exit(code);
}

/**
 * vLLM's engine flags as parseArgs options, so `{args}` parses (the fake reads a few, ignores the rest); a boolean
 * comes with its `--no-` form, as vLLM's BooleanOptionalAction has it.
 */
const VLLM_ENGINE_OPTIONS: Record<string, { type: "string" | "boolean" }> = Object.fromEntries([
  ...VLLM_FLAGS.flatMap(engineOptions),
  ["seed", { type: "string" }],
  ["enforce-eager", { type: "boolean" }],
]);

function engineOptions(f: (typeof VLLM_FLAGS)[number]): [string, { type: "string" | "boolean" }][] {
  if (f.kind !== "boolean") return [[f.flag, { type: "string" }]];
  return [[f.flag, { type: "boolean" }], [`no-${f.flag}`, { type: "boolean" }]];
}

if (import.meta.main) {
  try {
    await runFakeVllmCli(Deno.args);
  } catch (e) {
    console.error(`fake vLLM: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(2);
  }
}
