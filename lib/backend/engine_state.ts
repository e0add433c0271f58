/**
 * The process backend's record of its running engine: a small JSON file
 * (`engine-<proxy port>.json`) written atomically when an engine is spawned
 * and removed once it has exited, so that a proxy restarted after a crash
 * (SIGKILL, OOM killer) finds the engine it left running and adopts it
 * instead of starting a second one on the same GPU. Also the few /proc reads
 * that tell whether a recorded process is still that very process (pid, start
 * time since boot, boot id, command line): Linux only; elsewhere nothing is
 * recorded.
 *
 * @module
 */
import { z } from "zod";

const Identity = z.strictObject({
  pid: z.int().positive(),
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22). */
  start: z.int().nonnegative().optional(),
  /** /proc/sys/kernel/random/boot_id when the record was written. */
  bootId: z.string().optional(),
});

/** The state file's shape. */
export const EngineRecordSchema = z.strictObject({
  version: z.literal(1),
  pid: z.int().positive(),
  pgid: z.int().positive(),
  /** Start time of the engine in clock ticks since boot (guards against pid reuse). */
  start: z.int().nonnegative().optional(),
  bootId: z.string().optional(),
  /** Port the engine listens on. */
  port: z.int().min(1).max(65535),
  /** Address the engine listens on (process.host). */
  host: z.string(),
  /** Key of the model in the config. */
  model: z.string().min(1),
  servedModelName: z.string().min(1),
  command: z.array(z.string()).min(1),
  startedAt: z.iso.datetime(),
  /** The proxy that spawned the engine: while it lives, the engine is its own, not to adopt. */
  proxy: Identity,
});

/**
 * A recorded engine.
 *
 * @example
 * ```ts
 * import type { EngineRecord } from "./engine_state.ts";
 * const record: EngineRecord = {
 *   version: 1, pid: 4242, pgid: 4242, port: 40123, host: "127.0.0.1", model: "a", servedModelName: "a",
 *   command: ["vllm", "serve", "org/a"], startedAt: new Date(0).toISOString(), proxy: { pid: 4200 },
 * };
 * ```
 */
export type EngineRecord = z.infer<typeof EngineRecordSchema>;

/**
 * The default directory of state files: `$XDG_RUNTIME_DIR/vllm-chill` when
 * set, else `$TMPDIR` (or /tmp) `/vllm-chill-<uid>`.
 *
 * @example
 * ```ts
 * import { defaultStateDir } from "./engine_state.ts";
 * defaultStateDir().includes("vllm-chill"); // true
 * ```
 */
export function defaultStateDir(env: (name: string) => string | undefined = (n) => Deno.env.get(n)): string {
  const runtime = env("XDG_RUNTIME_DIR");
  if (runtime) return `${runtime.replace(/\/+$/, "")}/vllm-chill`;
  const tmp = (env("TMPDIR") || "/tmp").replace(/\/+$/, "");
  return `${tmp}/vllm-chill-${Deno.uid() ?? "user"}`;
}

/**
 * Path of the state file of the proxy listening on `proxyPort`.
 *
 * @example
 * ```ts
 * import { stateFilePath } from "./engine_state.ts";
 * stateFilePath("/run/user/1000/vllm-chill", 8080); // "/run/user/1000/vllm-chill/engine-8080.json"
 * ```
 */
export function stateFilePath(dir: string, proxyPort: number): string {
  return `${dir.replace(/\/+$/, "")}/engine-${proxyPort}.json`;
}

/**
 * Writes `record` to `path` atomically (temporary file, then rename), creating
 * the directory (mode 0700) if needed. Synchronous: the record must exist
 * before anything else can happen to the proxy.
 *
 * @example
 * ```ts ignore
 * import { writeEngineRecord } from "./engine_state.ts";
 * writeEngineRecord("/tmp/vllm-chill-0/engine-8080.json", record);
 * ```
 */
export function writeEngineRecord(path: string, record: EngineRecord): void {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    Deno.writeTextFileSync(tmp, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never written */ }
    throw e;
  }
}

/** What {@link readEngineRecord} found. */
export type ReadResult =
  | { kind: "none" }
  | { kind: "record"; record: EngineRecord }
  | { kind: "invalid"; reason: string };

/**
 * Reads the state file at `path`: none, a valid record, or invalid (with why).
 *
 * @example
 * ```ts
 * import { readEngineRecord } from "./engine_state.ts";
 * readEngineRecord("/nonexistent/engine-8080.json").kind; // "none"
 * ```
 */
export function readEngineRecord(path: string): ReadResult {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { kind: "none" };
    return { kind: "invalid", reason: e instanceof Error ? e.message : String(e) };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { kind: "invalid", reason: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  const parsed = EngineRecordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { kind: "invalid", reason: `${issue?.path.join(".") || "record"}: ${issue?.message}` };
  }
  return { kind: "record", record: parsed.data };
}

