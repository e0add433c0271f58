/**
 * Prometheus metrics (text exposition format 0.0.4) with the names DESIGN.md
 * fixes, all prefixed `vllm_chill_`. A small in-process registry: counters,
 * gauges and histograms keyed by label values, cheap enough for the hot path.
 *
 * @module
 */

type Labels = Record<string, string>;

const NEEDS_ESCAPE = /[\\\n"]/;

function escapeLabel(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelKey(names: readonly string[], labels: Labels): string {
  if (names.length === 0) return "";
  return names.map((n) => `${n}="${escapeLabel(labels[n] ?? "")}"`).join(",");
}

/** Cached label keys per metric at most (as many as series; the cache stops growing past it). */
const KEY_CACHE_LIMIT = 1000;

abstract class Metric {
  /** Label key by the first label's value, then the second's (metrics with one or two labels, the hot path). */
  #keys = new Map<string, string | Map<string, string>>();
  #cached = 0;
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {}
  abstract render(): string;
  /** `labelKey(this.labelNames, labels)`, cached for metrics with one or two labels. */
  protected key(labels: Labels): string {
    const names = this.labelNames;
    if (names.length === 1) {
      const v = labels[names[0]] ?? "";
      let key = this.#keys.get(v) as string | undefined;
      if (key === undefined) {
        key = labelKey(names, labels);
        if (this.#cached < KEY_CACHE_LIMIT) {
          this.#keys.set(v, key);
          this.#cached++;
        }
      }
      return key;
    }
    if (names.length === 2) {
      const v1 = labels[names[0]] ?? "";
      const v2 = labels[names[1]] ?? "";
      let inner = this.#keys.get(v1) as Map<string, string> | undefined;
      let key = inner?.get(v2);
      if (key === undefined) {
        key = labelKey(names, labels);
        if (this.#cached < KEY_CACHE_LIMIT) {
          if (!inner) this.#keys.set(v1, inner = new Map());
          inner.set(v2, key);
          this.#cached++;
        }
      }
      return key;
    }
    return labelKey(names, labels);
  }
  protected header(type: string): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${type}\n`;
  }
}

/** A monotonically increasing counter. */
export class Counter extends Metric {
  #values = new Map<string, number>();
  /** Adds `by` (default 1) to the series with `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    const key = this.key(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  /** Current value of one series (tests). */
  get(labels: Labels = {}): number {
    return this.#values.get(this.key(labels)) ?? 0;
  }
  /** Prometheus text of this metric. */
  render(): string {
    let out = this.header("counter");
    for (const [key, value] of this.#values) out += `${this.name}${key ? `{${key}}` : ""} ${value}\n`;
    return out;
  }
}

/** A value that goes up and down. */
export class Gauge extends Metric {
  #values = new Map<string, number>();
  /** Sets the series with `labels` to `value`. */
  set(labels: Labels, value: number): void {
    this.#values.set(this.key(labels), value);
  }
  /** Adds `by` (may be negative) to the series with `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    const key = this.key(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  /** Current value of one series (tests). */
  get(labels: Labels = {}): number {
    return this.#values.get(this.key(labels)) ?? 0;
  }
  /** Prometheus text of this metric. */
  render(): string {
    let out = this.header("gauge");
    for (const [key, value] of this.#values) out += `${this.name}${key ? `{${key}}` : ""} ${value}\n`;
    return out;
  }
}

/** A histogram with fixed buckets (seconds). */
export class Histogram extends Metric {
  #series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, labelNames: readonly string[], readonly buckets: readonly number[]) {
    super(name, help, labelNames);
  }
  /** Records one observation. */
  observe(labels: Labels, value: number): void {
    const key = this.key(labels);
    let series = this.#series.get(key);
    if (!series) this.#series.set(key, series = { counts: this.buckets.map(() => 0), sum: 0, count: 0 });
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) series.counts[i]++;
    series.sum += value;
    series.count++;
  }
  /** Number of observations of one series (tests). */
  count(labels: Labels = {}): number {
    return this.#series.get(this.key(labels))?.count ?? 0;
  }
  /** Prometheus text of this metric. */
  render(): string {
    let out = this.header("histogram");
    for (const [key, s] of this.#series) {
      const sep = key ? "," : "";
      this.buckets.forEach((le, i) => out += `${this.name}_bucket{${key}${sep}le="${le}"} ${s.counts[i]}\n`);
      out += `${this.name}_bucket{${key}${sep}le="+Inf"} ${s.count}\n`;
      out += `${this.name}_sum${key ? `{${key}}` : ""} ${s.sum}\n`;
      out += `${this.name}_count${key ? `{${key}}` : ""} ${s.count}\n`;
    }
    return out;
  }
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const STARTUP_BUCKETS = [1, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 900];
const WAKE_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120];

/** Lifecycle states reported by `vllm_chill_state{state}`. */
export const STATES = ["idle", "starting", "ready", "draining", "switching", "stopping"] as const;

/** Per-model states reported by `vllm_chill_model_state{model,state}`. */
export const MODEL_STATES = [
  "cold",
  "starting",
  "ready",
  "sleeping",
  "waking",
  "draining",
  "stopping",
  "failed",
] as const;

/**
 * Every metric vllm-chill exports. One instance per proxy.
 *
 * @example
 * ```ts
 * import { createMetrics } from "./metrics.ts";
 * const m = createMetrics();
 * m.requestsTotal.inc({ model: "qwen3-8b", code: "200" });
 * m.render().includes('vllm_chill_requests_total{model="qwen3-8b",code="200"} 1'); // true
 * ```
 */
export function createMetrics() {
  const p = "vllm_chill_";
  const metrics = {
    requestsTotal: new Counter(`${p}requests_total`, "Forwarded-route requests by model and status code.", [
      "model",
      "code",
    ]),
    requestDuration: new Histogram(
      `${p}request_duration_seconds`,
      "Time from arrival to the end of the response, held time included.",
      ["model"],
      LATENCY_BUCKETS,
    ),
    heldRequests: new Gauge(`${p}held_requests`, "Requests waiting for their model to be ready.", ["model"]),
    inflightRequests: new Gauge(`${p}inflight_requests`, "Requests being served by the engine.", ["model"]),
    rejectedRequestsTotal: new Counter(`${p}rejected_requests_total`, "Requests refused, by reason.", ["reason"]),
    coldStartSeconds: new Histogram(`${p}cold_start_seconds`, "Scale-from-zero until ready.", [], STARTUP_BUCKETS),
    modelSwitchesTotal: new Counter(`${p}model_switches_total`, "Model switches.", ["from", "to"]),
    switchDurationSeconds: new Histogram(
      `${p}switch_duration_seconds`,
      "From the decision to switch until the new model is ready.",
      [],
      STARTUP_BUCKETS,
    ),
    scaleEventsTotal: new Counter(`${p}scale_events_total`, "Scale-ups and scale-downs.", ["direction"]),
    replicas: new Gauge(`${p}replicas`, "Replicas (engines) the backend runs.", []),
    activeModel: new Gauge(`${p}active_model`, "1 for the model configured on the engine.", ["model"]),
    state: new Gauge(`${p}state`, "1 for the current lifecycle state.", ["state"]),
    modelState: new Gauge(`${p}model_state`, "1 for each model's current state.", ["model", "state"]),
    wakeSeconds: new Histogram(
      `${p}wake_seconds`,
      "From the decision to wake a sleeping engine until it serves again.",
      [],
      WAKE_BUCKETS,
    ),
    sleepsTotal: new Counter(`${p}sleeps_total`, "Engines put to sleep (vLLM sleep mode), by level.", [
      "model",
      "level",
    ]),
    evictionsTotal: new Counter(
      `${p}evictions_total`,
      "Engines put to sleep or stopped to make room for another model (idle timers are not evictions).",
      ["model", "action"],
    ),
    gpuAwakeShare: new Gauge(`${p}gpu_awake_share`, "Sum of the shares of the awake engines on each GPU.", ["gpu"]),
    openConnections: new Gauge(`${p}open_connections`, "Client connections open now.", []),
    slowClientsTotal: new Counter(
      `${p}slow_clients_total`,
      "Connections dropped for sending a request head (phase=headers) or body (phase=body) too slowly.",
      ["phase"],
    ),
    connectionsShedTotal: new Counter(
      `${p}connections_shed_total`,
      "New connections answered 503 and closed because too many were open.",
      ["reason"],
    ),
    acceptErrorsTotal: new Counter(
      `${p}accept_errors_total`,
      "Failed accepts of new connections (e.g. out of file descriptors); retried.",
      [],
    ),
  };
  for (const s of STATES) metrics.state.set({ state: s }, s === "idle" ? 1 : 0);
  metrics.replicas.set({}, 0);
  return {
    ...metrics,
    /** Sets `state{state}` to 1 for `current` and 0 for the others. */
    setState(current: (typeof STATES)[number]): void {
      for (const s of STATES) metrics.state.set({ state: s }, s === current ? 1 : 0);
    },
    /** Sets `model_state{model,state}` to 1 for `model`'s `current` state and 0 for its others. */
    setModelState(model: string, current: (typeof MODEL_STATES)[number]): void {
      for (const s of MODEL_STATES) metrics.modelState.set({ model, state: s }, s === current ? 1 : 0);
    },
    /** Prometheus text of every metric. */
    render(): string {
      return Object.values(metrics).map((m) => m.render()).join("");
    },
  };
}

/** The metrics of one proxy. */
export type Metrics = ReturnType<typeof createMetrics>;
