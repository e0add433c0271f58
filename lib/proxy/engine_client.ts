/**
 * The proxy's HTTP/1.1 client for engines: a request is sent at most once.
 *
 * Deno's `fetch` re-sends a request when a kept-alive connection breaks
 * before the answer (denoland/deno#32566, #35610): an engine killed in the
 * middle of a completion made the proxy run it again. Here a request is
 * written once, on one connection, and a failure says whether any byte of it
 * may have left the proxy ({@link EngineError.sent}). Only a request that
 * provably never left may be sent again: by the caller after a new hold when
 * the engine refused the connection, or here on a fresh connection when the
 * kernel refused the very first write on a reused one.
 *
 * Connections are kept alive per engine and closed after `idleTimeoutMs`
 * idle: shorter than vLLM's own keep-alive (uvicorn's `timeout_keep_alive`
 * = `VLLM_HTTP_TIMEOUT_KEEP_ALIVE`, 5 s by default: vllm/envs.py,
 * vllm/entrypoints/openai/api_server.py), so an engine never closes one
 * under a request. An idle connection keeps a read pending, so one the
 * engine closed (restart, pod gone) is dropped before it could be reused.
 *
 * Answers: a body of declared length up to `bufferLimit` (not SSE) is read
 * before `send` resolves (one buffer, no stream); any other body is a
 * `ReadableStream` passed on chunk by chunk as it arrives (chunked,
 * length-delimited, or until the engine closes). Cancelling it closes the
 * connection, which tells the engine the client left.
 *
 * @module
 */

/**
 * Why a request to an engine failed.
 *
 * - `refused`: the engine refused the connection (nothing sent);
 * - `connect`: the connection could not be made for another reason (DNS,
 *   unreachable, timeout; nothing sent);
 * - `exhausted`: the proxy is out of file descriptors (nothing sent);
 * - `broken`: the connection broke or the engine answered garbage after
 *   (part of) the request was written (it may have arrived);
 * - `aborted`: the caller's signal fired.
 *
 * @example
 * ```ts
 * import type { EngineErrorKind } from "./engine_client.ts";
 * const kind: EngineErrorKind = "refused";
 * ```
 */
export type EngineErrorKind = "refused" | "connect" | "exhausted" | "broken" | "aborted";

/**
 * A request that got no answer from the engine.
 *
 * @example
 * ```ts
 * import { EngineError } from "./engine_client.ts";
 * const error = new EngineError("connection refused", "refused", false);
 * error.sent; // false: safe to hold again
 * ```
 */
export class EngineError extends Error {
  /** Why it failed. */
  readonly kind: EngineErrorKind;
  /** False only when no byte of the request can have left the proxy. */
  readonly sent: boolean;
  /** Creates the error. */
  constructor(message: string, kind: EngineErrorKind, sent: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = "EngineError";
    this.kind = kind;
    this.sent = sent;
  }
}

/**
 * One request to an engine.
 *
 * @example
 * ```ts
 * import type { EngineRequest } from "./engine_client.ts";
 * const request: EngineRequest = {
 *   upstream: "http://127.0.0.1:8000", path: "/v1/models", method: "GET", headers: [], body: null,
 *   signal: new AbortController().signal,
 * };
 * ```
 */
export interface EngineRequest {
  /** The engine's base URL (scheme, host, port, optional path prefix; no trailing slash). */
  upstream: string;
  /** Path and query, starting with `/`. */
  path: string;
  /** HTTP method. */
  method: string;
  /** Request headers, lower-case names; `host`, `content-length`, `connection` and `transfer-encoding` are set here. */
  headers: [string, string][];
  /** The whole body, or null. */
  body: Uint8Array | null;
  /** Aborts the request: the connection is closed (the engine sees the client leave). */
  signal: AbortSignal;
}

/**
 * An engine's answer.
 *
 * @example
 * ```ts
 * import type { EngineResponse } from "./engine_client.ts";
 * const answer: EngineResponse = { status: 200, statusText: "OK", headers: [], bytes: new Uint8Array(0), body: null };
 * ```
 */
export interface EngineResponse {
  /** Status code. */
  status: number;
  /** Reason phrase. */
  statusText: string;
  /** Headers as received, names lower-cased. */
  headers: [string, string][];
  /** The whole body when it was read before answering (declared length ≤ `bufferLimit`, not SSE). */
  bytes: Bytes | null;
  /** Otherwise the body as it arrives; null when there is none. */
  body: ReadableStream<Bytes> | null;
}

