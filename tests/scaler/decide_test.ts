import assert from "node:assert/strict";
import { modelStatusOf } from "../../lib/scaler/decide.ts";
import { Sim } from "./sim.ts";

const models = { a: { modelName: "org/a" }, b: { modelName: "org/b" }, c: { modelName: "org/c" } };

/** A sim with model a ready (started at t=0), nothing in flight. */
function readyA(config: Record<string, unknown> = {}): Sim {
  const sim = new Sim({ enableModelSwitch: true, models, ...config });
  sim.req("warm", "a");
  sim.started();
  sim.release("warm");
  sim.log = [];
  return sim;
}

// ---- rule 1: hold, don't fail ----

Deno.test("decide: a cold request is held and starts its model once", () => {
  const sim = new Sim({ models });
  const fx = sim.req("r1", "a");
  assert.deepEqual(sim.granted(fx), []);
  assert.equal(sim.of("start", fx).length, 1);
  assert.equal(sim.of("start", fx)[0].model, "a");
  assert.equal(sim.state.lifecycle, "starting");
  assert.equal(sim.of("transition", fx)[0].to, "starting");
});

Deno.test("decide: 1,000 requests during a cold start → one start, all granted at once", () => {
  const sim = new Sim({ models, maxHeldRequests: 1000 });
  for (let i = 0; i < 1000; i++) sim.req(`r${i}`, "a");
  assert.equal(sim.of("start").length, 1);
  assert.equal(sim.state.held.length, 1000);
  sim.now = 42_000;
  const fx = sim.started();
  const grants = sim.of("grant", fx);
  assert.equal(grants.length, 1);
  assert.equal(grants[0].ids.length, 1000);
  assert.equal(sim.inflight(), 1000);
  assert.equal(sim.state.lifecycle, "ready");
  const cold = sim.of("metric", fx)[0];
  assert.equal(cold.name, "coldStart");
  assert.equal(cold.ms, 42_000);
});

Deno.test("decide: beyond maxHeldRequests → 429 hold_queue_full with Retry-After", () => {
  const sim = new Sim({ models, maxHeldRequests: 2 });
  sim.req("r1", "a");
  sim.req("r2", "a");
  const fx = sim.req("r3", "a");
  const rej = sim.rejection("r3", fx);
  assert.ok(rej);
  assert.equal(rej.status, 429);
  assert.equal(rej.code, "hold_queue_full");
  assert.ok(rej.retryAfter! > 0);
  assert.equal(sim.state.held.length, 2);
  // Admin loads do not count against the limit.
  sim.send({ type: "load", id: "L", model: "b" });
  assert.equal(sim.rejection("L"), undefined);
});

Deno.test("decide: held longer than holdTimeout → 504 hold_timeout; per-model override", () => {
  const sim = new Sim({ models: { ...models, b: { modelName: "org/b", holdTimeout: "3s" } }, holdTimeout: "10s" });
  sim.req("r1", "a");
  sim.advance(1000);
  sim.req("r2", "b");
  sim.advance(2999);
  assert.equal(sim.of("reject").length, 0);
  const fx = sim.advance(1);
  const rej = sim.rejection("r2", fx);
  assert.ok(rej);
  assert.equal(rej.status, 504);
  assert.equal(rej.code, "hold_timeout");
  assert.match(rej.message, /3s/);
  sim.advance(6000 - 1);
  assert.equal(sim.rejection("r1"), undefined);
  const fx2 = sim.advance(1);
  assert.equal(sim.rejection("r1", fx2)?.status, 504);
  assert.equal(sim.state.held.length, 0);
  // The start still finishes; the engine then idles out normally.
  sim.started();
  assert.equal(sim.state.lifecycle, "ready");
});

Deno.test("decide: requests before the world is read back are held, then served", () => {
  const sim = new Sim({ models }, null);
  const fx = sim.req("r1", "a");
  assert.equal(sim.of("start", fx).length, 0);
  const fx2 = sim.send({ type: "observed", op: 0, engine: { phase: "absent", model: null } });
  assert.equal(sim.of("start", fx2).length, 1);
});

// ---- rule 2: warm path ----

