/**
 * List-then-watch, the informer pattern without the cache library: list to
 * get the full state and a resourceVersion, watch from it, and on a broken
 * watch (410 Gone, an ERROR event, a reset connection) list again, so no
 * change is ever missed. A watch the server simply ends is resumed from the
 * last resourceVersion seen.
 *
 * @module
 */
import { type KubeConfig, Watch } from "@kubernetes/client-node";
import { ForbiddenError, toKubeError } from "./errors.ts";
import { backoffDelay, sleep } from "./retry.ts";

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
   * Longest one watch request lives (ms): sent as `timeoutSeconds` and
   * enforced locally too, so a connection that died silently is replaced.
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

function watchOnce<T extends WatchedObject>(
  kubeConfig: KubeConfig,
  spec: ListWatchSpec<T>,
  from: string,
  signal: AbortSignal,
): Promise<WatchOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    let controller: AbortController | undefined;
    let resourceVersion = from;
    let sawData = false;
    const timeoutMs = spec.timeoutMs ?? 60_000;
    const finish = (outcome: WatchOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(expiry);
      signal.removeEventListener("abort", onAbort);
      controller?.abort();
      resolve(outcome);
    };
    const onAbort = () => finish({ kind: "aborted" });
    signal.addEventListener("abort", onAbort, { once: true });
    // The server ends the watch after timeoutSeconds; the local timer (a little later) catches a dead connection.
    const expiry = setTimeout(
      () => finish({ kind: "closed", resourceVersion, sawData: true }),
      timeoutMs + Math.min(2000, timeoutMs / 2),
    );
    const query = {
      ...spec.query,
      resourceVersion: from,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(Math.max(1, Math.round(timeoutMs / 1000))),
    };
    const onData = (type: string, object: T & { code?: number; message?: string }) => {
      if (settled) return;
      sawData = true;
      if (type === "ERROR") {
        const error = toKubeError({ code: object?.code, body: object });
        finish({ kind: "broken", why: `watch ERROR event: ${error.status} ${error.message}`, sawData: false });
        return;
      }
      const rv = object?.metadata?.resourceVersion;
      if (rv) resourceVersion = rv;
      if (type === "BOOKMARK") return;
      if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED") return;
      try {
        spec.onEvent(type, object);
      } catch (error) {
        finish({ kind: "failed", error });
      }
    };
    const onDone = (error: unknown) => {
      if (!error) return finish({ kind: "closed", resourceVersion, sawData });
      const kubeError = toKubeError(error);
      if (kubeError instanceof ForbiddenError) {
        // client-node's Watch drops the Status body of a refused watch: say what was refused.
        const message = `watching ${spec.path} is forbidden (HTTP ${kubeError.status}): the Role must grant "watch"`;
        return finish({ kind: "failed", error: new ForbiddenError(kubeError.status, "Forbidden", message) });
      }
      finish({ kind: "broken", why: `watch ended: ${kubeError.status || ""} ${kubeError.message}`.trim(), sawData });
    };
    if (signal.aborted) return finish({ kind: "aborted" });
    new Watch(kubeConfig).watch(spec.path, query, onData, onDone).then(
      (c) => {
        controller = c;
        if (settled) c.abort();
      },
      (error) => onDone(error ?? new Error("watch failed")),
    );
  });
}
