/**
 * Shared helpers for the end-to-end tests of the process backend: a proxy
 * started in-process with `startServer`, model commands that run the
 * project's fake vLLM as a child process (tagged with a per-test marker so
 * the test can find every engine it started with `ps`), captured log lines,
 * and bounded waits on events.
 *
 * @module
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput, ModelSpecInput } from "../../lib/config/schema.ts";
import { createLogger, type Logger } from "../../lib/log.ts";
import { type RunningServer, type ServerOptions, startServer } from "../../lib/server.ts";
import type { LifecycleState } from "../../lib/scaler/types.ts";
import { fakeVllmCommand, type FakeVllmFlags } from "../support/fake_vllm_command.ts";

export { FAKE_VLLM } from "../support/fake_vllm_command.ts";
import { liveProcesses, newMarker } from "../support/processes.ts";
import { delay, waitUntil, within } from "../support/wait.ts";

export { newMarker } from "../support/processes.ts";
export { delay, waitUntil, within } from "../support/wait.ts";

/**
 * Absolute path of the repository root (where main.ts lives).
 *
 * @example
 * ```ts
 * import { REPO_ROOT } from "./helpers.ts";
 * REPO_ROOT.endsWith("/"); // true
 * ```
 */
export const REPO_ROOT: string = new URL("../../", import.meta.url).pathname;

/**
 * The deno binary running the tests (engines are started with it).
 *
 * @example
 * ```ts
 * import { DENO } from "./helpers.ts";
 * DENO.length > 0; // true
 * ```
 */
export const DENO: string = Deno.execPath();

/**
 * Options of the fake vLLM engine a model command runs (`loadMs` defaults to 150 here).
 *
 * @example
 * ```ts
 * import type { FakeEngineOptions } from "./helpers.ts";
 * const options: FakeEngineOptions = { loadMs: 200, tokensPerSec: 20 };
 * ```
 */
export interface FakeEngineOptions extends Omit<FakeVllmFlags, "script" | "model" | "marker"> {
  /** More fields of the model spec (per-model timeouts, servedModelName, env…); used by `startProxy`. */
  spec?: Partial<ModelSpecInput>;
}

/**
 * The `command` of a model that runs the fake vLLM, tagged with `marker`.
 *
 * @example
 * ```ts
 * import { fakeEngineCommand } from "./helpers.ts";
 * fakeEngineCommand("marker-1", { loadMs: 100 }).includes("{port}"); // true
 * ```
 */
export function fakeEngineCommand(marker: string, options: FakeEngineOptions = {}): string[] {
  const { spec: _spec, ...flags } = options;
  return fakeVllmCommand({ ...flags, model: "{served}", marker, loadMs: options.loadMs ?? 150 });
}

/**
 * A process seen by `ps`.
 *
 * @example
 * ```ts
 * import type { ProcInfo } from "./helpers.ts";
 * const info: ProcInfo = { pid: 42, ppid: 1, args: "deno run -A fake_vllm.ts --model a" };
 * ```
 */
export interface ProcInfo {
  /** Process id. */
  pid: number;
  /** Parent process id. */
  ppid: number;
  /** Full command line. */
  args: string;
}

/**
 * Live (non-zombie) processes whose command line contains `marker`.
 *
 * @example
 * ```ts ignore
 * import { processesWith } from "./helpers.ts";
 * (await processesWith("marker-none")).length; // 0
 * ```
 */
export async function processesWith(marker: string): Promise<ProcInfo[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "pid=,ppid=,stat=,args="], stdout: "piped", stderr: "null" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  const found: ProcInfo[] = [];
  for (const line of text.split("\n")) {
    const match = line.trim().match(/^(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/);
    if (!match || match[3].startsWith("Z") || !match[4].includes(marker)) continue;
    if (match[4].startsWith("ps ")) continue;
    found.push({ pid: Number(match[1]), ppid: Number(match[2]), args: match[4] });
  }
  return found;
}

/**
 * Waits (bounded) until no process carrying `marker` is alive; fails the test otherwise.
 *
 * @example
 * ```ts ignore
 * import { assertNoEngines } from "./helpers.ts";
 * await assertNoEngines("marker-x");
 * ```
 */
export async function assertNoEngines(marker: string, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let left: ProcInfo[] = [];
  for (let i = 0; i < 100; i++) {
    left = await processesWith(marker);
    if (left.length === 0 || Date.now() > until) break;
    await delay(50);
  }
  assert.deepEqual(left, [], `engine processes survived: ${JSON.stringify(left)}`);
}

/**
 * Captured log lines of a proxy.
 *
 * @example
 * ```ts
 * import { captureLogs } from "./helpers.ts";
 * const logs = captureLogs();
 * logs.log.info("engine started", { model: "a" });
 * logs.messages("engine started").length; // 1
 * ```
 */
