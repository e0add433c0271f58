/**
 * The pool's scheduling rules (DESIGN.md, "Several models at once", rules 1–6), the test scenarios of
 * POOL-NOTES.md (d) that make sense for the pure scheduler, admin load/sleep/unload and the Kubernetes modes.
 * Every test drives `decide` through the ledger (ledger.ts), so each one also checks, after every event, that
 * no GPU is oversubscribed, nothing is granted to an engine that is not ready, nothing with requests in flight
 * is put to sleep or stopped, maxSleeping holds, no request outlives its holdTimeout and the timer is armed.
 */
import assert from "node:assert/strict";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { type Facts, Ledger, type ModelFacts } from "./ledger.ts";
import { type Fx, Sim } from "./sim.ts";
import { gpuUsageOf } from "../../lib/scaler/views.ts";

interface M {
  share?: number;
  sleepAfter?: number;
  holdTimeout?: number;
  idleTimeout?: number;
  tensorParallelSize?: number;
  sleepLevel?: 1 | 2;
}

/**
 * A ledger over a process-backend pool: `models` in thousandths of a GPU and milliseconds, the rest of the
 * config as the user writes it.
 */
function pool(models: Record<string, M>, config: ChillConfigInput = {}): Ledger {
  const input: ChillConfigInput = {
    enableModelSwitch: true,
    idleTimeout: "10m",
    holdTimeout: "10m",
    ...config,
    models: Object.fromEntries(
      Object.entries(models).map(([key, m]) => [key, {
        modelName: `org/${key}`,
        ...(m.share !== undefined ? { gpuMemoryUtilization: m.share / 1000 } : {}),
        ...(m.sleepAfter !== undefined ? { sleepAfter: `${m.sleepAfter}ms` } : {}),
        ...(m.holdTimeout !== undefined ? { holdTimeout: `${m.holdTimeout}ms` } : {}),
        ...(m.idleTimeout !== undefined ? { idleTimeout: `${m.idleTimeout}ms` } : {}),
        ...(m.tensorParallelSize !== undefined ? { tensorParallelSize: m.tensorParallelSize } : {}),
        ...(m.sleepLevel !== undefined ? { sleepLevel: m.sleepLevel } : {}),
      }]),
    ),
  };
  const sim = new Sim(input);
  const policy = sim.state.policy;
  const whole = config.backend === "kubernetes";
  const facts: Facts = {
    maxSleeping: config.maxSleeping ?? 2,
    drainTimeout: policy.drainTimeout,
    sleepHoldsGpu: whole,
    models: Object.fromEntries(
      Object.entries(models).map(([key, m]): [string, ModelFacts] => [key, {
        share: whole ? 1000 : m.share ?? 900,
        holdTimeout: m.holdTimeout ?? policy.defaults.holdTimeout,
        idleTimeout: m.idleTimeout ?? policy.defaults.idleTimeout,
        sleepAfter: m.sleepAfter ?? null,
      }]),
    ),
  };
  return new Ledger(sim, facts);
}

/** Effects of `type` for `model` so far. */
function fx<T extends "start" | "sleep" | "wake" | "stop">(l: Ledger, type: T, model?: string): Fx<T>[] {
  return l.sim.of(type).filter((e) => model === undefined || (e as { model: string }).model === model);
}

/** Starts `model` for one request, serves it and releases it: the model is ready and idle. */
function warm(l: Ledger, model: string): void {
  const id = l.request(model);
  l.answer(model, true);
  assert.equal(l.requests.get(id)!.state, "granted");
  l.release(id);
}

// ---- the timer ----

Deno.test("timer: a sleep put off while a neighbour starts does not disarm the timer for later deadlines", () => {
  const l = pool({ a: { share: 500, sleepAfter: 5000 }, b: { share: 400 } }, {
    holdTimeout: "30s",
    startTimeout: "15s",
  });
  warm(l, "a");
  l.advance(4000);
  const b1 = l.request("b"); // b starts beside a (0.5 + 0.4)
  assert.equal(fx(l, "start", "b").length, 1);
  l.advance(1000); // a's sleepAfter: put off while b starts on the same GPU (vllm-project/vllm#36753)
  assert.equal(l.sim.status("a"), "ready");
  assert.equal(l.timer, 4000 + 15_000, "armed for b's startTimeout");
  l.advance(15_000);
  assert.equal(l.requests.get(b1)!.state, "rejected", "b's start timed out and its request was answered");
  // b's stop is confirmed: a falls asleep now.
  l.answer("b", true);
  assert.equal(fx(l, "sleep", "a").length, 1);
});

// ---- maxSleeping ----

Deno.test("maxSleeping: a waking engine still holds its weights in host RAM: nothing falls asleep beside it", () => {
  const l = pool({ a: { sleepAfter: 1000 }, c: { sleepAfter: 1000 } }, {
    maxSleeping: 1,
    process: { gpus: ["0", "1"] },
  });
  warm(l, "a"); // on GPU 0
  const c1 = l.request("c"); // on GPU 1, serving
  l.answer("c", true);
  assert.deepEqual(fx(l, "start", "c")[0].gpus, ["1"]);
  l.advance(1000);
  l.answer("a", true); // asleep
  l.request("a");
  assert.equal(fx(l, "wake", "a").length, 1);
  l.release(c1);
  l.advance(1000); // c's sleepAfter while a wakes: put off
  assert.equal(fx(l, "sleep", "c").length, 0, "a's weights are still in host RAM");
  l.answer("a", true); // woke
  assert.equal(fx(l, "sleep", "c").length, 1, "c falls asleep once a's wake is confirmed");
});

