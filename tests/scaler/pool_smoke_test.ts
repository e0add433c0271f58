import assert from "node:assert/strict";
import { Sim } from "./sim.ts";

const models = {
  a: { modelName: "org/a", gpuMemoryUtilization: 0.6, sleepAfter: "1m" },
  b: { modelName: "org/b", gpuMemoryUtilization: 0.6, sleepAfter: "1m" },
  c: { modelName: "org/c", gpuMemoryUtilization: 0.3 },
};

Deno.test("pool smoke: a then b on one GPU: a sleeps, b starts, then a wakes after b sleeps", () => {
  const sim = new Sim({ enableModelSwitch: true, models, idleTimeout: "10m" });
  sim.req("r1", "a");
  assert.equal(sim.of("start").length, 1);
  sim.started("a");
  assert.deepEqual(sim.granted(), ["r1"]);
  sim.release("r1");
  sim.req("r2", "b");
  const sleeps = sim.of("sleep");
  assert.equal(sleeps.length, 1, JSON.stringify(sim.log));
  assert.equal(sleeps[0].model, "a");
  assert.equal(sim.of("start").length, 1, "b waits until a is asleep");
  sim.slept("a");
  assert.equal(sim.of("start").length, 2);
  assert.equal(sim.of("start")[1].model, "b");
  sim.started("b");
  assert.deepEqual(sim.granted(), ["r1", "r2"]);
  sim.release("r2");
  sim.req("r3", "a");
  assert.equal(sim.of("sleep").at(-1)!.model, "b");
  sim.slept("b");
  const wakes = sim.of("wake");
  assert.equal(wakes.length, 1);
  assert.equal(wakes[0].model, "a");
  sim.woke("a");
  assert.deepEqual(sim.granted(), ["r1", "r2", "r3"]);
  assert.equal(sim.of("metric").filter((m) => m.name === "switch").length, 2);
  // c (0.3) fits beside a (0.6): started without evicting anything.
  sim.req("r4", "c");
  assert.equal(sim.of("start").at(-1)!.model, "c");
  assert.deepEqual(sim.of("start").at(-1)!.gpus, ["0"]);
});

Deno.test("pool smoke: idle sleepAfter then idleTimeout; busy model keeps its GPU for minLoadedTime", () => {
  const sim = new Sim({ enableModelSwitch: true, models, idleTimeout: "10m", minLoadedTime: "30s" });
  sim.req("r1", "a");
  sim.started("a");
  sim.advance(1000);
  sim.req("r2", "b");
  assert.equal(sim.of("sleep").length, 0, "a is busy (r1 in flight)");
  sim.advance(29_000);
  assert.equal(sim.status("a"), "draining");
  sim.req("r3", "a");
  assert.equal(sim.granted().includes("r3"), false, "held while a drains");
  sim.release("r1");
  assert.equal(sim.of("sleep").length, 1);
  sim.slept("a");
  sim.started("b");
  assert.ok(sim.granted().includes("r2"));
  sim.release("r2");
  // r3 waits for a: b is idle now → b sleeps, a wakes.
  assert.equal(sim.of("sleep").at(-1)!.model, "b");
  sim.slept("b");
  sim.woke("a");
  assert.ok(sim.granted().includes("r3"));
  sim.release("r3");
  sim.advance(60_000);
  assert.equal(sim.status("a"), "sleeping");
  sim.slept("a");
  sim.advance(9 * 60_000);
  assert.equal(sim.status("a"), "stopping");
});
