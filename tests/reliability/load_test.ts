/**
 * Scenario 4 — load: RELIABILITY_LOAD_REQUESTS (default 10,000) requests
 * from 50 concurrent clients over three models (process backend, fake vLLM
 * engines), with traffic moving from model to model in phases plus a few
 * stray requests for another model (which force extra switches). Every
 * request is answered exactly once (its own x-request-id comes back, the
 * proxy counts it once) and by the model it asked for; the number of
 * switches stays within what DESIGN's pool rule 4 allows. Two kinds of
 * switch:
 *
 * - waited: the loaded model still had work while another waited; it kept
 *   the GPU at least minLoadedTime first. One model at a time, so those
 *   stretches do not overlap: at most floor(duration / minLoadedTime).
 * - idle: the loaded model had nothing left, so it gave way at once. That
 *   happens where the request sequence changes model (`changes`: phase
 *   boundaries and the strays), or after a waited switch took the GPU from
 *   a model whose last requests (sent before the change, arrived after it)
 *   then waited: at most one per waited switch.
 *
 *   switches ≤ changes + 2 × floor(duration / minLoadedTime).
 *
 * (The bound cannot rest on duration alone: on a fast machine a phase lasts
 * less than minLoadedTime and every phase change is an idle switch.)
 *
 * The figures are printed (and written to RELIABILITY_REPORT_FILE when set,
 * for tests/reliability/report.ts).
 */
import assert from "node:assert/strict";
import { startProxy } from "../e2e/helpers.ts";
import { metricValue, scrape } from "./helpers.ts";

const REQUESTS = Number(Deno.env.get("RELIABILITY_LOAD_REQUESTS") ?? 10_000);
const CLIENTS = 50;
const MODELS = ["a", "b", "c"] as const;
const PHASES = 6;
/** One request in STRAY_EVERY asks for the model after the phase's one. */
const STRAY_EVERY = 2500;
const MIN_LOADED_MS = 500;
/** The whole run is bounded: past this, clients stop sending (and the unsent requests count as lost). */
const RUN_LIMIT_MS = Number(Deno.env.get("RELIABILITY_LOAD_LIMIT_MS") ?? 90_000);

Deno.test(`load: ${REQUESTS} requests from ${CLIENTS} clients over 3 models with switches — none lost, right model, switches bounded`, async () => {
  const proxy = await startProxy(
    {
      enableModelSwitch: true,
      minLoadedTime: `${MIN_LOADED_MS}ms`,
      holdTimeout: "30s",
      startTimeout: "20s",
      drainTimeout: "5s",
      idleTimeout: "1m",
      maxHeldRequests: 1000,
      logFormat: "json",
    },
    { a: { loadMs: 50 }, b: { loadMs: 50 }, c: { loadMs: 50 } },
  );
  try {
    let next = 0;
    const outcomes = new Map<number, { status: number; model: string; id: string | null; wanted: string }>();
    const duplicates: number[] = [];
    const errors: string[] = [];
    const modelFor = (i: number) => {
      const phase = Math.floor(i / Math.ceil(REQUESTS / PHASES));
      const stray = i % STRAY_EVERY === STRAY_EVERY - 1 ? 1 : 0;
      return MODELS[(phase + stray) % MODELS.length];
    };
    const started = performance.now();
    const deadline = AbortSignal.timeout(RUN_LIMIT_MS);
    const client = async () => {
      for (let n = 0; n < REQUESTS; n++) {
        const i = next++;
        if (i >= REQUESTS || deadline.aborted) return;
        const wanted = modelFor(i);
        const id = `load-${i}`;
        try {
          const res = await fetch(`${proxy.url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-request-id": id },
            body: JSON.stringify({ model: wanted, messages: [{ role: "user", content: `r${i}` }], max_tokens: 2 }),
            signal: AbortSignal.any([AbortSignal.timeout(30_000), deadline]),
          });
          const body = await res.json();
          if (outcomes.has(i)) duplicates.push(i);
          outcomes.set(i, { status: res.status, model: body.model, id: res.headers.get("x-request-id"), wanted });
        } catch (error) {
          errors.push(`${i}: ${(error as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, client));
    const durationMs = performance.now() - started;

    const metrics = await scrape(proxy.url);
    const switches = metricValue(metrics, "vllm_chill_model_switches_total");
    const counted = metricValue(metrics, "vllm_chill_requests_total");
    let changes = 0;
    for (let i = 1; i < REQUESTS; i++) if (modelFor(i) !== modelFor(i - 1)) changes++;
    const bound = changes + 2 * Math.floor(durationMs / MIN_LOADED_MS);
    const answered = [...outcomes.values()];
    const ok = answered.filter((o) => o.status === 200);
    const wrongModel = answered.filter((o) => o.status === 200 && o.model !== o.wanted);
    const wrongId = [...outcomes].filter(([i, o]) => o.id !== `load-${i}`).map(([i]) => i);
    const figures = {
      requests: REQUESTS,
      clients: CLIENTS,
      answered: answered.length,
      ok: ok.length,
      lost: REQUESTS - answered.length,
      errors: errors.length,
      duplicates: duplicates.length,
      wrongModel: wrongModel.length,
      countedByProxy: counted,
      switches,
      modelChanges: changes,
      switchBound: bound,
      minLoadedTimeMs: MIN_LOADED_MS,
      durationMs: Math.round(durationMs),
      requestsPerSecond: Math.round(REQUESTS / (durationMs / 1000)),
      engineStarts: proxy.engineStarts(),
    };
    console.log(`load figures: ${JSON.stringify(figures)}`);
    const reportFile = Deno.env.get("RELIABILITY_REPORT_FILE");
    if (reportFile) await Deno.writeTextFile(reportFile, JSON.stringify({ load: figures }) + "\n", { append: true });

    assert.deepEqual(errors.slice(0, 5), [], "requests failed at the client");
    assert.equal(answered.length, REQUESTS, "every request answered");
    assert.deepEqual(duplicates, [], "no request answered twice");
    assert.equal(ok.length, REQUESTS, `non-200 answers: ${JSON.stringify(answered.find((o) => o.status !== 200))}`);
    assert.deepEqual(wrongModel.slice(0, 3), [], "answered by another model than asked for");
    assert.deepEqual(wrongId.slice(0, 3), [], "an answer carried another request's id");
    assert.equal(counted, REQUESTS, "the proxy counted each request exactly once");
    assert.ok(switches >= PHASES - 1, `the run switched models (${switches})`);
    assert.ok(switches <= bound, `${switches} switches in ${Math.round(durationMs)} ms exceeds the bound ${bound}`);
    assert.equal(proxy.engineStarts(), switches + 1, "one engine start per switch plus the first");
    assert.deepEqual(proxy.overlaps, [], "two engines ran at once");
  } finally {
    await proxy.close();
  }
});
