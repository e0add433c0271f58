/**
 * The server-sent events behind GET /admin/events: one hub, many dashboards.
 *
 * Each client gets `retry:`, the recent log lines and a `snapshot` (the GET
 * /admin/status JSON) at once, then `snapshot` events when something changed,
 * `log` events, `skipped` events (the count of log lines left out once
 * `logLinesPerFlush` came within one interval: those are never even
 * serialized) and comment heartbeats.
 * Changes are coalesced: at most one flush per `minIntervalMs`, and every
 * flush is serialized once into one chunk that all clients share.
 *
 * The proxy never waits for a dashboard: each client has a bounded buffer
 * and a client that does not read is dropped (its stream errored) rather than
 * buffered for. While no dashboard is open nothing is computed: the hub is
 * not subscribed to the scaler and the log tap builds nothing.
 *
 * @module
 */
import type { Logger, LogLevel, LogSink } from "../log.ts";

/**
 * Limits and intervals of the hub.
 *
 * @example
 * ```ts
 * import { DEFAULT_HUB_TUNING } from "./event_hub.ts";
 * DEFAULT_HUB_TUNING.heartbeatMs; // 15000
 * ```
 */
export interface EventHubTuning {
  /** Shortest time between two flushes of changes (snapshots, log lines). */
  minIntervalMs: number;
  /** Time between SSE comment heartbeats. */
  heartbeatMs: number;
  /** Time between status re-reads without a change signal (catches what the scaler does not signal). */
  refreshMs: number;
  /** The `retry:` hint: how long a browser waits before reconnecting. */
  retryMs: number;
  /** Bytes queued for one client beyond which it is dropped. */
  maxBufferedBytes: number;
  /** Open streams at most; more are refused. */
  maxClients: number;
  /** Log lines sent per flush at most; later ones in the same interval are skipped (and counted). */
  logLinesPerFlush: number;
  /** Log lines a newly opened dashboard receives. */
  logBacklog: number;
}

/**
 * The tuning the proxy runs with.
 *
 * @example
 * ```ts
 * import { DEFAULT_HUB_TUNING } from "./event_hub.ts";
 * DEFAULT_HUB_TUNING.minIntervalMs; // 250
 * ```
 */
export const DEFAULT_HUB_TUNING: Readonly<EventHubTuning> = Object.freeze({
  minIntervalMs: 250,
  heartbeatMs: 15_000,
  refreshMs: 5_000,
  retryMs: 3_000,
  maxBufferedBytes: 1024 * 1024,
  maxClients: 100,
  logLinesPerFlush: 100,
  logBacklog: 100,
});

/**
 * What the hub needs.
 *
 * @example
 * ```ts
 * import type { EventHubOptions } from "./event_hub.ts";
 * const snapshot: EventHubOptions["snapshot"] = () => Promise.resolve('{"state":"idle"}');
 * ```
 */
export interface EventHubOptions {
  /** The GET /admin/status JSON, as text. */
  snapshot: () => Promise<string>;
  /** Subscribes to "what the status shows may have changed"; returns the unsubscribe function. */
  onChange: (listener: () => void) => () => void;
  /** Where the hub's own lines go (dropped clients, failed snapshots). */
  log: Logger;
  /** Overrides of {@link DEFAULT_HUB_TUNING} (tests, benchmarks). */
  tuning?: Partial<EventHubTuning>;
}

interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Not sent anything yet: gets the retry hint, the backlog and the current snapshot at the next flush. */
  fresh: boolean;
}

const encoder = new TextEncoder();
const HEARTBEAT = encoder.encode(": keepalive\n\n");

/**
 * The hub. It is the {@link LogSink} of the proxy's log tap.
 *
 * @example
 * ```ts
 * import { EventHub } from "./event_hub.ts";
 * import { silentLogger } from "../log.ts";
 * const hub = new EventHub({
 *   snapshot: () => Promise.resolve('{"state":"idle"}'),
 *   onChange: () => () => {},
 *   log: silentLogger,
 * });
 * const reader = hub.connect()!.getReader();
 * new TextDecoder().decode((await reader.read()).value).includes("event: snapshot"); // true
 * await reader.cancel();
 * hub.close();
 * ```
 */
