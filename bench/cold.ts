/**
 * Cold start, model switch and fan-in with the process backend. The engine
 * (bench/upstream.ts) prints when it turned healthy, received SIGTERM and
 * exited; the proxy logs when it spawned the engine. Orchestration overhead
 * = what the client waited minus what the engine itself needed:
 *
 * - cold start: (response − request) − (engine ready − engine spawned)
 * - switch: (response − request) − (old engine exit − its SIGTERM) − (new engine ready − spawned)
 * - readiness-to-forward: response − engine ready
 *
 * @module
 */
import { epochMs } from "./upstream.ts";
import { type LogLine, metricsText, metricSum, type ProxyProc, stamp } from "./proxy.ts";
import { sleep } from "./procs.ts";
import { percentile } from "./stream.ts";

/** One cold start or switch. */
export interface ColdSample {
  /** Client wait, request sent → response body read, ms. */
  totalMs: number;
  /** What the engine(s) needed: start (spawn → healthy) plus, for a switch, the old engine's stop. */
  engineMs: number;
  /** totalMs − engineMs. */
  overheadMs: number;
  /** Engine healthy → response read, ms. */
  readyToResponseMs: number;
  /** Request → engine spawned (switch: includes the drain and the old engine's stop). */
  requestToSpawnMs: number;
  /** Switch only: old engine exited → new engine spawned, ms. */
  exitToSpawnMs?: number;
}

/** Summary of samples. */
export interface ColdSummary {
  samples: ColdSample[];
  overheadP50Ms: number;
  overheadMaxMs: number;
  readyToResponseP50Ms: number;
  readyToResponseMaxMs: number;
  engineP50Ms: number;
  totalP50Ms: number;
}

/**
 * Summarises samples.
 *
 * @example
 * ```ts
 * import { summarise } from "./cold.ts";
 * summarise([]).samples.length; // 0
 * ```
 */
export function summarise(samples: ColdSample[]): ColdSummary {
  const f = (k: keyof ColdSample) => samples.map((s) => s[k] as number);
  return {
    samples,
    overheadP50Ms: percentile(f("overheadMs"), 50),
    overheadMaxMs: Math.max(...f("overheadMs")),
    readyToResponseP50Ms: percentile(f("readyToResponseMs"), 50),
    readyToResponseMaxMs: Math.max(...f("readyToResponseMs")),
    engineP50Ms: percentile(f("engineMs"), 50),
    totalP50Ms: percentile(f("totalMs"), 50),
  };
}

/**
 * Sends one completion and returns when its body is read.
 *
 * @example
 * ```ts ignore
 * import { complete } from "./cold.ts";
 * const { status } = await complete("http://127.0.0.1:8080", "bench");
 * ```
 */
export async function complete(
  url: string,
  model: string,
  timeoutMs = 120_000,
): Promise<{ status: number; at: number }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: "hi", max_tokens: 4 }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.arrayBuffer();
  return { status: res.status, at: epochMs() };
}

