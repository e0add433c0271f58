/**
 * The few /proc reads that tell whether a recorded process is still that very
 * process (pid, start time since boot, boot id, command line) and who is left
 * in its process group. Linux only: elsewhere every read answers "unknown"
 * and the process backend records nothing.
 *
 * @module
 */

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
 * import { procStat } from "./proc.ts";
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
 * import { procCmdline } from "./proc.ts";
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
 * import { bootId } from "./proc.ts";
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
 * import { canTrackProcesses } from "./proc.ts";
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
 * import { commandMatches } from "./proc.ts";
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
 * import { isRunning, procStat } from "./proc.ts";
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
 * import { groupMembers } from "./proc.ts";
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