/**
 * Options of {@link createEngineClient}.
 *
 * @example
 * ```ts
 * import type { EngineClientOptions } from "./engine_client.ts";
 * const options: EngineClientOptions = { idleTimeoutMs: 2000, maxIdlePerEngine: 64 };
 * ```
 */
export interface EngineClientOptions {
  /** Idle connections are closed after this long (default 2000 ms, below vLLM's 5 s keep-alive). */
  idleTimeoutMs?: number;
  /** Most idle connections kept per engine (default 128). */
  maxIdlePerEngine?: number;
  /** Bodies of declared length up to this are read before `send` resolves (default 65536; 0: never). */
  bufferLimit?: number;
  /** Longest response head accepted (default 65536 bytes). */
  maxHeadBytes?: number;
}

/**
 * The client.
 *
 * @example
 * ```ts
 * import { createEngineClient, type EngineClient } from "./engine_client.ts";
 * const client: EngineClient = createEngineClient();
 * client.close();
 * ```
 */
export interface EngineClient {
  /** Sends one request; rejects with an {@link EngineError} when there is no answer. */
  send(request: EngineRequest): Promise<EngineResponse>;
  /** Connections open now: idle (kept alive) and busy (carrying a request or an answer). */
  connections(): { idle: number; busy: number };
  /** Closes every connection; requests in flight fail. */
  close(): void;
}

/** Bytes backed by an ArrayBuffer (what Response bodies take). */
type Bytes = Uint8Array<ArrayBuffer>;

