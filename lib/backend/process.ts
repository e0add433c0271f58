/**
 * The `process` backend: runs the engine (`vllm serve …`, or a model's own
 * `command`) as a local child process on a free loopback port, one at a time
 * (one GPU, one engine). Ready means GET /health answers 200. The engine runs
 * in its own process group so that stopping it also stops the workers it
 * forked; its stdout/stderr go to the proxy's log line by line.
 *
 * @module
 */
import type { ChillConfig, NamedModel } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { vllmServeArgs } from "../models/mod.ts";
import { type Backend, BackendError, type Observed, type WaitOptions } from "./types.ts";

/** Options of {@link createProcessBackend}. */
export interface ProcessBackendOptions {
  /** The validated config (`process.host`, `process.stopGracePeriod`, `models`, `defaultModel`, `vllm.env`). */
  config: Readonly<ChillConfig>;
  /** Where the backend's and the engine's lines go. */
  log: Logger;
}

/** Lines of the engine's output kept to explain an exit. */
const TAIL_LINES = 20;
/** Longest wait for the engine's output pipes to close after it exited (a stray grandchild may hold them). */
const DRAIN_MS = 1000;
/** Longest a single /health probe may take. */
const PROBE_TIMEOUT_MS = 2000;
/** Output lines after which /health is probed at once instead of after the backoff (vLLM/uvicorn, fake vLLM). */
const READY_HINT = /Application startup complete|Uvicorn running on|listening on http|\/health is 200/i;

interface Engine {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  readonly model: NamedModel;
  readonly command: string[];
  readonly startedAt: number;
  phase: "starting" | "ready" | "terminating";
  stopRequested: boolean;
  /** Resolves once the process has exited and its output is drained. */
  readonly exited: Promise<Deno.CommandStatus>;
  readonly tail: { stdout: string[]; stderr: string[] };
  /** Wakes the readiness probe early (a "server started" line was printed). */
  readonly hints: EventTarget;
  /** Resolves when the engine is ready; rejects when its start failed. */
  ready?: Promise<void>;
}

/**
 * Creates the process backend.
 *
 * @example
 * ```ts ignore
 * import { createProcessBackend } from "./process.ts";
 * import { parseConfig } from "../config/define.ts";
 * import { createLogger } from "../log.ts";
 * const config = parseConfig({
 *   backend: "process",
 *   models: { a: { modelName: "org/a", command: ["deno", "run", "-A", "fake_vllm.ts", "--port", "{port}", "--model", "{served}"] } },
 * });
 * const backend = createProcessBackend({ config, log: createLogger() });
 * const model = { ...config.models.a, name: "a", servedModelName: "a", source: "config" as const };
 * await backend.start(model, { signal: new AbortController().signal, deadline: Date.now() + 60_000 });
 * console.log(backend.upstream()); // "http://127.0.0.1:<port>"
 * await backend.close();
 * ```
 */
