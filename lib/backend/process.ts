/**
 * The `process` backend: runs the engine (`vllm serve …`, or a model's own
 * `command`) as a local child process on a free loopback port, one at a time
 * (one GPU, one engine). Ready means GET /health answers 200. The engine runs
 * in its own process group so that stopping it also stops the workers it
 * forked; its stdout/stderr go to the proxy's log line by line.
 *
 * Restart safety: the running engine is recorded in a state file
 * (`<process.stateDir>/engine-<proxy port>.json`, see engine_state.ts). A
 * proxy that died without stopping its engine (SIGKILL, OOM killer) left it
 * running and holding the GPU; the next proxy's `observe()` finds the record
 * and, if that very process still runs the recorded command, adopts it (ready
 * or starting, per one /health probe) instead of starting a second engine. An
 * adopted engine is not our child: its exit is noticed by polling /proc (every
 * second while it runs, faster while it is being stopped), and it is stopped by
 * signalling its process group. Nothing is recorded for a proxy on port 0 (its
 * next run listens elsewhere) or off Linux (no /proc to check a pid against).
 *
 * @module
 */
import type { ChillConfig, NamedModel } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { vllmServeArgs } from "../models/mod.ts";
import { type Backend, BackendError, type Observed, type WaitOptions } from "./types.ts";
import {
  bootId,
  canTrackProcesses,
  commandMatches,
  defaultStateDir,
  type EngineRecord,
  groupMembers,
  isRunning,
  procCmdline,
  procStat,
  readEngineRecord,
  removeEngineRecord,
  stateFilePath,
  writeEngineRecord,
} from "./engine_state.ts";

/** Options of {@link createProcessBackend}. */
export interface ProcessBackendOptions {
  /**
   * The validated config (`process.host`, `process.stopGracePeriod`, `process.stateDir`, `port` — the state
   * file's name —, `models`, `defaultModel`, `vllm.env`, `startTimeout`).
   */
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
/** How often an adopted engine (not our child, so no exit event) is checked while it runs. */
const ADOPTED_POLL_MS = 1000;
/** Longest an adopted engine may take to disappear once SIGKILLed (a GPU driver teardown can be slow). */
const ADOPTED_GONE_MS = 15_000;

/** How an engine ended: code/signal of our child; both null for an adopted engine (its parent reaped it). */
interface ExitStatus {
  code: number | null;
  signal: Deno.Signal | null;
}

interface Engine {
  /** Our child process; null for an engine adopted from a previous proxy. */
  readonly child: Deno.ChildProcess | null;
  readonly pid: number;
  /** Its process group (the engine leads it); 0 when it no longer does (signal the pid alone). */
  readonly pgid: number;
  /** Taken over from a previous proxy: not our child. */
  readonly adopted: boolean;
  /** Start time since boot (clock ticks), when /proc tells it: with pid, the process's identity. */
  readonly start?: number;
  readonly port: number;
  readonly url: string;
  readonly model: NamedModel;
  readonly command: string[];
  readonly startedAt: number;
  phase: "starting" | "ready" | "terminating";
  stopRequested: boolean;
  /** Resolves once the process has exited and its output is drained. */
  readonly exited: Promise<ExitStatus>;
  readonly tail: { stdout: string[]; stderr: string[] };
  /** Wakes the readiness probe early (a "server started" line was printed). */
  readonly hints: EventTarget;
  /** Resolves when the engine is ready; rejects when its start failed. */
  ready?: Promise<void>;
  /** Wakes an adopted engine's exit poll (a stop is under way: poll faster). */
  readonly poke: EventTarget;
  /** Ends an adopted engine's exit poll (the backend gave up on it). */
  readonly unwatch: AbortController;
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
  let lastExit: { model: string; code: number | null; signal: string | null; at: string; reason: string } | null = null;
  let closed = false;
  /** A start is under way (between its call and the engine being current): observe must not adopt then. */
  let starting = false;
  /** Aborted by close(): ends the readiness wait of an adopted engine. */
  const closer = new AbortController();
  // Port 0 means a new port on every run: no later proxy could find the record by it.
  const statePath = config.port !== 0 && canTrackProcesses()
    ? stateFilePath(config.process.stateDir ?? defaultStateDir(), config.port)
    : null;
  const self = { pid: Deno.pid, start: procStat(Deno.pid)?.start, bootId: bootId() };
  // Engines run in their own process group, so a proxy that exits without close() must not leave one behind.
  const onUnload = () => {
    if (!current) return;
    sendSignal(current, "SIGKILL");
    if (statePath) removeEngineRecord(statePath, current.pid);
  };
  globalThis.addEventListener("unload", onUnload);