const READ_SIZE = 64 * 1024;
/** Bodies up to this size are written with the head in one write. */
const COALESCE_LIMIT = 256 * 1024;
const SKIPPED_REQUEST_HEADERS = new Set(["host", "content-length", "connection", "transfer-encoding", "keep-alive"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE = /[\0\r\n]/;
const encoder = new TextEncoder();

/** A connection to one engine, with what was read past the last answer. */
class Wire {
  readonly conn: Deno.Conn;
  readonly engine: Engine;
  /** Bytes read but not consumed yet. */
  rest: Bytes | null = null;
  dead = false;
  reused = false;
  idleSince = 0;
  #pending: Promise<Bytes | null> | null = null;
  readonly #buf = new Uint8Array(READ_SIZE);

  constructor(conn: Deno.Conn, engine: Engine) {
    this.conn = conn;
    this.engine = engine;
  }

  read(): Promise<Bytes | null> {
    const rest = this.rest;
    if (rest) {
      this.rest = null;
      return Promise.resolve(rest);
    }
    const pending = this.#pending;
    if (pending) {
      this.#pending = null;
      return pending;
    }
    return this.#readRaw();
  }

  async #readRaw(): Promise<Bytes | null> {
    const n = await this.conn.read(this.#buf);
    return n === null ? null : this.#buf.slice(0, n);
  }

  /** Leaves a read pending while idle: an engine that closes the connection is noticed before reuse. */
  park(): void {
    this.idleSince = performance.now();
    this.reused = true;
    const read: Promise<Bytes | null> = this.#readRaw().then((chunk) => {
      // EOF or bytes nobody asked for while idle: the connection is unusable.
      if (this.#pending === read) this.destroy();
      return chunk;
    }, (error) => {
      if (this.#pending === read) {
        this.destroy();
        return null;
      }
      throw error;
    });
    this.#pending = read;
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.engine.forget(this);
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** Connections to one engine base URL. */
class Engine {
  readonly hostname: string;
  readonly port: number;
  readonly tls: boolean;
  readonly host: string;
  readonly prefix: string;
  readonly idle: Wire[] = [];
  readonly busy = new Set<Wire>();

  constructor(upstream: string) {
    const url = new URL(upstream);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new EngineError(`Unsupported engine URL scheme '${url.protocol}'`, "connect", false);
    }
    this.tls = url.protocol === "https:";
    this.hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    this.port = url.port ? Number(url.port) : this.tls ? 443 : 80;
    this.host = url.host;
    this.prefix = url.pathname === "/" ? "" : url.pathname.replace(/\/$/, "");
  }

  forget(wire: Wire): void {
    this.busy.delete(wire);
    const at = this.idle.indexOf(wire);
    if (at >= 0) this.idle.splice(at, 1);
  }

  take(): Wire | undefined {
    for (let wire = this.idle.pop(); wire; wire = this.idle.pop()) {
      if (wire.dead) continue;
      this.busy.add(wire);
      return wire;
    }
    return undefined;
  }
}

/**
 * Creates a client.
 *
 * @example
 * ```ts
 * import { createEngineClient } from "./engine_client.ts";
 * const engine = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => new Response("hi"));
 * const client = createEngineClient();
 * const answer = await client.send({
 *   upstream: `http://127.0.0.1:${engine.addr.port}`, path: "/", method: "GET", headers: [], body: null,
 *   signal: new AbortController().signal,
 * });
 * new TextDecoder().decode(answer.bytes!); // "hi"
 * client.close();
 * await engine.shutdown();
 * ```
 */
export function createEngineClient(options: EngineClientOptions = {}): EngineClient {
  const idleTimeoutMs = options.idleTimeoutMs ?? 2000;
  const maxIdle = options.maxIdlePerEngine ?? 128;
  const bufferLimit = options.bufferLimit ?? 64 * 1024;
  const maxHeadBytes = options.maxHeadBytes ?? 64 * 1024;
  const engines = new Map<string, Engine>();
  let sweeper: ReturnType<typeof setInterval> | undefined;
  let closed = false;

  const sweep = () => {
    const now = performance.now();
    let idle = 0;
    for (const engine of engines.values()) {
      for (const wire of [...engine.idle]) {
        if (now - wire.idleSince >= idleTimeoutMs) wire.destroy();
      }
      idle += engine.idle.length;
    }
    if (idle === 0) stopSweeper();
  };
  const stopSweeper = () => {
    if (sweeper !== undefined) clearInterval(sweeper);
    sweeper = undefined;
  };

  /** Returns a connection whose answer is over to the pool (or closes it). */
  const release = (wire: Wire, reusable: boolean) => {
    const engine = wire.engine;
    engine.busy.delete(wire);
    if (!reusable || wire.dead || closed || engine.idle.length >= maxIdle || wire.rest) {
      wire.destroy();
      return;
    }
    wire.park();
    engine.idle.push(wire);
    if (sweeper === undefined) {
      const timer = setInterval(sweep, Math.max(50, Math.min(1000, idleTimeoutMs / 2)));
      Deno.unrefTimer(timer);
      sweeper = timer;
    }
  };

  const engineFor = (upstream: string): Engine => {
    let engine = engines.get(upstream);
    if (!engine) {
      engine = new Engine(upstream);
      engines.set(upstream, engine);
    }
    return engine;
  };

  async function connect(engine: Engine, signal: AbortSignal): Promise<Wire> {
    let conn: Deno.Conn;
    try {
      conn = engine.tls
        ? await Deno.connectTls({ hostname: engine.hostname, port: engine.port })
        : await Deno.connect({ hostname: engine.hostname, port: engine.port, signal });
    } catch (error) {
      if (signal.aborted) throw new EngineError("The request was aborted", "aborted", false, { cause: error });
      throw connectError(error);
    }
    if (signal.aborted || closed) {
      conn.close();
      throw new EngineError("The request was aborted", "aborted", false);
    }
    if (!engine.tls) (conn as Deno.TcpConn).setNoDelay(true);
    const wire = new Wire(conn, engine);
    engine.busy.add(wire);
    return wire;
  }

  async function send(request: EngineRequest): Promise<EngineResponse> {
    const { signal } = request;
    if (closed) throw new EngineError("The engine client is closed", "aborted", false);
    if (signal.aborted) throw new EngineError("The request was aborted", "aborted", false);
    const engine = engineFor(request.upstream);
    const message = encodeRequest(engine, request);
    for (let attempt = 0;; attempt++) {
      // A retry (the kernel refused every byte on a reused connection) always takes a fresh connection.
      const wire = (attempt === 0 ? engine.take() : undefined) ?? await connect(engine, signal);
      const onAbort = () => wire.destroy();
      signal.addEventListener("abort", onAbort, { once: true });
      const written = { bytes: 0 };
      try {
        for (const part of message) await writeAll(wire.conn, part, written);
      } catch (error) {
        signal.removeEventListener("abort", onAbort);
        wire.destroy();
        const sent = written.bytes > 0;
        if (signal.aborted) throw new EngineError("The request was aborted", "aborted", sent, { cause: error });
        // The kernel took no byte: the request never left. A reused connection the engine had closed is
        // replaced once by a fresh one; a fresh one that fails like this is the engine's problem.
        if (!sent && wire.reused && attempt === 0) continue;
        throw new EngineError(`The connection to the engine broke: ${messageOf(error)}`, "broken", sent, {
          cause: error,
        });
      }
      try {
        return await readAnswer(wire, request.method, signal, onAbort);
      } catch (error) {
        signal.removeEventListener("abort", onAbort);
        wire.destroy();
        if (error instanceof EngineError) throw error;
        if (signal.aborted) throw new EngineError("The request was aborted", "aborted", true, { cause: error });
        throw new EngineError(`The connection to the engine broke: ${messageOf(error)}`, "broken", true, {
          cause: error,
        });
      }
    }
  }

  /** Reads the head (and a small body); the abort listener is removed once the answer is handed over. */
  async function readAnswer(
    wire: Wire,
    method: string,
    signal: AbortSignal,
    onAbort: () => void,
  ): Promise<EngineResponse> {
    for (;;) {
      const head = await readHead(wire, maxHeadBytes);
      if (head.status >= 100 && head.status < 200) {
        if (head.status === 101) throw new EngineError("The engine switched protocols", "broken", true);
        continue; // 100 Continue, 103 Early Hints: the real answer follows
      }
      const noBody = method === "HEAD" || head.status === 204 || head.status === 304;
      const framing: Framing = noBody ? { kind: "none" } : head.framing;
      const reusable = head.keepAlive && framing.kind !== "eof";
      const sse = head.contentType.startsWith("text/event-stream");
      if (framing.kind === "none" || (framing.kind === "length" && framing.length === 0)) {
        signal.removeEventListener("abort", onAbort);
        release(wire, reusable);
        return answer(head, new Uint8Array(0), null);
      }
      if (framing.kind === "length" && framing.length <= bufferLimit && !sse) {
        const bytes = await readExactly(wire, framing.length);
        signal.removeEventListener("abort", onAbort);
        release(wire, reusable);
        return answer(head, bytes, null);
      }
      signal.removeEventListener("abort", onAbort);
      return answer(head, null, bodyStream(wire, framing, reusable));
    }
  }

  function bodyStream(wire: Wire, framing: Framing, reusable: boolean): ReadableStream<Bytes> {
    const decoder = framing.kind === "chunked" ? new ChunkedDecoder() : null;
    let left = framing.kind === "length" ? framing.length : Infinity;
    let over = false;
    const finish = (ok: boolean) => {
      if (over) return;
      over = true;
      if (ok) release(wire, reusable);
      else wire.destroy();
    };
    return new ReadableStream<Bytes>({
      async pull(controller) {
        try {
          for (;;) {
            const chunk = await wire.read();
            if (chunk === null) {
              if (framing.kind === "eof") {
                finish(false);
                controller.close();
                return;
              }
              throw new EngineError("The engine closed the connection in the middle of its answer", "broken", true);
            }
            if (decoder) {
              const { data, done, rest } = decoder.push(chunk);
              if (data) controller.enqueue(data);
              if (done) {
                wire.rest = rest;
                finish(true);
                controller.close();
                return;
              }
              if (data) return;
              continue;
            }
            if (chunk.length >= left) {
              if (chunk.length > left) wire.rest = chunk.subarray(left);
              controller.enqueue(chunk.length > left ? chunk.subarray(0, left) : chunk);
              left = 0;
              finish(true);
              controller.close();
              return;
            }
            left -= chunk.length;
            controller.enqueue(chunk);
            return;
          }
        } catch (error) {
          finish(false);
          controller.error(
            error instanceof EngineError
              ? error
              : new EngineError(`The connection to the engine broke: ${messageOf(error)}`, "broken", true, {
                cause: error,
              }),
          );
        }
      },
      cancel() {
        // The client left: closing the connection tells the engine to stop.
        finish(false);
      },
    }, { highWaterMark: 0 });
  }

  return {
    send,
    connections() {
      let idle = 0, busy = 0;
      for (const engine of engines.values()) {
        idle += engine.idle.length;
        busy += engine.busy.size;
      }
      return { idle, busy };
    },
    close() {
      closed = true;
      stopSweeper();
      for (const engine of engines.values()) {
        for (const wire of [...engine.idle, ...engine.busy]) wire.destroy();
      }
      engines.clear();
    },
  };
}

/** How an answer's body ends. */
type Framing =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "eof" };

interface Head {
  status: number;
  statusText: string;
  headers: [string, string][];
  framing: Framing;
  keepAlive: boolean;
  contentType: string;
}

function answer(head: Head, bytes: Bytes | null, body: ReadableStream<Bytes> | null): EngineResponse {
  return { status: head.status, statusText: head.statusText, headers: head.headers, bytes, body };
}

/** The request as one or two buffers (head and body together when the body is small). */
function encodeRequest(engine: Engine, request: EngineRequest): Uint8Array[] {
  const { method, body } = request;
  let head = `${method} ${engine.prefix}${request.path} HTTP/1.1\r\nhost: ${engine.host}\r\n`;
  for (const [name, value] of request.headers) {
    if (!SKIPPED_REQUEST_HEADERS.has(name)) head += `${name}: ${value}\r\n`;
  }
  if (body) head += `content-length: ${body.byteLength}\r\n\r\n`;
  else head += method === "GET" || method === "HEAD" ? "\r\n" : "content-length: 0\r\n\r\n";
  const together = body !== null && body.byteLength <= COALESCE_LIMIT;
  const out = new Uint8Array(head.length + (together ? body.byteLength : 0));
  const { read, written } = encoder.encodeInto(head, out);
  if (read !== head.length || written !== head.length) {
    // Header values are byte strings (each character one byte), which TextEncoder would widen.
    for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
  }
  if (!body) return [out];
  if (together) {
    out.set(body, head.length);
    return [out];
  }
  return [out, body];
}

/** Writes `bytes` whole, counting into `written` what the kernel took (a throw means it took nothing more). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array, written: { bytes: number }): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const n = await conn.write(bytes.subarray(offset));
    offset += n;
    written.bytes += n;
  }
}

const CR = 13, LF = 10;

/** Index of the first CRLFCRLF in `bytes` at or after `from`, or -1. */
function headEnd(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i + 3 < bytes.length; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF && bytes[i + 2] === CR && bytes[i + 3] === LF) return i;
  }
  return -1;
}