/** Waits (bounded) until the proxy's log after `from` has a line matching `pick`. */
async function waitLine(
  proxy: ProxyProc,
  from: number,
  pick: (l: LogLine) => boolean,
  timeoutMs = 5000,
): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = (await proxy.lines()).slice(from).find(pick);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms`);
    await sleep(10);
  }
}

const isSpawn = (model?: string) => (l: LogLine) =>
  l.msg === "engine started" && (model === undefined || l.model === model);
const hasStamp = (key: string, model?: string) => (l: LogLine) =>
  l.msg.includes(`${key}=`) && (model === undefined || l.model === model);

/**
 * Measures `count` cold starts (scale-only proxy with one model "bench"):
 * request at zero → response, then unload and wait until the engine is gone.
 *
 * @example
 * ```ts ignore
 * import { runColdStarts } from "./cold.ts";
 * const s = await runColdStarts(proxy, 3);
 * ```
 */
export async function runColdStarts(proxy: ProxyProc, count: number): Promise<ColdSummary> {
  const samples: ColdSample[] = [];
  for (let i = 0; i < count; i++) {
    const from = (await proxy.lines()).length;
    const t0 = epochMs();
    const { status, at: t1 } = await complete(proxy.url, "bench");
    if (status !== 200) throw new Error(`cold start ${i}: status ${status}`);
    const spawned = Date.parse((await waitLine(proxy, from, isSpawn())).time);
    const ready = stamp(await waitLine(proxy, from, hasStamp("ready_at")), "ready_at");
    samples.push({
      totalMs: t1 - t0,
      engineMs: ready - spawned,
      overheadMs: (t1 - t0) - (ready - spawned),
      readyToResponseMs: t1 - ready,
      requestToSpawnMs: spawned - t0,
    });
    await unload(proxy);
  }
  return summarise(samples);
}

/** Unloads and waits until the engine has exited (bounded). */
async function unload(proxy: ProxyProc): Promise<void> {
  const from = (await proxy.lines()).length;
  const res = await fetch(`${proxy.url}/admin/unload?wait=true`, {
    method: "POST",
    signal: AbortSignal.timeout(30_000),
  });
  await res.arrayBuffer();
  await waitLine(proxy, from, (l) => l.msg === "engine stopped" || l.msg === "engine exited", 15_000);
}

/**
 * Measures `count` switches between models "a" and "b" (switching proxy).
 *
 * @example
 * ```ts ignore
 * import { runSwitches } from "./cold.ts";
 * const s = await runSwitches(proxy, 3);
 * ```
 */
export async function runSwitches(proxy: ProxyProc, count: number): Promise<ColdSummary> {
  const first = await complete(proxy.url, "a");
  if (first.status !== 200) throw new Error(`switch warm-up: status ${first.status}`);
  const samples: ColdSample[] = [];
  for (let i = 0; i < count; i++) {
    const [from, to] = i % 2 === 0 ? ["a", "b"] : ["b", "a"];
    const start = (await proxy.lines()).length;
    const t0 = epochMs();
    const { status, at: t1 } = await complete(proxy.url, to);
    if (status !== 200) throw new Error(`switch ${from}→${to}: status ${status}`);
    const sigterm = stamp(await waitLine(proxy, start, hasStamp("sigterm_at", from)), "sigterm_at");
    const exit = stamp(await waitLine(proxy, start, hasStamp("exit_at", from)), "exit_at");
    const spawned = Date.parse((await waitLine(proxy, start, isSpawn(to))).time);
    const ready = stamp(await waitLine(proxy, start, hasStamp("ready_at", to)), "ready_at");
    const engineMs = (exit - sigterm) + (ready - spawned);
    samples.push({
      totalMs: t1 - t0,
      engineMs,
      overheadMs: (t1 - t0) - engineMs,
      readyToResponseMs: t1 - ready,
      requestToSpawnMs: spawned - t0,
      exitToSpawnMs: spawned - exit,
    });
  }
  return summarise(samples);
}

/** Fan-in figures. */
export interface FanInResult {
  requests: number;
  ok: number;
  statuses: Record<string, number>;
  /** Engines the proxy spawned. */
  engineStarts: number;
  /** `vllm_chill_scale_events_total{direction="up"}`. */
  scaleUps: number;
  /** Response read − engine ready, ms. */
  extraWaitP50Ms: number;
  extraWaitP99Ms: number;
  extraWaitMaxMs: number;
  engineMs: number;
  /** Reference: the same burst once the engine is warm, through the proxy (send → answer, ms). */
  warmBurstThroughProxy: { p50Ms: number; p99Ms: number };
  /** Reference: the same burst straight to the warm engine. */
  warmBurstDirect: { p50Ms: number; p99Ms: number };
}

async function burst(url: string, count: number): Promise<{ p50Ms: number; p99Ms: number }> {
  const t0 = epochMs();
  const results = await Promise.all(
    Array.from({ length: count }, () => complete(url, "bench").catch(() => ({ status: 0, at: NaN }))),
  );
  const waits = results.filter((r) => r.status === 200).map((r) => r.at - t0);
  return { p50Ms: percentile(waits, 50), p99Ms: percentile(waits, 99) };
}

/**
 * Sends `count` requests at once to a proxy at zero; counts scale-ups and
 * measures how long after the engine turned ready each answer came.
 *
 * @example
 * ```ts ignore
 * import { runFanIn } from "./cold.ts";
 * const r = await runFanIn(proxy, 1000);
 * ```
 */
export async function runFanIn(proxy: ProxyProc, count: number): Promise<FanInResult> {
  const from = (await proxy.lines()).length;
  const results = await Promise.all(
    Array.from({ length: count }, () => complete(proxy.url, "bench").catch(() => ({ status: 0, at: NaN }))),
  );
  const spawned = Date.parse((await waitLine(proxy, from, isSpawn())).time);
  const ready = stamp(await waitLine(proxy, from, hasStamp("ready_at")), "ready_at");
  const lines = (await proxy.lines()).slice(from);
  const statuses: Record<string, number> = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const extra = results.filter((r) => r.status === 200).map((r) => r.at - ready);
  const metrics = await metricsText(proxy.url);
  const engineUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(
    lines.findLast((l) => /bench-upstream: listening on/.test(l.msg))?.msg ?? "",
  )?.[0];
  // New client connections for each reference burst, like the cold burst had.
  const warmBurstThroughProxy = await burst(proxy.url, count);
  const warmBurstDirect = engineUrl ? await burst(engineUrl, count) : { p50Ms: NaN, p99Ms: NaN };
  return {
    requests: count,
    ok: statuses["200"] ?? 0,
    statuses,
    engineStarts: lines.filter(isSpawn()).length,
    scaleUps: metricSum(metrics, "vllm_chill_scale_events_total{", ['direction="up"']),
    extraWaitP50Ms: percentile(extra, 50),
    extraWaitP99Ms: percentile(extra, 99),
    extraWaitMaxMs: Math.max(...extra),
    engineMs: ready - spawned,
    warmBurstThroughProxy,
    warmBurstDirect,
  };
}