  /** Records a freshly spawned engine, unless the file is another live proxy's (then it is left alone). */
  const record = (engine: Engine) => {
    if (!statePath) return;
    try {
      const found = readEngineRecord(statePath);
      if (found.kind === "record" && isRunning(found.record.proxy) && found.record.proxy.pid !== self.pid) {
        log.warn("engine state file belongs to another running proxy; this engine is not recorded", {
          stateFile: statePath,
          proxyPid: found.record.proxy.pid,
        });
        return;
      }
      const entry: EngineRecord = {
        version: 1,
        pid: engine.pid,
        pgid: engine.pgid,
        ...(engine.start !== undefined ? { start: engine.start } : {}),
        ...(self.bootId !== undefined ? { bootId: self.bootId } : {}),
        port: engine.port,
        host,
        model: engine.model.name,
        servedModelName: engine.model.servedModelName,
        command: engine.command,
        startedAt: new Date(engine.startedAt).toISOString(),
        proxy: {
          pid: self.pid,
          ...(self.start !== undefined ? { start: self.start } : {}),
          ...(self.bootId !== undefined ? { bootId: self.bootId } : {}),
        },
      };
      writeEngineRecord(statePath, entry);
    } catch (e) {
      log.warn("cannot record the engine; a restarted proxy will not find it", {
        stateFile: statePath,
        error: message(e),
      });
    }
  };

  const forget = (engine: Engine) => {
    if (statePath) removeEngineRecord(statePath, engine.pid);
  };

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
    const exited = child.status.then(async (status): Promise<ExitStatus> => {
      // The engine is gone; workers it left in its group would hold the GPU (and the output pipes).
      try {
        Deno.kill(-child.pid, "SIGKILL");
      } catch { /* no one left */ }
      await drain(pumps);
      return { code: status.code, signal: status.signal };
    });
    const engine: Engine = {
      child,
      pid: child.pid,
      pgid: child.pid,
      start: procStat(child.pid)?.start,
      adopted: false,
      poke: new EventTarget(),
      unwatch: new AbortController(),
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
    record(engine);
    void exited.then((status) => onExit(engine, status));
    return engine;
  };

