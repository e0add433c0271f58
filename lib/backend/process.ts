/**
 * The `process` backend: runs engines (`vllm serve …`, or a model's own
 * `command`) as local child processes, one per model key, each on a free
 * loopback port with `CUDA_VISIBLE_DEVICES` set to the GPUs the scheduler
 * placed it on. Ready means GET /health answers 200. Each engine runs in its
 * own process group so that stopping it also stops the workers it forked;
 * its stdout/stderr go to the proxy's log line by line. Sleep and wake go
 * through vLLM's own endpoints (engine_http.ts).
 *
 * Restart safety: every engine is recorded in a state file
 * (`<process.stateDir>/engine-<proxy port>-<key>.json`, see engine_state.ts).
 * A proxy that died without stopping its engines (SIGKILL, OOM killer) left
 * them running and holding their GPUs; the next proxy's `observe()` finds the
 * records and adopts every engine whose process still runs the recorded
 * command (sleeping, ready or starting, per `GET /is_sleeping` and one
 * `/health` probe) instead of starting second ones. An engine the config no
 * longer describes is reported `terminating`, to be stopped. An adopted
 * engine is not our child: its exit is noticed by polling /proc, and it is
 * stopped by signalling its process group. Nothing is recorded for a proxy on
 * port 0 (its next run listens elsewhere) or off Linux (no /proc to check a
 * pid against).
 *
 * @module
 */
import { type ChillConfig, gpuCountOf, maySleep, type ModelSpec, type NamedModel } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import {
  type Backend,
  BackendError,
  type EngineLaunch,
  type Observed,
  type ObservedEngine,
  type WaitOptions,
} from "./types.ts";
import { buildCommand, engineEnv, OWNED_ENV_KEYS } from "./engine_command.ts";
import {
  defaultStateDir,
  type EngineRecord,
  type LegacyEngineRecord,
  listStateFiles,
  readEngineRecord,
  removeEngineRecord,
  stateFilePath,
  writeEngineRecord,
} from "./engine_state.ts";
import {
  type EngineCallOptions,
  probeHealth,
  probeSleeping,
  resetPrefixCache,
  sleepEngine,
  wakeEngine,
} from "./engine_http.ts";
import { adoptEngine, type EngineProcess, type ExitStatus, spawnEngine, wakeable } from "./engine_process.ts";
import { bootId, canTrackProcesses, commandMatches, isRunning, procCmdline, procStat } from "./proc.ts";
import { pickFreePort } from "./free_port.ts";

/** Options of {@link createProcessBackend}. */
export interface ProcessBackendOptions {
  /**
   * The validated config (`process.host`, `process.gpus`, `process.stopGracePeriod`, `process.stateDir`, `port` —
   * the state files' names —, `models`, `defaultModel`, `vllm.env`, `vllm.gpus`, `startTimeout`, `sleepAfter`).
   */
  config: Readonly<ChillConfig>;
  /** Where the backend's and the engines' lines go. */
  log: Logger;
}

/** Longest a single /health or /is_sleeping probe may take. */
const PROBE_TIMEOUT_MS = 2000;
/** Output lines shown in describe() and in the log line of an exit. */
const SHOWN_LINES = 8;
/** Characters of an engine's error answer kept for describe(). */
const ANSWER_CHARS = 500;
/** Longest a failed operation waits for the exit of an engine that died under it (output drained, /proc polled). */
const EXIT_REPORT_MS = 3000;
/** A signal that never aborts. */
const never = new AbortController().signal;

type Phase = "starting" | "ready" | "sleeping" | "terminating";

interface Engine {
  readonly key: string;
  readonly model: NamedModel;
  readonly proc: EngineProcess;
  /** The process group recorded for it (its pid when we spawned it). */
  readonly pgid: number;
  readonly port: number;
  readonly host: string;
  readonly url: string;
  readonly command: string[];
  readonly gpus: string[];
  readonly sleepMode: boolean;
  readonly startedAt: number;
  phase: Phase;
  /** The level it was put to sleep at, from the moment /sleep is sent until a wake completes. */
  sleepLevel?: 1 | 2;
  /** Why it is terminating when no one stopped it (an adopted engine the config no longer describes). */
  reason?: string;
  stopRequested: boolean;
  /** Operations (start, waitReady, sleep, wake) waiting on it: its exit is theirs to report, not onFailure's. */
  ops: number;
  /** What is being done to it, for describe(). */
  operation: "starting" | "falling asleep" | "waking" | null;
  /** Resolves when it is ready; rejects when its start failed. */
  ready?: Promise<void>;
  /** The last failed operation or error answer, for describe(). */
  lastError?: { at: string; message: string; call?: string; status?: number; answer?: string };
}

