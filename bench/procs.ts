/**
 * Child processes of the benchmark: started with their output going straight
 * to a file (the kernel writes it, so the bench process spends no CPU on it
 * while measuring), waited on by polling that file with a deadline, stopped
 * by their own pid, and measured through /proc.
 *
 * @module
 */

/** A child process whose stdout+stderr go to `logPath`. */
export interface Child {
  /** Process id. */
  readonly pid: number;
  /** File holding the process's output. */
  readonly logPath: string;
  /** Resolves with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** The output so far. */
  output(): Promise<string>;
  /** Waits (bounded) until the output matches `pattern`; returns the match. */
  waitFor(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once exited. */
  stop(graceMs?: number): Promise<void>;
}

const children = new Set<Child>();

/**
 * Starts `cmd args…` with output to `logPath` (through `sh -c exec`, so the pid is the command's own).
 *
 * @example
 * ```ts ignore
 * import { spawnLogged } from "./procs.ts";
 * const child = spawnLogged(["sleep", "1"], "/tmp/sleep.log");
 * await child.stop();
 * ```
 */
export function spawnLogged(argv: string[], logPath: string, env?: Record<string, string>): Child {
  const proc = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" >"$LOG_PATH" 2>&1', "sh", ...argv],
    env: { ...env, LOG_PATH: logPath },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = proc.status.then((s) => {
    exited = true;
    children.delete(child);
    return s;
  });
  const output = async () => {
    try {
      return await Deno.readTextFile(logPath);
    } catch {
      return "";
    }
  };
  const child: Child = {
    pid: proc.pid,
    logPath,
    status,
    output,
    async waitFor(pattern, timeoutMs, from = 0) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const text = (await output()).slice(from);
        const m = pattern.exec(text);
        if (m) return m;
        if (exited) break;
        await sleep(10);
      }
      const tail = (await output()).slice(-2000);
      throw new Error(
        `${argv.slice(0, 4).join(" ")}: no ${pattern} within ${timeoutMs} ms${exited ? " (exited)" : ""}\n${tail}`,
      );
    },
    async stop(graceMs = 5000) {
      if (exited) return;
      try {
        proc.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          proc.kill("SIGKILL");
        } catch { /* gone */ }
      }, graceMs);
      await status;
      clearTimeout(timer);
    },
  };
  children.add(child);
  return child;
}

/**
 * Kills every child still running (bench aborted).
 *
 * @example
 * ```ts ignore
 * import { killAll } from "./procs.ts";
 * await killAll();
 * ```
 */
export async function killAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.stop(1000)));
}

/**
 * Resident set size of a process in MiB (VmRSS from /proc), or NaN when unreadable.
 *
 * @example
 * ```ts
 * import { rssMiB } from "./procs.ts";
 * rssMiB(Deno.pid) > 0; // true
 * ```
 */
export function rssMiB(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Resolves after `ms`.
 *
 * @example
 * ```ts
 * import { sleep } from "./procs.ts";
 * await sleep(1);
 * ```
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Whether a program is on PATH.
 *
 * @example
 * ```ts ignore
 * import { hasProgram } from "./procs.ts";
 * await hasProgram("wrk");
 * ```
 */
export async function hasProgram(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Runs a command to completion (bounded) and returns its output.
 *
 * @example
 * ```ts ignore
 * import { run } from "./procs.ts";
 * const { code, stdout } = await run(["echo", "hi"], 5000);
 * ```
 */
export async function run(
  argv: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const signal = AbortSignal.timeout(timeoutMs);
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stderr: "piped", signal })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * CPU time (user + system, all threads) a process has used, in ms, or NaN.
 *
 * @example
 * ```ts
 * import { cpuMs } from "./procs.ts";
 * cpuMs(Deno.pid) >= 0; // true
 * ```
 */
export function cpuMs(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command name (which may contain spaces), 1-based: utime is 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** USER_HZ on Linux. */
const CLOCK_TICKS = 100;

/**
 * The direct children of a process (e.g. nginx's worker), from /proc.
 *
 * @example
 * ```ts
 * import { childPids } from "./procs.ts";
 * Array.isArray(childPids(Deno.pid)); // true
 * ```
 */
export function childPids(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