async function readHead(wire: Wire, maxHeadBytes: number): Promise<Head> {
  let buf: Bytes | null = null;
  for (;;) {
    const chunk = await wire.read();
    if (chunk === null) {
      throw new EngineError(
        buf
          ? "The engine closed the connection in the middle of its answer"
          : "The engine closed the connection without answering",
        "broken",
        true,
      );
    }
    const searchFrom = buf ? buf.length - 3 : 0;
    buf = buf ? concat(buf, chunk) : chunk;
    const end = headEnd(buf, searchFrom);
    if (end < 0) {
      if (buf.length > maxHeadBytes) throw new EngineError("The engine's answer head is too large", "broken", true);
      continue;
    }
    if (end + 4 < buf.length) wire.rest = buf.subarray(end + 4);
    return parseHead(byteString(buf.subarray(0, end)));
  }
}

function parseHead(text: string): Head {
  const lines = text.split("\r\n");
  const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!statusLine) throw new EngineError("The engine's answer is not HTTP/1.1", "broken", true);
  const http10 = statusLine[1] === "0";
  const headers: [string, string][] = [];
  let length: number | null = null;
  let chunked = false;
  let connection = "";
  let contentType = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !TOKEN.test(name)) throw new EngineError("The engine sent a malformed header", "broken", true);
    const value = line.slice(colon + 1).trim();
    if (BAD_VALUE.test(value)) throw new EngineError("The engine sent a malformed header", "broken", true);
    if (name === "content-length") {
      const n = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
      if (Number.isNaN(n) || (length !== null && length !== n)) {
        throw new EngineError("The engine sent an invalid Content-Length", "broken", true);
      }
      length = n;
    } else if (name === "transfer-encoding") {
      chunked = value.toLowerCase().split(",").at(-1)!.trim() === "chunked";
    } else if (name === "connection") {
      connection = value.toLowerCase();
    } else if (name === "content-type") {
      contentType = value.toLowerCase();
    }
    headers.push([name, value]);
  }
  const framing: Framing = chunked
    ? { kind: "chunked" }
    : length !== null
    ? { kind: "length", length }
    : { kind: "eof" };
  const keepAlive = http10 ? /\bkeep-alive\b/.test(connection) : !/\bclose\b/.test(connection);
  return {
    status: Number(statusLine[2]),
    statusText: statusLine[3] ?? "",
    headers,
    framing,
    keepAlive,
    contentType,
  };
}