Deno.test("decide: warm path grants at once and counts the request in flight", () => {
  const sim = readyA();
  const fx = sim.req("r1", "a");
  assert.deepEqual(sim.granted(fx), ["r1"]);
  assert.equal(sim.inflight(), 1);
  assert.equal(sim.of("start", fx).length + sim.of("stop", fx).length, 0);
  sim.release("r1");
  sim.release("r1"); // idempotent
  assert.equal(sim.inflight(), 0);
});

// ---- rule 3: stream-aware idle ----

Deno.test("decide: a timer that fires a little early is armed again; stale ticks change nothing", () => {
  const sim = readyA({ idleTimeout: "60s" });
  assert.equal(sim.state.timerAt, 60_000);
  sim.now = 59_999;
  const early = sim.send({ type: "tick" });
  assert.deepEqual(sim.of("schedule", early), [{ type: "schedule", at: 60_000 }]);
  assert.equal(sim.of("stop", early).length, 0);
  sim.now = 60_000;
  assert.equal(sim.of("stop", sim.send({ type: "tick" })).length, 1);
  assert.equal(sim.of("stop", sim.send({ type: "tick" })).length, 0, "a second, stale tick does nothing");
});

Deno.test("decide: idle timer runs from the end of the last in-flight request", () => {
  const sim = readyA({ idleTimeout: "60s" });
  sim.req("stream", "a");
  sim.advance(5 * 60_000); // a 5-minute stream, longer than idleTimeout
  assert.equal(sim.of("stop").length, 0);
  sim.release("stream");
  sim.advance(59_999);
  assert.equal(sim.of("stop").length, 0);
  const fx = sim.advance(1);
  const stop = sim.of("stop", fx);
  assert.equal(stop.length, 1);
  assert.equal(stop[0].reason, "idle");
  assert.equal(stop[0].force, false);
  assert.equal(sim.state.lifecycle, "stopping");
  sim.stopped();
  assert.equal(sim.state.lifecycle, "idle");
  assert.equal(sim.state.active, null);
});

Deno.test("decide: idle from ready when nothing ran; per-model idleTimeout", () => {
  const sim = new Sim({ models: { a: { modelName: "org/a", idleTimeout: "10s" } }, idleTimeout: "1h" });
  sim.send({ type: "load", id: "L", model: "a" });
  sim.advance(5000);
  sim.started();
  assert.deepEqual(sim.of("done").flatMap((d) => d.ids), ["L"]);
  sim.advance(9999);
  assert.equal(sim.of("stop").length, 0);
  sim.advance(1);
  assert.equal(sim.of("stop").length, 1);
});

Deno.test("decide: idle timer and a request at the same instant — request first: served, no stop", () => {
  const sim = readyA({ idleTimeout: "60s" });
  sim.now = 60_000; // the idle deadline, timer not yet delivered
  const fx = sim.req("r1", "a");
  assert.deepEqual(sim.granted(fx), ["r1"]);
  const tick = sim.send({ type: "tick" });
  assert.equal(sim.of("stop", tick).length, 0);
  assert.equal(sim.state.lifecycle, "ready");
});

Deno.test("decide: idle timer and a request at the same instant — timer first: held, restarted after stop", () => {
  const sim = readyA({ idleTimeout: "60s" });
  sim.advance(60_000);
  assert.equal(sim.state.lifecycle, "stopping");
  const fx = sim.req("r1", "a");
  assert.deepEqual(sim.granted(fx), []);
  assert.equal(sim.of("start", fx).length, 0, "no start while the old engine is stopping");
  const fx2 = sim.stopped();
  assert.equal(sim.of("start", fx2).length, 1);
  const fx3 = sim.started();
  assert.deepEqual(sim.granted(fx3), ["r1"]);
});

Deno.test("decide: a starting engine is never stopped by the idle timer while requests wait", () => {
  const sim = new Sim({ models, idleTimeout: "10s", startTimeout: "15m", holdTimeout: "15m" });
  sim.req("r1", "a");
  sim.advance(10 * 60_000); // a Pending pod waiting for a GPU node
  assert.equal(sim.of("stop").length, 0);
  assert.equal(sim.state.lifecycle, "starting");
  sim.started();
  assert.deepEqual(sim.granted(), ["r1"]);
});

