/**
 * List-then-watch, the informer pattern without the cache library: list to
 * get the full state and a resourceVersion, watch from it, and on a broken
 * watch (410 Gone, an ERROR event, another HTTP error) list again, so no
 * change is ever missed. A watch the server ends, or whose connection resets
 * (noticed at once: the stream runs on Deno's fetch, see `watch_stream.ts`),
 * is resumed from the last resourceVersion seen, bookmarks included; if that
 * version was compacted meanwhile, the server's 410 leads to a fresh list.
 *
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { ForbiddenError, toKubeError } from "./errors.ts";
import { backoffDelay, sleep } from "./retry.ts";
import { streamWatch, type WatchEvent } from "./watch_stream.ts";

/**
 * Default longest life of one watch request (ms): 5 minutes. Resets are
 * noticed at once, so this only bounds a connection that died silently.
 *
 * @example
 * ```ts
 * import { DEFAULT_WATCH_TIMEOUT_MS } from "./list_watch.ts";
 * DEFAULT_WATCH_TIMEOUT_MS; // 300000
 * ```
 */
export const DEFAULT_WATCH_TIMEOUT_MS = 300_000;

/** A Kubernetes object as far as list/watch care. */
export interface WatchedObject {
  /** Object metadata. */
  metadata?: { name?: string; resourceVersion?: string };
}

/** What one list + watch loop does with what it sees. */
export interface ListWatchSpec<T extends WatchedObject> {
  /** Watch path, e.g. `/api/v1/namespaces/ai-apps/pods`. */
  path: string;
  /** Extra query for the watch (labelSelector…). */
  query?: Record<string, string>;
  /** Lists the objects; returns them and the list's resourceVersion. */
  list(signal: AbortSignal): Promise<{ items: T[]; resourceVersion: string }>;
  /** Called with the full state after every (re-)list. */
  onList(items: T[]): void;
  /** Called for every ADDED/MODIFIED/DELETED event. */
  onEvent(type: "ADDED" | "MODIFIED" | "DELETED", object: T): void;
  /**
   * Called when the list fails; return the delay (ms) before listing again,
   * or throw to end the loop with that error. Default: backoff, 50 ms to 1 s.
   */
  onListError?(error: unknown, attempt: number): number;
  /** Called when a watch breaks and the loop lists again (logging, tests). */
  onRelist?(why: string): void;
  /**
   * Longest one watch request lives (ms, default 5 min): enforced locally, so
   * a connection that died silently is replaced; the server-side
   * `timeoutSeconds` is set a little below it.
   */
  timeoutMs?: number;
}

/**
 * Runs list + watch until `signal` aborts (then resolves) or `onListError`
 * throws (then rejects). Errors thrown by `onList`/`onEvent` also end it.
 *
 * @example
 * ```ts ignore
 * import { runListWatch } from "./list_watch.ts";
 * await runListWatch(kubeConfig, {
 *   path: "/api/v1/namespaces/ai-apps/pods",
 *   list: async () => ({ items: [], resourceVersion: "1" }),
 *   onList: (pods) => console.log(pods.length),
 *   onEvent: (type, pod) => console.log(type, pod.metadata?.name),
 * }, signal);
 * ```
 */
export async function runListWatch<T extends WatchedObject>(
  kubeConfig: KubeConfig,
  spec: ListWatchSpec<T>,
  signal: AbortSignal,
): Promise<void> {
  let resourceVersion: string | undefined;
  let listErrors = 0;
  let idleWatches = 0;
  while (!signal.aborted) {
    if (resourceVersion === undefined) {
      try {
        const listed = await spec.list(signal);
        if (signal.aborted) return;
        listErrors = 0;
        resourceVersion = listed.resourceVersion;
        spec.onList(listed.items);
      } catch (error) {
        if (signal.aborted) return;
        const delay = spec.onListError ? spec.onListError(error, listErrors) : backoffDelay(listErrors, 50, 1000);
        listErrors++;
        try {
          await sleep(delay, signal);
        } catch {
          return;
        }
        continue;
      }
    }
    const outcome = await watchOnce(kubeConfig, spec, resourceVersion, signal);
    if (signal.aborted || outcome.kind === "aborted") return;
    if (outcome.kind === "failed") throw outcome.error;
    idleWatches = outcome.sawData ? 0 : idleWatches + 1;
    if (outcome.kind === "closed" && outcome.resourceVersion) {
      resourceVersion = outcome.resourceVersion;
      if (idleWatches) await pause(idleWatches, signal);
      continue;
    }
    spec.onRelist?.(outcome.kind === "broken" ? outcome.why : "watch closed without a resourceVersion");
    resourceVersion = undefined;
    if (idleWatches) await pause(idleWatches, signal);
  }
}

