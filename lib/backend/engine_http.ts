/**
 * The HTTP calls vllm-chill makes to one vLLM engine besides forwarding:
 * readiness (`GET /health`) and sleep mode (`POST /sleep`, `POST /wake_up`,
 * `POST /collective_rpc`, `POST /reset_prefix_cache`, `GET /is_sleeping`).
 *
 * Routes as vLLM v0.11.0 serves them (vllm/entrypoints/openai/api_server.py),
 * only when the engine runs with `VLLM_SERVER_DEV_MODE=1` (:965) and was
 * started with `--enable-sleep-mode` (vllm/engine/arg_utils.py:589):
 *
 * - `POST /sleep?level=N` (:1001-1008): the level is a query parameter
 *   (default "1"); vLLM resets the prefix cache, then sleeps
 *   (vllm/v1/engine/async_llm.py:635-637), and answers 200 with no body.
 * - `POST /wake_up` (:1010-1020): optional repeated `tags` query parameters;
 *   none wakes everything. The tags are "weights" and "kv_cache"
 *   (vllm/executor/executor_base.py:187).
 * - `GET /is_sleeping` (:1022-1026): `{"is_sleeping": bool}`, true until every
 *   tag is awake again (vllm/executor/executor_base.py:213-214). `/health`
 *   (:345-352) answers 200 while asleep, so it never judges sleep.
 * - `POST /collective_rpc` (:1028-1053): JSON body `{"method": …}` (args,
 *   kwargs, timeout optional); `reload_weights` reloads the weights from disk
 *   (vllm/v1/worker/gpu_worker.py:218-219), needed after a level-2 sleep.
 * - `POST /reset_prefix_cache` (:987-999): 200 with no body.
 *
 * Every call has the operation's deadline and signal and its own timeout. A
 * non-2xx answer is a BackendError naming the call and the status; the
 * engine's answer itself goes to `onAnswer` (the log, /admin/status), never
 * into the error.
 *
 * @module
 */
import { STATUS_CODES } from "node:http";
import { delay } from "../delay.ts";
import { BackendError, type WaitOptions } from "./types.ts";

/** A sleep or wake: the operation's deadline and signal, and what to call the engine in messages. */
export interface EngineCallOptions extends WaitOptions {
  /** The engine in messages, e.g. "model a". */
  name: string;
  /** Told of every non-2xx answer, with the start of its body (for the log and /admin/status). */
  onAnswer?: (call: string, status: number, body: string) => void;
}

/** Longest a light call (GET /is_sleeping, POST /reset_prefix_cache) may take. */
const LIGHT_CALL_MS = 10_000;
/** Longest a heavy call (sleep, wake, weight reload: seconds to minutes on a big model) may take. */
const HEAVY_CALL_MS = 600_000;
/** Bytes of an answer's body kept (for the log); the rest is never read. */
const BODY_BYTES = 2048;
/** Slowest poll of GET /is_sleeping. */
const POLL_MAX_MS = 500;

/**
 * Puts the engine at `base` to sleep: `POST /sleep?level=N`, then polls
 * `GET /is_sleeping` until it says true.
 *
 * @example
 * ```ts ignore
 * import { sleepEngine } from "./engine_http.ts";
 * await sleepEngine("http://127.0.0.1:8001", 1, { name: "model a", signal, deadline: Date.now() + 60_000 });
 * ```
 */
export async function sleepEngine(base: string, level: 1 | 2, options: EngineCallOptions): Promise<void> {
  await call(base, "POST", `/sleep?level=${level}`, options, HEAVY_CALL_MS);
  await untilSleeping(base, true, options);
}

/**
 * Wakes the engine at `base` from a sleep of `level`. Level 1: `POST
 * /wake_up`. Level 2 (the weights were dropped): `POST
 * /wake_up?tags=weights`, `POST /collective_rpc {"method":"reload_weights"}`,
 * `POST /wake_up?tags=kv_cache` (docs/features/sleep_mode.md; waking without
 * the reload serves garbage). Then, for both, `POST /reset_prefix_cache` and
 * polls `GET /is_sleeping` until it says false.
 *
 * @example
 * ```ts ignore
 * import { wakeEngine } from "./engine_http.ts";
 * await wakeEngine("http://127.0.0.1:8001", 2, { name: "model a", signal, deadline: Date.now() + 60_000 });
 * ```
 */
export async function wakeEngine(base: string, level: 1 | 2, options: EngineCallOptions): Promise<void> {
  if (level === 1) {
    await call(base, "POST", "/wake_up", options, HEAVY_CALL_MS);
  } else {
    await call(base, "POST", "/wake_up?tags=weights", options, HEAVY_CALL_MS);
    await call(base, "POST", "/collective_rpc", options, HEAVY_CALL_MS, { method: "reload_weights" });
    await call(base, "POST", "/wake_up?tags=kv_cache", options, HEAVY_CALL_MS);
  }
  await call(base, "POST", "/reset_prefix_cache", options, LIGHT_CALL_MS);
  await untilSleeping(base, false, options);
}

/**
 * Resets the prefix cache of the engine at `base` (`POST /reset_prefix_cache`).
 *
 * @example
 * ```ts ignore
 * import { resetPrefixCache } from "./engine_http.ts";
 * await resetPrefixCache("http://127.0.0.1:8001", { name: "model a", signal, deadline: Date.now() + 10_000 });
 * ```
 */