export function captureLogs(onLine?: (line: string) => void): {
  log: Logger;
  lines: string[];
  records: () => Record<string, unknown>[];
  messages: (msg: string) => Record<string, unknown>[];
} {
  const lines: string[] = [];
  const log = createLogger({
    format: "json",
    level: "debug",
    write: (line) => {
      lines.push(line);
      onLine?.(line);
    },
  });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { log, lines, records, messages: (msg) => records().filter((r) => r.msg === msg) };
}

/**
 * A proxy with the process backend running in this process, plus what the tests need around it.
 *
 * @example
 * ```ts ignore
 * import { type E2eProxy, startProxy } from "./helpers.ts";
 * const proxy: E2eProxy = await startProxy({}, { a: {} });
 * await proxy.close();
 * ```
 */
export interface E2eProxy {
  /** The running server. */
  server: RunningServer;
  /** Base URL of the proxy. */
  url: string;
  /** Marker carried by every engine of this proxy. */
  marker: string;
  /** Captured log lines (JSON, unredacted: a secret that reaches the logger shows up here). */
  logs: ReturnType<typeof captureLogs>;
  /**
   * Engines found alive (by /proc, at the moment another engine was spawned) beside the new one:
   * one GPU, one engine — must stay empty.
   */
  overlaps: string[];
  /** Engine start count (the process backend's "engine started" lines). */
  engineStarts(model?: string): number;
  /** Live engine processes of this proxy. */
  engines(): Promise<ProcInfo[]>;
  /** Resolves on the next transition into `state` (optionally for `model`), bounded. */
  nextState(state: LifecycleState, timeoutMs?: number, model?: string): Promise<void>;
  /** An OpenAI SDK client for this proxy. */
  openai(apiKey?: string): OpenAI;
  /** Shuts the proxy down and asserts no engine survives. */
  close(): Promise<void>;
}

/**
 * Starts a proxy with the process backend on an ephemeral port. `models`
 * give per-model fake engine options (merged into a `command` tagged with
 * this proxy's marker) or a full model spec when it has a `modelName`.
 *
 * @example
 * ```ts ignore
 * import { startProxy } from "./helpers.ts";
 * const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 100 } });
 * await proxy.close();
 * ```
 */
export async function startProxy(
  settings: Partial<ChillConfigInput>,
  models: Record<string, FakeEngineOptions | ModelSpecInput>,
  options: {
    marker?: string;
    shutdownGraceMs?: number;
    /**
     * Several engines may run at once (the pool): no "one engine at a time" check; the fake engines share this
     * GPU-memory ledger instead (FAKE_GPU_LEDGER), which fails loudly on any oversubscription.
     */
    ledger?: string;
    /** Limits of the dashboard's event stream. */
    dashboard?: ServerOptions["dashboard"];
  } = {},
): Promise<E2eProxy> {
  const marker = options.marker ?? newMarker();
  const specs: Record<string, ModelSpecInput> = {};
  for (const [name, model] of Object.entries(models)) {
    specs[name] = "modelName" in model ? model as ModelSpecInput : {
      modelName: `org/${name}`,
      ...(model as FakeEngineOptions).spec,
      command: fakeEngineCommand(marker, model as FakeEngineOptions),
    };
  }
  const config = parseConfig({
    backend: "process",
    host: "127.0.0.1",
    port: 0,
    idleTimeout: "1m",
    minLoadedTime: "0s",
    drainTimeout: "10s",
    heartbeatInterval: "0s",
    process: { stopGracePeriod: "2s" },
    ...settings,
    ...(options.ledger
      ? { vllm: { ...settings.vllm, env: { ...settings.vllm?.env, FAKE_GPU_LEDGER: options.ledger } } }
      : {}),
    models: specs,
  });
  const overlaps: string[] = [];
  const logs = captureLogs((line) => {
    if (options.ledger || !line.includes('"engine started"')) return;
    const record = JSON.parse(line) as { msg: string; pid?: number; model?: string };
    if (record.msg !== "engine started") return;
    // The new engine runs in its own process group (pgid = its pid): anything else is another engine.
    const others = liveProcesses().filter((p) => p.cmdline.includes(marker) && p.pgid !== record.pid).map((p) => p.pid);
    if (others.length) overlaps.push(`engine ${record.model} (pid ${record.pid}) started while ${others} still ran`);
  });
  const server = await startServer(config, {
    log: logs.log,
    shutdownGraceMs: options.shutdownGraceMs ?? 2000,
    dashboard: options.dashboard,
  });
  try {
    await waitUntil(() => server.scaler.ready(), 5000, "the scaler to read the backend's state");
  } catch (error) {
    await server.shutdown();
    throw error;
  }
  let closed = false;
  return {
    server,
    url: server.url,
    marker,
    logs,
    overlaps,
    engineStarts: (model) => logs.messages("engine started").filter((r) => !model || r.model === model).length,
    engines: () => processesWith(marker),
    nextState: (state, timeoutMs = 10_000, model) => {
      const { promise, resolve } = Promise.withResolvers<void>();
      const off = server.scaler.onTransition((t) => {
        if (t.to === state && (!model || t.model === model)) resolve();
      });
      return within(promise, timeoutMs, `state ${state}${model ? ` (${model})` : ""}`).finally(off);
    },
    openai: (apiKey = "none") => new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 }),
    close: async () => {
      if (closed) return;
      closed = true;
      await server.shutdown();
      await server.finished;
      await assertNoEngines(marker);
      assert.deepEqual(overlaps, [], "two engines ran at once");
    },
  };
}

