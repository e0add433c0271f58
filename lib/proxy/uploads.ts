/**
 * Receiving request bodies, bounded three ways: a body larger than
 * `maxBodyBytes` is refused (413, the rest not read); the bytes of every
 * body still being received count against one budget for the whole proxy
 * (`maxUploadingBytes`), beyond which new bodies are refused (503 +
 * Retry-After) instead of growing memory without bound; a body that makes
 * no progress for `stallMs` (30 s) is dropped (408, counted as a slow
 * client), so it cannot pin a connection and its bytes forever. A client
 * that leaves mid-upload is reported as such, not as an error.
 *
 * @module
 */

/**
 * Why a body was not received.
 *
 * @example
 * ```ts
 * import type { BodyRefusal } from "./uploads.ts";
 * const why: BodyRefusal = "stalled";
 * ```
 */
export type BodyRefusal = "too_large" | "over_budget" | "stalled" | "client_closed";

/**
 * The outcome of {@link UploadGuard.read}.
 *
 * @example
 * ```ts
 * import type { BodyOutcome } from "./uploads.ts";
 * const outcome: BodyOutcome = { ok: true, bytes: new Uint8Array(0) };
 * ```
 */
export type BodyOutcome = { ok: true; bytes: Uint8Array } | { ok: false; refusal: BodyRefusal };

/**
 * Options of {@link createUploadGuard}.
 *
 * @example
 * ```ts
 * import type { UploadGuardOptions } from "./uploads.ts";
 * const options: UploadGuardOptions = { budgetBytes: 128 * 2 ** 20, stallMs: 30_000 };
 * ```
 */
export interface UploadGuardOptions {
  /** Most bytes of bodies being received at once, all requests together. */
  budgetBytes: number;
  /** A body with no new bytes for this long is dropped. */
  stallMs: number;
}

/**
 * Receives bodies within the limits.
 *
 * @example
 * ```ts
 * import { createUploadGuard, type UploadGuard } from "./uploads.ts";
 * const uploads: UploadGuard = createUploadGuard({ budgetBytes: 1024, stallMs: 30_000 });
 * uploads.close();
 * ```
 */
export interface UploadGuard {
  /** Reads `req`'s whole body, at most `limit` bytes. */
  read(req: Request, limit: number): Promise<BodyOutcome>;
  /** Bytes counted against the budget now. */
  inUse(): number;
  /** Stops the stall watch (bodies being read are dropped as stalled). */
  close(): void;
}

/** Bodies declared this small are read in one call (no JavaScript stream). */
const SMALL = 64 * 1024;

const TOO_LARGE: BodyOutcome = { ok: false, refusal: "too_large" };
const OVER_BUDGET: BodyOutcome = { ok: false, refusal: "over_budget" };
const STALLED: BodyOutcome = { ok: false, refusal: "stalled" };
const CLIENT_CLOSED: BodyOutcome = { ok: false, refusal: "client_closed" };

interface Watched {
  /** performance.now() of the last progress. */
  last: number;
  stall: () => void;
}

/**
 * Creates the guard.
 *
 * @example
 * ```ts
 * import { createUploadGuard } from "./uploads.ts";
 * const uploads = createUploadGuard({ budgetBytes: 1024, stallMs: 30_000 });
 * const outcome = await uploads.read(new Request("http://x/", { method: "POST", body: "hello" }), 100);
 * outcome.ok && new TextDecoder().decode(outcome.bytes); // "hello"
 * uploads.close();
 * ```
 */