Deno.test("maxSleeping: a failed wake's engine counts as a sleeper until its stop is confirmed", () => {
  const l = pool({ a: { sleepAfter: 1000 }, c: { sleepAfter: 1000 } }, {
    maxSleeping: 1,
    process: { gpus: ["0", "1"] },
  });
  warm(l, "a");
  const c1 = l.request("c");
  l.answer("c", true);
  l.advance(1000);
  l.answer("a", true);
  l.request("a");
  l.release(c1);
  l.answer("a", false); // the wake failed: a is stopped, then cold-started
  assert.equal(fx(l, "stop", "a").length, 1);
  l.advance(1000);
  assert.equal(fx(l, "sleep", "c").length, 0, "a's process still holds its weights");
  l.answer("a", true); // a's stop confirmed → a cold-starts (on GPU 0); c may sleep now
  assert.equal(fx(l, "sleep", "c").length, 1);
});

Deno.test("maxSleeping lowered by a config reload: only the excess, least recently used, is stopped", () => {
  const models = { a: { share: 300, sleepAfter: 1000 }, b: { share: 300, sleepAfter: 1000 } };
  const l = pool(models, { maxSleeping: 2 });
  warm(l, "a");
  l.advance(10);
  warm(l, "b");
  l.advance(1000);
  l.answer("a", true);
  l.answer("b", true);
  assert.equal(l.sim.status("a"), "sleeping");
  assert.equal(l.sim.status("b"), "sleeping");
  const lowered = pool(models, { maxSleeping: 1 }).sim.state.policy;
  l.facts.maxSleeping = 2; // the bound the world was built under; the reload lowers it from now on
  l.sim.send({ type: "configure", policy: lowered });
  assert.deepEqual(l.sim.of("stop").map((s) => [s.model, s.reason]), [["a", "maxSleeping 1"]]);
});

// ---- reading the world back (rule 5) ----

Deno.test("read back: an engine being stopped takes no room from one that serves, whatever the order", () => {
  const config = { process: { gpus: ["0", "1"] }, idleTimeout: "10m" };
  const models = {
    a: { modelName: "org/a", tensorParallelSize: 2, gpuMemoryUtilization: 0.8 },
    b: { modelName: "org/b", gpuMemoryUtilization: 0.6 },
  };
  const sim = new Sim({ ...config, models }, null);
  const fx = sim.send({
    type: "observed",
    op: 0,
    engines: [{ model: "b", phase: "terminating", gpus: ["0"] }, { model: "a", phase: "ready", gpus: ["0", "1"] }],
  });
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["b"], "a keeps serving");
  assert.equal(sim.status("a"), "ready");
  assert.deepEqual(sim.granted(sim.req("r1", "a")), ["r1"]);
});

Deno.test("read back after a failed stop: a ready engine really beyond the room drains its requests first", () => {
  const models = { a: { share: 500 }, b: { share: 400 }, c: { share: 100, idleTimeout: 1000 } };
  const l = pool(models, { idleTimeout: "10m" });
  warm(l, "c");
  const a1 = l.request("a");
  l.answer("a", true);
  const b1 = l.request("b");
  l.answer("b", true);
  l.advance(1000); // c idles out: its stop fails twice, the world is read back
  l.answer("c", false);
  l.answer("c", false);
  assert.equal(l.pendingModels().join(), "<observe>");
  // Meanwhile a config reload made a bigger: a (0.7) and b (0.4) no longer fit together.
  const bigger = pool({ ...models, a: { share: 700 } }).sim.state.policy;
  l.sim.send({ type: "configure", policy: bigger });
  const fx = l.sim.send({
    type: "observed",
    op: l.observeOp!,
    engines: [
      { model: "b", phase: "ready", gpus: ["0"] },
      { model: "a", phase: "ready", gpus: ["0"] },
      { model: "c", phase: "terminating", gpus: ["0"] },
    ],
  });
  assert.deepEqual(l.sim.of("stop", fx).map((s) => s.model), ["c"], "a is not stopped with a1 in flight");
  assert.equal(l.sim.status("a"), "draining");
  assert.deepEqual(l.sim.of("stop", l.sim.release(a1)).map((s) => [s.model, s.reason]), [[
    "a",
    "observed beyond the pool's GPU room",
  ]]);
  l.sim.release(b1);
});

Deno.test("read back: a stop that fails twice during a read-back asks for no second one", () => {
  const l = pool({ a: { share: 400 }, c: { share: 400 } });
  l.request("a");
  l.request("c");
  l.answer("a", false); // both starts fail: both engines are stopped
  l.answer("c", false);
  l.answer("a", false);
  l.answer("a", false); // a's stops failed: read the world back
  assert.equal(l.sim.of("observe").length, 1);
  l.answer("c", false);
  l.answer("c", false); // c's stops fail during the read-back, which covers c too
  assert.equal(l.sim.of("observe").length, 1);
  const a1 = l.request("a"); // held while reading back
  assert.equal(l.requests.get(a1)!.state, "held");
  l.answer("<observe>", true); // both still there, terminating
  assert.deepEqual(l.sim.of("stop").slice(-2).map((s) => s.model).sort(), ["a", "c"]);
  l.answer("a", true);
  l.answer("a", true); // a stopped, then started again for a1
  assert.equal(l.requests.get(a1)!.state, "granted");
});

