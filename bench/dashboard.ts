/**
 * What open dashboards cost: the warm path (requests/s, latency, the proxy's
 * CPU per request) with no dashboard open and with `dashboards` event
 * streams (GET /admin/events) open and read, measured in turn; the events
 * each stream delivered meanwhile; and the proxy's CPU with the streams open
 * and no traffic.
 *
 * @module
 */
import { type LoadResult, type LoadTool, runLoad } from "./load.ts";
import { cpuMs, sleep } from "./procs.ts";
import type { ProxyProc } from "./proxy.ts";
import { WARM_BODY } from "./warm.ts";

/** Warm-path figures of one side of the comparison (medians over the rounds). */
export interface DashboardSide {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of the proxy process per request. */
  cpuUsPerRequest: number;
  errors: number;
}

/** The dashboard section of the bench results. */
export interface DashboardBench {
  dashboards: number;
  concurrency: number;
  durationMs: number;
  rounds: number;
  without: DashboardSide;
  with: DashboardSide;
  /** Events each open stream received per second during the loaded runs (median over streams and rounds). */
  eventsPerSecondPerDashboard: number;
  /** Sum over all streams (mean over the rounds). */
  eventsPerSecondTotal: number;
  /** Of which `snapshot` events, per stream. */
  snapshotsPerSecondPerDashboard: number;
  /** Bytes per second per stream. */
  kibPerSecondPerDashboard: number;
  /** Log lines per second the per-flush budget left out (reported to the page as `skipped`), per stream. */
  skippedLinesPerSecondPerDashboard: number;
  /** Streams the proxy dropped as too slow during the runs. */
  dropped: number;
  /** Proxy CPU time (ms, in 10 ms clock ticks) with the streams open and no request during `idleSeconds`. */
  idleCpuMs: number;
  idleSeconds: number;
  /** When this section was measured, and /proc/loadavg then (other work on the machine skews figures). */
  measuredAt: string;
  loadavg: string;
}

/** Options of {@link runDashboardBench}. */
export interface DashboardBenchOptions {
  proxy: ProxyProc;
  dashboards: number;
  concurrency: number;
  durationMs: number;
  rounds: number;
  tool: LoadTool;
  say: (line: string) => void;
  /** How long the idle CPU is measured (default 3 s). */
  idleMs?: number;
}

interface StreamCount {
  events: number;
  snapshots: number;
  skipped: number;
  bytes: number;
}

/** One open event stream, counting what it reads. */
function openStream(url: string): { count: StreamCount; first: Promise<void>; close: () => Promise<void> } {
  const abort = new AbortController();
  const count: StreamCount = { events: 0, snapshots: 0, skipped: 0, bytes: 0 };
  const { promise: first, resolve: gotFirst, reject: failed } = Promise.withResolvers<void>();
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  const reading = (async () => {
    const res = await fetch(url, { signal: abort.signal });
    if (res.status !== 200 || !res.body) throw new Error(`GET /admin/events answered ${res.status}`);
    reader = res.body.getReader();
    let rest = "";
    const decoder = new TextDecoder();
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      count.bytes += chunk.byteLength;
      rest += decoder.decode(chunk, { stream: true });
      let at = 0;
      for (let end = rest.indexOf("\n\n"); end >= 0; at = end + 2, end = rest.indexOf("\n\n", at)) {
        if (!rest.startsWith("event: ", at)) continue;
        count.events++;
        if (rest.startsWith("event: snapshot", at)) {
          count.snapshots++;
          gotFirst();
        } else if (rest.startsWith("event: skipped", at)) {
          count.skipped += JSON.parse(rest.slice(rest.indexOf("data: ", at) + 6, end)).lines;
        }
      }
      rest = rest.slice(at);
    }
  })().catch((error) => {
    if (!abort.signal.aborted) failed(error);
  });
  return {
    count,
    first,
    close: async () => {
      abort.abort();
      // Aborting the fetch alone does not always end a body read under way (seen with Deno 2.9): cancel it too.
      await (reader as ReadableStreamDefaultReader<Uint8Array> | null)?.cancel().catch(() => {});
      await reading;
    },
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : NaN;
};