/**
 * POSTs a chat completion as JSON and returns the response (body unread).
 *
 * @example
 * ```ts ignore
 * import { postChat } from "./helpers.ts";
 * const res = await postChat("http://127.0.0.1:8080", "a");
 * await res.body?.cancel();
 * ```
 */
export function postChat(
  url: string,
  model: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hello" }], max_tokens: 4, ...extra }),
    signal,
  });
}

/**
 * The `content` deltas of an OpenAI chat stream, joined.
 *
 * @example
 * ```ts ignore
 * import { collectStream } from "./helpers.ts";
 * const text = await collectStream(await openai.chat.completions.create({ model: "a", messages: [], stream: true }));
 * ```
 */
export async function collectStream(
  stream: AsyncIterable<{ choices: { delta?: { content?: string | null } }[] }>,
): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  return text;
}

/**
 * Reads an SSE body to its end, returning each chunk with its arrival time (ms since `start`).
 *
 * @example
 * ```ts ignore
 * import { readTimed } from "./helpers.ts";
 * const chunks = await readTimed(res.body!, performance.now());
 * ```
 */
export async function readTimed(
  body: ReadableStream<Uint8Array>,
  start: number,
): Promise<{ at: number; text: string }[]> {
  const decoder = new TextDecoder();
  const chunks: { at: number; text: string }[] = [];
  for await (const bytes of body) chunks.push({ at: performance.now() - start, text: decoder.decode(bytes) });
  return chunks;
}

/**
 * A child process whose output is read line by line.
 *
 * @example
 * ```ts ignore
 * import { type SpawnedCli, spawnDeno } from "./helpers.ts";
 * const cli: SpawnedCli = spawnDeno(["main.ts", "version"]);
 * (await cli.exited).code; // 0
 * ```
 */
export interface SpawnedCli {
  /** The child. */
  child: Deno.ChildProcess;
  /** Every stdout line so far. */
  stdout: string[];
  /** Every stderr line so far. */
  stderr: string[];
  /** Resolves with the first stdout/stderr line matching `pattern` (bounded). */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit status once the process has exited and its output is read. */
  exited: Promise<Deno.CommandStatus>;
}

/**
 * Runs `deno run -A <args>` (from the repository root unless `cwd` is given), reading its output line by line.
 *
 * @example
 * ```ts ignore
 * import { spawnDeno } from "./helpers.ts";
 * const cli = spawnDeno(["main.ts", "version"]);
 * await cli.exited;
 * ```
 */
export function spawnDeno(args: string[], env: Record<string, string> = {}, cwd: string = REPO_ROOT): SpawnedCli {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  const onLine = (into: string[]) => (line: string) => {
    into.push(line);
    for (const waiter of waiters) {
      if (waiter.pattern.test(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  };
  const pump = async (stream: ReadableStream<Uint8Array>, handle: (line: string) => void) => {
    let rest = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      rest += text;
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        handle(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
    if (rest) handle(rest);
  };
  const pumps = Promise.all([pump(child.stdout, onLine(stdout)), pump(child.stderr, onLine(stderr))]);
  const exited = (async () => {
    const status = await child.status;
    await pumps;
    return status;
  })();
  return {
    child,
    stdout,
    stderr,
    exited,
    waitForLine: (pattern, timeoutMs = 15_000) => {
      const seen = [...stdout, ...stderr].find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      const { promise, resolve } = Promise.withResolvers<string>();
      const waiter = { pattern, resolve };
      waiters.add(waiter);
      const ended = exited.then(() => {
        throw new Error(
          `process exited before printing ${pattern}\nstdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`,
        );
      });
      return within(Promise.race([promise, ended]), timeoutMs, `a line matching ${pattern}`)
        .finally(() => waiters.delete(waiter));
    },
  };
}
