/**
 * Serving the proxy's handler on a TCP port with the guards `Deno.serve`
 * lacks. `Deno.serve` has no header timeout (denoland/deno#3515: hyper's is
 * inert without a timer, and a connection that trickles a request head stays
 * open forever), and its accept loop ends on the first accept error: with
 * every file descriptor in use (EMFILE) the server stops and the process
 * dies of an unhandled `Http: Too many open files` rejection, leaving its
 * engine behind (ext/http/http_next.rs `op_http_serve`: `accept(…).await?`).
 *
 * Here the proxy accepts connections itself and hands each one to Deno's
 * HTTP server for that connection (`serveHttpOnConnection`, the runtime's
 * own per-connection server; Deno 2.9 exposes it as
 * `Deno[Deno.internal].serveHttpOnConnection`), so that:
 *
 * - a new connection that has not completed a request head within
 *   `headerTimeoutMs` (10 s) is closed and counted in
 *   `vllm_chill_slow_clients_total{phase="headers"}`; a kept-alive one with
 *   no request for `idleTimeoutMs` (75 s, above the 60 s idle timeout of
 *   common load balancers) is closed too;
 * - an accept error (EMFILE, ENFILE, ENOBUFS…) is logged and retried with a
 *   backoff: the proxy keeps serving the connections it has and accepts
 *   again once descriptors free up;
 * - beyond `maxConnections` open connections (derived from the file
 *   descriptor limit: each forwarded request needs a second descriptor for
 *   the engine) a new connection gets a `503` with `Retry-After` and is
 *   closed, counted in `vllm_chill_connections_shed_total`.
 *
 * Without that runtime function (another Deno), it falls back to
 * `Deno.serve` and says in the log which guards are missing.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { errorBody } from "./errors.ts";

/**
 * Connection limits.
 *
 * @example
 * ```ts
 * import type { ConnectionLimits } from "./listener.ts";
 * const limits: ConnectionLimits = { headerTimeoutMs: 10_000, idleTimeoutMs: 75_000, maxConnections: 480 };
 * ```
 */
export interface ConnectionLimits {
  /** A new connection must complete its first request head within this many ms. */
  headerTimeoutMs: number;
  /** A kept-alive connection with nothing in flight is closed after this many ms. */
  idleTimeoutMs: number;
  /** Most client connections open at once; more get 503 and are closed. */
  maxConnections: number;
}

/**
 * What the handler learns about a request's connection.
 *
 * @example
 * ```ts
 * import type { ConnectionInfo } from "./listener.ts";
 * const info: ConnectionInfo = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 } };
 * ```
 */
export interface ConnectionInfo {
  /** The client's address. */
  readonly remoteAddr: Deno.Addr;
  /** Closes the connection once the answer being prepared is sent (e.g. after a 408 for a stalled body). */
  closeAfterAnswer?(): void;
}

/**
 * Options of {@link serveGuarded}.
 *
 * @example
 * ```ts
 * import type { GuardedServeOptions } from "./listener.ts";
 * const limits: GuardedServeOptions["limits"] = { headerTimeoutMs: 200 };
 * ```
 */
export interface GuardedServeOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port (0: any free one). */
  port: number;
  /** The request handler. */
  handler: (req: Request, info: ConnectionInfo) => Response | Promise<Response>;
  /** Answers when the handler throws. */
  onError: (error: unknown) => Response | Promise<Response>;
  /** Where accept errors, shed and slow connections are reported. */
  log: Logger;
  /** `slow_clients_total`, `connections_shed_total`, `accept_errors_total`, `open_connections`. */
  metrics: Metrics;
  /** Overrides of the default limits (tests use small timeouts). */
  limits?: Partial<ConnectionLimits>;
  /** The per-connection server to use (default: the runtime's; null forces the `Deno.serve` fallback). */
  serveConnection?: ServeConnection | null;
}

/**
 * The runtime's per-connection HTTP server.
 *
 * @example
 * ```ts
 * import type { ServeConnection } from "./listener.ts";
 * let serve: ServeConnection | undefined;
 * ```
 */
export type ServeConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>,
  onError: (error: unknown) => Response | Promise<Response>,
  onListen: () => void,
) => { finished: Promise<void>; shutdown(): Promise<void> };

