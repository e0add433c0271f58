/**
 * The pool's scheduling figures, with the process backend and the project's
 * fake vLLM (tests/support/fake_vllm.ts) as engines: vLLM's own arguments
 * (`{args}`), its sleep mode, with fixed sleep and wake durations, so that
 * what the engine itself needed is known exactly.
 *
 * - Switch by wake: two 0.6 models on one GPU, requested in turn; each
 *   request puts the other to sleep and wakes its own. Overhead = the
 *   client's wait − (the victim's sleep + the wake, as the engines take them)
 *   − a direct request to a warm engine.
 * - Mixed workload: `clients` closed-loop clients × `perClient` sequential
 *   requests over 3 models (client i uses model i mod 3) that share one GPU
 *   (0.6 each: one awake at a time). Lower bound: each model must be loaded
 *   once (3 cold starts) and the GPU must change hands at least twice (a sleep
 *   and the next load); each model's clients need at least `perClient`
 *   sequential request times while it holds the GPU. So
 *   LB = 3 × load + 2 × sleep + 3 × perClient × request. Reported with the
 *   counts of cold starts, wakes and sleeps the proxy made.
 *
 * @module
 */
import { fakeVllmCommand } from "../tests/support/fake_vllm_command.ts";
import { metricSum, startProxy } from "./proxy.ts";
import { percentile } from "./stream.ts";

/** Switch-by-wake figures. */
export interface WakeSwitchResult {
  samples: number;
  /** What the engines need per switch: the victim's sleep plus the wake (configured on the fake). */
  engineMs: number;
  /** A request to a warm engine (no switch), p50. */
  warmP50Ms: number;
  latencyP50Ms: number;
  overheadP50Ms: number;
  overheadMaxMs: number;
}

/** Mixed-workload figures. */
export interface MixedResult {
  clients: number;
  perClient: number;
  models: number;
  totalMs: number;
  lowerBoundMs: number;
  /** totalMs / lowerBoundMs. */
  ratio: number;
  coldStarts: number;
  wakes: number;
  sleeps: number;
  errors: number;
}

/** Everything the pool section measures. */
export interface PoolResult {
  wakeSwitch: WakeSwitchResult;
  mixed: MixedResult;
}

/** Sizes and engine timings of a run. */
export interface PoolPlan {
  switches: number;
  clients: number;
  perClient: number;
  /** Fake engine timings, ms. */
  loadMs: number;
  sleepMs: number;
  wakeMs: number;
  /** Tokens per request and the generation speed: one request takes tokens / tokensPerSec. */
  tokens: number;
  tokensPerSec: number;
}

/**
 * Runs both measurements.
 *
 * @example
 * ```ts ignore
 * import { runPool } from "./pool.ts";
 * const r = await runPool({ dir: "/tmp/x", say: console.log, plan: { switches: 10, clients: 30, perClient: 8,
 *   loadMs: 1000, sleepMs: 200, wakeMs: 300, tokens: 8, tokensPerSec: 100 } });
 * ```
 */
export async function runPool(o: { dir: string; plan: PoolPlan; say: (line: string) => void }): Promise<PoolResult> {
  const wakeSwitch = await runWakeSwitches(o.dir, o.plan);
  o.say(
    `switch by wake: overhead p50 ${wakeSwitch.overheadP50Ms.toFixed(1)} ms (engine ${wakeSwitch.engineMs} ms, ` +
      `latency p50 ${wakeSwitch.latencyP50Ms.toFixed(1)} ms)`,
  );
  const mixed = await runMixed(o.dir, o.plan);
  o.say(
    `mixed: ${mixed.totalMs.toFixed(0)} ms vs lower bound ${mixed.lowerBoundMs.toFixed(0)} ms (${
      mixed.ratio.toFixed(2)
    }×), ${mixed.coldStarts} cold starts, ${mixed.wakes} wakes, ${mixed.sleeps} sleeps, ${mixed.errors} errors`,
  );
  return { wakeSwitch, mixed };
}

function model(name: string, plan: PoolPlan): Record<string, unknown> {
  return {
    modelName: `bench/${name}`,
    gpuMemoryUtilization: 0.6,
    command: fakeVllmCommand({
      loadMs: plan.loadMs,
      sleepMs: plan.sleepMs,
      wakeMs: plan.wakeMs,
      tokensPerSec: plan.tokensPerSec,
      vllmArgs: true,
    }),
  };
}

async function ask(url: string, name: string, tokens: number): Promise<{ ok: boolean; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: name, messages: [{ role: "user", content: "hi" }], max_tokens: tokens }),
    signal: AbortSignal.timeout(120_000),
  });
  await res.arrayBuffer();
  return { ok: res.ok, ms: performance.now() - t0 };
}

async function runWakeSwitches(dir: string, plan: PoolPlan): Promise<WakeSwitchResult> {
  const proxy = await startProxy({
    dir,
    name: "pool-wake",
    models: {},
    switching: true,
    extra: { sleepAfter: "1h", maxSleeping: 2 },
    modelsConfig: { a: model("a", plan), b: model("b", plan) },
  });
  try {
    // Both engines exist (b asleep after this); then every request is a switch by wake.
    for (const m of ["a", "b", "a"]) await ask(proxy.url, m, 1);
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) warm.push((await ask(proxy.url, "a", 1)).ms);
    const latency: number[] = [];
    for (let i = 0; i < plan.switches; i++) {
      const r = await ask(proxy.url, i % 2 === 0 ? "b" : "a", 1);
      if (r.ok) latency.push(r.ms);
    }
    const engineMs = plan.sleepMs + plan.wakeMs;
    const warmP50Ms = percentile(warm, 50);
    const overheads = latency.map((ms) => ms - engineMs - warmP50Ms);
    return {
      samples: latency.length,
      engineMs,
      warmP50Ms,
      latencyP50Ms: percentile(latency, 50),
      overheadP50Ms: percentile(overheads, 50),
      overheadMaxMs: Math.max(...overheads),
    };
  } finally {
    await proxy.stop();
  }
}

async function runMixed(dir: string, plan: PoolPlan): Promise<MixedResult> {
  const names = ["a", "b", "c"];
  const proxy = await startProxy({
    dir,
    name: "pool-mixed",
    models: {},
    switching: true,
    extra: { sleepAfter: "1h", maxSleeping: 2, minLoadedTime: "2s" },
    modelsConfig: Object.fromEntries(names.map((n) => [n, model(n, plan)])),
  });
  try {
    let errors = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: plan.clients }, async (_, i) => {
        for (let k = 0; k < plan.perClient; k++) {
          if (!(await ask(proxy.url, names[i % names.length], plan.tokens)).ok) errors++;
        }
      }),
    );
    const totalMs = performance.now() - t0;
    const requestMs = (plan.tokens / plan.tokensPerSec) * 1000;
    const lowerBoundMs = names.length * plan.loadMs + (names.length - 1) * plan.sleepMs +
      names.length * plan.perClient * requestMs;
    const lines = await proxy.lines();
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    return {
      clients: plan.clients,
      perClient: plan.perClient,
      models: names.length,
      totalMs,
      lowerBoundMs,
      ratio: totalMs / lowerBoundMs,
      coldStarts: lines.filter((l) => l.msg === "engine started").length,
      wakes: metricSum(metrics, "vllm_chill_wake_seconds_count"),
      sleeps: metricSum(metrics, "vllm_chill_sleeps_total"),
      errors,
    };
  } finally {
    await proxy.stop();
  }
}