Deno.test("decide: every held request left during a start → the start finishes, idle runs from ready", () => {
  const sim = new Sim({ models, idleTimeout: "10s" });
  sim.req("r1", "a");
  sim.advance(1000);
  sim.send({ type: "cancel", id: "r1" });
  assert.equal(sim.of("stop").length, 0);
  sim.advance(20_000);
  assert.equal(sim.of("stop").length, 0, "the idle timer does not run while starting");
  sim.started();
  sim.advance(9999);
  assert.equal(sim.of("stop").length, 0);
  sim.advance(1);
  assert.equal(sim.of("stop")[0].reason, "idle");
});

// ---- rule 4: start failure ----

Deno.test("decide: startFailed → 503 model_unavailable with the reason, stop, status failed until next success", () => {
  const sim = new Sim({ models });
  sim.req("r1", "a");
  sim.req("r2", "a");
  const fx = sim.send({ type: "startFailed", op: sim.state.op, reason: "CrashLoopBackOff: OOM" });
  const rej = sim.rejection("r1", fx)!;
  assert.equal(rej.status, 503);
  assert.equal(rej.code, "model_unavailable");
  assert.match(rej.message, /CrashLoopBackOff: OOM/);
  assert.equal(rej.retryAfter, 30);
  assert.deepEqual(rej.ids, ["r1", "r2"]);
  assert.equal(sim.of("stop", fx).length, 1);
  assert.equal(modelStatusOf(sim.state, "a"), "failed");
  sim.stopped();
  assert.equal(sim.state.lifecycle, "idle");
  assert.equal(modelStatusOf(sim.state, "a"), "failed");
  assert.equal(sim.state.lastError?.model, "a");
  sim.req("r3", "a");
  assert.equal(modelStatusOf(sim.state, "a"), "starting");
  sim.started();
  assert.equal(modelStatusOf(sim.state, "a"), "ready");
  assert.deepEqual(sim.granted(), ["r3"]);
});

Deno.test("decide: no started before startTimeout → 503 and stop; per-model override", () => {
  const sim = new Sim({ models: { a: { modelName: "org/a", startTimeout: "20s" } }, startTimeout: "15m" });
  sim.req("r1", "a");
  sim.advance(19_999);
  assert.equal(sim.of("reject").length, 0);
  const fx = sim.advance(1);
  const rej = sim.rejection("r1", fx)!;
  assert.equal(rej.status, 503);
  assert.match(rej.message, /startTimeout 20s/);
  assert.equal(sim.of("stop", fx).length, 1);
  // The late `started` of the abandoned start is stale and ignored.
  const late = sim.send({ type: "started", op: sim.state.op - 1 });
  assert.equal(late.length, 0);
  assert.equal(sim.state.lifecycle, "stopping");
});

Deno.test("decide: a failed start rejects only its model; other held requests are served next", () => {
  const sim = new Sim({ enableModelSwitch: true, models });
  sim.req("a1", "a");
  sim.req("b1", "b");
  assert.equal(sim.of("start").length, 1);
  sim.send({ type: "startFailed", op: sim.state.op, reason: "image pull failed" });
  assert.equal(sim.rejection("a1")?.status, 503);
  assert.equal(sim.rejection("b1"), undefined);
  const fx = sim.stopped();
  assert.equal(sim.of("start", fx)[0]?.model, "b");
  sim.started();
  assert.deepEqual(sim.granted(), ["b1"]);
});

// ---- rule 5: switching ----

Deno.test("decide: a switch waits for the active model to go quiet, drains, stops, starts the next", () => {
  const sim = readyA({ minLoadedTime: "30s" });
  sim.req("a1", "a");
  sim.advance(1000);
  sim.req("b1", "b");
  assert.equal(sim.state.lifecycle, "ready", "a is busy: keep serving it");
  sim.req("a2", "a");
  assert.ok(sim.granted().includes("a2"), "requests for the active model keep being served");
  sim.release("a1");
  sim.release("a2");
  sim.advance(1999);
  assert.equal(sim.state.lifecycle, "ready");
  const fx = sim.advance(1);
  const stop = sim.of("stop", fx);
  assert.equal(stop.length, 1);
  assert.equal(stop[0].reason, "switch to b");
  assert.equal(stop[0].force, false);
  assert.equal(sim.state.lifecycle, "switching");
  assert.equal(sim.state.next, "b");
  sim.advance(3000);
  const fx2 = sim.stopped();
  assert.equal(sim.of("start", fx2)[0].model, "b");
  sim.advance(5000);
  const fx3 = sim.started();
  assert.deepEqual(sim.granted(fx3), ["b1"]);
  const sw = sim.of("metric", fx3).find((m) => m.name === "switch");
  assert.ok(sw && sw.name === "switch");
  assert.equal(sw.from, "a");
  assert.equal(sw.to, "b");
  assert.equal(sw.ms, 8000);
});

