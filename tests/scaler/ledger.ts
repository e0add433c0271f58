/**
 * An independent ledger of the world the pool scheduler drives, computed only
 * from the effects `decide` emits and from the answers the test feeds back —
 * never from the scheduler's own state. It plays the backend (every operation
 * waits until the test answers it, with success or failure), the clients
 * (requests, releases, cancels, admin operations) and the driver's single
 * timer, and checks after every event:
 *
 * - per GPU, the shares of the engines that may hold memory (start issued and
 *   not yet stopped-confirmed, sleep not yet confirmed, wake issued, …) never
 *   exceed a whole GPU;
 * - a request is granted only to an engine that is ready (start or wake
 *   confirmed, not told to sleep or stop since);
 * - no sleep, and no stop other than at drainTimeout or of a failed engine, of
 *   an engine with requests in flight;
 * - at most one backend operation per engine at a time (a stop may abort one);
 * - at most `maxSleeping` engines asleep (sleep issued until wake or stop
 *   confirmed) at every instant;
 * - every request is answered at most once, a cancelled one never; a held one
 *   is never older than its own holdTimeout, and a 504 never comes early;
 * - the timer is armed no later than the next held deadline, operation
 *   deadline, drain deadline and idle deadline.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ObservedEngine, SchedulerEffect, SchedulerEvent } from "../../lib/scaler/state.ts";
import type { Sim } from "./sim.ts";

/** What the test knows of one model from the config it wrote (not from the policy the scheduler built). */
export interface ModelFacts {
  /** Thousandths of each of its GPUs while awake (1000 on Kubernetes per-model: whole GPUs). */
  share: number;
  holdTimeout: number;
  idleTimeout: number;
  sleepAfter: number | null;
}

/** What the test knows of the config. */
export interface Facts {
  maxSleeping: number;
  drainTimeout: number;
  /** Kubernetes: a pod holds its GPUs while it exists, asleep or not. */
  sleepHoldsGpu: boolean;
  models: Record<string, ModelFacts>;
}

type Phase = "starting" | "ready" | "fallingAsleep" | "asleep" | "waking" | "failed" | "stopping";
type OpKind = "start" | "waitReady" | "sleep" | "wake" | "stop";

interface Op {
  kind: OpKind;
  op: number;
  deadline: number | null;
}

interface WorldEngine {
  model: string;
  gpus: string[];
  share: number;
  phase: Phase;
  /** May hold GPU memory. */
  mem: boolean;
  /** Asleep in the maxSleeping sense: sleep issued, neither wake nor stop confirmed yet. */
  asleep: boolean;
  sleepLevel: 1 | 2;
  pending: Op | null;
  /** Requests granted to this engine (released or not: see `running`). */
  granted: Set<string>;
  /** End of its last request while ready, or when it became ready. */
  lastUsed: number;
  /** Known failed (its stop may abort what is in flight). */
  failed: boolean;
}

interface Request {
  id: string;
  model: string;
  arrivedAt: number;
  deadline: number;
  state: "held" | "granted" | "released" | "rejected" | "cancelled";
}

/** The ledger. Drive the scheduler only through it. */
export class Ledger {
  readonly sim: Sim;
  readonly facts: Facts;
  /** Engines by model (absent: no engine). */
  world = new Map<string, WorldEngine>();
  requests = new Map<string, Request>();
  /** Admin operations not answered yet, with their kind and model. */
  admin = new Map<string, { kind: "load" | "sleep" | "unload"; model: string | null }>();
  /** Admin operations answered. */
  adminAnswered = new Set<string>();
  /** Operations aborted by a stop or by reading the world back: their late answers must change nothing. */
  stale: { model: string; op: Op }[] = [];
  /** The pending `observe`, if any. */
  observeOp: number | null = null;
  /** The timer as the effects set it. */
  timer: number | null = null;
  /** Status of each model as the transition effects tell it. */
  status = new Map<string, { to: string; at: number }>();
  /** Counters for reports. */
  counts = { events: 0, grants: 0, rejects: 0, starts: 0, wakes: 0, sleeps: 0, stops: 0 };
  /** Every event and effect, when set (debugging a counterexample). */
  trace: string[] | null = null;
  #n = 0;

  constructor(sim: Sim, facts: Facts) {
    this.sim = sim;
    this.facts = facts;
    // The harness applied its first `observed` before the ledger existed: take its effects.
    this.timer = sim.state.timerAt;
  }

  get now(): number {
    return this.sim.now;
  }