/**
 * A listening proxy.
 *
 * @example
 * ```ts
 * import type { GuardedServer } from "./listener.ts";
 * const open = (server: GuardedServer) => server.connections();
 * ```
 */
export interface GuardedServer {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Resolves once the server has stopped and every connection is closed. */
  readonly finished: Promise<void>;
  /** Whether the connection guards are in force (false: the `Deno.serve` fallback). */
  readonly guarded: boolean;
  /** Client connections open now. */
  connections(): number;
  /** Stops accepting; lets requests in flight finish (connections then close). */
  shutdown(): Promise<void>;
  /** Closes every connection now. */
  close(): void;
}

/**
 * The file descriptor limits of this process (`/proc/self/limits`) and the
 * descriptors open now; nulls where the platform does not say.
 *
 * @example
 * ```ts
 * import { fileDescriptorLimits } from "./listener.ts";
 * const { soft, hard } = fileDescriptorLimits();
 * soft === null || hard === null || soft <= hard; // true
 * ```
 */
export function fileDescriptorLimits(): { soft: number | null; hard: number | null; open: number | null } {
  let soft: number | null = null, hard: number | null = null, open: number | null = null;
  try {
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n").find((l) => l.startsWith("Max open files"));
    const [s, h] = line?.slice("Max open files".length).trim().split(/\s+/) ?? [];
    soft = s === undefined ? null : s === "unlimited" ? Infinity : Number(s);
    hard = h === undefined ? null : h === "unlimited" ? Infinity : Number(h);
  } catch { /* not Linux */ }
  try {
    open = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
  } catch {
    open = null;
  }
  return { soft, hard, open };
}

/** How long a connection marked to close lingers after its last answer (for the answer to be written). */
const CLOSE_LINGER_MS = 500;

/** Descriptors kept aside for engines, log and state files, DNS, the runtime. */
const FD_RESERVE = 64;

/**
 * The default connection limit for a soft descriptor limit: half of what is
 * left after the descriptors open now and a reserve (a forwarded request
 * holds two: the client's and the engine's).
 *
 * @example
 * ```ts
 * import { connectionLimitFor } from "./listener.ts";
 * connectionLimitFor(1024, 20); // 470
 * ```
 */
export function connectionLimitFor(soft: number | null, open: number | null): number {
  if (soft === null || !Number.isFinite(soft)) return 16_384;
  return Math.max(8, Math.floor((soft - (open ?? 32) - FD_RESERVE) / 2));
}

const SHED_BODY = JSON.stringify(
  errorBody(503, "The proxy has too many open connections; retry shortly", "proxy_overloaded"),
);
const SHED_RESPONSE = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n" +
    `content-length: ${SHED_BODY.length}\r\n\r\n${SHED_BODY}`,
);

/** The runtime's per-connection server, when this Deno has it. */
function runtimeServeConnection(): ServeConnection | null {
  const deno = Deno as unknown as { internal?: symbol } & Record<symbol, Record<string, unknown> | undefined>;
  const internals = deno.internal === undefined ? undefined : deno[deno.internal];
  const serve = internals?.serveHttpOnConnection;
  return typeof serve === "function" ? serve as ServeConnection : null;
}

// A connection's server takes its resource away once it ended or began a graceful shutdown; firing its signal after
// that makes the runtime throw from inside the abort listener (an uncaught error), so both are tracked. One window
// cannot be seen from here: the server has stopped waiting for requests and is closing its resource
// (ext/http/00_serve.ts, serveHttpOn: op_http_wait resolved, op_http_close pending; `finished` not settled yet).
// The runtime's listener then calls op_http_cancel on a resource already gone and throws BadResource, which the
// event dispatch reports as an uncaught exception (ext/web/02_event.js, reportException) — it would end the process.
// That one error, raised synchronously inside `kill`, is cancelled: the connection it was meant to close is closed.

let killing = false;
let killGuardInstalled = false;

function installKillGuard(): void {
  if (killGuardInstalled) return;
  killGuardInstalled = true;
  globalThis.addEventListener("error", (event) => {
    if (killing && event.error instanceof Deno.errors.BadResource) event.preventDefault();
  });
}