/** How an engine ended, for describe(). */
interface ExitInfo {
  model: string;
  pid: number;
  code: number | null;
  signal: string | null;
  at: string;
  reason: string;
  output: string[];
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
 *   process: { gpus: ["0", "1"] },
 *   models: { a: { modelName: "org/a", command: ["deno", "run", "-A", "fake_vllm.ts", "--port", "{port}", "--model", "{served}"] } },
 * });
 * const backend = createProcessBackend({ config, log: createLogger() });
 * const model = { ...config.models.a, name: "a", servedModelName: "a", source: "config" as const };
 * const opts = { signal: new AbortController().signal, deadline: Date.now() + 60_000 };
 * await backend.start({ key: "a", model, gpus: ["1"], sleepMode: false }, opts);
 * console.log(backend.upstream("a")); // "http://127.0.0.1:<port>"
 * await backend.close();
 * ```
 */
export function createProcessBackend(options: ProcessBackendOptions): Backend {
  const { config } = options;
  const log = options.log.with({ backend: "process" });
  const host = config.process.host;
  const graceMs = config.process.stopGracePeriod;
  const listeners = new Set<(key: string, reason: string) => void>();
  const engines = new Map<string, Engine>();
  /** Keys whose start is under way but whose engine is not spawned yet: never adopted meanwhile. */
  const starting = new Set<string>();
  const lastUrls = new Map<string, string>();
  const lastExits = new Map<string, ExitInfo>();
  /** State files of live proxies already warned about (one warning each). */
  const warned = new Set<string>();
  let closed = false;
  let adopting: Promise<void> | null = null;
  /** Aborted by close(): ends the readiness waits of adopted engines. */
  const closer = new AbortController();
  const tracking = canTrackProcesses();
  // Port 0 means a new port on every run: no later proxy could find the records by it.
  const stateDir = config.port !== 0 && tracking ? config.process.stateDir ?? defaultStateDir() : null;
  const pathOf = (key: string) => stateDir ? stateFilePath(stateDir, config.port, key) : null;
  const self = { pid: Deno.pid, start: procStat(Deno.pid)?.start, bootId: bootId() };
  // Engines run in their own process groups, so a proxy that exits without close() must not leave one behind.
  const onUnload = () => {
    for (const engine of engines.values()) {
      engine.proc.kill("SIGKILL");
      forget(engine);
    }
  };
  globalThis.addEventListener("unload", onUnload);

  const named = (key: string, spec: ModelSpec): NamedModel => ({
    ...spec,
    name: key,
    servedModelName: spec.servedModelName ?? key,
    source: "config",
  });

  /** The model scale-only mode runs: the only one, or defaultModel; null when neither says. */
  const defaultKey = (): string | null => {
    if (config.defaultModel && config.models[config.defaultModel]) return config.defaultModel;
    const keys = Object.keys(config.models);
    return keys.length === 1 ? keys[0] : null;
  };

  const resolveModel = (launch: EngineLaunch): NamedModel => {
    if (launch.model) return launch.model;
    const key = config.models[launch.key] ? launch.key : defaultKey();
    if (!key) {
      throw new BackendError(
        "failed",
        "the process backend needs a model to run: scale-only mode (no model) works only when config.models " +
          "has exactly one model or defaultModel names one",
      );
    }
    return named(key, config.models[key]);
  };

  // ---- state files ----

  const toRecord = (engine: Engine): EngineRecord => ({
    version: 2,
    key: engine.key,
    pid: engine.proc.pid,
    pgid: engine.pgid,
    ...(engine.proc.start !== undefined ? { start: engine.proc.start } : {}),
    ...(self.bootId !== undefined ? { bootId: self.bootId } : {}),
    port: engine.port,
    host: engine.host,
    model: engine.model.name,
    servedModelName: engine.model.servedModelName,
    command: engine.command,
    startedAt: new Date(engine.startedAt).toISOString(),
    proxy: {
      pid: self.pid,
      ...(self.start !== undefined ? { start: self.start } : {}),
      ...(self.bootId !== undefined ? { bootId: self.bootId } : {}),
    },
    gpus: engine.gpus,
    sleepMode: engine.sleepMode,
    ...(engine.sleepLevel !== undefined ? { sleepLevel: engine.sleepLevel } : {}),
  });

  /** Records the engine (again), unless its file is another live proxy's (then it is left alone). */
  const record = (engine: Engine) => {
    const path = pathOf(engine.key);
    if (!path) return;
    try {
      const found = readEngineRecord(path);
      if (
        (found.kind === "record" || found.kind === "legacy") && found.record.pid !== engine.proc.pid &&
        isRunning(found.record.proxy) && found.record.proxy.pid !== self.pid
      ) {
        log.warn("engine state file belongs to another running proxy; this engine is not recorded", {
          stateFile: path,
          proxyPid: found.record.proxy.pid,
        });
        return;
      }
      writeEngineRecord(path, toRecord(engine));
    } catch (e) {
      log.warn("cannot record the engine; a restarted proxy will not find it", {
        stateFile: path,
        error: message(e),
      });
    }
  };

  const forget = (engine: Engine) => {
    const path = pathOf(engine.key);
    if (path) removeEngineRecord(path, engine.proc.pid);
  };

  // ---- engines coming and going ----

  const notify = (key: string, reason: string) => {
    for (const listener of listeners) {
      try {
        listener(key, reason);
      } catch (e) {
        log.error("onFailure listener threw", { error: message(e) });
      }
    }
  };

  const onExit = (engine: Engine, status: ExitStatus) => {
    const reason = `engine for model ${engine.model.name} (pid ${engine.proc.pid}) ${howItEnded(engine, status)}`;
    const output = lastLines(engine);
    lastExits.set(engine.key, {
      model: engine.model.name,
      pid: engine.proc.pid,
      code: status.code,
      signal: status.signal,
      at: new Date().toISOString(),
      reason,
      output,
    });
    if (engines.get(engine.key) === engine) engines.delete(engine.key);
    forget(engine);
    if (engine.stopRequested) {
      log.info("engine stopped", { model: engine.model.name, pid: engine.proc.pid, code: status.code });
      return;
    }
    log.warn("engine exited", {
      model: engine.model.name,
      pid: engine.proc.pid,
      code: status.code,
      signal: status.signal,
      phase: engine.phase,
      output,
    });
    // During an operation, the operation reports it (start, sleep, wake reject).
    if (engine.ops === 0) notify(engine.key, reason);
  };

  /** A free port on `host` that none of our engines uses. */
  const pickPort = (): number => {
    const used = new Set([...engines.values()].map((e) => e.port));
    for (let i = 0;; i++) {
      const port = pickFreePort(host);
      if (!used.has(port) || i >= 20) return port;
    }
  };

  const spawn = (launch: EngineLaunch, model: NamedModel, port: number): Engine => {
    const command = buildCommand(model, { host, port, sleepMode: launch.sleepMode });
    const env = engineEnv(config.vllm.env, model.env, launch);
    for (const name of OWNED_ENV_KEYS) {
      const asked = model.env?.[name] ?? config.vllm.env?.[name];
      if (asked !== undefined && asked !== env[name]) {
        log.warn("an env variable vllm-chill sets itself is overridden", { model: model.name, name, value: env[name] });
      }
    }
    const engineLog = options.log.with({ model: model.name });
    const proc = spawnEngine({
      command,
      env,
      name: `model ${model.name}`,
      onLine: (stream, line) => engineLog.info(line, { stream }),
    });
    const engine: Engine = {
      key: launch.key,
      model,
      proc,
      pgid: proc.pgid,
      port,
      host,
      url: `http://${urlHost(host)}:${port}`,
      command,
      gpus: [...launch.gpus],
      sleepMode: launch.sleepMode,
      startedAt: Date.now(),
      phase: "starting",
      stopRequested: false,
      ops: 0,
      operation: null,
    };
    engines.set(launch.key, engine);
    log.info("engine started", {
      model: model.name,
      ...(launch.key !== model.name ? { engine: launch.key } : {}),
      pid: proc.pid,
      port,
      gpus: launch.gpus.join(","),
      sleepMode: launch.sleepMode,
      command: command.join(" "),
    });
    record(engine);
    void proc.exited.then((status) => onExit(engine, status));
    return engine;
  };

  /** Probes /health until 200, with a short backoff; fails on exit, deadline or abort. */
  const waitHealthy = async (engine: Engine, { signal, deadline }: WaitOptions): Promise<void> => {
    let wait = 25;
    let exited = false;
    const exitWatch = engine.proc.exited.then(() => {
      exited = true;
    });
    const name = `model ${engine.model.name}`;
    while (true) {
      if (engine.stopRequested) throw new BackendError("aborted", `engine for ${name} was stopped`);
      if (exited) {
        const how = howItEnded(engine, await engine.proc.exited);
        const why = diagnosis(engine);
        throw new BackendError("exited", `engine for ${name} ${how} during start${why ? ` (${why})` : ""}`);
      }
      if (signal.aborted) throw abortError(signal, `start of ${name}`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new BackendError(
          "timeout",
          `${name} did not become ready before the deadline (GET /health never answered 200)`,
        );
      }
      if (await probeHealth(engine.url, Math.min(remaining, PROBE_TIMEOUT_MS), signal)) return;
      await wakeable(Math.min(wait, Math.max(0, deadline - Date.now())), signal, exitWatch, engine.proc.hints);
      wait = Math.min(wait * 1.5, 250);
    }
  };

  /** Stops the engine's process group and resolves once it has exited. */
  const terminate = async (engine: Engine, force: boolean, deadline?: number, signal?: AbortSignal) => {
    engine.stopRequested = true;
    engine.phase = "terminating";
    await engine.proc.terminate({
      force,
      graceMs,
      deadline,
      signal,
      onKill: () => {
        log.warn("engine still running after SIGTERM, killing it", {
          model: engine.model.name,
          pid: engine.proc.pid,
        });
      },
    });
  };

  const startEngine = async (launch: EngineLaunch, model: NamedModel, opts: WaitOptions): Promise<void> => {
    for (let attempt = 0;; attempt++) {
      const port = pickPort();
      // close() or an abort may have come since the last attempt: spawn nothing then.
      if (closed) throw new BackendError("unavailable", "the process backend is closed");
      if (opts.signal.aborted) throw abortError(opts.signal, `start of model ${model.name}`);
      const engine = spawn(launch, model, port);
      engine.ops++;
      engine.operation = "starting";
      const ready = waitHealthy(engine, opts);
      engine.ready = ready;
      try {
        await ready;
        engine.phase = "ready";
        lastUrls.set(launch.key, engine.url);
        log.info("engine ready", {
          model: model.name,
          pid: engine.proc.pid,
          port,
          ms: Date.now() - engine.startedAt,
        });
        return;
      } catch (e) {
        const stoppedByOthers = engine.stopRequested;
        // A failed start leaves nothing behind (an engine that exited is out of the map already).
        if (engines.get(launch.key) === engine) await terminate(engine, true);
        const portTaken = e instanceof BackendError && e.kind === "exited" && isAddressInUse(engine);
        if (portTaken && attempt === 0 && !opts.signal.aborted && !stoppedByOthers && !closed) {
          log.warn("engine port was taken, retrying on another port", { model: model.name, port });
          continue;
        }
        engine.lastError = { at: new Date().toISOString(), message: message(e) };
        log.warn("engine start failed", {
          model: model.name,
          pid: engine.proc.pid,
          error: message(e),
          output: lastLines(engine),
        });
        throw e;
      } finally {
        engine.ops--;
        engine.operation = null;
      }
    }
  };

  /**
   * Runs a sleep or wake on `engine` under the operation's deadline and
   * signal; an engine that exits meanwhile turns the failure into "exited".
   */
  const operate = async (
    engine: Engine,
    operation: "falling asleep" | "waking",
    opts: WaitOptions,
    run: (call: EngineCallOptions) => Promise<void>,
  ): Promise<void> => {
    engine.ops++;
    engine.operation = operation;
    const controller = new AbortController();
    const onAbort = () => controller.abort(opts.signal.reason);
    opts.signal.addEventListener("abort", onAbort, { once: true });
    if (opts.signal.aborted) onAbort();
    let status: ExitStatus | null = null;
    void engine.proc.exited.then((s) => {
      status = s;
      controller.abort(new Error("the engine exited"));
    });
    const name = `model ${engine.model.name}`;
    try {
      await run({
        name,
        signal: controller.signal,
        deadline: opts.deadline,
        onAnswer: (call, code, body) => {
          const answer = body.slice(0, ANSWER_CHARS);
          engine.lastError = { at: new Date().toISOString(), message: `${call} answered ${code}`, call, status: code };
          if (answer) engine.lastError.answer = answer;
          log.warn("engine answered an error", { model: engine.model.name, call, status: code, answer });
        },
      });
    } catch (e) {
      const gone = status !== null || engine.stopRequested || (tracking && !isRunning(engine.proc));
      // Its exit is this operation's to report: let onExit run (and see ops > 0) first.
      if (gone) await wakeable(EXIT_REPORT_MS, never, engine.proc.exited);
      const error = engine.stopRequested
        ? new BackendError("aborted", `engine for ${name} was stopped while ${operation}`)
        : gone
        ? new BackendError(
          "exited",
          `engine for ${name} (pid ${engine.proc.pid}) ${
            status ? howItEnded(engine, status) : "exited"
          } while ${operation}`,
        )
        : e instanceof BackendError
        ? e
        : new BackendError("failed", `${operation} of ${name} failed: ${message(e)}`);
      engine.lastError = { ...engine.lastError, at: new Date().toISOString(), message: error.message };
      log.warn(operation === "waking" ? "engine wake failed" : "engine sleep failed", {
        model: engine.model.name,
        pid: engine.proc.pid,
        error: error.message,
      });
      throw error;
    } finally {
      opts.signal.removeEventListener("abort", onAbort);
      engine.ops--;
      engine.operation = null;
    }
  };

  // ---- adoption ----

  /** Why the config no longer describes the recorded engine, or null when it does. */
  const outdatedBecause = (rec: EngineRecord, spec: ModelSpec | undefined): string | null => {
    if (!spec) return `model ${rec.model} is no longer in the config`;
    if (rec.key === "*" && defaultKey() !== rec.model) return "scale-only mode now runs another model";
    const model = named(rec.model, spec);
    const wanted = buildCommand(model, { host, port: rec.port, sleepMode: rec.sleepMode });
    if (wanted.length !== rec.command.length || wanted.some((a, i) => a !== rec.command[i])) {
      return "its command or vLLM flags changed";
    }
    if (!rec.sleepMode && maySleep(model, config.sleepAfter)) {
      return "it runs without sleep mode but the model may now sleep";
    }
    if (rec.gpus.some((id) => !config.process.gpus.includes(id))) return "it runs on GPUs process.gpus no longer lists";
    if (rec.gpus.length !== gpuCountOf(spec, config.vllm.gpus)) return "the model's GPU count changed";
    return null;
  };

  /**
   * Takes over the engine recorded at `path` when that very process still
   * runs the recorded command and the recording proxy is gone; removes a
   * stale record.
   */
  const adoptFrom = async (path: string, signal: AbortSignal): Promise<void> => {
    const found = readEngineRecord(path);
    if (found.kind === "none") return;
    if (found.kind === "invalid") {
      log.warn("ignoring an unreadable engine state file", { stateFile: path, reason: found.reason });
      removeEngineRecord(path);
      return;
    }
    const rec: EngineRecord | LegacyEngineRecord = found.record;
    const key = found.kind === "record" ? found.record.key : rec.model;
    if (rec.proxy.pid === self.pid && (rec.proxy.start === undefined || rec.proxy.start === self.start)) return;
    if (isRunning(rec.proxy)) {
      // Its proxy still runs (another proxy on this port): not ours to take.
      if (!warned.has(path)) {
        warned.add(path);
        log.warn("the recorded engine belongs to a running proxy; not adopting it", {
          stateFile: path,
          pid: rec.pid,
          proxyPid: rec.proxy.pid,
        });
      }
      return;
    }
    if (engines.has(key) || starting.has(key)) return;
    const live = procCmdline(rec.pid);
    const alive = isRunning(rec);
    if (!alive || !live || !commandMatches(rec.command, live)) {
      log.info("removing a stale engine state file", {
        stateFile: path,
        pid: rec.pid,
        reason: !alive || !live ? "the process is gone" : "the pid now runs another command",
      });
      removeEngineRecord(path, rec.pid);
      return;
    }
    const spec = config.models[rec.model] as ModelSpec | undefined;
    const model: NamedModel = spec
      ? named(rec.model, spec)
      : { modelName: rec.servedModelName, name: rec.model, servedModelName: rec.servedModelName, source: "config" };
    const outdated = found.kind === "legacy"
      ? "it was recorded by a vllm-chill before the pool (its GPUs are unknown)"
      : outdatedBecause(found.record, spec);
    const proc = adoptEngine({ pid: rec.pid, pgid: rec.pgid, start: rec.start }, `model ${model.name}`);
    const engine: Engine = {
      key,
      model,
      proc,
      pgid: rec.pgid,
      port: rec.port,
      host: rec.host,
      url: `http://${urlHost(rec.host)}:${rec.port}`,
      command: rec.command,
      gpus: found.kind === "record" ? [...found.record.gpus] : [],
      sleepMode: found.kind === "record" ? found.record.sleepMode : false,
      startedAt: Date.parse(rec.startedAt),
      phase: "starting",
      ...(found.kind === "record" && found.record.sleepLevel ? { sleepLevel: found.record.sleepLevel } : {}),
      stopRequested: false,
      ops: 0,
      operation: null,
    };
    let interruptedWake = false;
    if (outdated) {
      engine.phase = "terminating";
      engine.reason = `the config no longer describes this engine: ${outdated}`;
    } else {
      // Never /health to judge sleep: it answers 200 while asleep.
      const sleeping = engine.sleepMode ? await probeSleeping(engine.url, PROBE_TIMEOUT_MS, signal) : null;
      if (sleeping === true) engine.phase = "sleeping";
      else if (await probeHealth(engine.url, PROBE_TIMEOUT_MS, signal)) {
        engine.phase = "ready";
        // Recorded asleep but awake: the previous proxy died during a wake, after vLLM's own part.
        interruptedWake = engine.sleepLevel !== undefined && sleeping === false;
        delete engine.sleepLevel;
      }
    }
    // Raced by a start or close while probing: leave the record; the next observe sees it again.
    if (closed || engines.has(key) || starting.has(key)) {
      proc.release();
      return;
    }
    engines.set(key, engine);
    void proc.exited.then((status) => onExit(engine, status));
    // Ours now: a later crash of this proxy leaves it adoptable again.
    record(engine);
    if (found.kind === "legacy") removeEngineRecord(path, rec.pid);
    log[outdated ? "warn" : "info"](
      outdated ? "adopted an engine the config no longer describes; it will be stopped" : "adopted a running engine",
      {
        model: model.name,
        ...(key !== model.name ? { engine: key } : {}),
        pid: rec.pid,
        port: rec.port,
        gpus: engine.gpus.join(","),
        phase: engine.phase,
        ...(engine.sleepLevel ? { sleepLevel: engine.sleepLevel } : {}),
        ...(outdated ? { reason: outdated, command: rec.command.join(" ") } : {}),
        stateFile: path,
      },
    );
    if (engine.phase === "ready") lastUrls.set(key, engine.url);
    if (interruptedWake) {
      // The wake would have reset the prefix cache; do it now (vLLM also resets it before sleeping).
      await resetPrefixCache(engine.url, {
        name: `model ${model.name}`,
        signal,
        deadline: Date.now() + PROBE_TIMEOUT_MS * 5,
      }).catch((e) => log.warn("cannot reset the prefix cache of an adopted engine", { error: message(e) }));
    }
    if (engine.phase === "starting") followAdoptedStart(engine);
  };

  /** An adopted engine still loading: becomes ready, or is stopped (and reported) at its startTimeout. */
  const followAdoptedStart = (engine: Engine) => {
    const timeout = engine.model.startTimeout ?? config.startTimeout;
    const ready = waitHealthy(engine, { signal: closer.signal, deadline: Date.now() + timeout });
    engine.ready = ready.then(() => {
      engine.phase = "ready";
      lastUrls.set(engine.key, engine.url);
      log.info("adopted engine ready", { model: engine.model.name, pid: engine.proc.pid });
    });
    engine.ready.catch(async (e) => {
      if (engines.get(engine.key) !== engine || engine.stopRequested || closed) return;
      const reason = `adopted engine for model ${engine.model.name} did not become ready: ${message(e)}`;
      log.warn("adopted engine did not become ready; stopping it", { model: engine.model.name, error: message(e) });
      await terminate(engine, true).catch(() => {});
      if (engine.ops === 0) notify(engine.key, reason);
    });
  };

  /** Adopts every engine recorded for this proxy's port that a previous proxy left; one pass at a time. */
  const adoptAll = (signal: AbortSignal): Promise<void> => {
    if (!stateDir || closed) return Promise.resolve();
    adopting ??= (async () => {
      try {
        for (const path of listStateFiles(stateDir, config.port)) {
          if (closed) return;
          await adoptFrom(path, signal);
        }
      } finally {
        adopting = null;
      }
    })();
    return adopting;
  };

  const need = (key: string): Engine => {
    const engine = engines.get(key);
    if (!engine) throw new BackendError("unavailable", `no engine for model ${key} is running`);
    return engine;
  };

  const backend: Backend = {
    kind: "process",

    async observe(signal: AbortSignal): Promise<Observed> {
      // Level-triggered: what a previous proxy left running is part of the world.
      await adoptAll(signal);
      return { engines: [...engines.values()].map(observed) };
    },

    async start(launch: EngineLaunch, opts: WaitOptions): Promise<void> {
      if (closed) throw new BackendError("unavailable", "the process backend is closed");
      const model = resolveModel(launch);
      if (engines.has(launch.key) || starting.has(launch.key)) {
        const other = engines.get(launch.key);
        throw new BackendError(
          "failed",
          `an engine for model ${launch.key} is already running${
            other ? ` (pid ${other.proc.pid})` : ""
          }; stop it first`,
        );
      }
      // An engine a previous proxy left for this key would be orphaned by a second one: find it first.
      await adoptAll(opts.signal);
      if (closed) throw new BackendError("unavailable", "the process backend is closed");
      const left = engines.get(launch.key);
      if (left?.proc.adopted) {
        throw new BackendError(
          "failed",
          `an engine for model ${launch.key} left by a previous proxy is running (pid ${left.proc.pid}); ` +
            "observe() reports it",
        );
      }
      if (left || starting.has(launch.key)) {
        throw new BackendError("failed", `an engine for model ${launch.key} is already starting; stop it first`);
      }
      starting.add(launch.key);
      try {
        await startEngine(launch, model, opts);
      } finally {
        starting.delete(launch.key);
      }
    },

    async waitReady(launch: EngineLaunch, opts: WaitOptions): Promise<void> {
      const engine = engines.get(launch.key);
      if (!engine) throw new BackendError("unavailable", `no engine for model ${launch.key} is running or starting`);
      if (engine.phase === "ready") return;
      if (engine.phase === "sleeping") {
        throw new BackendError("unavailable", `the engine for model ${launch.key} is asleep: wake it`);
      }
      if (engine.phase === "terminating") {
        throw new BackendError("unavailable", `the engine for model ${launch.key} is being stopped`);
      }
      const { promise: aborted, reject } = Promise.withResolvers<never>();
      const onAbort = () => reject(abortError(opts.signal, `wait for model ${launch.key}`));
      const timer = setTimeout(
        () => reject(new BackendError("timeout", `model ${launch.key} did not become ready before the deadline`)),
        Math.max(0, opts.deadline - Date.now()),
      );
      opts.signal.addEventListener("abort", onAbort, { once: true });
      engine.ops++;
      try {
        if (opts.signal.aborted) onAbort();
        await Promise.race([engine.ready ?? Promise.resolve(), aborted]);
      } finally {
        engine.ops--;
        clearTimeout(timer);
        opts.signal.removeEventListener("abort", onAbort);
      }
    },

    async sleep(key: string, level: 1 | 2, opts: WaitOptions): Promise<void> {
      const engine = need(key);
      if (engine.phase === "sleeping" && engine.operation === null && engine.sleepLevel === level) return;
      if (engine.phase !== "ready") {
        throw new BackendError("unavailable", `the engine for model ${key} is ${engine.phase}: it cannot fall asleep`);
      }
      if (!engine.sleepMode) {
        throw new BackendError("failed", `the engine for model ${key} was started without sleep mode`);
      }
      const t0 = Date.now();
      // From the moment /sleep is sent the engine serves nothing; a restarted proxy needs the level to wake it.
      engine.phase = "sleeping";
      engine.sleepLevel = level;
      record(engine);
      log.info("putting engine to sleep", { model: engine.model.name, pid: engine.proc.pid, sleepLevel: level });
      await operate(engine, "falling asleep", opts, (call) => sleepEngine(engine.url, level, call));
      log.info("engine asleep", { model: engine.model.name, sleepLevel: level, ms: Date.now() - t0 });
    },

    async wake(key: string, level: 1 | 2, opts: WaitOptions): Promise<void> {
      const engine = need(key);
      if (engine.phase === "ready") return;
      if (engine.phase !== "sleeping") {
        throw new BackendError("unavailable", `the engine for model ${key} is ${engine.phase}, not asleep`);
      }
      // Woken as deep as it slept: a level-1 wake of a level-2 sleeper would serve garbage weights.
      const depth = Math.max(level, engine.sleepLevel ?? 1) as 1 | 2;
      const t0 = Date.now();
      log.info("waking engine", { model: engine.model.name, pid: engine.proc.pid, sleepLevel: depth });
      await operate(engine, "waking", opts, (call) => wakeEngine(engine.url, depth, call));
      engine.phase = "ready";
      delete engine.sleepLevel;
      record(engine);
      lastUrls.set(key, engine.url);
      log.info("engine awake", { model: engine.model.name, sleepLevel: depth, ms: Date.now() - t0 });
    },

    async stop(key: string, opts: WaitOptions & { force?: boolean; reason: string }): Promise<void> {
      const engine = engines.get(key);
      if (!engine) return;
      log.info("stopping engine", {
        model: engine.model.name,
        pid: engine.proc.pid,
        reason: opts.reason,
        force: opts.force ?? false,
      });
      await terminate(engine, opts.force ?? false, opts.deadline, opts.signal);
      if (engines.get(key) === engine) engines.delete(key);
    },

    upstream(key: string): string {
      const url = engines.get(key)?.url ?? lastUrls.get(key);
      if (!url) throw new BackendError("unavailable", `no engine for model ${key} has been started yet`);
      return url;
    },

    onFailure(listener: (key: string, reason: string) => void): void {
      listeners.add(listener);
    },

    describe(): Record<string, unknown> {
      return {
        backend: "process",
        stateDir,
        engines: Object.fromEntries([...engines].map(([key, engine]) => [key, details(engine)])),
        lastExit: Object.fromEntries(lastExits),
      };
    },

    async close(): Promise<void> {
      closed = true;
      closer.abort(new Error("the process backend is closing"));
      listeners.clear();
      globalThis.removeEventListener("unload", onUnload);
      const all = [...engines.values()];
      const results = await Promise.allSettled(all.map((engine) => terminate(engine, false)));
      for (const engine of all) {
        engine.proc.release();
        if (engines.get(engine.key) === engine) engines.delete(engine.key);
      }
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    },
  };
  return backend;
}