Deno.test("decide: a busy active model switches at minLoadedTime; new requests for it are held while draining", () => {
  const sim = readyA({ minLoadedTime: "30s", drainTimeout: "2m" });
  sim.req("a1", "a");
  sim.req("b1", "b");
  sim.advance(29_999);
  assert.equal(sim.state.lifecycle, "ready");
  sim.advance(1);
  assert.equal(sim.state.lifecycle, "draining");
  const fx = sim.req("a2", "a");
  assert.deepEqual(sim.granted(fx), [], "held while draining");
  sim.advance(10_000);
  const fx2 = sim.release("a1");
  assert.equal(sim.of("stop", fx2).length, 1);
  sim.stopped();
  sim.started();
  assert.ok(sim.granted().includes("b1"));
  assert.equal(sim.state.held.map((h) => h.id).join(), "a2");
});

Deno.test("decide: a drain is bounded by drainTimeout; force strategy kills", () => {
  const sim = readyA({ minLoadedTime: "1s", drainTimeout: "20s", switchStrategy: "force" });
  sim.req("a1", "a"); // never finishes
  sim.req("b1", "b");
  sim.advance(1000);
  assert.equal(sim.state.lifecycle, "draining");
  sim.advance(19_999);
  assert.equal(sim.of("stop").length, 0);
  const fx = sim.advance(1);
  const stop = sim.of("stop", fx)[0];
  assert.match(stop.reason, /switch to b \(drainTimeout 20s reached, 1 in flight\)/);
  assert.equal(stop.force, true);
});

Deno.test("decide: the next model is the one whose oldest held request is oldest", () => {
  const sim = readyA({ minLoadedTime: "0s" });
  sim.req("a1", "a");
  sim.advance(10);
  sim.req("c1", "c");
  sim.advance(10);
  sim.req("b1", "b");
  sim.req("b2", "b");
  sim.release("a1");
  assert.equal(sim.of("stop").at(-1)?.reason, "switch to c");
  sim.stopped();
  sim.started();
  assert.deepEqual(sim.granted().filter((id) => id !== "a1"), ["c1"]);
  // c is quiet (nothing in flight) and b waits: switch to b; both b requests go at once.
  sim.release("c1");
  sim.stopped();
  const fx = sim.started();
  assert.deepEqual(sim.granted(fx), ["b1", "b2"]);
});

Deno.test("decide: a drain for a switch whose requests all left is called off", () => {
  const sim = readyA({ minLoadedTime: "1s" });
  sim.req("a1", "a");
  sim.req("b1", "b");
  sim.advance(1000);
  assert.equal(sim.state.lifecycle, "draining");
  sim.req("a2", "a");
  const fx = sim.send({ type: "cancel", id: "b1" });
  assert.equal(sim.state.lifecycle, "ready");
  assert.deepEqual(sim.granted(fx), ["a2"]);
  assert.equal(sim.of("stop").length, 0);
});

Deno.test("decide: two different models requested at once while idle → start the first, switch after", () => {
  const sim = new Sim({ enableModelSwitch: true, models, minLoadedTime: "30s" });
  sim.req("a1", "a");
  sim.req("b1", "b");
  assert.deepEqual(sim.of("start").map((s) => s.model), ["a"]);
  sim.advance(5000);
  sim.started();
  assert.deepEqual(sim.granted(), ["a1"]);
  sim.advance(500);
  sim.release("a1");
  sim.advance(2000);
  assert.equal(sim.state.lifecycle, "switching");
  sim.stopped();
  assert.deepEqual(sim.of("start").map((s) => s.model), ["a", "b"]);
  sim.started();
  assert.deepEqual(sim.granted(), ["a1", "b1"]);
});

Deno.test("decide: a switch requested during a cold start — the start finishes when its requests still wait", () => {
  const sim = new Sim({ enableModelSwitch: true, models });
  sim.req("a1", "a");
  sim.advance(100);
  sim.req("b1", "b");
  assert.equal(sim.of("stop").length, 0);
  sim.started();
  assert.deepEqual(sim.granted(), ["a1"]);
  assert.equal(sim.state.next, null);
});