export function createProcessBackend(options: ProcessBackendOptions): Backend {
  const { config } = options;
  const log = options.log.with({ backend: "process" });
  const host = config.process.host;
  const graceMs = config.process.stopGracePeriod;
  const listeners = new Set<(reason: string) => void>();
  let current: Engine | null = null;
  let lastUrl: string | null = null;
  let lastExit: { model: string; code: number; signal: string | null; at: string; reason: string } | null = null;
  let closed = false;
  // Engines run in their own process group, so a proxy that exits without close() must not leave one behind.
  const onUnload = () => {
    if (current) sendSignal(current, "SIGKILL");
  };
  globalThis.addEventListener("unload", onUnload);

  const resolveModel = (model: NamedModel | null): NamedModel => {
    if (model) return model;
    const names = Object.keys(config.models);
    const key = config.defaultModel && config.models[config.defaultModel]
      ? config.defaultModel
      : names.length === 1
      ? names[0]
      : undefined;
    if (!key) {
      throw new BackendError(
        "failed",
        "the process backend needs a model to run: scale-only mode (no model) works only when config.models " +
          "has exactly one model or defaultModel names one",
      );
    }
    const spec = config.models[key];
    return { ...spec, name: key, servedModelName: spec.servedModelName ?? key, source: "config" };
  };

  const spawn = (model: NamedModel, port: number): Engine => {
    const command = buildCommand(model, host, port);
    const env = { ...config.vllm.env, ...model.env };
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(command[0], {
        args: command.slice(1),
        env,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        // Its own process group: a stop reaches the workers vLLM forks, too.
        detached: true,
      }).spawn();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new BackendError("failed", `command not found: ${command[0]} (model ${model.name})`, { cause: e });
      }
      if (e instanceof Deno.errors.PermissionDenied) {
        throw new BackendError("failed", `cannot run ${command[0]}: permission denied (model ${model.name})`, {
          cause: e,
        });
      }
      throw new BackendError("failed", `cannot start ${command[0]} for model ${model.name}: ${message(e)}`, {
        cause: e,
      });
    }
    const engineLog = options.log.with({ model: model.name });
    const tail = { stdout: [] as string[], stderr: [] as string[] };
    const hints = new EventTarget();
    const onLine = (stream: "stdout" | "stderr") => (line: string) => {
      keep(tail[stream], line);
      engineLog.info(line, { stream });
      if (READY_HINT.test(line)) hints.dispatchEvent(new Event("hint"));
    };
    const pumps = [pump(child.stdout, onLine("stdout")), pump(child.stderr, onLine("stderr"))];
    const exited = child.status.then(async (status) => {
      // The engine is gone; workers it left in its group would hold the GPU (and the output pipes).
      try {
        Deno.kill(-child.pid, "SIGKILL");
      } catch { /* no one left */ }
      await drain(pumps);
      return status;
    });
    const engine: Engine = {
      child,
      pid: child.pid,
      port,
      url: `http://${urlHost(host)}:${port}`,
      model,
      command,
      startedAt: Date.now(),
      phase: "starting",
      stopRequested: false,
      exited,
      tail,
      hints,
    };
    log.info("engine started", { model: model.name, pid: child.pid, port, command: command.join(" ") });
    void exited.then((status) => onExit(engine, status));
    return engine;
  };

  const onExit = (engine: Engine, status: Deno.CommandStatus) => {
    const wasReady = engine.phase === "ready";
    const reason = exitReason(engine, status);
    lastExit = {
      model: engine.model.name,
      code: status.code,
      signal: status.signal,
      at: new Date().toISOString(),
      reason,
    };
    if (current === engine) current = null;
    if (engine.stopRequested) {
      log.info("engine stopped", { model: engine.model.name, pid: engine.pid, code: status.code });
      return;
    }
    log.warn("engine exited", { model: engine.model.name, pid: engine.pid, code: status.code, signal: status.signal });
    if (wasReady) {
      for (const listener of listeners) {
        try {
          listener(reason);
        } catch (e) {
          log.error("onFailure listener threw", { error: message(e) });
        }
      }
    }
  };

  /** Probes /health until 200, with a short backoff; fails on exit, deadline or abort. */
  const waitHealthy = async (engine: Engine, { signal, deadline }: WaitOptions): Promise<void> => {
    let delay = 25;
    let exited = false;
    const exitWatch = engine.exited.then(() => {
      exited = true;
    });
    while (true) {
      if (engine.stopRequested) throw new BackendError("aborted", `engine for model ${engine.model.name} was stopped`);
      if (exited) throw startExitError(engine, await engine.exited);
      if (signal.aborted) throw abortError(signal, engine);
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new BackendError(
          "timeout",
          `model ${engine.model.name} did not become ready before the deadline (GET ${engine.url}/health never answered 200)`,
        );
      }
      if (await probe(`${engine.url}/health`, Math.min(remaining, PROBE_TIMEOUT_MS), signal)) return;
      await sleepUnless(Math.min(delay, Math.max(0, deadline - Date.now())), signal, exitWatch, engine.hints);
      delay = Math.min(delay * 1.5, 250);
    }
  };

  const startEngine = async (model: NamedModel, opts: WaitOptions): Promise<void> => {
    for (let attempt = 0;; attempt++) {
      if (opts.signal.aborted) throw abortError(opts.signal);
      const port = await freePort(host);
      const engine = spawn(model, port);
      current = engine;
      const ready = waitHealthy(engine, opts);
      engine.ready = ready;
      try {
        await ready;
        engine.phase = "ready";
        lastUrl = engine.url;
        log.info("engine ready", { model: model.name, pid: engine.pid, port, ms: Date.now() - engine.startedAt });
        return;
      } catch (e) {
        // A failed start leaves nothing behind.
        if (current === engine) await terminate(engine, true);
        const portTaken = e instanceof BackendError && e.kind === "exited" && isAddressInUse(engine);
        if (portTaken && attempt === 0 && !opts.signal.aborted && !engine.stopRequested) {
          log.warn("engine port was taken, retrying on another port", { model: model.name, port });
          continue;
        }
        throw e;
      }
    }
  };

  /** Signals the engine's process group and resolves once it has exited. */
  const terminate = async (engine: Engine, force: boolean, deadline = Infinity, signal?: AbortSignal) => {
    engine.stopRequested = true;
    engine.phase = "terminating";
    const killAfter = force ? 0 : Math.max(0, Math.min(graceMs, deadline - Date.now()));
    let finished = false;
    void engine.exited.then(() => finished = true);
    if (!force) sendSignal(engine, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const kill = () => {
      clearTimeout(timer);
      if (!finished) {
        if (!force) {
          log.warn("engine still running after SIGTERM, killing it", { model: engine.model.name, pid: engine.pid });
        }
        sendSignal(engine, "SIGKILL");
      }
    };
    if (killAfter === 0 || signal?.aborted) kill();
    else timer = setTimeout(kill, killAfter);
    signal?.addEventListener("abort", kill, { once: true });
    try {
      await engine.exited;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", kill);
    }
  };

  const sendSignal = (engine: Engine, sig: Deno.Signal) => {
    try {
      Deno.kill(-engine.pid, sig); // the whole group: vLLM's workers too
    } catch {
      try {
        engine.child.kill(sig);
      } catch { /* already gone */ }
    }
  };

  const backend: Backend = {
    kind: "process",

    observe(_signal: AbortSignal): Promise<Observed> {
      const engine = current;
      if (!engine) return Promise.resolve({ replicas: 0, activeModel: null, phase: "absent" });
      return Promise.resolve({
        replicas: engine.phase === "terminating" ? 0 : 1,
        activeModel: engine.model.name,
        phase: engine.phase,
        pid: engine.pid,
        ...(engine.phase === "terminating" ? { reason: "stopping" } : {}),
      });
    },

    async start(requested: NamedModel | null, opts: WaitOptions): Promise<void> {
      if (closed) throw new BackendError("unavailable", "the process backend is closed");
      const model = resolveModel(requested);
      if (current) {
        throw new BackendError(
          "failed",
          `an engine is already running (model ${current.model.name}, pid ${current.pid}); stop it first`,
        );
      }
      await startEngine(model, opts);
    },

    async waitReady(_model: NamedModel | null, opts: WaitOptions): Promise<void> {
      const engine = current;
      if (!engine) throw new BackendError("unavailable", "no engine is running or starting");
      if (engine.phase === "ready") return;
      if (engine.phase === "terminating") throw new BackendError("unavailable", "the engine is being stopped");
      const { promise: aborted, reject } = Promise.withResolvers<never>();
      const onAbort = () => reject(abortError(opts.signal, engine));
      const timer = setTimeout(
        () =>
          reject(new BackendError("timeout", `model ${engine.model.name} did not become ready before the deadline`)),
        Math.max(0, opts.deadline - Date.now()),
      );
      opts.signal.addEventListener("abort", onAbort, { once: true });
      try {
        if (opts.signal.aborted) onAbort();
        await Promise.race([engine.ready ?? Promise.resolve(), aborted]);
      } finally {
        clearTimeout(timer);
        opts.signal.removeEventListener("abort", onAbort);
      }
    },

    async stop(opts: WaitOptions & { force?: boolean; reason: string }): Promise<void> {
      const engine = current;
      if (!engine) return;
      log.info("stopping engine", {
        model: engine.model.name,
        pid: engine.pid,
        reason: opts.reason,
        force: opts.force ?? false,
      });
      await terminate(engine, opts.force ?? false, opts.deadline, opts.signal);
      if (current === engine) current = null;
    },

    upstream(): string {
      const url = current?.url ?? lastUrl;
      if (!url) throw new BackendError("unavailable", "no engine has been started yet");
      return url;
    },

    onFailure(listener: (reason: string) => void): void {
      listeners.add(listener);
    },

    describe(): Record<string, unknown> {
      const engine = current;
      return {
        backend: "process",
        phase: engine?.phase ?? "absent",
        pid: engine?.pid ?? null,
        port: engine?.port ?? null,
        model: engine?.model.name ?? null,
        command: engine?.command ?? null,
        upstream: engine?.url ?? null,
        lastExit,
      };
    },

    async close(): Promise<void> {
      closed = true;
      listeners.clear();
      globalThis.removeEventListener("unload", onUnload);
      const engine = current;
      if (engine) await terminate(engine, false);
      current = null;
    },
  };
  return backend;
}

