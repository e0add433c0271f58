/**
 * Watch streams: newline-delimited JSON events, replay from a
 * resourceVersion (ERROR 410 Expired when too old), synthetic ADDED events
 * for a watch without one, selector transitions (an object leaving a
 * selector is DELETED for that watcher), bookmarks and timeoutSeconds.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import type { ObjectStore, StoreEvent } from "./store.ts";
import { apiVersionOf, type ResourceInfo } from "./resources.ts";
import { ApiError } from "./status.ts";
import type { Matcher } from "./selectors.ts";
import { fieldsOf } from "./selectors.ts";
import { toTable } from "./table.ts";

/** What a watch asks for. */
export interface WatchSpec {
  info: ResourceInfo;
  /** Namespace, or undefined for all namespaces. */
  namespace: string | undefined;
  labels: Matcher;
  fields: Matcher;
  resourceVersion: string | null;
  allowBookmarks: boolean;
  sendInitialEvents: boolean;
  timeoutSeconds: number | null;
  bookmarkMs: number;
  /** Send each object as a one-row Table (kubectl get --watch). */
  table: { includeObject: string | null } | null;
}

/** An open watch stream. */
export interface OpenWatch {
  resource: string;
  /** Ends the stream cleanly (server shutdown). */
  close(): void;
  /** Breaks the connection abruptly (fault injection). */
  drop(): void;
}

const encoder = new TextEncoder();

/**
 * Opens a watch on the store; `registry` tracks it until it ends.
 *
 * @example
 * ```ts ignore
 * const response = openWatch(store, spec, registry);
 * ```
 */
export function openWatch(store: ObjectStore, spec: WatchSpec, registry: Set<OpenWatch>): Response {
  const { info } = spec;
  const timers: ReturnType<typeof setTimeout>[] = [];
  let unsubscribe = () => {};
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let ended = false;

  const matches = (obj: any) =>
    obj !== undefined &&
    (spec.namespace === undefined || obj.metadata?.namespace === spec.namespace) &&
    spec.labels(obj.metadata?.labels ?? {}) &&
    spec.fields(fieldsOf(obj));
  let firstTable = true;
  const typed = (obj: any) => {
    const full = { apiVersion: apiVersionOf(info), kind: info.kind, ...obj };
    if (!spec.table) return full;
    const table: any = toTable(info, [full], obj.metadata.resourceVersion, spec.table.includeObject);
    if (!firstTable) table.columnDefinitions = null;
    firstTable = false;
    return table;
  };
  const send = (type: string, object: unknown) => {
    if (ended) return;
    controller.enqueue(encoder.encode(JSON.stringify({ type, object }) + "\n"));
  };
  const deliver = (e: StoreEvent) => {
    if (e.resource !== info.name) return;
    const now = matches(e.object);
    if (e.type === "ADDED" && now) send("ADDED", typed(e.object));
    else if (e.type === "DELETED" && now) send("DELETED", typed(e.object));
    else if (e.type === "MODIFIED") {
      const before = e.previous === undefined ? now : matches(e.previous);
      if (now && before) send("MODIFIED", typed(e.object));
      else if (now) send("ADDED", typed(e.object));
      else if (before) send("DELETED", typed(e.object));
    }
  };
  const bookmark = (annotations?: Record<string, string>) =>
    send("BOOKMARK", {
      kind: info.kind,
      apiVersion: apiVersionOf(info),
      metadata: { resourceVersion: String(store.resourceVersion), ...(annotations ? { annotations } : {}) },
    });
  const cleanup = () => {
    if (ended) return;
    ended = true;
    unsubscribe();
    for (const t of timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    registry.delete(handle);
  };
  const handle: OpenWatch = {
    resource: info.name,
    close() {
      if (ended) return;
      cleanup();
      try {
        controller.close();
      } catch { /* already closed */ }
    },
    drop() {
      if (ended) return;
      // Ends the stream without a closing event, as a restarting API server does. (A TCP reset mid-body
      // is not reported by undici under Deno, so client-node would only notice after its 30 s idle timeout.)
      cleanup();
      try {
        controller.close();
      } catch { /* already closed */ }
    },
  };

  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      registry.add(handle);
      const rv = spec.resourceVersion;
      const initial = !rv || rv === "0" || spec.sendInitialEvents;
      if (initial) {
        for (const obj of store.list(info.name, spec.namespace)) if (matches(obj)) send("ADDED", typed(obj));
        if (spec.sendInitialEvents && spec.allowBookmarks) bookmark({ "k8s.io/initial-events-end": "true" });
      } else {
        const since = Number(rv);
        if (!Number.isInteger(since) || since < 0) {
          send("ERROR", new ApiError(400, "BadRequest", `invalid resource version: ${rv}`).body());
          handle.close();
          return;
        }
        let replay: StoreEvent[];
        try {
          replay = store.eventsSince(info.name, since);
        } catch (err) {
          send("ERROR", (err as ApiError).body());
          handle.close();
          return;
        }
        for (const e of replay) deliver(e);
      }
      unsubscribe = store.subscribe(deliver);
      if (spec.allowBookmarks) timers.push(setInterval(() => bookmark(), spec.bookmarkMs));
      if (spec.timeoutSeconds !== null) timers.push(setTimeout(() => handle.close(), spec.timeoutSeconds * 1000));
    },
    cancel() {
      cleanup();
    },
  });
  return new Response(stream, {
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "no-cache, private" },
  });
}