Deno.test("one pass of idle timers sees each engine as it is now: a sleeper stopped for maxSleeping is not stopped twice", () => {
  const l = pool(
    { c: { share: 300, sleepAfter: 30_000 }, a: { share: 300, sleepAfter: 1000 }, b: { share: 300, sleepAfter: 1000 } },
    { maxSleeping: 2, idleTimeout: "60s" },
  );
  const c1 = l.request("c"); // c's engine comes first
  l.answer("c", true);
  warm(l, "a");
  warm(l, "b");
  l.advance(1000);
  l.answer("a", true);
  l.answer("b", true); // a and b asleep: maxSleeping reached
  l.advance(29_000);
  l.release(c1); // at 30 s: c falls asleep at 60 s, when a and b idle out
  l.advance(30_000);
  const stops = l.sim.of("stop").map((s) => `${s.model}: ${s.reason}`);
  assert.deepEqual(stops, ["a: maxSleeping 2: c falls asleep", "b: idle"]);
});

// ---- helpers for the rules ----

function state(l: Ledger, id: string): string {
  return l.requests.get(id)!.state;
}

/** The scheduler's own view of the awake share of every GPU never exceeds a whole GPU either. */
function assertAwakeWithin(l: Ledger): void {
  for (const [gpu, { awake }] of Object.entries(gpuUsageOf(l.sim.state))) {
    assert.ok(awake <= 1000, `GPU ${gpu}: awake share ${awake}`);
  }
}

// ---- rule 1 ----

Deno.test("rule 1: ready → forwarded at once; cold → held and started; sleeping → held and woken", () => {
  const l = pool({ a: { share: 500, sleepAfter: 1000 } });
  const a1 = l.request("a");
  assert.equal(state(l, a1), "held");
  assert.equal(fx(l, "start", "a").length, 1);
  l.answer("a", true);
  assert.equal(state(l, a1), "granted");
  l.release(a1);
  const a2 = l.request("a");
  assert.equal(state(l, a2), "granted", "ready: at once");
  l.release(a2);
  l.advance(1000);
  l.answer("a", true); // asleep
  const a3 = l.request("a");
  assert.equal(state(l, a3), "held");
  assert.equal(fx(l, "wake", "a").length, 1);
  assert.equal(fx(l, "start", "a").length, 1, "woken, not started again");
  l.answer("a", true);
  assert.equal(state(l, a3), "granted");
});

// ---- rule 2 ----

Deno.test("rule 2: the newcomer starts only once its victim's sleep is confirmed; nothing reaches a sleeping or waking engine", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600, sleepAfter: 60_000 } });
  warm(l, "a");
  const b1 = l.request("b");
  assert.equal(fx(l, "sleep", "a").length, 1, "a, idle, is put to sleep at once");
  assert.equal(fx(l, "start", "b").length, 0, "b waits for the sleep to be confirmed");
  const a2 = l.request("a"); // a is falling asleep: held
  assertAwakeWithin(l);
  l.answer("a", true);
  assert.equal(fx(l, "start", "b").length, 1);
  assert.equal(state(l, a2), "held");
  l.answer("b", true);
  assert.equal(state(l, b1), "granted");
  assert.equal(state(l, a2), "held", "b serves within its minLoadedTime; a waits");
  l.release(b1); // b idle: it makes room for a
  assert.equal(fx(l, "sleep", "b").length, 1);
  assert.equal(fx(l, "wake", "a").length, 0, "a wakes only once b's sleep is confirmed");
  l.answer("b", true);
  assert.equal(fx(l, "wake", "a").length, 1);
  assert.equal(state(l, a2), "held", "nothing is forwarded to a waking engine");
  assertAwakeWithin(l);
  l.answer("a", true);
  assert.equal(state(l, a2), "granted");
});

Deno.test("rule 2: a model that may not sleep is stopped, and the newcomer starts once the stop is confirmed", () => {
  const l = pool({ a: { share: 600 }, b: { share: 600 } });
  warm(l, "a");
  l.request("b");
  assert.deepEqual(fx(l, "stop").map((s) => [s.model, s.reason]), [["a", "switch to b"]]);
  assert.equal(fx(l, "start", "b").length, 0);
  l.answer("a", true);
  assert.equal(fx(l, "start", "b").length, 1);
});

// ---- rule 3 ----

Deno.test("rule 3: room is made from the least recently used idle model; it sleeps when it may, else it stops", () => {
  const l = pool({
    a: { share: 300, sleepAfter: 60_000 },
    b: { share: 300 },
    c: { share: 300, sleepAfter: 60_000 },
    d: { share: 400 },
  });
  warm(l, "a");
  l.advance(10);
  warm(l, "b");
  l.advance(10);
  warm(l, "c");
  l.request("d"); // 0.3 × 3 + 0.4: one must go, the least recently used (a), which may sleep
  assert.deepEqual(fx(l, "sleep").map((s) => s.model), ["a"]);
  assert.equal(fx(l, "stop").length, 0);
  l.answer("a", true);
  l.answer("d", true);
  l.release([...l.requests.values()].find((r) => r.model === "d")!.id);
  // a wants its room back: now b is the least recently used, and b may not sleep.
  l.advance(10);
  l.request("a");
  assert.deepEqual(fx(l, "stop").map((s) => [s.model, s.reason]), [["b", "switch to a"]]);
  l.answer("b", true);
  assert.equal(fx(l, "wake", "a").length, 1);
  assert.deepEqual(
    l.sim.of("metric").filter((m) => m.name === "eviction").map((m) => m.name === "eviction" && [m.model, m.action]),
    [
      ["a", "sleep"],
      ["b", "stop"],
    ],
  );
});