/** Closes a connection now, unless it already ended or is closing gracefully. */
function kill(conn: Connection): void {
  if (conn.ended || conn.graceful || conn.abort.signal.aborted) return;
  killing = true;
  try {
    conn.abort.abort();
  } finally {
    killing = false;
  }
}

/** Closes a connection once its answers in flight are written (idle: at once). */
function closeGracefully(conn: Connection): Promise<void> {
  if (conn.ended || conn.graceful || conn.abort.signal.aborted || !conn.server) return Promise.resolve();
  conn.graceful = true;
  return conn.server.shutdown().catch(() => {});
}

interface Connection {
  /** Requests dispatched and not yet fully answered. */
  active: number;
  /** Requests dispatched so far. */
  served: number;
  /** When the connection is closed if still quiet (ms, performance.now()). */
  deadline: number;
  /** Close once the answers in flight are sent. */
  closing: boolean;
  /** The connection's server has finished. */
  ended: boolean;
  /** A graceful shutdown of the connection's server began. */
  graceful: boolean;
  abort: AbortController;
  server?: { finished: Promise<void>; shutdown(): Promise<void> };
}

/**
 * Listens and serves `handler` with the connection guards.
 *
 * @example
 * ```ts
 * import { serveGuarded } from "./listener.ts";
 * import { createMetrics } from "../metrics.ts";
 * import { silentLogger } from "../log.ts";
 * const server = serveGuarded({
 *   hostname: "127.0.0.1", port: 0, handler: () => new Response("ok"), onError: () => new Response(null, { status: 500 }),
 *   log: silentLogger, metrics: createMetrics(),
 * });
 * await (await fetch(`http://127.0.0.1:${server.addr.port}/`)).text(); // "ok"
 * await server.shutdown();
 * ```
 */
