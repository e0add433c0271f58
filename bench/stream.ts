/**
 * Streaming: time to first byte and the gaps between SSE events of a
 * 500-token stream at 1,000 tokens/s, straight to the engine and through the
 * proxy, one stream at a time (the client timestamps each event as it
 * arrives; wrk cannot see chunk timing).
 *
 * @module
 */

/** Figures for one target. */
export interface StreamStats {
  streams: number;
  /** Median time to the first body byte, ms. */
  ttfbP50Ms: number;
  ttfbP99Ms: number;
  /** Gaps between consecutive SSE events, ms (0 when several arrive in one read). */
  gapP50Ms: number;
  gapP99Ms: number;
  /**
   * Lateness of each event: arrival − (first event's arrival + n / tokens per second), ms. The engine
   * schedules token n at n / rate after the first, so this is how late the client saw each token.
   */
  lateP50Ms: number;
  lateP99Ms: number;
  /** Events per stream (tokens + [DONE]). */
  events: number;
  /** Total stream duration, median, ms. */
  durationP50Ms: number;
}

/** Direct vs proxy. */
export interface StreamResult {
  tokens: number;
  tokensPerSec: number;
  direct: StreamStats;
  proxy: StreamStats;
  ttfbOverheadP50Ms: number;
  gapOverheadP50Ms: number;
  gapOverheadP99Ms: number;
  /** proxy − direct lateness, ms. */
  lateOverheadP50Ms: number;
  lateOverheadP99Ms: number;
}

/**
 * Percentile (nearest rank) of a list of numbers.
 *
 * @example
 * ```ts
 * import { percentile } from "./stream.ts";
 * percentile([1, 2, 3, 4], 50); // 2
 * ```
 */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

async function oneStream(
  base: string,
  tokens: number,
  intervalMs: number,
): Promise<{ ttfb: number; gaps: number[]; late: number[]; events: number; total: number }> {
  const body = JSON.stringify({ model: "bench", prompt: "hi", max_tokens: tokens, stream: true });
  const started = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(30_000),
  });
  if (res.status !== 200 || !res.body) throw new Error(`stream through ${base}: status ${res.status}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let ttfb = NaN;
  let buffered = "";
  let last = NaN;
  let events = 0;
  let first = NaN;
  const gaps: number[] = [];
  const late: number[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    const now = performance.now();
    if (done) break;
    if (Number.isNaN(ttfb)) ttfb = now - started;
    buffered += decoder.decode(value, { stream: true });
    let idx;
    while ((idx = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, idx);
      buffered = buffered.slice(idx + 2);
      if (!event.startsWith("data:")) continue; // heartbeat comments
      if (Number.isNaN(first)) first = now;
      // Token events only ([DONE] follows the last token at once).
      if (!event.startsWith("data: [DONE]")) late.push(now - (first + events * intervalMs));
      if (!Number.isNaN(last)) gaps.push(now - last);
      last = now;
      events++;
    }
  }
  return { ttfb, gaps, late, events, total: performance.now() - started };
}

async function measure(base: string, tokens: number, tokensPerSec: number, streams: number): Promise<StreamStats> {
  const intervalMs = 1000 / tokensPerSec;
  const ttfbs: number[] = [];
  const gaps: number[] = [];
  const late: number[] = [];
  const totals: number[] = [];
  let events = 0;
  await oneStream(base, 20, intervalMs); // warm the connection and the JIT
  for (let i = 0; i < streams; i++) {
    const r = await oneStream(base, tokens, intervalMs);
    ttfbs.push(r.ttfb);
    gaps.push(...r.gaps);
    late.push(...r.late);
    totals.push(r.total);
    events = r.events;
  }
  return {
    streams,
    ttfbP50Ms: percentile(ttfbs, 50),
    ttfbP99Ms: percentile(ttfbs, 99),
    gapP50Ms: percentile(gaps, 50),
    gapP99Ms: percentile(gaps, 99),
    lateP50Ms: percentile(late, 50),
    lateP99Ms: percentile(late, 99),
    events,
    durationP50Ms: percentile(totals, 50),
  };
}

/**
 * Runs the streaming comparison (alternating direct and proxy streams).
 *
 * @example
 * ```ts ignore
 * import { runStreaming } from "./stream.ts";
 * const r = await runStreaming({ directUrl, proxyUrl, tokens: 500, tokensPerSec: 1000, streams: 5 });
 * ```
 */
export async function runStreaming(o: {
  directUrl: string;
  proxyUrl: string;
  tokens: number;
  tokensPerSec: number;
  streams: number;
}): Promise<StreamResult> {
  const direct = await measure(o.directUrl, o.tokens, o.tokensPerSec, o.streams);
  const proxy = await measure(o.proxyUrl, o.tokens, o.tokensPerSec, o.streams);
  return {
    tokens: o.tokens,
    tokensPerSec: o.tokensPerSec,
    direct,
    proxy,
    ttfbOverheadP50Ms: proxy.ttfbP50Ms - direct.ttfbP50Ms,
    gapOverheadP50Ms: proxy.gapP50Ms - direct.gapP50Ms,
    gapOverheadP99Ms: proxy.gapP99Ms - direct.gapP99Ms,
    lateOverheadP50Ms: proxy.lateP50Ms - direct.lateP50Ms,
    lateOverheadP99Ms: proxy.lateP99Ms - direct.lateP99Ms,
  };
}