Deno.test("rule 3 and POOL-NOTES (d) 7: drain before sleep — no /sleep until both streams end", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600 } }, { minLoadedTime: "0s" });
  const s1 = l.request("a");
  l.answer("a", true);
  const s2 = l.request("a");
  l.request("b");
  assert.equal(l.sim.status("a"), "draining");
  l.advance(5000);
  l.release(s1);
  assert.equal(fx(l, "sleep").length + fx(l, "stop").length, 0, "one stream still runs");
  l.release(s2);
  assert.deepEqual(fx(l, "sleep").map((s) => s.model), ["a"]);
});

Deno.test("rule 3: a drain is bounded by drainTimeout, and then the engine is stopped, never put to sleep", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600 } }, {
    minLoadedTime: "0s",
    drainTimeout: "20s",
  });
  const s1 = l.request("a");
  l.answer("a", true);
  l.request("b");
  l.advance(19_999);
  assert.equal(fx(l, "stop").length + fx(l, "sleep").length, 0);
  l.advance(1);
  assert.deepEqual(fx(l, "stop").map((s) => s.reason), ["switch to b (drainTimeout 20s reached, 1 in flight)"]);
  assert.equal(fx(l, "sleep").length, 0, "vLLM's /sleep would abort what is in flight (vllm-project/vllm#45520)");
  l.answer("a", true);
  l.answer("b", true);
  l.release(s1); // the stream's connection ends with the engine
});

// ---- rule 4 ----

Deno.test("rule 4 and POOL-NOTES (d) 3: a busy model keeps its GPU for minLoadedTime; the waiting model is then served before its holdTimeout", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600, holdTimeout: 60_000 } }, {
    minLoadedTime: "30s",
  });
  const first = l.request("a");
  l.answer("a", true); // a ready at 0
  let b1 = "";
  const heldForA: string[] = [];
  // A new request for a every second, each lasting 1.5 s: a is never idle.
  const running: { id: string; until: number }[] = [{ id: first, until: 1500 }];
  for (let t = 1000; t <= 40_000; t += 1000) {
    l.advance(1000);
    for (const r of running.filter((r) => r.until <= l.now && state(l, r.id) === "granted")) l.release(r.id);
    if (t === 5000) b1 = l.request("b");
    const id = l.request("a");
    if (state(l, id) === "granted") running.push({ id, until: l.now + 1500 });
    else heldForA.push(id);
    for (const model of l.pendingModels()) l.answer(model, true);
    if (b1 && state(l, b1) === "granted") break;
  }
  assert.equal(state(l, b1), "granted");
  assert.ok(l.now >= 30_000, `b served at ${l.now}, not before a's minLoadedTime`);
  assert.ok(l.now <= 32_000, `b served at ${l.now}: drain (≤ 1.5 s), sleep and start`);
  assert.ok(heldForA.length > 0, "a's requests arriving while it drains are held");
  // Served in batches: once b is idle, a wakes and gets everything held for it at once.
  l.release(b1);
  for (const model of l.pendingModels()) l.answer(model, true);
  for (const model of l.pendingModels()) l.answer(model, true);
  assert.deepEqual(heldForA.map((id) => state(l, id)), heldForA.map(() => "granted"));
});

Deno.test("rule 4: no request waits longer than its holdTimeout, even inside another model's minLoadedTime", () => {
  const l = pool({ a: { share: 600 }, b: { share: 600, holdTimeout: 10_000 } }, { minLoadedTime: "1m" });
  const a1 = l.request("a");
  l.answer("a", true);
  l.advance(1000);
  const b1 = l.request("b");
  l.advance(9999);
  assert.equal(state(l, b1), "held");
  l.advance(1);
  assert.equal(state(l, b1), "rejected");
  assert.equal(l.sim.rejection(b1)?.status, 504);
  assert.equal(state(l, a1), "granted", "a kept serving");
  assert.equal(fx(l, "stop").length, 0);
});

Deno.test("rule 4: an idle model is evicted at once, even inside its minLoadedTime", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600 } }, { minLoadedTime: "1h" });
  warm(l, "a"); // ready and idle at 0
  l.advance(1);
  l.request("b");
  assert.deepEqual(fx(l, "sleep").map((s) => s.model), ["a"]);
});

Deno.test("rule 4 and POOL-NOTES (d) 2: collation — requests arriving A B A B are served A A then B B, one switch", () => {
  const l = pool({ a: { share: 600 }, b: { share: 600 } });
  const order = ["a", "b", "a", "b", "a", "a", "b", "a", "a", "a", "a", "a"].map((m) => l.request(m));
  l.answer("a", true);
  const as = order.filter((id) => l.requests.get(id)!.model === "a");
  const bs = order.filter((id) => l.requests.get(id)!.model === "b");
  assert.deepEqual(as.map((id) => state(l, id)), as.map(() => "granted"), "all of a's at once");
  assert.deepEqual(bs.map((id) => state(l, id)), bs.map(() => "held"));
  for (const id of as) l.release(id);
  l.answer("a", true); // stopped
  l.answer("b", true); // started
  assert.deepEqual(bs.map((id) => state(l, id)), bs.map(() => "granted"), "all of b's at once");
  const switches = l.sim.of("metric").filter((m) => m.name === "switch");
  assert.equal(switches.length, 1);
});

Deno.test("rule 4 and POOL-NOTES (d) 1: alternating clients — B is held while A streams; A is untouched until its stream ends", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600, sleepAfter: 60_000 } }, {
    minLoadedTime: "10s",
    drainTimeout: "5m",
  });
  const stream = l.request("a");
  l.answer("a", true);
  const b1 = l.request("b");
  l.advance(60_000); // a's stream outlives minLoadedTime: a drains, nothing is slept or stopped
  assert.equal(state(l, b1), "held");
  assert.equal(l.sim.status("a"), "draining");
  assert.equal(fx(l, "sleep").length + fx(l, "stop").length, 0);
  l.release(stream);
  assert.deepEqual(fx(l, "sleep").map((s) => s.model), ["a"]);
  l.answer("a", true);
  l.answer("b", true);
  assert.equal(state(l, b1), "granted");
});

