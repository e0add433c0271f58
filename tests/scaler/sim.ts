/**
 * A synchronous harness around the pure `decide`: feeds events at a fake
 * time, plays the driver's single timer faithfully (a `tick` exactly when the
 * last `schedule` asked for it), and records every effect.
 *
 * @module
 */
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { decide } from "../../lib/scaler/decide.ts";
import {
  initialState,
  type ObservedEngine,
  policyFromConfig,
  type SchedulerEffect,
  type SchedulerEvent,
  type SchedulerState,
} from "../../lib/scaler/state.ts";

/** Effect of a given type. */
export type Fx<T extends SchedulerEffect["type"]> = Extract<SchedulerEffect, { type: T }>;

/** The harness. */
export class Sim {
  state: SchedulerState;
  now = 0;
  /** Every effect so far. */
  log: SchedulerEffect[] = [];

  /** Config as the user writes it; `observe` (default absent) is applied at once unless null. */
  constructor(config: ChillConfigInput = {}, observe: ObservedEngine | null = { phase: "absent", model: null }) {
    const parsed = parseConfig(config);
    this.state = initialState(policyFromConfig(parsed, parsed.models), this.now);
    if (observe) this.send({ type: "observed", op: 0, engine: observe });
  }

  /** Applies one event now; returns its effects. */
  send(event: SchedulerEvent): SchedulerEffect[] {
    const { state, effects } = decide(this.state, event, this.now);
    this.state = state;
    this.log.push(...effects);
    return effects;
  }

  /** Moves time forward by `ms`, sending a tick whenever the timer falls due. */
  advance(ms: number): SchedulerEffect[] {
    const target = this.now + ms;
    const out: SchedulerEffect[] = [];
    for (let guard = 0; guard < 10_000; guard++) {
      const at = this.state.timerAt;
      if (at === null || at > target) break;
      this.now = Math.max(this.now, at);
      out.push(...this.send({ type: "tick" }));
    }
    this.now = target;
    return out;
  }

  req(id: string, model: string): SchedulerEffect[] {
    return this.send({ type: "request", id, model });
  }

  release(id: string): SchedulerEffect[] {
    return this.send({ type: "release", id });
  }

  /** Answers the pending start/waitReady with success. */
  started(): SchedulerEffect[] {
    return this.send({ type: "started", op: this.state.op });
  }

  stopped(): SchedulerEffect[] {
    return this.send({ type: "stopped", op: this.state.op });
  }

  /** Effects of one type in `effects` (default: all so far). */
  of<T extends SchedulerEffect["type"]>(type: T, effects: SchedulerEffect[] = this.log): Fx<T>[] {
    return effects.filter((e): e is Fx<T> => e.type === type);
  }

  /** Ids granted in `effects` (default: all so far). */
  granted(effects: SchedulerEffect[] = this.log): string[] {
    return this.of("grant", effects).flatMap((g) => g.ids);
  }

  /** Rejections of `id` in `effects`. */
  rejection(id: string, effects: SchedulerEffect[] = this.log): Fx<"reject"> | undefined {
    return this.of("reject", effects).find((r) => r.ids.includes(id));
  }

  inflight(): number {
    return this.state.inflight.size;
  }
}