/**
 * The engine's command line for `model` on `port`: the model's `command` with
 * its placeholders filled in, else `vllm serve` with the model's vLLM flags.
 *
 * @example
 * ```ts
 * import { buildCommand } from "./process.ts";
 * const model = { modelName: "org/a", name: "a", servedModelName: "a", source: "config" as const,
 *   command: ["fake", "--port={port}", "--model", "{served}", "--path", "{model}"] };
 * buildCommand(model, "127.0.0.1", 8123); // ["fake", "--port=8123", "--model", "a", "--path", "org/a"]
 * ```
 */
export function buildCommand(model: NamedModel, host: string, port: number): string[] {
  const fill = (arg: string) =>
    arg.replaceAll("{port}", String(port)).replaceAll("{model}", model.modelName).replaceAll(
      "{served}",
      model.servedModelName,
    );
  if (model.command) return model.command.map(fill);
  return ["vllm", ...vllmServeArgs(model, { host, port })];
}

/**
 * A free TCP port on `host`: binds port 0, reads the port, closes.
 *
 * @example
 * ```ts
 * import { freePort } from "./process.ts";
 * const port = await freePort("127.0.0.1");
 * port > 0; // true
 * ```
 */
export function freePort(host: string): Promise<number> {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return Promise.resolve(port);
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function keep(lines: string[], line: string): void {
  lines.push(line);
  if (lines.length > TAIL_LINES) lines.shift();
}

/** Calls `onLine` for every line of `stream`; resolves at its end. */
function pump(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  const done = (async () => {
    let rest = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += value;
        let nl: number;
        while ((nl = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, nl).replace(/\r$/, "");
          rest = rest.slice(nl + 1);
          if (line.trim()) onLine(line);
        }
      }
    } catch { /* cancelled */ }
    if (rest.trim()) onLine(rest);
  })();
  return { done, cancel: () => reader.cancel().catch(() => {}) };
}