// ---- rule 5 ----

Deno.test("rule 5 and POOL-NOTES (d) 9: a failed wake stops the engine and cold-starts it; its requests stay held", () => {
  const l = pool({ a: { share: 600, sleepAfter: 1000 } });
  warm(l, "a");
  l.advance(1000);
  l.answer("a", true); // asleep
  const a1 = l.request("a");
  const a2 = l.request("a");
  l.answer("a", false); // /wake_up 500
  assert.deepEqual(fx(l, "stop").map((s) => s.reason), ["wake failed: boom"]);
  assert.equal(l.sim.status("a"), "failed");
  assert.deepEqual([state(l, a1), state(l, a2)], ["held", "held"]);
  l.answer("a", true); // stopped → cold start
  assert.equal(fx(l, "start", "a").length, 2);
  l.answer("a", true);
  assert.deepEqual([state(l, a1), state(l, a2)], ["granted", "granted"]);
  assert.equal(l.sim.status("a"), "ready");
});

Deno.test("rule 5: a failed start answers its held requests with 503", () => {
  const l = pool({ a: { share: 600 } });
  const a1 = l.request("a");
  l.answer("a", false, "CUDA out of memory");
  assert.equal(state(l, a1), "rejected");
  const rejection = l.sim.rejection(a1)!;
  assert.equal(rejection.status, 503);
  assert.match(rejection.message, /CUDA out of memory/);
});

Deno.test("rule 5: engines read back — sleeping ones (their level) wake, ready ones serve; sleepers take no room", () => {
  const sim = new Sim({
    process: { gpus: ["0"] },
    startTimeout: "3m",
    models: {
      a: { modelName: "org/a", gpuMemoryUtilization: 0.6, sleepAfter: "1m" },
      b: { modelName: "org/b", gpuMemoryUtilization: 0.6, sleepAfter: "1m" },
    },
  }, null);
  sim.now = 1000;
  sim.send({
    type: "observed",
    op: 0,
    engines: [{ model: "a", phase: "sleeping", gpus: ["0"], sleepLevel: 2 }, {
      model: "b",
      phase: "ready",
      gpus: ["0"],
    }],
  });
  assert.equal(sim.status("a"), "sleeping");
  assert.equal(gpuUsageOf(sim.state)["0"].awake, 600, "a sleeper's memory is free");
  assert.deepEqual(sim.granted(sim.req("b1", "b")), ["b1"]);
  sim.release("b1");
  sim.req("a1", "a"); // b, idle, makes room; a wakes at level 2 (weights reloaded: startTimeout)
  sim.slept("b");
  const wake = sim.of("wake")[0];
  assert.deepEqual([wake.model, wake.level, wake.deadline], ["a", 2, 1000 + 180_000]);
});

Deno.test("rule 5: more sleepers read back than maxSleeping → the least recently used ones are stopped", () => {
  const models = Object.fromEntries(
    ["a", "b", "c"].map((m) => [m, { modelName: `org/${m}`, gpuMemoryUtilization: 0.3, sleepAfter: "1m" }]),
  );
  const sim = new Sim({ maxSleeping: 1, models }, null);
  const fx0 = sim.send({
    type: "observed",
    op: 0,
    engines: ["a", "b", "c"].map((model) => ({ model, phase: "sleeping" as const, gpus: ["0"] })),
  });
  assert.equal(sim.of("stop", fx0).length, 2);
  assert.equal(Object.values(sim.state.engines).filter((e) => e.status === "sleeping").length, 1);
});

// ---- rule 6 ----

Deno.test("rule 6: idle is measured from the end of the last request: sleepAfter, then idleTimeout", () => {
  const l = pool({ a: { share: 600, sleepAfter: 10_000, idleTimeout: 60_000 } });
  const stream = l.request("a");
  l.answer("a", true);
  l.advance(5000);
  l.release(stream); // the stream ends at 5 s
  l.advance(9999);
  assert.equal(fx(l, "sleep").length, 0);
  l.advance(1);
  assert.equal(fx(l, "sleep").length, 1, "asleep at 15 s");
  l.answer("a", true);
  l.advance(49_999);
  assert.equal(fx(l, "stop").length, 0);
  l.advance(1);
  assert.deepEqual(fx(l, "stop").map((s) => s.reason), ["idle"], "stopped at 65 s: 5 s + idleTimeout");
});

Deno.test("rule 6: a model whose sleepAfter is not shorter than its idleTimeout never sleeps", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000, idleTimeout: 60_000 } });
  warm(l, "a");
  l.advance(60_000);
  assert.equal(fx(l, "sleep").length, 0);
  assert.deepEqual(fx(l, "stop").map((s) => s.reason), ["idle"]);
});

Deno.test("rule 6 and POOL-NOTES (d) 4: a request 1 ms after /sleep is held, never forwarded, and wakes the model once the sleep is confirmed", () => {
  const l = pool({ a: { share: 600, sleepAfter: 5000 } });
  warm(l, "a");
  l.advance(5000);
  assert.equal(fx(l, "sleep").length, 1);
  l.advance(1);
  const a1 = l.request("a");
  assert.equal(state(l, a1), "held");
  assert.equal(fx(l, "wake").length, 0, "no wake while falling asleep (vllm-project/vllm#36753)");
  l.answer("a", true); // asleep
  assert.equal(fx(l, "wake").length, 1);
  assert.equal(state(l, a1), "held");
  l.answer("a", true);
  assert.equal(state(l, a1), "granted");
});

