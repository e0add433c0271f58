/**
 * One engine as an operating-system process: spawned in its own process
 * group (so that a stop reaches the workers vLLM forks), its stdout/stderr
 * read line by line (the last lines kept), its exit awaited; or, for an
 * engine a previous proxy left running, watched through /proc. Stopping is
 * SIGTERM to the group, SIGKILL after a grace period.
 *
 * @module
 */
import { BackendError } from "./types.ts";
import { groupMembers, isRunning, procStat } from "./proc.ts";

/** How an engine ended: code/signal of our child; both null for an adopted engine (its parent reaped it). */
export interface ExitStatus {
  code: number | null;
  signal: Deno.Signal | null;
}

/** The last lines an engine wrote, per stream. */
export interface OutputTail {
  stdout: string[];
  stderr: string[];
}

/** A running engine process, spawned by us or adopted. */
export interface EngineProcess {
  readonly pid: number;
  /** Its process group (the engine leads it); 0 when it no longer does (signal the pid alone). */
  readonly pgid: number;
  /** Start time since boot (clock ticks), when /proc tells it: with pid, the process's identity. */
  readonly start?: number;
  /** Not our child: taken over from a previous proxy. */
  readonly adopted: boolean;
  /** Resolves once the process has exited (and its output is drained). */
  readonly exited: Promise<ExitStatus>;
  /** The last lines of its output (empty for an adopted engine: its output went to the previous proxy). */
  readonly tail: OutputTail;
  /** Fires "hint" when a line says the server has started (probe /health at once). */
  readonly hints: EventTarget;
  /** Sends `sig` to its process group (or to the pid alone when it leads none). */
  kill(sig: Deno.Signal): void;
  /**
   * SIGTERM, then SIGKILL once `graceMs` has passed (at once when `force`, at
   * `deadline`, or when `signal` aborts); resolves once it is gone.
   */
  terminate(options: TerminateOptions): Promise<void>;
  /** Stops watching an adopted process: its exit is never reported (the backend gave up on it). */
  release(): void;
}

/** Options of {@link EngineProcess.terminate}. */
export interface TerminateOptions {
  force: boolean;
  graceMs: number;
  deadline?: number;
  signal?: AbortSignal;
  /** Called when SIGTERM did not suffice and SIGKILL is sent. */
  onKill?: () => void;
}

/** Lines of each stream kept to explain an exit. */
const TAIL_LINES = 20;
/** Longest wait for the output pipes to close after the engine exited (a stray grandchild may hold them). */
const DRAIN_MS = 1000;
/** Output lines after which /health is probed at once instead of after the backoff (vLLM/uvicorn, fake vLLM). */
const READY_HINT = /Application startup complete|Uvicorn running on|listening on http|\/health is 200/i;
/** How often an adopted engine (not our child, so no exit event) is checked while it runs. */
const ADOPTED_POLL_MS = 1000;
/** Longest an adopted engine may take to disappear once SIGKILLed (a GPU driver teardown can be slow). */
const ADOPTED_GONE_MS = 15_000;

/** Options of {@link spawnEngine}. */
export interface SpawnOptions {
  command: string[];
  /** Added to the proxy's own environment. */
  env: Record<string, string>;
  /** Names the engine in error messages ("model a"). */
  name: string;
  /** Every non-empty output line. */
  onLine: (stream: "stdout" | "stderr", line: string) => void;
}

/**
 * Spawns an engine in its own process group. Throws a BackendError when the
 * program cannot be run.
 *
 * @example
 * ```ts ignore
 * import { spawnEngine } from "./engine_process.ts";
 * const engine = spawnEngine({ command: ["vllm", "serve", "org/a"], env: {}, name: "model a", onLine: console.log });
 * await engine.terminate({ force: false, graceMs: 10_000 });
 * ```
 */