/** A watch that lived this long (ms) without an event still counts as useful (no backoff before the next). */
const QUIET_WATCH_MS = 1000;

type WatchOutcome =
  | { kind: "closed"; resourceVersion?: string; sawData: boolean }
  | { kind: "broken"; why: string; sawData: boolean }
  | { kind: "failed"; error: unknown }
  | { kind: "aborted" };

/** A growing pause (to 2 s) before re-watching after watches that produced nothing, so a failing server is not hammered. */
async function pause(attempt: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(backoffDelay(attempt, 50, 2000), signal);
  } catch {
    // aborted: the loop checks the signal
  }
}

async function watchOnce<T extends WatchedObject>(
  kubeConfig: KubeConfig,
  spec: ListWatchSpec<T>,
  from: string,
  signal: AbortSignal,
): Promise<WatchOutcome> {
  if (signal.aborted) return { kind: "aborted" };
  let resourceVersion = from;
  let sawData = false;
  const started = Date.now();
  // A watch that delivered events, or lived a while, is no sign of a failing server: re-watch without a pause.
  const useful = () => sawData || Date.now() - started >= QUIET_WATCH_MS;
  // Set by an event that ends the watch (ERROR, a failing handler) or by the local expiry, which then abort `stop`.
  let ended: WatchOutcome | undefined;
  const stop = new AbortController();
  const end = (outcome: WatchOutcome) => {
    ended ??= outcome;
    stop.abort(new Error("watch ended"));
  };
  const timeoutMs = spec.timeoutMs ?? DEFAULT_WATCH_TIMEOUT_MS;
  // The server ends the watch after timeoutSeconds (a little earlier); this local bound catches a connection
  // that died silently (no reset, no data).
  const expiry = setTimeout(() => end({ kind: "closed", resourceVersion, sawData: true }), timeoutMs);
  const onEvent = ({ type, object }: WatchEvent) => {
    if (ended) return;
    sawData = true;
    const item = object as T & { code?: number; message?: string };
    if (type === "ERROR") {
      const error = toKubeError({ code: item?.code, body: item });
      return end({ kind: "broken", why: `watch ERROR event: ${error.status} ${error.message}`, sawData: false });
    }
    const rv = item?.metadata?.resourceVersion;
    if (rv) resourceVersion = rv;
    if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED") return; // BOOKMARK: only the version counts
    try {
      spec.onEvent(type, item);
    } catch (error) {
      end({ kind: "failed", error });
    }
  };
  const query = {
    ...spec.query,
    resourceVersion: from,
    allowWatchBookmarks: "true",
    timeoutSeconds: String(serverTimeoutSeconds(timeoutMs)),
  };
  try {
    await streamWatch(kubeConfig, { path: spec.path, query, onEvent }, AbortSignal.any([signal, stop.signal]));
    return ended ?? { kind: "closed", resourceVersion, sawData: useful() };
  } catch (error) {
    if (signal.aborted) return { kind: "aborted" };
    if (ended) return ended;
    const kubeError = toKubeError(error);
    if (kubeError instanceof ForbiddenError) {
      const message = `watching ${spec.path} is forbidden (HTTP ${kubeError.status}): ${kubeError.message}; ` +
        `the Role must grant "watch"`;
      return { kind: "failed", error: new ForbiddenError(kubeError.status, kubeError.reason, message) };
    }
    // A connection that broke (reset, cut mid-event, refused): resume from the last version seen; if history
    // was compacted meanwhile the server answers 410 and the loop lists again.
    if (kubeError.status === 0) return { kind: "closed", resourceVersion, sawData: useful() };
    return { kind: "broken", why: `watch failed: HTTP ${kubeError.status} ${kubeError.message}`, sawData: useful() };
  } finally {
    clearTimeout(expiry);
  }
}

/** The server-side `timeoutSeconds` for a client-side bound: a little below it (10%, at most 10 s), at least 1 s. */
function serverTimeoutSeconds(timeoutMs: number): number {
  return Math.max(1, Math.floor((timeoutMs - Math.min(10_000, timeoutMs / 10)) / 1000));
}