Deno.test("decide: a switch requested during a cold start — nothing waits for it any more: abandon, start the other", () => {
  const sim = new Sim({ enableModelSwitch: true, models });
  sim.req("a1", "a");
  sim.advance(100);
  sim.send({ type: "cancel", id: "a1" });
  const fx = sim.req("b1", "b");
  const stop = sim.of("stop", fx);
  assert.equal(stop.length, 1);
  assert.equal(stop[0].reason, "switch to b");
  assert.equal(sim.state.lifecycle, "switching");
  assert.equal(sim.send({ type: "started", op: sim.state.op - 1 }).length, 0, "stale started ignored");
  const fx2 = sim.stopped();
  assert.equal(sim.of("start", fx2)[0].model, "b");
  sim.started();
  assert.deepEqual(sim.granted(), ["b1"]);
});

Deno.test("decide: stop failure mid-switch → one retry, then 503 for the waiting model, others wait, state read back", () => {
  const sim = readyA({ minLoadedTime: "0s" });
  sim.req("b1", "b");
  sim.advance(10);
  sim.req("c1", "c");
  assert.equal(sim.state.lifecycle, "switching");
  const retry = sim.send({ type: "stopFailed", op: sim.state.op, reason: "API 500" });
  assert.equal(sim.of("stop", retry).length, 1, "retried once");
  assert.equal(sim.of("reject", retry).length, 0);
  const fx = sim.send({ type: "stopFailed", op: sim.state.op, reason: "API 500" });
  assert.equal(sim.rejection("b1", fx)?.status, 503);
  assert.match(sim.rejection("b1", fx)!.message, /did not stop/);
  assert.equal(sim.rejection("c1", fx), undefined);
  const observe = sim.of("observe", fx);
  assert.equal(observe.length, 1);
  assert.equal(sim.state.observed, false);
  // The world says a is still serving: continue from there and switch to c.
  const fx2 = sim.send({ type: "observed", op: observe[0].op, engine: { phase: "ready", model: "a" } });
  assert.equal(sim.of("stop", fx2)[0]?.reason, "switch to c");
  sim.stopped();
  sim.started();
  assert.deepEqual(sim.granted(), ["c1"]);
});

Deno.test("decide: start failure mid-switch → 503 for that model only; the next waiting model starts", () => {
  const sim = readyA({ minLoadedTime: "0s" });
  sim.req("b1", "b");
  sim.advance(10);
  sim.req("c1", "c");
  sim.stopped();
  assert.equal(sim.of("start").at(-1)?.model, "b");
  sim.send({ type: "startFailed", op: sim.state.op, reason: "crash" });
  assert.equal(sim.rejection("b1")?.status, 503);
  assert.equal(sim.state.lifecycle, "stopping");
  sim.stopped();
  assert.equal(sim.of("start").at(-1)?.model, "c");
  sim.started();
  assert.deepEqual(sim.granted(), ["c1"]);
});

/**
 * Two clients alternating between two models for 60 s of fake time, 200
 * requests. Starts take 5 s, stops 1 s, requests 100 ms. Every request must be
 * served by its model and the switches must stay within 60/30 + 1.
 */
