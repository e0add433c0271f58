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