export function serveGuarded(options: GuardedServeOptions): GuardedServer {
  const { log, metrics, handler, onError } = options;
  const serveConnection = options.serveConnection === undefined ? runtimeServeConnection() : options.serveConnection;
  installKillGuard();
  const fds = fileDescriptorLimits();
  const limits: ConnectionLimits = {
    headerTimeoutMs: 10_000,
    idleTimeoutMs: 75_000,
    maxConnections: connectionLimitFor(fds.soft, fds.open),
    ...options.limits,
  };
  log.info("file descriptor limits", {
    soft: fds.soft,
    hard: fds.hard,
    open: fds.open,
    maxConnections: limits.maxConnections,
  });
  if (!serveConnection) return fallback(options, limits);

  const listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  const conns = new Set<Connection>();
  const stopAccepting = new AbortController();
  let closed = false;
  let lastAcceptWarning = -Infinity;
  let lastShedWarning = -Infinity;

  const gauge = () => metrics.openConnections.set({}, conns.size);

  const sweep = () => {
    const now = performance.now();
    let slow = 0;
    for (const conn of conns) {
      if (conn.active > 0 || now < conn.deadline) continue;
      if (conn.served === 0) slow++;
      kill(conn);
    }
    if (slow > 0) {
      metrics.slowClientsTotal.inc({ phase: "headers" }, slow);
      log.info("closed connections that sent no complete request head in time", {
        connections: slow,
        headerTimeoutMs: limits.headerTimeoutMs,
      });
    }
  };
  const sweeper = setInterval(sweep, Math.max(10, Math.min(250, limits.headerTimeoutMs / 4)));
  Deno.unrefTimer(sweeper);

  const shed = (tcp: Deno.Conn) => {
    metrics.connectionsShedTotal.inc({ reason: "max_connections" });
    const now = performance.now();
    if (now - lastShedWarning > 5000) {
      lastShedWarning = now;
      log.warn("too many open connections: new ones get 503", {
        open: conns.size,
        maxConnections: limits.maxConnections,
      });
    }
    // Answer, stop writing, and read what the client sent for a moment so the close does not turn into a reset.
    const timer = setTimeout(() => tcp.close(), 1000);
    (async () => {
      try {
        await tcp.write(SHED_RESPONSE);
        await tcp.closeWrite();
        const sink = new Uint8Array(16 * 1024);
        for (let read = 0; read < 64 * 1024;) {
          const n = await tcp.read(sink);
          if (n === null) break;
          read += n;
        }
      } catch {
        /* the client went away */
      } finally {
        clearTimeout(timer);
        try {
          tcp.close();
        } catch { /* closed by the timer */ }
      }
    })();
  };

  const track = (tcp: Deno.Conn) => {
    const conn: Connection = {
      active: 0,
      served: 0,
      deadline: performance.now() + limits.headerTimeoutMs,
      closing: false,
      ended: false,
      graceful: false,
      abort: new AbortController(),
    };
    const settled = () => {
      if (--conn.active > 0) return;
      // Closed by the sweeper a moment later: closing at once could drop the answer before it is written, and a
      // graceful close would wait for the rest of a body that is not coming.
      conn.deadline = performance.now() + (conn.closing ? CLOSE_LINGER_MS : limits.idleTimeoutMs);
    };
    const info: ConnectionInfo = {
      remoteAddr: tcp.remoteAddr,
      closeAfterAnswer: () => {
        conn.closing = true;
      },
    };
    try {
      conn.server = serveConnection(
        tcp,
        conn.abort.signal,
        (req, served) => {
          conn.active++;
          conn.served++;
          served.completed.then(settled, settled);
          return handler(req, info);
        },
        onError,
        () => {},
      );
    } catch (error) {
      log.warn("could not serve a connection", { error: (error as Error)?.message });
      try {
        tcp.close();
      } catch { /* closed */ }
      return;
    }
    conns.add(conn);
    gauge();
    conn.server.finished.catch(() => {}).finally(() => {
      conn.ended = true;
      conns.delete(conn);
      gauge();
    });
  };

  const accepting = (async () => {
    let backoff = 0;
    while (!closed) {
      let tcp: Deno.Conn;
      try {
        tcp = await listener.accept();
        backoff = 0;
      } catch (error) {
        if (closed || error instanceof Deno.errors.BadResource) break;
        metrics.acceptErrorsTotal.inc();
        backoff = backoff === 0 ? 10 : Math.min(backoff * 2, 1000);
        const now = performance.now();
        if (now - lastAcceptWarning > 5000) {
          lastAcceptWarning = now;
          log.warn("cannot accept connections; retrying", {
            error: (error as Error)?.message,
            retryInMs: backoff,
            open: conns.size,
          });
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, backoff);
          stopAccepting.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          }, { once: true });
        });
        continue;
      }
      if (conns.size >= limits.maxConnections) shed(tcp);
      else track(tcp);
    }
  })();

  let stopping: Promise<void> | undefined;
  const stopListening = async () => {
    closed = true;
    stopAccepting.abort();
    try {
      listener.close();
    } catch { /* closed */ }
    await accepting;
  };
  const { promise: finished, resolve: finish } = Promise.withResolvers<void>();

  return {
    addr: listener.addr as Deno.NetAddr,
    finished,
    guarded: true,
    connections: () => conns.size,
    shutdown: () =>
      stopping ??= (async () => {
        await stopListening();
        // Graceful per connection: idle ones close now, busy ones after their answer.
        await Promise.all([...conns].map(closeGracefully));
        await Promise.all([...conns].map((conn) => conn.server?.finished.catch(() => {})));
        clearInterval(sweeper);
        finish();
      })(),
    close() {
      for (const conn of conns) kill(conn);
      if (!stopping) {
        stopping = stopListening().then(() => {
          clearInterval(sweeper);
          finish();
        });
      }
    },
  };
}

/** `Deno.serve` without the guards, for a runtime without a per-connection server. */
function fallback(options: GuardedServeOptions, limits: ConnectionLimits): GuardedServer {
  options.log.warn(
    "this Deno has no per-connection HTTP server: slow clients are not timed out and an accept error stops the server",
    { deno: Deno.version.deno, headerTimeoutMs: limits.headerTimeoutMs },
  );
  const abort = new AbortController();
  let listening!: Deno.NetAddr;
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: abort.signal,
    onError: options.onError,
    onListen: (addr) => listening = addr as Deno.NetAddr,
  }, options.handler);
  const finished = server.finished.catch((error) => {
    options.log.error("the HTTP server stopped", { error: (error as Error)?.message });
  });
  return {
    addr: listening ?? server.addr as Deno.NetAddr,
    finished,
    guarded: false,
    connections: () => 0,
    shutdown: () => server.shutdown(),
    close: () => abort.abort(),
  };
}
