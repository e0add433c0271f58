// Reading a Kubernetes pool back: an engine on its way out (a terminating pod) still holds a real GPU until it is
// gone, so nothing is started on the room it leaves before then.
import assert from "node:assert/strict";
import { Sim } from "./sim.ts";

Deno.test("observed terminating (per-model layout): its GPU is the free one, and a newcomer waits until it is gone", () => {
  const sim = new Sim({
    backend: "kubernetes",
    layout: "per-model",
    maxGpus: 2,
    enableModelSwitch: true,
    models: { a: { modelName: "org/a" }, b: { modelName: "org/b" }, c: { modelName: "org/c" } },
  }, [
    { model: "a", phase: "terminating", reason: "vllm-a-x terminating" },
    { model: "b", phase: "ready" },
  ]);
  assert.deepEqual(sim.of("stop").map((s) => s.model), ["a"]);
  assert.notDeepEqual(sim.state.engines.a.gpus, sim.state.engines.b.gpus, "a keeps the GPU b does not use");
  const fx = sim.req("r1", "c");
  assert.equal(sim.of("start", fx).length, 0, "c waits: a's pod still holds its GPU");
  assert.equal(sim.of("stop", fx).length, 0, "b (serving) is not evicted for room a is about to free");
  const done = sim.stopped("a");
  assert.deepEqual(sim.of("start", done).map((s) => s.model), ["c"]);
});