function alternate(
  mode: "open" | "sequential",
): { switches: number; served: number; rejected: number; sent: number } {
  const sim = new Sim({ enableModelSwitch: true, models, minLoadedTime: "30s", idleTimeout: "5m", holdTimeout: "5m" });
  type Action = { at: number; run: () => void };
  const actions: Action[] = [];
  const at = (t: number, run: () => void) => actions.push({ at: t, run });
  const modelOf = new Map<string, string>();
  let served = 0;
  let sent = 0;
  const send = (id: string, model: string) => {
    modelOf.set(id, model);
    sent++;
    react(sim.req(id, model));
  };
  const next = (client: string) => {
    if (sent >= 200 || sim.now > 60_000) return;
    const n = sent;
    send(`${client}${n}`, client);
  };
  const react = (fx: ReturnType<Sim["send"]>) => {
    for (const e of fx) {
      if (e.type === "grant") {
        for (const id of e.ids) {
          assert.equal(modelOf.get(id), e.model);
          served++;
          at(sim.now + 100, () => {
            react(sim.release(id));
            if (mode === "sequential") at(sim.now + 50, () => next(modelOf.get(id)!));
          });
        }
      }
      if (e.type === "start") at(sim.now + 5000, () => react(sim.send({ type: "started", op: e.op })));
      if (e.type === "stop") at(sim.now + 1000, () => react(sim.send({ type: "stopped", op: e.op })));
    }
  };
  if (mode === "open") {
    for (let i = 0; i < 200; i++) at(i * 300, () => send(`r${i}`, i % 2 ? "b" : "a"));
  } else {
    at(0, () => next("a"));
    at(0, () => next("b"));
  }
  for (let guard = 0; guard < 100_000; guard++) {
    if (!actions.length) {
      // Nothing scheduled by the clients: let the scaler's own timer run (switch, idle).
      if (sim.state.timerAt === null) break;
      react(sim.advance(sim.state.timerAt - sim.now));
      continue;
    }
    actions.sort((x, y) => x.at - y.at);
    const action = actions.shift()!;
    react(sim.advance(action.at - sim.now));
    action.run();
  }
  const switches = sim.of("metric").filter((m) => m.name === "switch").length;
  assert.equal(sim.state.lifecycle, "idle", "everything ends idle");
  return { switches, served, rejected: sim.of("reject").length, sent };
}

Deno.test("decide: two clients alternating between two models (open loop) do not switch per request", () => {
  const { switches, served, rejected } = alternate("open");
  assert.equal(rejected, 0);
  assert.equal(served, 200);
  assert.ok(switches <= 3, `switches: ${switches}`);
  assert.ok(switches >= 1);
  console.log(`open loop: 200 requests, ${switches} switches`);
});

Deno.test("decide: two sequential clients alternating between two models do not switch per request", () => {
  const { switches, served, rejected, sent } = alternate("sequential");
  assert.equal(rejected, 0);
  assert.equal(served, sent);
  assert.ok(served >= 100, `served ${served}`);
  assert.ok(switches <= 3, `switches: ${switches}`);
});

// ---- rule 6: admin ----

Deno.test("decide: unload drains in-flight requests, then stops; requests held meanwhile restart it", () => {
  const sim = readyA();
  sim.req("a1", "a");
  sim.send({ type: "unload", id: "U" });
  assert.equal(sim.state.lifecycle, "draining");
  sim.req("a2", "a");
  assert.deepEqual(sim.granted(), ["a1"]);
  const fx = sim.release("a1");
  assert.equal(sim.of("stop", fx)[0].reason, "unload");
  assert.equal(sim.state.lifecycle, "stopping");
  const fx2 = sim.stopped();
  assert.deepEqual(sim.of("done", fx2).flatMap((d) => d.ids), ["U"]);
  assert.equal(sim.of("start", fx2).length, 1, "a2 still waits: started again");
});

Deno.test("decide: unload when idle is done at once; load from idle starts and is done when ready", () => {
  const sim = new Sim({ models });
  const fx = sim.send({ type: "unload", id: "U" });
  assert.deepEqual(sim.of("done", fx)[0].ids, ["U"]);
  sim.send({ type: "load", id: "L", model: "b" });
  assert.equal(sim.of("start").at(-1)?.model, "b");
  const fx2 = sim.started();
  assert.deepEqual(sim.of("done", fx2)[0].ids, ["L"]);
  assert.equal(sim.inflight(), 0, "a load is never in flight");
  const fx3 = sim.send({ type: "load", id: "L2", model: "b" });
  assert.deepEqual(sim.of("done", fx3)[0].ids, ["L2"]);
});

Deno.test("decide: load switches now, ignoring minLoadedTime, still draining", () => {
  const sim = readyA({ minLoadedTime: "1h" });
  sim.req("a1", "a");
  sim.send({ type: "load", id: "L", model: "b" });
  assert.equal(sim.state.lifecycle, "draining");
  sim.release("a1");
  assert.equal(sim.state.lifecycle, "switching");
  sim.stopped();
  const fx = sim.started();
  assert.deepEqual(sim.of("done", fx)[0].ids, ["L"]);
  assert.equal(sim.state.active, "b");
});

// ---- rule 7: engine failure ----

