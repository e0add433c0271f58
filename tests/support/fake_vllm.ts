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
 * In-process: {@link startFakeVllm}. As a child process (the demo engine):
 *
 * ```sh
 * deno run -A tests/support/fake_vllm.ts --port 0 --model my-served-name \
 *   [--load-ms 500] [--tokens-per-sec 1000] [--crash-after-chunks N] [--crash-mode exit|reset] \
 *   [--stop-delay-ms 0] [--ignore-sigterm] [--exit-after-ms N] [--exit-code 1] [--max-model-len 4096]
 * ```
 *
 * It prints `listening on http://127.0.0.1:<port>` to stdout once bound.
 *
 * @module
 */
import { parseArgs } from "node:util";

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
  /** `max_model_len` reported by /v1/models and /tokenize (default 4096). */
  maxModelLen?: number;
  /** Dimensions of the embedding vectors (default 8). */
  embeddingDims?: number;
}

/** A running fake vLLM. */
export interface FakeVllm {
  /** Base URL, e.g. "http://127.0.0.1:41234" (no trailing slash). */
  readonly url: string;
  /** The bound port. */
  readonly port: number;
  /** Forces the loaded state (true: /health 200; false: 503). */
  setLoaded(loaded: boolean): void;
  /** Requests received on every route except /health. */
  readonly requests: number;
  /** Stops listening and ends open connections. */
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
  const handler = createFakeVllmHandler(options);
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: options.port ?? 0,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, handler.fetch);
  const addr = await listening;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${addr.hostname}:${addr.port}`,
    port: addr.port,
    setLoaded: handler.setLoaded,
    get requests() {
      return handler.requests;
    },
    close: () => {
      closed ??= (async () => {
        handler.shutdown();
        await server.shutdown();
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
  /** Requests received on every route except /health. */
  readonly requests: number;
  /** Ends the streams in progress (so a server shutdown does not wait for them). */
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
  const readyAt = Date.now() + (options.loadMs ?? 0);
  let forced: boolean | undefined;
  let requests = 0;
  let counter = 0;
  const streams = new Set<() => void>();
  const isLoaded = () => forced ?? Date.now() >= readyAt;

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

  const handle = async (req: Request): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path === "/health") return new Response(null, { status: isLoaded() ? 200 : 503 });
    requests++;
    if (!isLoaded()) return error(503, "The model is still loading.", "ServiceUnavailableError");
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

  const completion = (body: Json, chat: boolean): Response => {
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
    const finish = body.max_tokens !== undefined || body.max_completion_tokens !== undefined ? "length" : "stop";
    const id = `${chat ? "chatcmpl" : "cmpl"}-${(++counter).toString(16).padStart(8, "0")}`;
    const now = Math.floor(Date.now() / 1000);
    const usage = { prompt_tokens: promptTokens, total_tokens: promptTokens + maxTokens, completion_tokens: maxTokens };
    if (body.stream === true) {
      const streamOptions = body.stream_options as Json | undefined;
      return streamResponse({ id, now, chat, maxTokens, finish, usage, includeUsage: !!streamOptions?.include_usage });
    }
    const text = generate(maxTokens);
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
      const text = (i === 0 ? "" : " ") + VOCAB[i % VOCAB.length];
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
    let stop: () => void = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stop = () => {
          clearTimeout(timer);
          streams.delete(stop);
          try {
            controller.close();
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
    let promptTokens = 0;
    const data = inputs.map((input, index) => {
      const text = typeof input === "string" ? input : JSON.stringify(input);
      promptTokens += countTokens(input);
      return { index, object: "embedding", embedding: embed(text, dims) };
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

  const ROUTES: Record<string, (body: Json) => Response> = {
    "/v1/chat/completions": (b) => completion(b, true),
    "/v1/completions": (b) => completion(b, false),
    "/v1/embeddings": embeddings,
    "/tokenize": tokenize,
    "/detokenize": detokenize,
  };

  function delayed(ms: number, payload: string): Response {
    // A non-streaming answer takes as long as generating its tokens would.
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stop: () => void = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stop = () => {
          clearTimeout(timer);
          streams.delete(stop);
          try {
            controller.close();
          } catch { /* already closed */ }
        };
        streams.add(stop);
        timer = setTimeout(() => {
          controller.enqueue(encoder.encode(payload));
          stop();
        }, ms);
      },
      cancel() {
        clearTimeout(timer);
        streams.delete(stop);
      },
    });
    return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
  }

  return {
    fetch: handle,
    setLoaded: (loaded) => {
      forced = loaded;
    },
    get requests() {
      return requests;
    },
    shutdown: () => {
      for (const stop of [...streams]) stop();
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
  const { values } = parseArgs({
    args,
    options: {
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
    },
    strict: true,
  });
  const num = (name: keyof typeof values): number | undefined => {
    const raw = values[name];
    if (raw === undefined || typeof raw !== "string") return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got "${raw}"`);
    return n;
  };
  if (!values.model) throw new Error("--model <served name> is required");
  const crashMode = values["crash-mode"] === "reset" ? "reset" : "exit";
  const exitCode = num("exit-code") ?? 1;
  const log = (line: string) => console.log(line);
  log(`INFO fake vLLM: loading model ${values["model-name"] ?? values.model}`);
  const vllm = await startFakeVllm({
    model: values.model,
    modelName: values["model-name"],
    port: num("port"),
    hostname: values.host,
    loadMs: num("load-ms"),
    tokensPerSec: num("tokens-per-sec"),
    crashAfterChunks: num("crash-after-chunks"),
    crashMode,
    maxModelLen: num("max-model-len"),
    onCrash: () => {
      console.error("ERROR fake vLLM: engine core died mid-stream (simulated)");
      setTimeout(() => Deno.exit(exitCode), 10);
    },
  });
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

if (import.meta.main) {
  try {
    await runFakeVllmCli(Deno.args);
  } catch (e) {
    console.error(`fake vLLM: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(2);
  }
}