async function readExactly(wire: Wire, length: number): Promise<Bytes> {
  let out: Bytes | null = null;
  let got = 0;
  while (got < length) {
    const chunk = await wire.read();
    if (chunk === null) {
      throw new EngineError("The engine closed the connection in the middle of its answer", "broken", true);
    }
    const need = length - got;
    if (!out && chunk.length >= length) {
      if (chunk.length > length) wire.rest = chunk.subarray(length);
      return chunk.length === length ? chunk : chunk.subarray(0, length);
    }
    out ??= new Uint8Array(length);
    const take = Math.min(need, chunk.length);
    out.set(chunk.subarray(0, take), got);
    got += take;
    if (take < chunk.length) wire.rest = chunk.subarray(take);
  }
  return out!;
}

/**
 * Decodes a chunked body incrementally: `push` returns the data bytes found
 * in a network chunk, whether the body is over, and what follows it.
 *
 * @example
 * ```ts
 * import { ChunkedDecoder } from "./engine_client.ts";
 * const decoder = new ChunkedDecoder();
 * const { data, done } = decoder.push(new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n"));
 * [new TextDecoder().decode(data!), done]; // ["abc", true]
 * ```
 */
export class ChunkedDecoder {
  #state: "size" | "data" | "data_end" | "trailer" = "size";
  #left = 0;
  #line = "";
  #crlfSeen = 0;