// ---- POOL-NOTES (d): the other scenarios ----

Deno.test("POOL-NOTES (d) 5: starting counts — Y waits while X (0.8) starts; the awake share stays ≤ 1.0", () => {
  const l = pool({ x: { share: 800 }, y: { share: 500 } }, { minLoadedTime: "30s" });
  const x1 = l.request("x");
  const y1 = l.request("y");
  assert.deepEqual(fx(l, "start").map((s) => s.model), ["x"]);
  assertAwakeWithin(l);
  l.answer("x", true); // x serves x1 inside its minLoadedTime: y still waits
  assert.equal(state(l, y1), "held");
  assert.equal(fx(l, "stop").length, 0);
  l.release(x1); // x idle: evicted (stopped: it may not sleep)
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["x"]);
  assert.equal(fx(l, "start", "y").length, 0);
  l.answer("x", true);
  l.answer("y", true);
  assert.equal(state(l, y1), "granted");
});

Deno.test("POOL-NOTES (d) 6: a departed client — never granted once cancelled; a grant it missed is released back to 0", () => {
  const l = pool({ a: { share: 600, idleTimeout: 10_000 } });
  const gone = l.request("a");
  const stays = l.request("a");
  l.cancel(gone); // left while held
  l.answer("a", true);
  assert.equal(state(l, gone), "cancelled");
  assert.equal(state(l, stays), "granted");
  assert.equal(l.sim.inflight("a"), 1);
  // The client of `stays` left just as it was granted: the cancel comes too late and changes nothing; the
  // driver releases the grant it could not deliver.
  l.sim.send({ type: "cancel", id: stays });
  assert.equal(l.sim.inflight("a"), 1);
  l.release(stays);
  assert.equal(l.sim.inflight("a"), 0);
  l.advance(10_000);
  assert.deepEqual(fx(l, "stop").map((s) => s.reason), ["idle"], "not kept alive by a stuck counter");
});

Deno.test("POOL-NOTES (d) 8: a sleep that frees nothing (reported as a failed sleep) → the victim is stopped and the newcomer waits for it", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600 } });
  warm(l, "a");
  const b1 = l.request("b");
  assert.deepEqual(fx(l, "sleep").map((s) => s.model), ["a"]);
  l.answer("a", false, "memory still used after /sleep");
  assert.deepEqual(fx(l, "stop").map((s) => [s.model, s.reason]), [[
    "a",
    "sleep failed: memory still used after /sleep",
  ]]);
  assert.equal(fx(l, "start", "b").length, 0, "its memory is still counted");
  l.answer("a", true);
  l.answer("b", true);
  assert.equal(state(l, b1), "granted");
});

Deno.test("POOL-NOTES (d) 10: level 2 — sleep and wake at level 2, the wake given a start's deadline", () => {
  const l = pool({ a: { share: 600, sleepAfter: 1000, sleepLevel: 2 } }, { startTimeout: "4m" });
  warm(l, "a");
  l.advance(1000);
  assert.deepEqual(fx(l, "sleep").map((s) => s.level), [2]);
  l.answer("a", true);
  assert.deepEqual(l.sim.of("metric").filter((m) => m.name === "sleep").map((m) => m.name === "sleep" && m.level), [2]);
  l.advance(500);
  const a1 = l.request("a");
  const wake = fx(l, "wake")[0];
  assert.deepEqual([wake.level, wake.deadline], [2, l.now + 240_000]);
  l.answer("a", true);
  assert.equal(state(l, a1), "granted");
});

Deno.test("maxSleeping at every instant: the least recently used sleeper is stopped, and confirmed, before another falls asleep", () => {
  const l = pool({ a: { share: 300, sleepAfter: 1000 }, b: { share: 300, sleepAfter: 1000 } }, { maxSleeping: 1 });
  warm(l, "a");
  l.advance(500);
  warm(l, "b");
  l.advance(500);
  l.answer("a", true); // a asleep at 1 s
  l.advance(500); // b's sleepAfter: a (least recently used) is stopped first
  assert.deepEqual(fx(l, "stop").map((s) => [s.model, s.reason]), [["a", "maxSleeping 1: b falls asleep"]]);
  assert.equal(fx(l, "sleep", "b").length, 0, "not while a's process still holds its weights");
  l.answer("a", true);
  assert.equal(fx(l, "sleep", "b").length, 1);
});

Deno.test("maxSleeping: an idle model that is the least recently used of all is stopped rather than put to sleep", () => {
  const l = pool({ a: { share: 300, sleepAfter: 2000 }, b: { share: 300, sleepAfter: 1000 } }, { maxSleeping: 1 });
  warm(l, "a");
  warm(l, "b");
  l.advance(1000);
  l.answer("b", true); // b asleep, last used at 0 like a
  l.advance(1000); // a's sleepAfter: b is not older, so a stops instead
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a"]);
  assert.equal(fx(l, "sleep", "a").length, 0);
});

Deno.test("maxSleeping 0: nothing ever sleeps; an idle model is stopped at its sleepAfter, a victim is stopped", () => {
  const l = pool({ a: { share: 600, sleepAfter: 1000 }, b: { share: 600, sleepAfter: 1000 } }, { maxSleeping: 0 });
  warm(l, "a");
  l.request("b");
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a"]);
  l.answer("a", true);
  l.answer("b", true);
  l.release([...l.requests.values()].find((r) => r.model === "b")!.id);
  l.advance(1000);
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a", "b"]);
  assert.equal(fx(l, "sleep").length, 0);
});

