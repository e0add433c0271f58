/**
 * Warm-path overhead: small non-streaming completions at several
 * concurrencies, straight to the engine, through vllm-chill, through the
 * platform floor (bench/bare_proxy.ts: the least a Deno forwarder with
 * vllm-chill's client semantics must do), through the same with `fetch`
 * (bench/bare_fetch.ts) and through nginx, in alternating rounds per
 * concurrency so the ratios compare like with like.
 *
 * @module
 */
import { type LoadResult, type LoadTool, runLoad } from "./load.ts";
import { cpuMs } from "./procs.ts";
import { percentile } from "./stream.ts";

/** A load result plus the CPU time the forwarding process(es) spent per request. */
export type WarmResult = LoadResult & {
  /** CPU µs per request of the process(es) under test (direct: the engine; others: the proxy alone). */
  cpuUsPerRequest: number;
  /** Measured runs this combines (figures are medians over them). */
  rounds: number;
  /** 1-minute load average of the machine when measured (other work skews the figures). */
  loadavg: number;
};

/** One concurrency's measurements. */
export interface WarmRow {
  concurrency: number;
  direct: WarmResult;
  proxy: WarmResult;
  nginx: WarmResult | null;
  /** The platform floor (bench/bare_proxy.ts): body read, `model` found, sent once, answer passed back. */
  bare: WarmResult | null;
  /** The same with Deno's `fetch` as the client (bench/bare_fetch.ts); absent in older runs. */
  bareFetch?: WarmResult | null;
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
  /** bare rps / nginx rps (the floor against nginx). */
  rpsBareOverNginx?: number | null;
}

/** The targets of the warm path. */
export type WarmTarget = "direct" | "proxy" | "nginx" | "bare" | "bareFetch";

/** Options of {@link runWarm}. */
export interface WarmOptions {
  directUrl: string;
  proxyUrl: string;
  nginxUrl: string | null;
  bareUrl: string | null;
  bareFetchUrl?: string | null;
  /** Processes whose CPU time is charged to each target. */
  pids: Record<WarmTarget, () => number[]>;
  concurrencies: number[];
  warmupMs: number;
  /** Length of one measured run. */
  durationMs: number;
  /** Measured runs per target and concurrency (the median is reported). */
  rounds: number;
  tool: LoadTool;
  /** Progress lines. */
  say: (line: string) => void;
}

/** Median of each figure over the rounds; CPU per request over all of them. */
function combine(list: { load: LoadResult; cpuMs: number }[], loadavg: number): WarmResult {
  const med = (pick: (l: LoadResult) => number) => percentile(list.map((x) => pick(x.load)), 50);
  const requests = list.reduce((n, x) => n + x.load.requests, 0);
  return {
    ...list[0].load,
    durationMs: list.reduce((n, x) => n + x.load.durationMs, 0),
    requests,
    rps: med((l) => l.rps),
    p50Ms: med((l) => l.p50Ms),
    p90Ms: med((l) => l.p90Ms),
    p99Ms: med((l) => l.p99Ms),
    maxMs: Math.max(...list.map((x) => x.load.maxMs)),
    errors: list.reduce((n, x) => n + x.load.errors, 0),
    cpuUsPerRequest: (list.reduce((n, x) => n + x.cpuMs, 0) * 1000) / Math.max(1, requests),
    rounds: list.length,
    loadavg,
  };
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
  const targets: [WarmTarget, string | null][] = [
    ["direct", o.directUrl],
    ["proxy", o.proxyUrl],
    ["nginx", o.nginxUrl],
    ["bare", o.bareUrl],
    ["bareFetch", o.bareFetchUrl ?? null],
  ];
  const cpu = (pids: number[]) => pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
  for (const c of o.concurrencies) {
    const live = targets.filter((t): t is [typeof t[0], string] => t[1] !== null);
    for (const [, base] of live) {
      if (o.warmupMs > 0) {
        await runLoad({
          url: `${base}/v1/completions`,
          body: WARM_BODY,
          connections: c,
          durationMs: o.warmupMs,
          tool: o.tool,
        });
      }
    }
    // Rounds alternate the targets, so a burst of other work on the machine hits them alike.
    const runs: Record<string, { load: LoadResult; cpuMs: number }[]> = {};
    for (let round = 0; round < o.rounds; round++) {
      for (const [name, base] of live) {
        const pids = o.pids[name]();
        const before = cpu(pids);
        const load = await runLoad({
          url: `${base}/v1/completions`,
          body: WARM_BODY,
          connections: c,
          durationMs: o.durationMs,
          tool: o.tool,
        });
        (runs[name] ??= []).push({ load, cpuMs: cpu(pids) - before });
      }
    }
    const got: Record<string, WarmResult | null> = {
      direct: null,
      proxy: null,
      nginx: null,
      bare: null,
      bareFetch: null,
    };
    for (const [name, list] of Object.entries(runs)) {
      const r = combine(list, Deno.loadavg()[0]);
      o.say(
        `warm c=${c} ${name}: ${r.rps.toFixed(0)} req/s p50 ${r.p50Ms.toFixed(3)} ms p99 ${r.p99Ms.toFixed(3)} ms cpu ${
          r.cpuUsPerRequest.toFixed(0)
        } µs/req errors ${r.errors} (median of ${list.length})`,
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
      bareFetch: got.bareFetch,
      p50OverheadMs: proxy.p50Ms - direct.p50Ms,
      p99OverheadMs: proxy.p99Ms - direct.p99Ms,
      rpsProxyOverDirect: proxy.rps / direct.rps,
      rpsProxyOverNginx: nginx ? proxy.rps / nginx.rps : null,
      rpsProxyOverBare: bare ? proxy.rps / bare.rps : null,
      rpsBareOverNginx: bare && nginx ? bare.rps / nginx.rps : null,
    });
    o.say(
      `warm c=${c}: vllm-chill ${(proxy.rps / direct.rps).toFixed(2)}× direct, ${
        bare ? (proxy.rps / bare.rps).toFixed(2) : "n/a"
      }× the floor, ${nginx ? (proxy.rps / nginx.rps).toFixed(2) : "n/a"}× nginx; p50 +${
        (proxy.p50Ms - direct.p50Ms).toFixed(3)
      } ms over direct`,
    );
  }
  return rows;
}