export async function resetPrefixCache(base: string, options: EngineCallOptions): Promise<void> {
  await call(base, "POST", "/reset_prefix_cache", options, LIGHT_CALL_MS);
}

/**
 * One `GET /health`: true on 200. Never throws.
 *
 * @example
 * ```ts
 * import { probeHealth } from "./engine_http.ts";
 * await probeHealth("http://127.0.0.1:1", 200, new AbortController().signal); // false
 * ```
 */
export async function probeHealth(base: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const answer = await get(`${base}/health`, timeoutMs, signal);
  return answer?.status === 200;
}

/**
 * One `GET /is_sleeping`: its `is_sleeping`, or null when the engine gives no
 * such answer (not listening, no sleep mode, not JSON). Never throws.
 *
 * @example
 * ```ts
 * import { probeSleeping } from "./engine_http.ts";
 * await probeSleeping("http://127.0.0.1:1", 200, new AbortController().signal); // null
 * ```
 */
export async function probeSleeping(base: string, timeoutMs: number, signal: AbortSignal): Promise<boolean | null> {
  const answer = await get(`${base}/is_sleeping`, timeoutMs, signal);
  return answer?.status === 200 ? sleepingOf(answer.body) : null;
}

/** Polls GET /is_sleeping until it answers `want`; a missing or malformed answer fails at once. */
async function untilSleeping(base: string, want: boolean, options: EngineCallOptions): Promise<void> {
  let wait = 25;
  let unreachable: BackendError | null = null;
  while (true) {
    if (Date.now() >= options.deadline) {
      throw new BackendError(
        "timeout",
        unreachable
          ? `${unreachable.message}, until the deadline`
          : `GET /is_sleeping of ${options.name} still said ${!want} at the deadline`,
      );
    }
    try {
      const body = await call(base, "GET", "/is_sleeping", options, LIGHT_CALL_MS);
      unreachable = null;
      const sleeping = sleepingOf(body);
      if (sleeping === null) {
        options.onAnswer?.("GET /is_sleeping", 200, body);
        throw new BackendError("failed", `GET /is_sleeping of ${options.name} did not answer {"is_sleeping": bool}`);
      }
      if (sleeping === want) return;
    } catch (e) {
      // No answer at all (a busy engine, a reset connection): ask again until the deadline.
      if (!(e instanceof BackendError) || e.kind !== "unavailable") throw e;
      unreachable = e;
    }
    await delay(Math.min(wait, Math.max(0, options.deadline - Date.now())), options.signal);
    wait = Math.min(wait * 1.5, POLL_MAX_MS);
  }
}

/** One call; resolves to the start of a 2xx answer's body, else throws a BackendError. */
async function call(
  base: string,
  method: "GET" | "POST",
  path: string,
  options: EngineCallOptions,
  capMs: number,
  json?: unknown,
): Promise<string> {
  const what = `${method} ${path}`;
  if (options.signal.aborted) throw abortError(what, options);
  const remaining = options.deadline - Date.now();
  if (remaining <= 0) throw new BackendError("timeout", `${what} of ${options.name} not sent: the deadline has passed`);
  const timeoutMs = Math.min(remaining, capMs);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onAbort = () => controller.abort();
  options.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const res = await fetch(`${base}${path}`, {
      method,
      signal: controller.signal,
      ...(json === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(json) }),
    });
    const body = await readSome(res);
    if (res.status >= 200 && res.status < 300) return body;
    options.onAnswer?.(what, res.status, body);
    const hint = res.status === 404 ? " (vLLM serves it only with VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode)" : "";
    throw new BackendError(
      "failed",
      `${what} of ${options.name} answered ${res.status} ${STATUS_CODES[res.status] ?? ""}`.trimEnd() + hint,
    );
  } catch (e) {
    if (e instanceof BackendError) throw e;
    if (options.signal.aborted) throw abortError(what, options);
    if (timedOut) throw new BackendError("timeout", `${what} of ${options.name} got no answer within ${timeoutMs} ms`);
    throw new BackendError("unavailable", `${what} of ${options.name} got no answer (${networkReason(e)})`);
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener("abort", onAbort);
  }
}

/** One GET that never throws: status and the start of the body, or null without an answer. */
async function get(
  url: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ status: number; body: string } | null> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const onAbort = () => controller.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal.aborted) return null;
    const res = await fetch(url, { signal: controller.signal });
    return { status: res.status, body: await readSome(res) };
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

/** The first {@link BODY_BYTES} of a body as text; the rest is cancelled unread. */
async function readSome(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < BODY_BYTES) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes.subarray(0, BODY_BYTES));
}

/** `is_sleeping` of a `{"is_sleeping": bool}` body, else null. */
function sleepingOf(body: string): boolean | null {
  try {
    const value = (JSON.parse(body) as { is_sleeping?: unknown } | null)?.is_sleeping;
    return typeof value === "boolean" ? value : null;
  } catch {
    return null;
  }
}

function abortError(what: string, options: EngineCallOptions): BackendError {
  const reason = options.signal.reason;
  const why = reason instanceof Error ? reason.message : reason ? String(reason) : "aborted";
  return new BackendError("aborted", `${what} of ${options.name} aborted: ${why}`);
}

/** A fetch failure in a few words (connection refused, reset…), never a response body. */
function networkReason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const known = /connection refused|connection reset|broken pipe|timed out|unexpected eof|connection closed/i.exec(
    text,
  );
  return known ? known[0].toLowerCase() : "network error";
}