// ---- admin: load, sleep, unload ----

Deno.test("admin load: starts a cold model, wakes a sleeping one, is done at once for a ready one", () => {
  const l = pool({ a: { share: 600, sleepAfter: 1000 } });
  const load1 = l.adminOp("load", "a");
  assert.equal(fx(l, "start").length, 1);
  l.answer("a", true);
  assert.ok(l.adminAnswered.has(load1));
  assert.equal(l.sim.inflight(), 0, "a load is never in flight");
  l.advance(1000);
  l.answer("a", true); // asleep
  const load2 = l.adminOp("load", "a");
  assert.equal(fx(l, "wake").length, 1);
  l.answer("a", true);
  assert.ok(l.adminAnswered.has(load2));
  const load3 = l.adminOp("load", "a");
  assert.ok(l.adminAnswered.has(load3));
});

Deno.test("admin load makes room at once, without waiting for the busy model's minLoadedTime (it still drains)", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 }, b: { share: 600 } }, { minLoadedTime: "1h" });
  const a1 = l.request("a");
  l.answer("a", true);
  const load = l.adminOp("load", "b");
  assert.equal(l.sim.status("a"), "draining");
  l.release(a1);
  l.answer("a", true); // asleep
  l.answer("b", true);
  assert.ok(l.adminAnswered.has(load));
});

Deno.test("admin sleep: an idle model falls asleep (done when confirmed); a busy one drains first", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 } });
  warm(l, "a");
  const s1 = l.adminOp("sleep", "a");
  assert.equal(fx(l, "sleep").length, 1);
  assert.ok(!l.adminAnswered.has(s1));
  l.answer("a", true);
  assert.ok(l.adminAnswered.has(s1));
  assert.ok(l.adminAnswered.has(l.adminOp("sleep", "a")), "already asleep: done at once");
  const a1 = l.request("a");
  l.answer("a", true); // woken
  const s2 = l.adminOp("sleep", "a");
  assert.equal(l.sim.status("a"), "draining");
  assert.equal(fx(l, "sleep").length, 1, "not with a request in flight");
  l.release(a1);
  assert.equal(fx(l, "sleep").length, 2);
  l.answer("a", true);
  assert.ok(l.adminAnswered.has(s2));
});

Deno.test("admin sleep: refused with 409 when the model may not sleep, maxSleeping is 0, it is cold or busy", () => {
  const refuse = (l: Ledger, model: string, code: string) => {
    const id = l.adminOp("sleep", model);
    const r = l.sim.rejection(id);
    assert.deepEqual([r?.status, r?.code], [409, code], `${model}: ${JSON.stringify(r)}`);
  };
  const l = pool({ a: { share: 600 }, b: { share: 300, sleepAfter: 60_000 } });
  warm(l, "a");
  refuse(l, "a", "sleep_not_enabled");
  refuse(l, "b", "model_not_loaded");
  l.request("b");
  refuse(l, "b", "model_busy"); // starting
  const none = pool({ a: { share: 600, sleepAfter: 60_000 } }, { maxSleeping: 0 });
  warm(none, "a");
  refuse(none, "a", "sleep_not_enabled");
});

Deno.test("admin sleep within maxSleeping: the least recently used sleeper is stopped first", () => {
  const l = pool({ a: { share: 300, sleepAfter: 1000 }, b: { share: 300, sleepAfter: 60_000 } }, { maxSleeping: 1 });
  warm(l, "a");
  warm(l, "b");
  l.advance(1000);
  l.answer("a", true); // a asleep
  l.advance(10);
  const s1 = l.adminOp("sleep", "b");
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a"]);
  assert.equal(fx(l, "sleep", "b").length, 0);
  l.answer("a", true);
  l.answer("b", true);
  assert.ok(l.adminAnswered.has(s1));
});

Deno.test("admin sleep: the engine stopped before it fell asleep → 503", () => {
  const l = pool({ a: { share: 600, sleepAfter: 60_000 } });
  warm(l, "a");
  const s1 = l.adminOp("sleep", "a");
  l.answer("a", false); // the sleep failed: stopped
  assert.equal(l.sim.rejection(s1)?.status, 503);
  l.answer("a", true);
});

Deno.test("admin unload: one model (ready or sleeping) or all; done once every engine is gone", () => {
  const l = pool({ a: { share: 300, sleepAfter: 1000 }, b: { share: 300 }, c: { share: 300 } });
  warm(l, "a");
  warm(l, "b");
  warm(l, "c");
  l.advance(1000);
  l.answer("a", true); // a asleep
  const one = l.adminOp("unload", "a");
  assert.deepEqual(fx(l, "stop").map((s) => [s.model, s.reason]), [["a", "unload"]]);
  l.answer("a", true);
  assert.ok(l.adminAnswered.has(one));
  assert.ok(l.adminAnswered.has(l.adminOp("unload", "a")), "a cold model: done at once");
  const b1 = l.request("b");
  const all = l.adminOp("unload", null);
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a", "c"], "b drains first");
  l.answer("c", true);
  l.release(b1);
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a", "c", "b"]);
  assert.ok(!l.adminAnswered.has(all));
  l.answer("b", true);
  assert.ok(l.adminAnswered.has(all));
});

// ---- Kubernetes ----