Deno.test("decide: engineFailed while ready → stop (replicas 0), then waiting requests start it again", () => {
  const sim = readyA();
  sim.req("a1", "a");
  const fx = sim.send({ type: "engineFailed", reason: "pod deleted" });
  assert.equal(sim.of("stop", fx)[0].reason, "engine failed: pod deleted");
  assert.equal(sim.state.lifecycle, "stopping");
  assert.equal(sim.state.lastError?.reason, "pod deleted");
  sim.req("a2", "a");
  sim.release("a1"); // its upstream call failed (502): released anyway
  const fx2 = sim.stopped();
  assert.equal(sim.of("start", fx2).length, 1);
  sim.started();
  assert.ok(sim.granted().includes("a2"));
  assert.equal(modelStatusOf(sim.state, "a"), "ready");
  // engineFailed while idle is ignored
  const idle = new Sim({ models });
  assert.equal(idle.send({ type: "engineFailed", reason: "x" }).length, 0);
});

// ---- rule 8: restart-safe ----

Deno.test("decide: observed ready → ready with that model, idle timer from now", () => {
  const sim = new Sim({ models, idleTimeout: "1m" }, null);
  sim.now = 1000;
  sim.send({ type: "observed", op: 0, engine: { phase: "ready", model: "b" } });
  assert.equal(sim.state.lifecycle, "ready");
  assert.equal(sim.state.active, "b");
  assert.deepEqual(sim.granted(sim.req("b1", "b")), ["b1"]);
  sim.release("b1");
  sim.advance(59_999);
  assert.equal(sim.of("stop").length, 0);
  sim.advance(1);
  assert.equal(sim.of("stop").length, 1);
});

for (const phase of ["pending", "starting"] as const) {
  Deno.test(`decide: observed ${phase} → starting, waitReady with a startTimeout from now`, () => {
    const sim = new Sim({ models, startTimeout: "2m" }, null);
    sim.now = 5000;
    const fx = sim.send({ type: "observed", op: 0, engine: { phase, model: "a" } });
    const wait = sim.of("waitReady", fx);
    assert.equal(wait.length, 1);
    assert.equal(wait[0].deadline, 5000 + 120_000);
    assert.equal(sim.state.lifecycle, "starting");
    sim.req("a1", "a");
    assert.equal(sim.of("start").length, 0, "no second start");
    sim.started();
    assert.deepEqual(sim.granted(), ["a1"]);
  });
}

Deno.test("decide: observed terminating → stopping (wait for it), then idle", () => {
  const sim = new Sim({ models }, null);
  const fx = sim.send({ type: "observed", op: 0, engine: { phase: "terminating", model: "a" } });
  assert.equal(sim.of("stop", fx).length, 1);
  assert.equal(sim.state.lifecycle, "stopping");
  sim.req("b1", "b");
  assert.equal(sim.of("start").length, 0);
  sim.stopped();
  assert.equal(sim.of("start")[0].model, "b");
});

Deno.test("decide: observed failed → stop and remember the error; absent → idle; stale observed ignored", () => {
  const sim = new Sim({ models }, null);
  const fx = sim.send({ type: "observed", op: 0, engine: { phase: "failed", model: "a", reason: "CrashLoopBackOff" } });
  assert.equal(sim.of("stop", fx).length, 1);
  assert.equal(modelStatusOf(sim.state, "a"), "failed");
  assert.equal(sim.send({ type: "observed", op: 0, engine: { phase: "ready", model: "a" } }).length, 0);
  const absent = new Sim({ models }, null);
  absent.send({ type: "observed", op: 0, engine: { phase: "absent", model: null } });
  assert.equal(absent.state.lifecycle, "idle");
  assert.equal(absent.state.observed, true);
  assert.equal(absent.state.reason, "observed absent", "no longer 'not observed yet'");
});

Deno.test("decide: scale-only mode uses the key '*'", () => {
  const sim = new Sim({}, null);
  sim.send({ type: "observed", op: 0, engine: { phase: "ready", model: "*" } });
  assert.deepEqual(sim.granted(sim.req("r1", "*")), ["r1"]);
  assert.equal(modelStatusOf(sim.state, "*"), "ready");
});

// ---- rule 9: shutdown ----

Deno.test("decide: shutdown rejects held requests with 503, refuses new ones, never stops the engine", () => {
  const sim = readyA();
  sim.req("a1", "a");
  sim.req("b1", "b");
  const fx = sim.send({ type: "shutdown" });
  assert.equal(sim.rejection("b1", fx)?.code, "shutting_down");
  assert.equal(sim.rejection("b1", fx)?.status, 503);
  assert.equal(sim.of("stop", fx).length, 0);
  assert.equal(sim.rejection("a2", sim.req("a2", "a"))?.code, "shutting_down");
  sim.release("a1");
  sim.advance(3_600_000);
  assert.equal(sim.of("stop").length, 0);
});