  /**
   * Requests of `model` granted and not released, whichever engine of the model they ran on (the scheduler
   * counts by model: a request still running on an engine that died keeps the model's next engine awake).
   */
  inflight(model: string): number {
    let n = 0;
    for (const r of this.requests.values()) if (r.model === model && r.state === "granted") n++;
    return n;
  }

  /** Requests running on this engine (granted to it and not released). */
  running(e: WorldEngine): number {
    let n = 0;
    for (const id of e.granted) if (this.requests.get(id)!.state === "granted") n++;
    return n;
  }

  // ---- clients ----

  /** A new request for `model`; returns its id. */
  request(model: string): string {
    const id = `r${this.#n++}`;
    const hold = this.facts.models[model]?.holdTimeout ?? Number.POSITIVE_INFINITY;
    this.requests.set(id, { id, model, arrivedAt: this.now, deadline: this.now + hold, state: "held" });
    this.#send({ type: "request", id, model });
    return id;
  }

  /** Ends a granted request (its response is over, or its client left after the grant). */
  release(id: string): void {
    const r = this.requests.get(id)!;
    assert.equal(r.state, "granted");
    r.state = "released";
    // A release while its model's engine is ready counts as its last use even when the request ran on an
    // earlier engine of the same model (the scheduler cannot tell them apart and errs on keeping it longer).
    const e = this.world.get(r.model);
    if (e && e.phase === "ready" && !e.pending) e.lastUsed = this.now;
    this.#send({ type: "release", id });
  }

  /** The client of a held request left. */
  cancel(id: string): void {
    const r = this.requests.get(id)!;
    assert.equal(r.state, "held");
    r.state = "cancelled";
    this.#send({ type: "cancel", id });
  }

  /** An admin load, sleep or unload; returns its id. */
  adminOp(kind: "load" | "sleep" | "unload", model: string | null): string {
    const id = `${kind}${this.#n++}`;
    this.admin.set(id, { kind, model });
    if (kind === "unload") this.#send({ type: "unload", id, model });
    else this.#send({ type: kind, id, model: model! });
    return id;
  }

  // ---- backend ----

  /** Models with an operation waiting for an answer (and "observe" when the world is to be read back). */
  pendingModels(): string[] {
    const out = [...this.world.values()].filter((e) => e.pending).map((e) => e.model);
    return this.observeOp === null ? out : [...out, "<observe>"];
  }

  /** Answers the pending operation of `model` (or the pending observe) with success or failure. */
  answer(model: string, ok: boolean, reason = "boom"): void {
    if (model === "<observe>") return this.#answerObserve();
    const e = this.world.get(model)!;
    const op = e.pending!;
    e.pending = null;
    const base = { model, op: op.op };
    switch (op.kind) {
      case "start":
      case "waitReady":
        if (ok) this.#becomeReady(e);
        else {
          e.phase = "failed";
          e.failed = true;
        }
        return this.#send(ok ? { type: "started", ...base } : { type: "startFailed", ...base, reason });
      case "sleep":
        if (ok) {
          e.phase = "asleep";
          e.mem = this.facts.sleepHoldsGpu;
        } else {
          e.phase = "failed";
          e.failed = true;
        }
        return this.#send(ok ? { type: "slept", ...base } : { type: "sleepFailed", ...base, reason });
      case "wake":
        if (ok) this.#becomeReady(e);
        else {
          e.phase = "failed";
          e.failed = true;
        }
        return this.#send(ok ? { type: "woke", ...base } : { type: "wakeFailed", ...base, reason });
      case "stop":
        if (ok) this.world.delete(model);
        return this.#send(ok ? { type: "stopped", ...base } : { type: "stopFailed", ...base, reason });
    }
  }

  /** Delivers the late answer of an aborted operation (it must change nothing). */
  answerStale(index: number, ok: boolean): void {
    const { model, op } = this.stale[index];
    const base = { model, op: op.op };
    const reason = "late";
    const event: SchedulerEvent = op.kind === "sleep"
      ? (ok ? { type: "slept", ...base } : { type: "sleepFailed", ...base, reason })
      : op.kind === "wake"
      ? (ok ? { type: "woke", ...base } : { type: "wakeFailed", ...base, reason })
      : op.kind === "stop"
      ? (ok ? { type: "stopped", ...base } : { type: "stopFailed", ...base, reason })
      : (ok ? { type: "started", ...base } : { type: "startFailed", ...base, reason });
    this.#send(event);
  }