Deno.test("Kubernetes policy: per-model holds whole GPUs (maxGpus), shared holds one slot; sleepers keep their GPUs", () => {
  const k = { backend: "kubernetes" as const, models: { a: { modelName: "org/a", tensorParallelSize: 2 } } };
  const perModel = new Sim({ ...k, layout: "per-model", maxGpus: 2 }).state.policy;
  assert.deepEqual(perModel.gpuIds, ["0", "1"]);
  assert.deepEqual([perModel.models.a.gpus, perModel.models.a.share], [2, 1000]);
  assert.equal(perModel.sleepHoldsGpu, true);
  const shared = new Sim(k).state.policy;
  assert.deepEqual(shared.gpuIds, ["0"]);
  assert.deepEqual([shared.models.a.gpus, shared.models.a.share], [1, 1000]);
  assert.equal(shared.sleepHoldsGpu, true);
  const process = new Sim({ models: { a: { modelName: "org/a" } } }).state.policy;
  assert.deepEqual([process.gpuIds, process.models.a.share, process.sleepHoldsGpu], [["0"], 900, false]);
});

Deno.test("Kubernetes per-model: a sleeping pod still holds its GPU, so evictions stop (never sleep)", () => {
  const k = { backend: "kubernetes" as const, layout: "per-model" as const, maxGpus: 1 };
  const l = pool({ a: { sleepAfter: 1000 }, b: { sleepAfter: 1000 } }, k);
  warm(l, "a");
  l.advance(1000);
  l.answer("a", true); // asleep, holding GPU 0
  const b1 = l.request("b");
  assert.deepEqual(fx(l, "stop").map((s) => [s.model, s.reason]), [["a", "switch to b"]]);
  l.answer("a", true);
  l.answer("b", true);
  assert.equal(state(l, b1), "granted");
  l.release(b1);
  l.request("a"); // b is idle and may sleep, but sleeping frees nothing here: stopped
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a", "b"]);
  assert.equal(fx(l, "sleep", "b").length, 0);
});

Deno.test("Kubernetes per-model, maxGpus 2: two one-GPU models side by side; a two-GPU model evicts both", () => {
  const l = pool({ a: {}, b: { tensorParallelSize: 2 }, c: {} }, {
    backend: "kubernetes",
    layout: "per-model",
    maxGpus: 2,
  });
  warm(l, "a");
  warm(l, "c");
  assert.deepEqual(fx(l, "start").map((s) => [s.model, s.gpus]), [["a", ["0"]], ["c", ["1"]]]);
  const b1 = l.request("b");
  assert.deepEqual(fx(l, "stop").map((s) => s.model).sort(), ["a", "c"]);
  l.answer("a", true);
  assert.equal(fx(l, "start", "b").length, 0, "c still holds GPU 1");
  l.answer("c", true);
  assert.deepEqual(fx(l, "start", "b")[0].gpus, ["0", "1"]);
  l.answer("b", true);
  assert.equal(state(l, b1), "granted");
});

Deno.test("Kubernetes shared layout: one engine at a time", () => {
  const l = pool({ a: {}, b: { tensorParallelSize: 2 } }, { backend: "kubernetes" });
  warm(l, "a");
  const b1 = l.request("b");
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["a"]);
  l.answer("a", true);
  assert.deepEqual(fx(l, "start", "b")[0].gpus, ["0"]);
  l.answer("b", true);
  assert.equal(state(l, b1), "granted");
});

Deno.test("Kubernetes: engines read back without GPU ids are placed on the first GPUs with room", () => {
  const sim = new Sim({
    backend: "kubernetes",
    layout: "per-model",
    maxGpus: 2,
    models: { a: { modelName: "org/a" }, b: { modelName: "org/b" } },
  }, null);
  sim.send({ type: "observed", op: 0, engines: [{ model: "a", phase: "ready" }, { model: "b", phase: "sleeping" }] });
  assert.deepEqual([sim.state.engines.a.gpus, sim.state.engines.b.gpus], [["0"], ["1"]]);
  assert.deepEqual(gpuUsageOf(sim.state), { "0": { awake: 1000, models: ["a"] }, "1": { awake: 1000, models: ["b"] } });
});

Deno.test("maxSleeping: making room to wake a sleeper never stops that very sleeper; only needed victims go", () => {
  // The demo's shape: two 1-GPU models share GPU 0, a tensor-parallel one needs most of both GPUs.
  const l = pool(
    {
      p: { share: 600, sleepAfter: 60_000 },
      e: { share: 150, sleepAfter: 60_000 },
      big: {
        share: 800,
        sleepAfter: 60_000,
        tensorParallelSize: 2,
      },
    },
    { maxSleeping: 1, process: { gpus: ["0", "1"] } },
  );
  warm(l, "p");
  l.advance(10);
  warm(l, "e"); // packed beside p on GPU 0
  l.advance(10);
  const bigId = l.request("big"); // p alone makes enough room on GPU 0: e, older or not, stays
  assert.deepEqual(fx(l, "sleep").map((s) => s.model), ["p"]);
  l.answer("p", true);
  l.answer("big", true);
  assert.equal(l.requests.get(bigId)!.state, "granted");
  l.release(bigId);
  l.advance(10);
  // p wants GPU 0 back: big alone makes room (e stays). The one sleeper slot is p's own, and p is about to wake:
  // big is stopped, never p.
  const pId = l.request("p");
  assert.deepEqual(fx(l, "stop").map((s) => s.model), ["big"]);
  l.answer("big", true);
  assert.equal(fx(l, "wake", "p").length, 1, "p wakes instead of a cold start");
  l.answer("p", true);
  assert.equal(l.requests.get(pId)!.state, "granted");
  assert.equal(fx(l, "start", "p").length, 1);
  assert.equal(fx(l, "stop", "e").length + fx(l, "sleep", "e").length, 0, "e was never needed");
});