// ---- invariants over random event sequences ----

Deno.test("decide: random events — every request answered once, one backend op at a time, timers bounded", () => {
  let seed = 12345;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  for (let run = 0; run < 40; run++) {
    const sim = new Sim({ enableModelSwitch: true, models, minLoadedTime: "2s", idleTimeout: "5s", holdTimeout: "8s" });
    const answered = new Map<string, number>();
    const open = new Set<string>(); // granted, not released
    const held = new Set<string>();
    let pendingOp: { op: number; kind: string } | null = null;
    let n = 0;
    const track = (fx: ReturnType<Sim["send"]>) => {
      for (const e of fx) {
        if (e.type === "grant") {
          for (const id of e.ids) {
            answered.set(id, (answered.get(id) ?? 0) + 1);
            open.add(id);
            held.delete(id);
          }
        }
        if (e.type === "reject") {
          for (const id of e.ids) {
            answered.set(id, (answered.get(id) ?? 0) + 1);
            held.delete(id);
          }
        }
        if (e.type === "start" || e.type === "stop" || e.type === "waitReady") pendingOp = { op: e.op, kind: e.type };
      }
    };
    for (let step = 0; step < 300; step++) {
      const choice = rand(10);
      if (choice < 3) {
        const id = `r${n++}`;
        held.add(id);
        track(sim.req(id, ["a", "b", "c"][rand(3)]));
      } else if (choice < 5 && open.size) {
        const id = [...open][rand(open.size)];
        open.delete(id);
        track(sim.release(id));
      } else if (choice < 6 && held.size) {
        const id = [...held][rand(held.size)];
        if (!answered.has(id)) {
          held.delete(id);
          answered.set(id, 1);
          track(sim.send({ type: "cancel", id }));
        }
      } else if (choice < 8 && pendingOp) {
        const { op, kind } = pendingOp;
        pendingOp = null;
        const ok = rand(5) > 0;
        if (kind === "stop") track(sim.send(ok ? { type: "stopped", op } : { type: "stopFailed", op, reason: "x" }));
        else track(sim.send(ok ? { type: "started", op } : { type: "startFailed", op, reason: "x" }));
      } else {
        track(sim.advance(rand(3000)));
      }
      const observe = sim.of("observe").at(-1);
      if (observe && !sim.state.observed) {
        track(sim.send({ type: "observed", op: observe.op, engine: { phase: "absent", model: null } }));
      }
      const s = sim.state;
      assert.ok(!(s.lifecycle === "ready" && s.active === null));
      assert.ok(
        s.held.every((h) => !(s.lifecycle === "ready" && h.model === s.active)),
        "nothing held for a ready model",
      );
      if (s.timerAt !== null) assert.ok(s.timerAt > sim.now);
    }
    // Let every remaining request end: finish ops and let time pass.
    for (let i = 0; i < 50 && held.size; i++) {
      if (pendingOp) {
        const { op, kind } = pendingOp;
        pendingOp = null;
        track(sim.send(kind === "stop" ? { type: "stopped", op } : { type: "started", op }));
      }
      for (const id of open) track(sim.release(id));
      open.clear();
      track(sim.advance(10_000));
    }
    assert.equal(held.size, 0, `run ${run}: requests left waiting`);
    for (const [id, count] of answered) assert.equal(count, 1, `request ${id} answered ${count} times`);
  }
});

Deno.test("decide: a late release from the replaced engine does not keep the new model alive", () => {
  const sim = readyA({ minLoadedTime: "0s", drainTimeout: "10s", idleTimeout: "60s" });
  sim.req("a1", "a"); // outlives the drain
  sim.req("b1", "b");
  sim.advance(10_000);
  sim.stopped();
  sim.started(); // b ready at t=10s
  sim.release("b1");
  sim.advance(30_000);
  sim.release("a1"); // the old engine's request ends (with an error) at t=40s
  assert.equal(sim.inflight(), 0);
  sim.advance(30_000); // t=70s = b's last activity (10s) + 60s
  assert.equal(sim.of("stop").at(-1)?.reason, "idle");
});
