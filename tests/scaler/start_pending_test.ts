// `startPending`: a start the world has no room for (Kubernetes: an unschedulable pod) makes room by rule 3.
import assert from "node:assert/strict";
import { Sim } from "./sim.ts";

const UNSCHEDULABLE = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.";

const models = {
  a: { modelName: "org/a" },
  b: { modelName: "org/b" },
  c: { modelName: "org/c" },
  big: { modelName: "org/big", gpus: 2 },
  cpu: { modelName: "org/cpu", gpus: 0 },
};

/** Per-model layout on Kubernetes with `maxGpus` whole GPUs; a and b ready and idle, a used first (LRU). */
function twoReady(config: Record<string, unknown> = {}): Sim {
  const sim = new Sim({
    backend: "kubernetes",
    layout: "per-model",
    maxGpus: 4,
    enableModelSwitch: true,
    startTimeout: "10s",
    holdTimeout: "1m",
    models,
    ...config,
  });
  for (const [i, model] of ["a", "b"].entries()) {
    sim.now = i * 1000;
    sim.req(`warm-${model}`, model);
    sim.started(model);
    sim.release(`warm-${model}`);
  }
  sim.now = 5000;
  sim.log = [];
  return sim;
}

const pending = (sim: Sim, model: string, reason = UNSCHEDULABLE) =>
  sim.send({ type: "startPending", model, op: sim.op(model), reason });

Deno.test("startPending: the least recently used idle engine stops; the start goes on and serves once room is made", () => {
  const sim = twoReady();
  const startFx = sim.req("r1", "c");
  assert.equal(sim.of("start", startFx).length, 1, "the pool's own count says c fits (4 virtual GPUs)");
  const fx = pending(sim, "c");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["a"], "a, used least recently, makes room");
  assert.deepEqual(sim.of("metric", fx).filter((m) => m.name === "eviction"), [
    { type: "metric", name: "eviction", model: "a", action: "stop" },
  ]);
  assert.equal(sim.status("c"), "starting");
  assert.equal(sim.status("b"), "ready");
  // Reported again while a is still leaving: nothing more is evicted.
  assert.equal(sim.of("stop", pending(sim, "c")).length, 0);
  sim.stopped("a");
  assert.equal(sim.of("stop").length, 1, "a stop is not a reason to evict more");
  const done = sim.started("c");
  assert.deepEqual(sim.granted(done), ["r1"]);
  assert.equal(sim.status("b"), "ready");
});

Deno.test("startPending: still unschedulable after the victim is gone → the next least recently used goes", () => {
  const sim = twoReady();
  sim.req("r1", "c");
  pending(sim, "c");
  sim.stopped("a");
  const fx = pending(sim, "c");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["b"]);
  sim.stopped("b");
  // Nothing left to evict: the start waits for its startTimeout.
  assert.equal(sim.of("stop", pending(sim, "c")).length, 0);
});

Deno.test("startPending: a model with requests in flight or held is never evicted", () => {
  const sim = twoReady();
  sim.req("busy-a", "a"); // granted at once: in flight on a
  sim.req("r1", "c");
  const fx = pending(sim, "c");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["b"], "a is busy: b goes though used more recently");
  sim.stopped("b");
  assert.equal(sim.of("stop", pending(sim, "c")).length, 0, "a still has a request in flight");
  sim.release("busy-a");
  assert.deepEqual(sim.of("stop", pending(sim, "c")).map((s) => s.model), ["a"], "once idle, a may go");
});

Deno.test("startPending: a model that needs 2 GPUs evicts enough 1-GPU engines at once", () => {
  const sim = twoReady();
  sim.req("r1", "big");
  const fx = pending(sim, "big");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model).sort(), ["a", "b"]);
});

Deno.test("startPending: a sleeping engine holding its pod is a victim; one woken for a held request is not", () => {
  const sim = twoReady({ sleepAfter: "1s", idleTimeout: "1h" });
  sim.advance(1000);
  sim.slept("a");
  sim.slept("b");
  assert.equal(sim.status("a"), "sleeping");
  sim.req("r1", "c");
  const fx = pending(sim, "c");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["a"]);
  sim.stopped("a");
  sim.req("for-b", "b"); // b wakes for it: not a victim
  assert.equal(sim.status("b"), "waking");
  assert.equal(sim.of("stop", pending(sim, "c")).length, 0);
});

Deno.test("startPending: still unschedulable at startTimeout → 503 carrying the scheduler's reason, stopped", () => {
  const sim = twoReady({ startTimeout: "2s" });
  sim.req("busy-a", "a");
  sim.req("busy-b", "b");
  sim.req("r1", "c");
  assert.equal(sim.of("stop", pending(sim, "c")).length, 0, "no idle victim");
  const fx = sim.advance(2000);
  const rejection = sim.rejection("r1", fx);
  assert.equal(rejection?.status, 503);
  assert.equal(rejection?.code, "model_unavailable");
  assert.match(
    rejection!.message,
    /not ready within startTimeout 2s: 0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu\./,
  );
  assert.equal(rejection!.detail, UNSCHEDULABLE, "the part clients may be told");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["c"], "its Deployment goes back to 0");
  assert.match(sim.state.errors.c.reason, /Insufficient nvidia\.com\/gpu/);
});

Deno.test("startPending: a stale report (an older op, or a ready engine) changes nothing", () => {
  const sim = twoReady();
  sim.req("r1", "c");
  const op = sim.op("c");
  assert.deepEqual(sim.send({ type: "startPending", model: "c", op: op - 1, reason: UNSCHEDULABLE }), []);
  sim.started("c");
  assert.deepEqual(sim.send({ type: "startPending", model: "c", op, reason: UNSCHEDULABLE }), []);
  assert.equal(sim.of("stop").length, 0);
});

Deno.test("startPending: a CPU model short of CPU may evict any idle engine, one at a time", () => {
  const sim = twoReady();
  sim.req("r1", "cpu");
  const fx = pending(sim, "cpu", "0/1 nodes are available: 1 Insufficient cpu.");
  assert.deepEqual(sim.of("stop", fx).map((s) => s.model), ["a"]);
});