  /**
   * Takes over the engine a previous proxy recorded, when that very process
   * still runs the recorded command and the recording proxy is gone; removes
   * a stale record. Returns the adopted engine or null.
   */
  const adopt = async (signal: AbortSignal): Promise<Engine | null> => {
    if (!statePath) return null;
    const found = readEngineRecord(statePath);
    if (found.kind === "none") return null;
    if (found.kind === "invalid") {
      log.warn("ignoring an unreadable engine state file", { stateFile: statePath, reason: found.reason });
      removeEngineRecord(statePath);
      return null;
    }
    const rec = found.record;
    if (isRunning(rec.proxy)) {
      // Its proxy still runs (another proxy on this port, or this very process): not ours to take.
      if (rec.proxy.pid !== self.pid) {
        log.warn("the recorded engine belongs to a running proxy; not adopting it", {
          stateFile: statePath,
          pid: rec.pid,
          proxyPid: rec.proxy.pid,
        });
      }
      return null;
    }
    const live = procCmdline(rec.pid);
    const alive = isRunning(rec);
    if (!alive || !live || !commandMatches(rec.command, live)) {
      log.info("removing a stale engine state file", {
        stateFile: statePath,
        pid: rec.pid,
        reason: !alive || !live ? "the process is gone" : "the pid now runs another command",
      });
      removeEngineRecord(statePath, rec.pid);
      return null;
    }
    const spec = config.models[rec.model];
    const model: NamedModel = spec
      ? { ...spec, name: rec.model, servedModelName: spec.servedModelName ?? rec.model, source: "config" }
      : { modelName: rec.servedModelName, name: rec.model, servedModelName: rec.servedModelName, source: "config" };
    const stat = procStat(rec.pid);
    const exit = Promise.withResolvers<ExitStatus>();
    const engine: Engine = {
      child: null,
      pid: rec.pid,
      // Signal the group only while the engine still leads it; else the pid alone.
      pgid: stat?.pgrp === rec.pgid ? rec.pgid : 0,
      start: rec.start,
      adopted: true,
      poke: new EventTarget(),
      unwatch: new AbortController(),
      port: rec.port,
      url: `http://${urlHost(rec.host)}:${rec.port}`,
      model,
      command: rec.command,
      startedAt: Date.parse(rec.startedAt),
      phase: "starting",
      stopRequested: false,
      exited: exit.promise,
      tail: { stdout: [], stderr: [] },
      hints: new EventTarget(),
    };
    void watchAdopted(engine).then(exit.resolve);
    void engine.exited.then((status) => onExit(engine, status));
    // The config no longer describes this engine (model removed, command or flags changed): stop it.
    const wanted = spec ? buildCommand(model, host, rec.port) : null;
    const outdated = !wanted || wanted.length !== rec.command.length || wanted.some((a, i) => a !== rec.command[i]);
    if (outdated) {
      engine.phase = "terminating";
      log.warn("adopted an engine the config no longer describes; it will be stopped", {
        model: rec.model,
        pid: rec.pid,
        command: rec.command.join(" "),
      });
      return engine;
    }
    if (await probe(`${engine.url}/health`, PROBE_TIMEOUT_MS, signal)) {
      engine.phase = "ready";
      lastUrl = engine.url;
    } else {
      const timeout = model.startTimeout ?? config.startTimeout;
      const ready = waitHealthy(engine, { signal: closer.signal, deadline: Date.now() + timeout });
      engine.ready = ready.then(() => {
        engine.phase = "ready";
        lastUrl = engine.url;
        log.info("adopted engine ready", { model: model.name, pid: engine.pid });
      });
      engine.ready.catch(async (e) => {
        if (current !== engine || engine.stopRequested || closed) return;
        log.warn("adopted engine did not become ready; stopping it", { model: model.name, error: message(e) });
        await terminate(engine, true).catch(() => {});
      });
    }
    log.info("adopted a running engine", {
      model: model.name,
      pid: engine.pid,
      port: engine.port,
      phase: engine.phase,
      stateFile: statePath,
    });
    return engine;
  };

  /** Polls /proc until the adopted engine is gone (1 s apart, faster once a stop is under way). */
  const watchAdopted = async (engine: Engine): Promise<ExitStatus> => {
    let fast = 25;
    while (isRunning(engine)) {
      // Given up on (close, or it outlived its SIGKILL): never reported as exited.
      if (engine.unwatch.signal.aborted) return new Promise<never>(() => {});
      const wait = engine.stopRequested ? fast : ADOPTED_POLL_MS;
      if (engine.stopRequested) fast = Math.min(fast * 1.5, 250);
      await sleepUnless(wait, engine.unwatch.signal, null, engine.poke);
    }
    // Workers left in its group would still hold the GPU.
    if (engine.pgid > 0) {
      try {
        Deno.kill(-engine.pgid, "SIGKILL");
      } catch { /* no one left */ }
      for (let i = 0; i < 40 && groupMembers(engine.pgid).length > 0; i++) {
        await sleepUnless(25, engine.unwatch.signal, null, new EventTarget());
      }
    }
    return { code: null, signal: null };
  };