export class EventHub implements LogSink {
  readonly #snapshot: () => Promise<string>;
  readonly #onChange: (listener: () => void) => () => void;
  readonly #log: Logger;
  readonly #tuning: EventHubTuning;
  readonly #clients = new Set<Client>();
  readonly #backlog: string[] = [];
  #pending: string[] = [];
  #skipped = 0;
  #dirty = false;
  /** The last snapshot text sent, and whether it is known to be current. */
  #current: string | null = null;
  #flushing = false;
  #lastFlush = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #refresh: ReturnType<typeof setInterval> | undefined;
  #unsubscribe: (() => void) | null = null;
  #closed = false;

  /** Creates the hub; nothing runs until a client connects. */
  constructor(options: EventHubOptions) {
    this.#snapshot = options.snapshot;
    this.#onChange = options.onChange;
    this.#log = options.log;
    this.#tuning = { ...DEFAULT_HUB_TUNING, ...options.tuning };
  }

  /** Open streams. */
  get clients(): number {
    return this.#clients.size;
  }

  /** True while a dashboard is open. */
  get listening(): boolean {
    return this.#clients.size !== 0;
  }

  /**
   * {@link LogSink}: whether the next log line is wanted — not while no dashboard is open, nor once this flush
   * interval has its `logLinesPerFlush` lines (then the line is only counted, and sent as a `skipped` count).
   */
  accepts(_level: LogLevel): boolean {
    if (this.#clients.size === 0) return false;
    if (this.#pending.length < this.#tuning.logLinesPerFlush) return true;
    this.#skipped++;
    this.#wake();
    return false;
  }

  /** {@link LogSink}: queues one redacted JSON log line for the next flush. */
  write(json: string, level: LogLevel): void {
    if (!this.accepts(level)) return;
    this.#backlog.push(json);
    if (this.#backlog.length > this.#tuning.logBacklog) this.#backlog.shift();
    this.#pending.push(json);
    this.#wake();
  }

  /**
   * Opens a stream for one client, or returns null when `maxClients` are
   * already open (or the hub is closed). The first events follow at once.
   */
  connect(): ReadableStream<Uint8Array> | null {
    if (this.#closed || this.#clients.size >= this.#tuning.maxClients) return null;
    let client!: Client;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = { controller, fresh: true };
      },
      cancel: () => this.#remove(client),
    }, new ByteLengthQueuingStrategy({ highWaterMark: this.#tuning.maxBufferedBytes }));
    if (this.#clients.size === 0) this.#open();
    this.#clients.add(client);
    this.#log.info("dashboard connected", { dashboards: this.#clients.size });
    this.#wake(true);
    return stream;
  }

  /** Ends every stream and stops the timers; later connects are refused. */
  close(): void {
    this.#closed = true;
    for (const client of [...this.#clients]) {
      this.#remove(client);
      try {
        // A client with unread data would keep the connection (and a graceful server shutdown) waiting.
        if (this.#queued(client) > 0) client.controller.error(new Error("the proxy is shutting down"));
        else client.controller.close();
      } catch { /* already closed */ }
    }
  }

  // ---- clients ----

  #open(): void {
    this.#dirty = true;
    this.#unsubscribe = this.#onChange(() => {
      this.#dirty = true;
      this.#wake();
    });
    this.#heartbeat = setInterval(() => this.#broadcast(HEARTBEAT, false), this.#tuning.heartbeatMs);
    this.#refresh = setInterval(() => {
      this.#dirty = true;
      this.#wake();
    }, this.#tuning.refreshMs);
  }

  #remove(client: Client): void {
    if (!this.#clients.delete(client)) return;
    if (!this.#closed) this.#log.info("dashboard disconnected", { dashboards: this.#clients.size });
    if (this.#clients.size !== 0) return;
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    clearInterval(this.#heartbeat);
    clearInterval(this.#refresh);
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#current = null;
    this.#pending = [];
    this.#skipped = 0;
  }

  #queued(client: Client): number {
    return this.#tuning.maxBufferedBytes - (client.controller.desiredSize ?? 0);
  }

  /** Queues `chunk` for `client`, or drops the client when that would overflow its buffer. */
  #send(client: Client, chunk: Uint8Array): void {
    const queued = this.#queued(client);
    if (queued > 0 && queued + chunk.byteLength > this.#tuning.maxBufferedBytes) {
      this.#remove(client);
      try {
        client.controller.error(new Error("dashboard client too slow"));
      } catch { /* already gone */ }
      this.#log.warn("dashboard client dropped: it does not read its events", { bufferedBytes: queued });
      return;
    }
    try {
      client.controller.enqueue(chunk);
    } catch {
      this.#remove(client);
    }
  }

  #broadcast(chunk: Uint8Array, fresh: boolean): void {
    for (const client of [...this.#clients]) if (client.fresh === fresh) this.#send(client, chunk);
  }

  // ---- flushing ----

  /** Arms the flush timer: at once for a new client, else no earlier than `minIntervalMs` after the last flush. */
  #wake(now = false): void {
    if (this.#flushing || this.#clients.size === 0) return;
    const at = now ? 0 : this.#lastFlush + this.#tuning.minIntervalMs;
    if (this.#timer !== undefined) {
      if (at >= this.#timerAt) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, Math.max(0, at - performance.now()));
  }

  async #flush(): Promise<void> {
    if (this.#clients.size === 0) return;
    this.#flushing = true;
    let failed = false;
    try {
      let changed: string | null = null;
      if (this.#dirty || this.#current === null) {
        this.#dirty = false;
        try {
          const text = await this.#snapshot();
          if (text !== this.#current) changed = this.#current = text;
        } catch (error) {
          failed = true;
          this.#log.warn("dashboard: could not read the status", { error: (error as Error)?.message });
        }
        if (this.#clients.size === 0) return;
      }
      this.#lastFlush = performance.now();
      const frames: string[] = [];
      if (changed !== null) frames.push(frame("snapshot", changed));
      if (this.#skipped > 0) frames.push(frame("skipped", JSON.stringify({ lines: this.#skipped })));
      for (const line of this.#pending) frames.push(frame("log", line));
      if (frames.length) this.#broadcast(encoder.encode(frames.join("")), false);
      this.#pending = [];
      this.#skipped = 0;
      if (this.#current !== null && [...this.#clients].some((c) => c.fresh)) {
        const first = [`retry: ${this.#tuning.retryMs}\n\n`, ...this.#backlog.map((line) => frame("log", line))];
        first.push(frame("snapshot", this.#current));
        this.#broadcast(encoder.encode(first.join("")), true);
        for (const client of this.#clients) client.fresh = false;
      }
    } finally {
      this.#flushing = false;
    }
    if (this.#dirty || this.#pending.length) this.#wake();
    // New clients that arrived during the snapshot read; after a failed read they wait for the next refresh.
    if (!failed && [...this.#clients].some((c) => c.fresh)) this.#wake(true);
  }
}

/**
 * One SSE event: `event:` line, one `data:` line per line of `data`, blank line.
 *
 * @example
 * ```ts
 * import { frame } from "./event_hub.ts";
 * frame("log", '{"msg":"hi"}'); // 'event: log\ndata: {"msg":"hi"}\n\n'
 * ```
 */
export function frame(event: string, data: string): string {
  const body = data.includes("\n") ? data.split(/\r?\n/).join("\ndata: ") : data;
  return `event: ${event}\ndata: ${body}\n\n`;
}