/**
 * Removes the state file at `path`, but only when it records the engine with
 * `pid` (or any engine when `pid` is omitted): a newer record stays.
 *
 * @example
 * ```ts
 * import { removeEngineRecord } from "./engine_state.ts";
 * removeEngineRecord("/nonexistent/engine-8080.json"); // false
 * ```
 */
export function removeEngineRecord(path: string, pid?: number): boolean {
  if (pid !== undefined) {
    const found = readEngineRecord(path);
    if (found.kind !== "record" || found.record.pid !== pid) return false;
  }
  try {
    Deno.removeSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A live process as /proc shows it. */
export interface ProcStat {
  /** Process group. */
  pgrp: number;
  /** Start time in clock ticks since boot. */
  start: number;
}

/**
 * /proc/<pid>/stat of a live process, or null when it is gone, a zombie, or
 * /proc is not available.
 *
 * @example
 * ```ts
 * import { procStat } from "./engine_state.ts";
 * procStat(Deno.pid)?.start !== undefined; // true on Linux
 * ```
 */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // After "(comm) " come: state ppid pgrp session tty_nr tpgid flags … starttime (field 22).
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  if (state === "Z" || state === "X" || state === "x") return null;
  const pgrp = Number(fields[2]);
  const start = Number(fields[19]);
  if (!Number.isInteger(pgrp) || !Number.isInteger(start)) return null;
  return { pgrp, start };
}

/**
 * The command line of a live process (/proc/<pid>/cmdline), or null.
 *
 * @example
 * ```ts
 * import { procCmdline } from "./engine_state.ts";
 * procCmdline(Deno.pid)?.[0] !== undefined; // true on Linux
 * ```
 */
export function procCmdline(pid: number): string[] | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    if (!text) return null;
    return text.replace(/\0$/, "").split("\0");
  } catch {
    return null;
  }
}

/**
 * This boot's id (/proc/sys/kernel/random/boot_id), or undefined off Linux.
 *
 * @example
 * ```ts
 * import { bootId } from "./engine_state.ts";
 * typeof (bootId() ?? ""); // "string"
 * ```
 */
export function bootId(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when /proc can tell whether a recorded process still runs (Linux).
 *
 * @example
 * ```ts
 * import { canTrackProcesses } from "./engine_state.ts";
 * typeof canTrackProcesses(); // "boolean"
 * ```
 */
export function canTrackProcesses(): boolean {
  return procStat(Deno.pid) !== null;
}

/**
 * Whether `live` (a /proc cmdline) is the process started with `recorded`:
 * the same arguments after the program, and the program itself among what
 * precedes them (an interpreter may come first for a script, e.g. `python3
 * /usr/bin/vllm serve …` for `vllm serve …`).
 *
 * @example
 * ```ts
 * import { commandMatches } from "./engine_state.ts";
 * commandMatches(["vllm", "serve", "m"], ["/usr/bin/python3", "/usr/local/bin/vllm", "serve", "m"]); // true
 * commandMatches(["vllm", "serve", "m"], ["sleep", "60"]); // false
 * ```
 */
export function commandMatches(recorded: string[], live: string[]): boolean {
  const args = recorded.slice(1);
  if (live.length < args.length + 1) return false;
  const head = live.slice(0, live.length - args.length);
  if (args.some((arg, i) => live[head.length + i] !== arg)) return false;
  const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);
  return head.some((p) => p === recorded[0] || base(p) === base(recorded[0]));
}

/**
 * True while the process `identity` names still runs (same pid, start time and
 * boot when recorded; a zombie counts as gone).
 *
 * @example
 * ```ts
 * import { isRunning, procStat } from "./engine_state.ts";
 * isRunning({ pid: Deno.pid, start: procStat(Deno.pid)?.start }); // true on Linux
 * ```
 */
export function isRunning(identity: { pid: number; start?: number; bootId?: string }): boolean {
  const stat = procStat(identity.pid);
  if (!stat) return false;
  if (identity.bootId !== undefined && identity.bootId !== bootId()) return false;
  return identity.start === undefined || identity.start === stat.start;
}

/**
 * Live (non-zombie) members of process group `pgid`, read from /proc.
 *
 * @example
 * ```ts
 * import { groupMembers } from "./engine_state.ts";
 * Array.isArray(groupMembers(999_999_999)); // true
 * ```
 */
export function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const stat = procStat(Number(entry.name));
      if (stat?.pgrp === pgid) pids.push(Number(entry.name));
    }
  } catch { /* no /proc */ }
  return pids;
}