  const onExit = (engine: Engine, status: ExitStatus) => {
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
    forget(engine);
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
    let killed: number | null = null;
    const kill = () => {
      clearTimeout(timer);
      killed ??= Date.now();
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
    engine.poke.dispatchEvent(new Event("poke"));
    try {
      // Our child always reports its exit; an adopted engine is polled, so that wait is bounded.
      await (engine.adopted ? goneWithin(engine, () => killed) : engine.exited);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", kill);
    }
  };

  /** Resolves when the adopted engine is gone; rejects when it outlives its SIGKILL by ADOPTED_GONE_MS. */
  const goneWithin = (engine: Engine, killedAt: () => number | null): Promise<void> => {
    return new Promise<void>((resolve, reject) => {
      const check = setInterval(() => {
        const at = killedAt();
        if (at !== null && Date.now() - at > ADOPTED_GONE_MS) {
          // Still watched: should it go later, it is forgotten then.
          clearInterval(check);
          reject(
            new BackendError(
              "timeout",
              `engine for model ${engine.model.name} (pid ${engine.pid}) still runs ${ADOPTED_GONE_MS} ms after SIGKILL`,
            ),
          );
        }
      }, 250);
      void engine.exited.then(() => {
        clearInterval(check);
        resolve();
      });
    });
  };

  const sendSignal = (engine: Engine, sig: Deno.Signal) => {
    if (engine.pgid > 0) {
      try {
        Deno.kill(-engine.pgid, sig); // the whole group: vLLM's workers too
        return;
      } catch { /* no group any more: the process alone */ }
    }
    try {
      if (engine.child) engine.child.kill(sig);
      // Not our child: make sure the pid is still that engine before signalling it.
      else if (isRunning(engine)) Deno.kill(engine.pid, sig);
    } catch { /* already gone */ }
  };

  const backend: Backend = {
    kind: "process",

    async observe(signal: AbortSignal): Promise<Observed> {
      // Level-triggered: with no engine of our own, what a previous proxy left running is the truth.
      if (!current && !starting && !closed) {
        const adopted = await adopt(signal);
        if (adopted && !current && !closed) current = adopted;
        else if (adopted && current !== adopted) {
          // Raced by a start (or close) while probing: leave the record; the next observe sees it again.
          adopted.unwatch.abort();
        }
      }
      const engine = current;
      if (!engine) return { replicas: 0, activeModel: null, phase: "absent" };
      return {
        replicas: engine.phase === "terminating" ? 0 : 1,
        activeModel: engine.model.name,
        phase: engine.phase,
        pid: engine.pid,
        ...(engine.phase === "terminating"
          ? { reason: engine.stopRequested ? "stopping" : "the config no longer describes this engine" }
          : {}),
      };
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
      starting = true;
      try {
        await startEngine(model, opts);
      } finally {
        starting = false;
      }
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
        adopted: engine?.adopted ?? false,
        stateFile: statePath,
        lastExit,
      };
    },

    async close(): Promise<void> {
      closed = true;
      closer.abort(new Error("the process backend is closing"));
      listeners.clear();
      globalThis.removeEventListener("unload", onUnload);
      const engine = current;
      try {
        if (engine) await terminate(engine, false);
      } finally {
        engine?.unwatch.abort();
        current = null;
      }
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

/** How an engine ended, in words. */
function howItEnded(engine: Engine, status: ExitStatus): string {
  if (status.signal) return `was killed by ${status.signal}`;
  if (status.code !== null) return `exited with code ${status.code}`;
  return engine.adopted ? "exited (adopted from a previous proxy: its exit code is unknown)" : "exited";
}

function exitReason(engine: Engine, status: ExitStatus): string {
  const how = howItEnded(engine, status);
  const lines = lastLines(engine);
  return `engine for model ${engine.model.name} (pid ${engine.pid}) ${how}${lines ? `:\n${lines}` : ""}`;
}

function startExitError(engine: Engine, status: ExitStatus): BackendError {
  const how = howItEnded(engine, status);
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

/** Sleeps `ms`, returning early on abort, when `wake` settles (if given) or when `hints` fires. */
function sleepUnless(
  ms: number,
  signal: AbortSignal,
  wake: Promise<unknown> | null,
  hints: EventTarget,
): Promise<void> {
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
    wake?.then(done, done);
  });
}