  /** Engines that may die now (ready or asleep, no operation in progress). */
  mortal(): string[] {
    return [...this.world.values()].filter((e) => !e.pending && (e.phase === "ready" || e.phase === "asleep")).map((
      e,
    ) => e.model);
  }

  /** The engine of `model` died. */
  die(model: string): void {
    const e = this.world.get(model)!;
    e.phase = "failed";
    e.failed = true;
    // Its process exited: no weights left in host RAM (its GPU memory is still counted until the stop is confirmed).
    e.asleep = false;
    this.#send({ type: "engineFailed", model, reason: "process exited" });
  }

  // ---- time ----

  /** Moves time forward by `ms`, firing the timer the effects armed whenever it falls due. */
  advance(ms: number): void {
    const target = this.now + ms;
    for (let guard = 0; guard < 10_000; guard++) {
      if (this.timer === null || this.timer > target) break;
      this.sim.now = Math.max(this.now, this.timer);
      this.#send({ type: "tick" });
    }
    this.sim.now = target;
    this.check();
  }

  /**
   * Ends everything: answers every operation with success, releases every request, lets time run; then every
   * request and admin operation has been answered and every engine has gone idle and stopped.
   */
  settle(): void {
    // Progress: with every operation answered at once with success and every request released, whatever is held
    // is served at this very instant (nothing waits for time to pass when nothing is busy).
    for (let round = 0; round < 100 && (this.pendingModels().length || this.#running().length); round++) {
      for (const model of this.pendingModels()) if (this.pendingModels().includes(model)) this.answer(model, true);
      for (const id of this.#running()) this.release(id);
    }
    const stuck = [...this.requests.values()].filter((r) => r.state === "held").map((r) => `${r.id} (${r.model})`);
    assert.deepEqual(stuck, [], `held at ${this.now} though nothing is busy`);
    for (let round = 0; round < 200; round++) {
      for (const model of this.pendingModels()) if (this.pendingModels().includes(model)) this.answer(model, true);
      for (const r of this.requests.values()) if (r.state === "granted") this.release(r.id);
      if (
        !this.pendingModels().length && !this.world.size && ![...this.requests.values()].some((r) => r.state === "held")
      ) {
        break;
      }
      this.advance(60_000);
    }
    const held = [...this.requests.values()].filter((r) => r.state === "held").map((r) => r.id);
    assert.deepEqual(held, [], "every request was answered");
    assert.deepEqual([...this.admin.keys()], [], "every admin operation was answered");
    assert.deepEqual([...this.world.keys()], [], "every engine idled out and stopped");
  }

  #running(): string[] {
    return [...this.requests.values()].filter((r) => r.state === "granted").map((r) => r.id);
  }

  // ---- the scheduler ----

  #send(event: SchedulerEvent): void {
    this.counts.events++;
    this.trace?.push(`${this.now} ← ${JSON.stringify(event)}`);
    // The driver's timer fires once: after a tick (or once its time has passed) it is disarmed until re-armed.
    if (event.type === "tick" || (this.timer !== null && this.timer <= this.now)) this.timer = null;
    const effects = this.sim.send(event);
    for (const fx of effects) {
      if (fx.type !== "metric") this.trace?.push(`${this.now}   → ${JSON.stringify(fx)}`);
      this.#apply(fx);
    }
    this.check();
  }

