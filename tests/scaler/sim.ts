/**
 * A synchronous harness around the pure `decide`: feeds events at a fake
 * time, plays the driver's single timer faithfully (a `tick` exactly when the
 * last `schedule` asked for it), answers backend operations on demand, and
 * records every effect. `ledger()` recomputes every GPU's awake share from
 * the effects alone (what a real GPU would see), independent of the
 * scheduler's own accounting.
 *
 * @module
 */
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { decide } from "../../lib/scaler/decide.ts";
import { lifecycleOf } from "../../lib/scaler/views.ts";
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

  /**
   * Config as the user writes it (`enableModelSwitch` and a process backend by default); the world is observed
   * at once as `observe` (default: no engine) unless it is null.
   */
  constructor(config: ChillConfigInput = {}, observe: ObservedEngine[] | null = []) {
    const parsed = parseConfig({ backend: "process", ...config });
    this.state = initialState(policyFromConfig(parsed, parsed.models));
    if (observe) this.send({ type: "observed", op: 0, engines: observe });
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

  /** The current op of `model`'s engine (throws when it has none). */
  op(model: string): number {
    const e = this.state.engines[model];
    if (!e) throw new Error(`no engine for ${model}`);
    return e.op;
  }

  /** Answers `model`'s pending start/waitReady with success. */
  started(model: string): SchedulerEffect[] {
    return this.send({ type: "started", model, op: this.op(model) });
  }

  startFailed(model: string, reason = "boom"): SchedulerEffect[] {
    return this.send({ type: "startFailed", model, op: this.op(model), reason });
  }

  slept(model: string): SchedulerEffect[] {
    return this.send({ type: "slept", model, op: this.op(model) });
  }

  woke(model: string): SchedulerEffect[] {
    return this.send({ type: "woke", model, op: this.op(model) });
  }

  wakeFailed(model: string, reason = "CUDA out of memory"): SchedulerEffect[] {
    return this.send({ type: "wakeFailed", model, op: this.op(model), reason });
  }

  stopped(model: string): SchedulerEffect[] {
    return this.send({ type: "stopped", model, op: this.op(model) });
  }

  stopFailed(model: string, reason = "API 500"): SchedulerEffect[] {
    return this.send({ type: "stopFailed", model, op: this.op(model), reason });
  }

  sleepFailed(model: string, reason = "HTTP 500"): SchedulerEffect[] {
    return this.send({ type: "sleepFailed", model, op: this.op(model), reason });
  }

  engineFailed(model: string, reason = "process exited"): SchedulerEffect[] {
    return this.send({ type: "engineFailed", model, reason });
  }

  /** Answers the last `observe` effect with `engines`. */
  observed(engines: ObservedEngine[]): SchedulerEffect[] {
    const observe = this.of("observe").at(-1);
    if (!observe) throw new Error("no observe was asked for");
    return this.send({ type: "observed", op: observe.op, engines });
  }

  /** The seed's single lifecycle (idle, starting, ready, draining, switching, stopping). */
  lifecycle(): string {
    return lifecycleOf(this.state);
  }

  /** Status of `model` as the API shows it. */
  status(model: string): string {
    const e = this.state.engines[model];
    if (e) return e.status === "stopping" && this.state.errors[model] ? "failed" : e.status;
    return this.state.errors[model] ? "failed" : "cold";
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

  inflight(model?: string): number {
    return model === undefined ? this.state.inflight.size : this.state.inflightByModel[model] ?? 0;
  }
}