function side(runs: { load: LoadResult; cpuUs: number }[]): DashboardSide {
  return {
    rps: median(runs.map((r) => r.load.rps)),
    p50Ms: median(runs.map((r) => r.load.p50Ms)),
    p99Ms: median(runs.map((r) => r.load.p99Ms)),
    cpuUsPerRequest: median(runs.map((r) => r.cpuUs / Math.max(1, r.load.requests))),
    errors: runs.reduce((n, r) => n + r.load.errors, 0),
  };
}

/**
 * Runs the comparison against a proxy serving the bench model warm.
 *
 * @example
 * ```ts ignore
 * import { runDashboardBench } from "./dashboard.ts";
 * const r = await runDashboardBench({ proxy, dashboards: 20, concurrency: 64, durationMs: 2000, rounds: 3, tool, say });
 * console.log(r.eventsPerSecondPerDashboard, r.with.cpuUsPerRequest - r.without.cpuUsPerRequest);
 * ```
 */
export async function runDashboardBench(o: DashboardBenchOptions): Promise<DashboardBench> {
  const pid = o.proxy.child.pid;
  const url = `${o.proxy.url}/v1/completions`;
  const load = async () => {
    const before = cpuMs(pid);
    const result = await runLoad({
      url,
      body: WARM_BODY,
      connections: o.concurrency,
      durationMs: o.durationMs,
      tool: o.tool,
    });
    return { load: result, cpuUs: (cpuMs(pid) - before) * 1000 };
  };
  const droppedBefore = (await o.proxy.lines()).filter((l) => String(l.msg).startsWith("dashboard client dropped"))
    .length;
  await load(); // warm-up
  const without: { load: LoadResult; cpuUs: number }[] = [];
  const withStreams: { load: LoadResult; cpuUs: number }[] = [];
  const perStream: { events: number; snapshots: number; skipped: number; bytes: number }[] = [];
  let idleCpuMs = NaN;
  let idleSeconds = NaN;
  const measuredAt = new Date().toISOString();
  const loadavg = (await Deno.readTextFile("/proc/loadavg")).trim();
  for (let round = 0; round < o.rounds; round++) {
    without.push(await load());
    const streams = Array.from({ length: o.dashboards }, () => openStream(`${o.proxy.url}/admin/events`));
    try {
      await Promise.all(streams.map((s) => s.first));
      if (round === 0) {
        const before = cpuMs(pid);
        const started = performance.now();
        await sleep(o.idleMs ?? 3000);
        idleCpuMs = cpuMs(pid) - before;
        idleSeconds = (performance.now() - started) / 1000;
      }
      const counts = streams.map((s) => ({ ...s.count }));
      const started = performance.now();
      const run = await load();
      const seconds = (performance.now() - started) / 1000;
      withStreams.push(run);
      streams.forEach((s, i) =>
        perStream.push({
          events: (s.count.events - counts[i].events) / seconds,
          snapshots: (s.count.snapshots - counts[i].snapshots) / seconds,
          skipped: (s.count.skipped - counts[i].skipped) / seconds,
          bytes: (s.count.bytes - counts[i].bytes) / seconds,
        })
      );
    } finally {
      await Promise.all(streams.map((s) => s.close()));
    }
    o.say(
      `dashboards round ${round + 1}: ${without.at(-1)!.load.rps.toFixed(0)} req/s without, ${
        withStreams.at(-1)!.load.rps.toFixed(0)
      } req/s with ${o.dashboards} open`,
    );
  }
  const dropped = (await o.proxy.lines()).filter((l) => String(l.msg).startsWith("dashboard client dropped")).length -
    droppedBefore;
  const perDashboard = median(perStream.map((s) => s.events));
  return {
    dashboards: o.dashboards,
    concurrency: o.concurrency,
    durationMs: o.durationMs,
    rounds: o.rounds,
    without: side(without),
    with: side(withStreams),
    eventsPerSecondPerDashboard: perDashboard,
    eventsPerSecondTotal: perStream.reduce((n, s) => n + s.events, 0) / o.rounds,
    snapshotsPerSecondPerDashboard: median(perStream.map((s) => s.snapshots)),
    kibPerSecondPerDashboard: median(perStream.map((s) => s.bytes)) / 1024,
    skippedLinesPerSecondPerDashboard: median(perStream.map((s) => s.skipped)),
    dropped,
    idleCpuMs,
    idleSeconds,
    measuredAt,
    loadavg,
  };
}
