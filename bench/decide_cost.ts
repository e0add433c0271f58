/**
 * Cost of one scaler decision (`decide`, a pure function) as the number of
 * held or in-flight requests grows: explains the fan-in drain time and the
 * memory per held request. In-process, no I/O.
 *
 * @module
 */
import { parseConfig } from "../lib/config/define.ts";
import { decide, initialState, policyFromConfig } from "../lib/scaler/mod.ts";
import type { SchedulerState } from "../lib/scaler/mod.ts";

/** Mean µs per `request` event with `held` requests already waiting. */
export interface DecideCost {
  held: number;
  usPerEvent: number;
}

/**
 * Measures decide() per request event at each held-queue size.
 *
 * @example
 * ```ts
 * import { measureDecide } from "./decide_cost.ts";
 * (await measureDecide([0]))[0].held; // 0
 * ```
 */
export function measureDecide(sizes: number[]): Promise<DecideCost[]> {
  const policy = policyFromConfig(parseConfig({ maxHeldRequests: 1_000_000 }));
  const out: DecideCost[] = [];
  for (const size of sizes) {
    let s: SchedulerState = initialState(policy, 0);
    s = decide(s, { type: "observed", op: 0, engines: [] }, 0).state;
    for (let i = 0; i < size; i++) s = decide(s, { type: "request", id: `h${i}`, model: "*" }, 1).state;
    const n = 200;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      s = decide(s, { type: "request", id: `x${i}`, model: "*" }, 2).state;
      s = decide(s, { type: "cancel", id: `x${i}` }, 2).state;
    }
    out.push({ held: size, usPerEvent: ((performance.now() - t0) * 1000) / (2 * n) });
  }
  return Promise.resolve(out);
}

if (import.meta.main) {
  for (const r of await measureDecide([0, 1000, 10_000])) console.log(r.held, r.usPerEvent.toFixed(1), "µs/event");
}
