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
import { Sim } from "./sim.ts";

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
function fx(l: Ledger, type: "start" | "sleep" | "wake" | "stop", model?: string) {
  return l.sim.of(type).filter((e) => model === undefined || e.model === model);
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
