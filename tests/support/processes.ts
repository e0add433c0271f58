/**
 * Processes as the tests see them: a per-test marker to tag every engine a
 * test starts, and the live processes read from /proc (so a test can find
 * its engines by marker and check that none survived).
 *
 * @module
 */

/**
 * A fresh marker that tags every engine one test starts.
 *
 * @example
 * ```ts
 * import { newMarker } from "./processes.ts";
 * newMarker().startsWith("marker-"); // true
 * ```
 */
export function newMarker(): string {
  return `marker-${crypto.randomUUID()}`;
}

/**
 * Live (non-zombie) processes, read from /proc: pid, process group, command line.
 *
 * @example
 * ```ts
 * import { liveProcesses } from "./processes.ts";
 * liveProcesses().some((p) => p.pid === Deno.pid); // true
 * ```
 */
export function liveProcesses(): { pid: number; pgid: number; cmdline: string }[] {
  const found: { pid: number; pgid: number; cmdline: string }[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replaceAll("\0", " ").trim();
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // After "(comm) ": state ppid pgrp …
      const [state, _ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state !== "Z" && state !== "X") found.push({ pid: Number(entry.name), pgid: Number(pgrp), cmdline });
    } catch { /* gone meanwhile */ }
  }
  return found;
}