export function spawnEngine(options: SpawnOptions): EngineProcess {
  const { command, name } = options;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command[0], {
      args: command.slice(1),
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Its own process group: a stop reaches the workers vLLM forks, too.
      detached: true,
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new BackendError("failed", `command not found: ${command[0]} (${name})`, { cause: e });
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new BackendError("failed", `cannot run ${command[0]}: permission denied (${name})`, { cause: e });
    }
    throw new BackendError("failed", `cannot start ${command[0]} for ${name}`, { cause: e });
  }
  const tail: OutputTail = { stdout: [], stderr: [] };
  const hints = new EventTarget();
  const onLine = (stream: "stdout" | "stderr") => (line: string) => {
    tail[stream].push(line);
    if (tail[stream].length > TAIL_LINES) tail[stream].shift();
    options.onLine(stream, line);
    if (READY_HINT.test(line)) hints.dispatchEvent(new Event("hint"));
  };
  const pumps = [pump(child.stdout, onLine("stdout")), pump(child.stderr, onLine("stderr"))];
  const exited = child.status.then(async (status): Promise<ExitStatus> => {
    // The engine is gone; workers it left in its group would hold the GPU (and the output pipes).
    await killGroup(child.pid);
    await drain(pumps);
    return { code: status.code, signal: status.signal };
  });
  const kill = (sig: Deno.Signal) => {
    try {
      Deno.kill(-child.pid, sig); // the whole group: vLLM's workers too
    } catch {
      try {
        child.kill(sig);
      } catch { /* already gone */ }
    }
  };
  return {
    pid: child.pid,
    pgid: child.pid,
    start: procStat(child.pid)?.start,
    adopted: false,
    exited,
    tail,
    hints,
    kill,
    terminate: (opts) => terminate({ kill, exited, poke: () => {}, adopted: false, name, pid: child.pid }, opts),
    release: () => {},
  };
}

/**
 * Watches a running engine a previous proxy started (pid, process group,
 * start time as recorded): its exit is noticed by polling /proc (every
 * second, faster while it is being stopped).
 *
 * @example
 * ```ts ignore
 * import { adoptEngine } from "./engine_process.ts";
 * const engine = adoptEngine({ pid: 4242, pgid: 4242, start: 123456 }, "model a");
 * await engine.exited;
 * ```
 */
export function adoptEngine(identity: { pid: number; pgid: number; start?: number }, name: string): EngineProcess {
  const { pid, start } = identity;
  // Signal the group only while the engine still leads it; else the pid alone.
  const pgid = procStat(pid)?.pgrp === identity.pgid ? identity.pgid : 0;
  const unwatch = new AbortController();
  const poke = new EventTarget();
  let stopping = false;
  const kill = (sig: Deno.Signal) => {
    if (pgid > 0) {
      try {
        Deno.kill(-pgid, sig);
        return;
      } catch { /* no group any more: the process alone */ }
    }
    // Not our child: make sure the pid is still that engine before signalling it.
    try {
      if (isRunning({ pid, start })) Deno.kill(pid, sig);
    } catch { /* already gone */ }
  };
  const exited = (async (): Promise<ExitStatus> => {
    let fast = 25;
    while (isRunning({ pid, start })) {
      // Given up on (release, or it outlived its SIGKILL): never reported as exited.
      if (unwatch.signal.aborted) return new Promise<never>(() => {});
      const wait = stopping ? fast : ADOPTED_POLL_MS;
      if (stopping) fast = Math.min(fast * 1.5, 250);
      await wakeable(wait, unwatch.signal, poke);
    }
    // Workers left in its group would still hold the GPU.
    if (pgid > 0) await killGroup(pgid, unwatch.signal);
    return { code: null, signal: null };
  })();
  return {
    pid,
    pgid,
    start,
    adopted: true,
    exited,
    tail: { stdout: [], stderr: [] },
    hints: new EventTarget(),
    kill,
    terminate: (opts) => {
      stopping = true;
      return terminate(
        { kill, exited, poke: () => poke.dispatchEvent(new Event("poke")), adopted: true, name, pid },
        opts,
      );
    },
    release: () => unwatch.abort(),
  };
}

