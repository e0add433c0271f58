/**
 * Warm-path overhead: small non-streaming completions at several
 * concurrencies, straight to the engine, through vllm-chill and through
 * nginx, measured back to back per concurrency so the ratios compare like
 * with like.
 *
 * @module
 */
import { type LoadResult, type LoadTool, runLoad } from "./load.ts";
import { cpuMs } from "./procs.ts";

/** A load result plus the CPU time the forwarding process(es) spent per request. */
export type WarmResult = LoadResult & {
  /** CPU µs per request of the process(es) under test (direct: the engine; others: the proxy alone). */
  cpuUsPerRequest: number;
};

/** One concurrency's three measurements. */
export interface WarmRow {
  concurrency: number;
  direct: WarmResult;
  proxy: WarmResult;
  nginx: WarmResult | null;
  /** Deno.serve + fetch and nothing else (bench/bare_proxy.ts). */
  bare: WarmResult | null;
  /** proxy p50 − direct p50, ms. */
  p50OverheadMs: number;
  /** proxy p99 − direct p99, ms. */
  p99OverheadMs: number;
  /** proxy rps / direct rps. */
  rpsProxyOverDirect: number;
  /** proxy rps / nginx rps (null without nginx). */
  rpsProxyOverNginx: number | null;
  /** proxy rps / bare Deno proxy rps. */
  rpsProxyOverBare: number | null;
}

/** Options of {@link runWarm}. */
export interface WarmOptions {
  directUrl: string;
  proxyUrl: string;
  nginxUrl: string | null;
  bareUrl: string | null;
  /** Processes whose CPU time is charged to each target. */
  pids: Record<"direct" | "proxy" | "nginx" | "bare", () => number[]>;
  concurrencies: number[];
  warmupMs: number;
  durationMs: number;
  tool: LoadTool;
  /** Progress lines. */
  say: (line: string) => void;
}

/** The request every warm-path run sends. */
export const WARM_BODY = '{"model":"bench","prompt":"hi","max_tokens":4}';

/**
 * Runs the warm-path comparison.
 *
 * @example
 * ```ts ignore
 * import { runWarm } from "./warm.ts";
 * const rows = await runWarm({ directUrl, proxyUrl, nginxUrl: null, concurrencies: [1], warmupMs: 1000, durationMs: 1000, tool: "wrk", say: console.log });
 * ```
 */
export async function runWarm(o: WarmOptions): Promise<WarmRow[]> {
  const rows: WarmRow[] = [];
  const targets: ["direct" | "proxy" | "nginx" | "bare", string | null][] = [
    ["direct", o.directUrl],
    ["proxy", o.proxyUrl],
    ["nginx", o.nginxUrl],
    ["bare", o.bareUrl],
  ];
  const cpu = (pids: number[]) => pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
  for (const c of o.concurrencies) {
    const got: Record<string, WarmResult | null> = {};
    for (const [name, base] of targets) {
      if (!base) {
        got[name] = null;
        continue;
      }
      const url = `${base}/v1/completions`;
      if (o.warmupMs > 0) await runLoad({ url, body: WARM_BODY, connections: c, durationMs: o.warmupMs, tool: o.tool });
      const pids = o.pids[name]();
      const before = cpu(pids);
      const load = await runLoad({ url, body: WARM_BODY, connections: c, durationMs: o.durationMs, tool: o.tool });
      const r: WarmResult = { ...load, cpuUsPerRequest: ((cpu(pids) - before) * 1000) / Math.max(1, load.requests) };
      o.say(
        `warm c=${c} ${name}: ${r.rps.toFixed(0)} req/s p50 ${r.p50Ms.toFixed(3)} ms p99 ${r.p99Ms.toFixed(3)} ms cpu ${
          r.cpuUsPerRequest.toFixed(0)
        } µs/req errors ${r.errors}`,
      );
      got[name] = r;
    }
    const direct = got.direct!, proxy = got.proxy!, nginx = got.nginx, bare = got.bare;
    rows.push({
      concurrency: c,
      direct,
      proxy,
      nginx,
      bare,
      p50OverheadMs: proxy.p50Ms - direct.p50Ms,
      p99OverheadMs: proxy.p99Ms - direct.p99Ms,
      rpsProxyOverDirect: proxy.rps / direct.rps,
      rpsProxyOverNginx: nginx ? proxy.rps / nginx.rps : null,
      rpsProxyOverBare: bare ? proxy.rps / bare.rps : null,
    });
  }
  return rows;
}