  /** Feeds `chunk`; throws an {@link EngineError} on malformed framing. */
  push(chunk: Bytes): { data: Bytes | null; done: boolean; rest: Bytes | null } {
    const parts: Bytes[] = [];
    let i = 0;
    while (i < chunk.length) {
      switch (this.#state) {
        case "size":
        case "trailer": {
          const lf = chunk.indexOf(LF, i);
          const end = lf < 0 ? chunk.length : lf + 1;
          this.#line += byteString(chunk.subarray(i, end));
          i = end;
          if (this.#line.length > 4096) {
            throw new EngineError("The engine sent a malformed chunked body", "broken", true);
          }
          if (lf < 0) break;
          const line = this.#line.replace(/\r?\n$/, "");
          this.#line = "";
          if (this.#state === "trailer") {
            if (line === "") {
              return { data: join(parts), done: true, rest: i < chunk.length ? chunk.subarray(i) : null };
            }
            break;
          }
          const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
          if (!size) throw new EngineError("The engine sent a malformed chunked body", "broken", true);
          this.#left = parseInt(size[1], 16);
          this.#state = this.#left === 0 ? "trailer" : "data";
          break;
        }
        case "data": {
          const take = Math.min(this.#left, chunk.length - i);
          parts.push(chunk.subarray(i, i + take));
          i += take;
          this.#left -= take;
          if (this.#left === 0) {
            this.#state = "data_end";
            this.#crlfSeen = 0;
          }
          break;
        }
        case "data_end": {
          const expected = this.#crlfSeen === 0 ? CR : LF;
          if (chunk[i] !== expected) throw new EngineError("The engine sent a malformed chunked body", "broken", true);
          i++;
          if (++this.#crlfSeen === 2) this.#state = "size";
          break;
        }
      }
    }
    return { data: join(parts), done: false, rest: null };
  }
}

function join(parts: Bytes[]): Bytes | null {
  if (parts.length === 0) return null;
  if (parts.length === 1) return parts[0];
  return concat(...parts);
}

function concat(...parts: Uint8Array[]): Bytes {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const asciiDecoder = new TextDecoder();

/** Bytes as a byte string (one character per byte, as HTTP headers are). */
function byteString(bytes: Uint8Array): string {
  // An all-ASCII head (the usual one) decodes natively; any other byte is mapped one to one.
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 127) {
      ascii = false;
      break;
    }
  }
  if (ascii) return asciiDecoder.decode(bytes);
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return out;
}

function messageOf(error: unknown): string {
  return (error as Error)?.message ?? String(error);
}

function connectError(error: unknown): EngineError {
  const message = messageOf(error);
  if (error instanceof Deno.errors.ConnectionRefused) {
    return new EngineError(`The engine refused the connection: ${message}`, "refused", false, { cause: error });
  }
  if (/too many open files|os error 24\b|os error 23\b/i.test(message)) {
    return new EngineError(
      "The proxy is out of file descriptors and cannot reach the engine now",
      "exhausted",
      false,
      { cause: error },
    );
  }
  return new EngineError(`The engine could not be reached: ${message}`, "connect", false, { cause: error });
}