interface Target {
  kill(sig: Deno.Signal): void;
  exited: Promise<ExitStatus>;
  /** Wakes an adopted engine's exit poll. */
  poke(): void;
  adopted: boolean;
  name: string;
  pid: number;
}

/** Longest wait for the members of a dead engine's group to be gone after their SIGKILL. */
const GROUP_GONE_MS = 1000;

/** SIGKILLs what is left of process group `pgid` and waits (bounded) until no member lives: "stopped" is "gone". */
async function killGroup(pgid: number, signal = new AbortController().signal): Promise<void> {
  try {
    Deno.kill(-pgid, "SIGKILL");
  } catch {
    return; // no one left
  }
  for (let waited = 0; waited < GROUP_GONE_MS && groupMembers(pgid).length > 0; waited += 25) {
    await wakeable(25, signal);
  }
}

/** SIGTERM, SIGKILL after the grace period (or at once), then waits until the process is gone. */
async function terminate(target: Target, options: TerminateOptions): Promise<void> {
  const { force, signal } = options;
  const deadline = options.deadline ?? Infinity;
  const killAfter = force ? 0 : Math.max(0, Math.min(options.graceMs, deadline - Date.now()));
  let finished = false;
  void target.exited.then(() => finished = true);
  if (!force) target.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  let killedAt: number | null = null;
  const kill = () => {
    clearTimeout(timer);
    killedAt ??= Date.now();
    if (!finished) {
      if (!force) options.onKill?.();
      target.kill("SIGKILL");
    }
  };
  if (killAfter === 0 || signal?.aborted) kill();
  else timer = setTimeout(kill, killAfter);
  signal?.addEventListener("abort", kill, { once: true });
  target.poke();
  try {
    // Our child always reports its exit; an adopted engine is polled, so that wait is bounded.
    await (target.adopted ? goneWithin(target, () => killedAt) : target.exited);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", kill);
  }
}

/** Resolves when the adopted engine is gone; rejects when it outlives its SIGKILL by ADOPTED_GONE_MS. */
function goneWithin(target: Target, killedAt: () => number | null): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const check = setInterval(() => {
      const at = killedAt();
      if (at !== null && Date.now() - at > ADOPTED_GONE_MS) {
        // Still watched: should it go later, it is forgotten then.
        clearInterval(check);
        reject(
          new BackendError(
            "timeout",
            `engine for ${target.name} (pid ${target.pid}) still runs ${ADOPTED_GONE_MS} ms after SIGKILL`,
          ),
        );
      }
    }, 250);
    void target.exited.then(() => {
      clearInterval(check);
      resolve();
    });
  });
}

/** Calls `onLine` for every non-empty line of `stream`; resolves at its end. */
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

/**
 * Resolves after `ms`, or early when `signal` aborts or `wake` fires (an
 * EventTarget) or settles (a promise). Never rejects.
 *
 * @example
 * ```ts
 * import { wakeable } from "./engine_process.ts";
 * await wakeable(1, new AbortController().signal);
 * ```
 */
export function wakeable(
  ms: number,
  signal: AbortSignal,
  ...wake: (EventTarget | Promise<unknown>)[]
): Promise<void> {
  return new Promise((resolve) => {
    const targets = wake.filter((w): w is EventTarget => w instanceof EventTarget);
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      for (const t of targets) {
        t.removeEventListener("hint", done);
        t.removeEventListener("poke", done);
      }
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (signal.aborted) return done();
    signal.addEventListener("abort", done, { once: true });
    for (const t of targets) {
      t.addEventListener("hint", done, { once: true });
      t.addEventListener("poke", done, { once: true });
    }
    for (const w of wake) if (!(w instanceof EventTarget)) w.then(done, done);
  });
}