  #becomeReady(e: WorldEngine): void {
    e.phase = "ready";
    e.asleep = false;
    e.lastUsed = this.now;
  }

  #answerObserve(): void {
    const op = this.observeOp!;
    this.observeOp = null;
    const engines: ObservedEngine[] = [];
    for (const e of this.world.values()) {
      // The world settles: operations in progress end (their answers are now stale).
      if (e.pending) this.stale.push({ model: e.model, op: e.pending });
      const kind = e.pending?.kind;
      e.pending = null;
      if (kind === "sleep") {
        e.phase = "asleep";
        e.mem = this.facts.sleepHoldsGpu;
      } else if (kind === "wake") this.#becomeReady(e);
      // Its stops failed while it slept: the process still lives, asleep (read back with /is_sleeping).
      if (e.phase === "stopping" && !e.mem && !e.failed) e.phase = "asleep";
      // The scheduler counts idle from the moment it reads an engine back.
      if (e.phase === "ready" || e.phase === "asleep") e.lastUsed = this.now;
      const phase = e.phase === "starting"
        ? "starting"
        : e.phase === "ready"
        ? "ready"
        : e.phase === "asleep"
        ? "sleeping"
        : e.phase === "stopping"
        ? "terminating"
        : "failed";
      // Known limit: a read-back carries no sleep state for a terminating or failed engine, so one whose sleep or
      // wake failed and whose stops failed no longer counts against maxSleeping once read back.
      if (phase === "terminating" || phase === "failed") e.asleep = false;
      engines.push({
        model: e.model,
        phase,
        gpus: e.gpus,
        ...(phase === "sleeping" ? { sleepLevel: e.sleepLevel } : {}),
      });
    }
    this.#send({ type: "observed", op, engines });
  }

  #apply(fx: SchedulerEffect): void {
    const { now } = this;
    const engine = (model: string) => {
      const e = this.world.get(model);
      assert.ok(e, `${fx.type} of ${model}: it has no engine`);
      return e;
    };
    const idle = (e: WorldEngine, what: string) => {
      assert.equal(e.pending, null, `${what} of ${e.model} while its ${e.pending?.kind} is in progress`);
    };
    switch (fx.type) {
      case "start": {
        assert.ok(!this.world.has(fx.model), `start of ${fx.model}: it already has an engine`);
        const facts = this.facts.models[fx.model];
        this.world.set(fx.model, {
          model: fx.model,
          gpus: [...fx.gpus],
          share: facts?.share ?? 900,
          phase: "starting",
          mem: true,
          asleep: false,
          sleepLevel: 1,
          pending: { kind: "start", op: fx.op, deadline: fx.deadline },
          granted: new Set(),
          lastUsed: now,
          failed: false,
        });
        assert.equal(fx.sleepMode, (facts?.sleepAfter ?? null) !== null, `sleep mode of ${fx.model}`);
        this.counts.starts++;
        break;
      }
      case "waitReady": {
        const e = engine(fx.model);
        idle(e, "waitReady");
        assert.equal(e.phase, "starting");
        e.pending = { kind: "waitReady", op: fx.op, deadline: fx.deadline };
        break;
      }
      case "sleep": {
        const e = engine(fx.model);
        idle(e, "sleep");
        assert.equal(e.phase, "ready", `sleep of ${fx.model} while ${e.phase}`);
        assert.equal(this.running(e), 0, `sleep of ${fx.model} with requests in flight`);
        e.phase = "fallingAsleep";
        e.asleep = true;
        e.sleepLevel = fx.level;
        e.pending = { kind: "sleep", op: fx.op, deadline: fx.deadline };
        this.counts.sleeps++;
        break;
      }
      case "wake": {
        const e = engine(fx.model);
        idle(e, "wake");
        assert.equal(e.phase, "asleep", `wake of ${fx.model} while ${e.phase}`);
        assert.equal(fx.level, e.sleepLevel, "wakes at the level it slept at");
        e.phase = "waking";
        e.mem = true;
        e.pending = { kind: "wake", op: fx.op, deadline: fx.deadline };
        this.counts.wakes++;
        break;
      }
      case "stop": {
        const e = engine(fx.model);
        assert.notEqual(e.pending?.kind, "stop", `stop of ${fx.model} while a stop is in progress`);
        // A stop of an engine already stopping (a retry, or after reading the world back) continues that stop.
        if (this.running(e) > 0 && e.phase !== "stopping") {
          assert.ok(
            e.failed || /drainTimeout/.test(fx.reason),
            `stop of ${fx.model} with ${this.running(e)} in flight (${fx.reason})`,
          );
        }
        if (e.pending) this.stale.push({ model: e.model, op: e.pending });
        e.phase = "stopping";
        e.pending = { kind: "stop", op: fx.op, deadline: null };
        this.counts.stops++;
        break;
      }
      case "observe":
        assert.equal(this.observeOp, null, "one observe at a time");
        this.observeOp = fx.op;
        break;
      case "grant": {
        const e = engine(fx.model);
        assert.ok(e.phase === "ready" && !e.pending, `grant to ${fx.model} while ${e.phase}`);
        for (const id of fx.ids) {
          const r = this.requests.get(id);
          assert.ok(r, `grant of unknown ${id}`);
          assert.equal(r.state, "held", `grant of ${id}, ${r.state}`);
          assert.equal(r.model, fx.model, `grant of ${id} (for ${r.model}) to ${fx.model}`);
          r.state = "granted";
          e.granted.add(id);
          this.counts.grants++;
        }
        break;
      }
      case "reject":
        for (const id of fx.ids) {
          if (this.admin.delete(id)) {
            this.adminAnswered.add(id);
            continue;
          }
          const r = this.requests.get(id);
          assert.ok(r, `reject of unknown ${id}`);
          assert.equal(r.state, "held", `reject of ${id}, ${r.state}`);
          if (fx.status === 504) assert.ok(now >= r.deadline, `504 for ${id} before its holdTimeout`);
          r.state = "rejected";
          this.counts.rejects++;
        }
        break;
      case "done":
        for (const id of fx.ids) {
          assert.ok(this.admin.delete(id), `done of ${id}: not pending`);
          this.adminAnswered.add(id);
        }
        break;
      case "schedule":
        this.timer = fx.at;
        break;
      case "transition":
        this.status.set(fx.model, { to: fx.to, at: now });
        break;
      case "metric":
        break;
    }
  }

  /** The invariants, at this instant. */
  check(): void {
    const { now, facts } = this;
    // GPU memory.
    const used = new Map<string, number>();
    for (const e of this.world.values()) {
      if (!e.mem) continue;
      for (const g of e.gpus) used.set(g, (used.get(g) ?? 0) + e.share);
    }
    for (const [g, share] of used) {
      const on = [...this.world.values()].filter((e) => e.mem && e.gpus.includes(g)).map((e) =>
        `${e.model}:${e.phase}`
      );
      assert.ok(share <= 1000, `GPU ${g} oversubscribed at ${now}: ${share}/1000 (${on.join(", ")})`);
    }
    // maxSleeping.
    const asleep = [...this.world.values()].filter((e) => e.asleep).map((e) => e.model);
    assert.ok(
      asleep.length <= facts.maxSleeping,
      `${asleep.length} asleep at ${now} (${asleep}), max ${facts.maxSleeping}`,
    );
    // Starvation-freedom: nothing held past its own deadline; the timer is armed for the next one.
    const due: { at: number; what: string }[] = [];
    for (const r of this.requests.values()) {
      if (r.state !== "held") continue;
      assert.ok(now < r.deadline, `${r.id} (${r.model}) still held at ${now}, deadline ${r.deadline}`);
      due.push({ at: r.deadline, what: `holdTimeout of ${r.id}` });
    }
    if (this.observeOp !== null || !this.sim.state.observed) {
      this.#checkTimer(due);
      return;
    }
    const waiting = new Set([...this.requests.values()].filter((r) => r.state === "held").map((r) => r.model));
    // Rule 1: nothing stays held for a model whose engine is ready (and not draining).
    for (const model of waiting) {
      const e = this.world.get(model);
      if (e?.phase === "ready" && !e.pending && this.status.get(model)?.to === "ready") {
        assert.fail(`a request for ${model} is held at ${now} though its engine is ready`);
      }
    }
    for (const a of this.admin.values()) if (a.kind === "load" && a.model !== null) waiting.add(a.model);
    for (const e of this.world.values()) {
      if (e.pending?.deadline != null) due.push({ at: e.pending.deadline, what: `${e.pending.kind} of ${e.model}` });
      const f = facts.models[e.model];
      const status = this.status.get(e.model);
      if (!f || e.pending || waiting.has(e.model)) continue;
      if (e.phase === "ready" && this.inflight(e.model) === 0 && status?.to === "ready") {
        const quiet = f.sleepAfter !== null && f.sleepAfter < f.idleTimeout ? f.sleepAfter : f.idleTimeout;
        due.push({ at: e.lastUsed + quiet, what: `idle timer of ${e.model}` });
      } else if (e.phase === "asleep") {
        due.push({ at: e.lastUsed + f.idleTimeout, what: `idle stop of ${e.model}` });
      } else if (e.phase === "ready" && status?.to === "draining" && this.inflight(e.model) > 0) {
        // A drain called off and begun again for another model within one decision restarts its deadline
        // without a transition: the effects show only that a deadline must be armed.
        due.push({ at: Number.POSITIVE_INFINITY, what: `drainTimeout of ${e.model}` });
      }
    }
    this.#checkTimer(due);
  }

  #checkTimer(due: { at: number; what: string }[]): void {
    assert.equal(this.timer, this.sim.state.timerAt, "the timer the effects set is the state's");
    const next = due.filter((d) => d.at > this.now).sort((a, b) => a.at - b.at)[0];
    if (next?.at === Number.POSITIVE_INFINITY) {
      assert.notEqual(this.timer, null, `no timer at ${this.now}, but ${next.what} is due`);
      return;
    }
    if (!next) return;
    assert.ok(
      this.timer !== null && this.timer <= next.at,
      `timer ${this.timer} at ${this.now}, but ${next.what} is due at ${next.at}`,
    );
  }
}
