/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`): the functions
 * with the most self time and the most total (inclusive) time, as text.
 *
 * ```sh
 * deno run -A bench/profile_summary.ts /tmp/prof/CPU.*.cpuprofile [top=25]
 * ```
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** One row of the summary. */
export interface ProfileRow {
  /** `function (file:line)`. */
  name: string;
  /** Share of samples spent in this function itself, in %. */
  selfPct: number;
  /** Share of samples with this function on the stack, in %. */
  totalPct: number;
}

/**
 * Self and total time per function, sorted by self time.
 *
 * @example
 * ```ts
 * import { summariseProfile } from "./profile_summary.ts";
 * const rows = summariseProfile({ nodes: [{ id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: 0 }, hitCount: 1 }] });
 * rows[0].selfPct; // 100
 * ```
 */
export function summariseProfile(profile: { nodes: ProfileNode[] }): ProfileRow[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const total = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
  const label = (n: ProfileNode) => {
    const file = n.callFrame.url.replace(/^.*\/(lib|bench|tests|ext|node_modules)\//, "$1/");
    return `${n.callFrame.functionName || "(anonymous)"} (${file}:${n.callFrame.lineNumber + 1})`;
  };
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    self.set(label(n), (self.get(label(n)) ?? 0) + hits);
    const seen = new Set<string>();
    for (let cur: ProfileNode | undefined = n; cur; cur = byId.get(parent.get(cur.id) ?? -1)) {
      const l = label(cur);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + hits);
    }
  }
  return [...incl.keys()].map((name) => ({
    name,
    selfPct: 100 * (self.get(name) ?? 0) / total,
    totalPct: 100 * (incl.get(name) ?? 0) / total,
  })).sort((a, b) => b.selfPct - a.selfPct);
}

/** Self time of a profile by what spends it. */
export interface ProfileCategory {
  /** What spends the time. */
  what: string;
  /** Share of samples, in %. */
  selfPct: number;
}

/** Categories, first match wins (against `function (file:line)`). */
const CATEGORIES: [RegExp, string][] = [
  [/^\(idle\)/, "(idle): the thread not running JavaScript (waiting, and Deno's Rust side: HTTP, sockets)"],
  [/^\(garbage collector\)/, "garbage collector"],
  [/^\(program\)/, "(program): V8 outside JavaScript (compiling, runtime calls)"],
  [/^op_write /, "op_write: socket writes (to the engine; the kernel's loopback work is counted here)"],
  [/^op_write_sync /, "op_write_sync: the request log line's write"],
  [/^op_/, "other runtime ops (socket reads, HTTP server ops, timers)"],
  [/\(lib\/proxy\/engine_client\.ts/, "vllm-chill: engine client (lib/proxy/engine_client.ts)"],
  [/\(lib\/proxy\//, "vllm-chill: proxy handler (lib/proxy/, without the engine client)"],
  [/\(lib\/scaler\//, "vllm-chill: scaler (lib/scaler/)"],
  [/\(lib\/log\.ts/, "vllm-chill: log (lib/log.ts)"],
  [/\(lib\/metrics\.ts/, "vllm-chill: metrics (lib/metrics.ts)"],
  [/\(lib\//, "vllm-chill: other"],
  [/\(ext:deno_http\//, "Deno HTTP server, JavaScript side (ext:deno_http)"],
  [/\(ext:deno_fetch\//, "Request, Response, Headers, bodies (ext:deno_fetch)"],
  [/\(ext:deno_(web|webidl)\//, "web APIs: streams, events, encoding, WebIDL (ext:deno_web*)"],
  [/\(ext:/, "other runtime JavaScript (ext:core, ext:deno_net, ...)"],
];

/**
 * Self time summed by what spends it (idle, GC, socket writes, the log write, each part of vllm-chill, each part
 * of the runtime), largest first.
 *
 * @example
 * ```ts
 * import { categoriseProfile } from "./profile_summary.ts";
 * categoriseProfile([{ name: "(idle) (:1)", selfPct: 60, totalPct: 60 }])[0].selfPct; // 60
 * ```
 */
export function categoriseProfile(rows: ProfileRow[]): ProfileCategory[] {
  const sums = new Map<string, number>();
  for (const row of rows) {
    const what = CATEGORIES.find(([re]) => re.test(row.name))?.[1] ?? "other";
    sums.set(what, (sums.get(what) ?? 0) + row.selfPct);
  }
  return [...sums].map(([what, selfPct]) => ({ what, selfPct })).sort((a, b) => b.selfPct - a.selfPct);
}

if (import.meta.main) {
  const profile = JSON.parse(await Deno.readTextFile(Deno.args[0]));
  const top = Number(Deno.args[1] ?? 25);
  const rows = summariseProfile(profile);
  console.log("-- by self time");
  for (const r of rows.slice(0, top)) {
    console.log(`${r.selfPct.toFixed(1).padStart(5)}% self ${r.totalPct.toFixed(1).padStart(5)}% total  ${r.name}`);
  }
  console.log("-- by category (self time)");
  for (const c of categoriseProfile(rows)) console.log(`${c.selfPct.toFixed(1).padStart(5)}%  ${c.what}`);
  console.log("-- by total time");
  for (const r of [...rows].sort((a, b) => b.totalPct - a.totalPct).slice(0, top)) {
    console.log(`${r.selfPct.toFixed(1).padStart(5)}% self ${r.totalPct.toFixed(1).padStart(5)}% total  ${r.name}`);
  }
}
