/**
 * Resident memory a fresh Deno process needs for one import (measured in a
 * child process each): explains where the proxy's idle RSS goes.
 *
 * @module
 */
import { run } from "./procs.ts";

/** RSS of a process that imported one thing. */
export interface ImportCost {
  /** What was imported ("(nothing)" for the bare runtime). */
  what: string;
  rssMiB: number;
}

const ROOT = new URL("..", import.meta.url).pathname;

/**
 * Measures the RSS after importing each of `specifiers` (resolved with the project's import map).
 *
 * @example
 * ```ts ignore
 * import { measureImports } from "./import_cost.ts";
 * const rows = await measureImports(["zod"]);
 * ```
 */
export async function measureImports(specifiers: string[]): Promise<ImportCost[]> {
  const out: ImportCost[] = [];
  for (const what of ["(nothing)", ...specifiers]) {
    const code = `${what === "(nothing)" ? "" : `import ${JSON.stringify(what)};`}
await new Promise((r) => setTimeout(r, 300));
console.log(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);`;
    const file = `${ROOT}bench/.import_cost_probe.ts`;
    await Deno.writeTextFile(file, code);
    try {
      const res = await run([Deno.execPath(), "run", "-A", file], 60_000);
      out.push({ what, rssMiB: Number(res.stdout.trim()) / 1024 });
    } finally {
      await Deno.remove(file).catch(() => {});
    }
  }
  return out;
}