/** Waits for the output pipes to close, but not forever: a grandchild outside the group may hold them. */
async function drain(pumps: { done: Promise<void>; cancel: () => Promise<void> }[]): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), DRAIN_MS));
  const result = await Promise.race([Promise.all(pumps.map((p) => p.done)), timeout]);
  clearTimeout(timer);
  if (result === "timeout") {
    await Promise.all(pumps.map((p) => p.cancel()));
    await Promise.all(pumps.map((p) => p.done));
  }
}

function lastLines(engine: Engine): string {
  const lines = engine.tail.stderr.length > 0 ? engine.tail.stderr : engine.tail.stdout;
  return lines.slice(-8).join("\n");
}

function exitReason(engine: Engine, status: Deno.CommandStatus): string {
  const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
  const lines = lastLines(engine);
  return `engine for model ${engine.model.name} (pid ${engine.pid}) ${how}${lines ? `:\n${lines}` : ""}`;
}

function startExitError(engine: Engine, status: Deno.CommandStatus): BackendError {
  const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
  const lines = lastLines(engine);
  return new BackendError(
    "exited",
    `engine for model ${engine.model.name} ${how} while starting (${engine.command[0]})${
      lines ? `; last output:\n${lines}` : ""
    }`,
  );
}

function isAddressInUse(engine: Engine): boolean {
  const text = [...engine.tail.stderr, ...engine.tail.stdout].join("\n");
  return /address already in use|EADDRINUSE|Errno 98|AddrInUse/i.test(text);
}

function abortError(signal: AbortSignal, engine?: Engine): BackendError {
  const why = signal.reason instanceof Error
    ? signal.reason.message
    : signal.reason
    ? String(signal.reason)
    : "aborted";
  return new BackendError(
    "aborted",
    `start of ${engine ? `model ${engine.model.name}` : "the engine"} aborted: ${why}`,
  );
}

/** One GET; true on 200. Never throws. */
async function probe(url: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const onAbort = () => controller.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const res = await fetch(url, { signal: controller.signal });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

/** Sleeps `ms`, returning early on abort, when `wake` settles or when `hints` fires. */
function sleepUnless(ms: number, signal: AbortSignal, wake: Promise<unknown>, hints: EventTarget): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      hints.removeEventListener("hint", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    hints.addEventListener("hint", done, { once: true });
    wake.then(done, done);
  });
}