export function createUploadGuard(options: UploadGuardOptions): UploadGuard {
  const { budgetBytes, stallMs } = options;
  let used = 0;
  const watched = new Set<Watched>();
  let sweeper: ReturnType<typeof setInterval> | undefined;

  const sweep = () => {
    const now = performance.now();
    for (const entry of watched) if (now - entry.last >= stallMs) entry.stall();
    if (watched.size === 0 && sweeper !== undefined) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };
  const watch = (entry: Watched) => {
    watched.add(entry);
    if (sweeper === undefined) {
      sweeper = setInterval(sweep, Math.max(5, Math.min(1000, stallMs / 4)));
    }
  };
  const reserve = (n: number): boolean => {
    if (used + n > budgetBytes) return false;
    used += n;
    return true;
  };

  /** A small body of declared length, read in one call; the whole read is bounded by the stall time. */
  function readSmall(req: Request, length: number): Promise<BodyOutcome> {
    return new Promise<BodyOutcome>((resolve) => {
      const entry: Watched = {
        last: performance.now(),
        stall: () => {
          // The read settles when the connection closes.
          watched.delete(entry);
          resolve(STALLED);
        },
      };
      watch(entry);
      req.arrayBuffer().then((buffer) => {
        watched.delete(entry);
        resolve(buffer.byteLength > length ? TOO_LARGE : { ok: true, bytes: new Uint8Array(buffer) });
      }, () => {
        watched.delete(entry);
        resolve(CLIENT_CLOSED);
      });
    });
  }

  /** Any other body, chunk by chunk: progress resets the stall clock; each chunk is counted against the budget. */
  async function readStream(req: Request, limit: number, declared: number | null): Promise<BodyOutcome> {
    const reader = req.body!.getReader();
    const countChunks = declared === null;
    // A declared length is received straight into its buffer (the body's size in memory, not twice that).
    const into = declared === null ? null : new Uint8Array(declared);
    const chunks: Uint8Array[] = [];
    let total = 0;
    let counted = 0;
    let stalled = false;
    const entry: Watched = {
      last: performance.now(),
      stall: () => {
        stalled = true;
        watched.delete(entry);
        reader.cancel().catch(() => {});
      },
    };
    watch(entry);
    try {
      while (true) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch {
          return { ok: false, refusal: stalled ? "stalled" : "client_closed" };
        }
        if (stalled) return { ok: false, refusal: "stalled" };
        if (chunk.done) break;
        entry.last = performance.now();
        const value = chunk.value;
        total += value.length;
        if (total > limit) {
          await reader.cancel().catch(() => {});
          return { ok: false, refusal: "too_large" };
        }
        // A declared length was reserved up front; an unknown one is counted as it arrives.
        if (countChunks) {
          if (!reserve(value.length)) {
            await reader.cancel().catch(() => {});
            return { ok: false, refusal: "over_budget" };
          }
          counted += value.length;
        }
        if (into) {
          if (total > into.length) {
            await reader.cancel().catch(() => {});
            return { ok: false, refusal: "too_large" };
          }
          into.set(value, total - value.length);
        } else chunks.push(value);
      }
    } finally {
      watched.delete(entry);
      used -= counted;
    }
    if (into) return { ok: true, bytes: total === into.length ? into : into.subarray(0, total) };
    return { ok: true, bytes: join(chunks, total) };
  }

  return {
    async read(req, limit) {
      const declared = req.headers.get("content-length");
      const length = declared === null ? NaN : Number(declared);
      const known = Number.isSafeInteger(length) && length >= 0;
      // A small declared body is read without touching `req.body`: the runtime then hands over the bytes it has
      // already received instead of building a stream around them.
      if (known && length <= SMALL && length <= limit) {
        if (!reserve(length)) {
          await req.body?.cancel().catch(() => {});
          return OVER_BUDGET;
        }
        try {
          return await readSmall(req, length);
        } finally {
          used -= length;
        }
      }
      if (!req.body) return { ok: true, bytes: new Uint8Array(0) };
      if (length > limit) {
        await req.body.cancel().catch(() => {});
        return TOO_LARGE;
      }
      if (known && !reserve(length)) {
        await req.body.cancel().catch(() => {});
        return OVER_BUDGET;
      }
      try {
        return await readStream(req, limit, known ? length : null);
      } finally {
        if (known) used -= length;
      }
    },
    inUse: () => used,
    close() {
      for (const entry of [...watched]) entry.stall();
      if (sweeper !== undefined) clearInterval(sweeper);
      sweeper = undefined;
    },
  };
}

function join(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