/**
 * A free TCP port on `host` for an engine to listen on (below the ephemeral
 * range: see `free_port.ts`).
 *
 * @example
 * ```ts
 * import { freePort } from "./process.ts";
 * const port = await freePort("127.0.0.1");
 * port > 0; // true
 * ```
 */
export function freePort(host: string): Promise<number> {
  return Promise.resolve(pickFreePort(host));
}

function observed(engine: Engine): ObservedEngine {
  return {
    key: engine.key,
    phase: engine.phase,
    gpus: [...engine.gpus],
    ...(engine.phase === "sleeping" && engine.sleepLevel ? { sleepLevel: engine.sleepLevel } : {}),
    ...(engine.phase === "terminating" ? { reason: engine.reason ?? "stopping" } : {}),
  };
}

function details(engine: Engine): Record<string, unknown> {
  return {
    model: engine.model.name,
    pid: engine.proc.pid,
    port: engine.port,
    upstream: engine.url,
    gpus: engine.gpus,
    phase: engine.phase,
    ...(engine.sleepLevel ? { sleepLevel: engine.sleepLevel } : {}),
    sleepMode: engine.sleepMode,
    operation: engine.operation,
    adopted: engine.proc.adopted,
    ...(engine.reason ? { reason: engine.reason } : {}),
    command: engine.command,
    startedAt: new Date(engine.startedAt).toISOString(),
    output: lastLines(engine),
    ...(engine.lastError ? { lastError: engine.lastError } : {}),
  };
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The last lines of the engine's output (stderr when it wrote any, else stdout). */
function lastLines(engine: Engine): string[] {
  const { stdout, stderr } = engine.proc.tail;
  return (stderr.length > 0 ? stderr : stdout).slice(-SHOWN_LINES);
}

/** How an engine ended, in words. */
function howItEnded(engine: Engine, status: ExitStatus): string {
  if (status.signal) return `was killed by ${status.signal}`;
  if (status.code !== null) return `exited with code ${status.code}`;
  return engine.proc.adopted ? "exited (adopted from a previous proxy: its exit code is unknown)" : "exited";
}

function isAddressInUse(engine: Engine): boolean {
  return /address already in use|EADDRINUSE|Errno 98|AddrInUse/i.test(outputText(engine));
}

/**
 * A failed start's likely cause in vllm-chill's own words, read from the
 * engine's output (which itself stays out of error messages), or null.
 */
function diagnosis(engine: Engine): string | null {
  if (isAddressInUse(engine)) return `its port ${engine.port} was taken`;
  const text = outputText(engine);
  // vLLM's startup check (vllm/v1/worker/gpu_worker.py:187-194 in v0.11.0: "Free memory on device … is less than desired GPU
  // memory utilization") and CUDA's own out-of-memory errors.
  if (/less than desired GPU memory utilization|out of memory|OutOfMemoryError/i.test(text)) {
    return "not enough free GPU memory";
  }
  return null;
}

function outputText(engine: Engine): string {
  return [...engine.proc.tail.stderr, ...engine.proc.tail.stdout].join("\n");
}

function abortError(signal: AbortSignal, what: string): BackendError {
  const reason = signal.reason;
  const why = reason instanceof Error ? reason.message : reason ? String(reason) : "aborted";
  return new BackendError("aborted", `${what} aborted: ${why}`);
}
