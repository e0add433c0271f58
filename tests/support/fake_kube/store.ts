/**
 * The fake's etcd: objects by resource/namespace/name, one global
 * resourceVersion counter, a bounded event history for watches, and live
 * subscribers (watch streams and the simulated controllers).
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import type { ResourceName } from "./resources.ts";
import { expired } from "./status.ts";

/** A watch event type. */
export type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** One stored change. */
export interface StoreEvent {
  rv: number;
  type: EventType;
  resource: ResourceName;
  namespace: string;
  object: any;
  /** The object before a MODIFIED change. */
  previous?: any;
}

/** A listener of store changes. */
export type StoreListener = (event: StoreEvent) => void;

/**
 * In-memory object store.
 *
 * @example
 * ```ts
 * import { ObjectStore } from "./store.ts";
 * const store = new ObjectStore();
 * store.insert("configmaps", { metadata: { name: "a", namespace: "ns" } });
 * store.get("configmaps", "ns", "a")?.metadata.resourceVersion; // "1"
 * ```
 */
export class ObjectStore {
  #objects = new Map<string, any>();
  #history: StoreEvent[] = [];
  #listeners = new Set<StoreListener>();
  #rv = 0;
  #uid = 0;
  /** Events kept for watch replay. */
  historyLimit = 1000;
  /** Lowest resourceVersion a watch may resume from (raised by compaction). */
  #compactedRv = 0;

  #key(resource: string, namespace: string, name: string): string {
    return `${resource}/${namespace}/${name}`;
  }

  /** Current global resourceVersion. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Watches and continue tokens older than this resourceVersion are expired. */
  get compactedResourceVersion(): number {
    return this.#compactedRv;
  }

  /** Next uid. */
  newUid(): string {
    this.#uid++;
    const hex = this.#uid.toString(16).padStart(12, "0");
    return `00000000-0000-4000-8000-${hex}`;
  }

  /** Returns a copy of the stored object, or undefined. */
  get(resource: ResourceName, namespace: string, name: string): any | undefined {
    const obj = this.#objects.get(this.#key(resource, namespace, name));
    return obj === undefined ? undefined : structuredClone(obj);
  }

  /** Copies of every object of a resource, in one namespace or all; sorted by namespace then name. */
  list(resource: ResourceName, namespace?: string): any[] {
    const out: any[] = [];
    for (const obj of this.#objects.values()) {
      if (obj.__resource !== resource) continue;
      if (namespace !== undefined && (obj.metadata.namespace ?? "") !== namespace) continue;
      out.push(structuredClone(obj));
    }
    return out
      .sort((a, b) =>
        (a.metadata.namespace ?? "") === (b.metadata.namespace ?? "")
          ? a.metadata.name.localeCompare(b.metadata.name)
          : (a.metadata.namespace ?? "").localeCompare(b.metadata.namespace ?? "")
      )
      .map(strip);
  }

  /** Stores a new object (metadata.name/namespace set), stamping uid, rv, creationTimestamp. */
  insert(resource: ResourceName, obj: any): any {
    const meta = obj.metadata;
    meta.uid ??= this.newUid();
    meta.creationTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, "Z");
    return this.#write("ADDED", resource, obj);
  }

  /** Replaces an existing object, bumping its resourceVersion. */
  replace(resource: ResourceName, obj: any): any {
    return this.#write("MODIFIED", resource, obj);
  }

  /** Removes an object; the DELETED event carries a new resourceVersion. */
  remove(resource: ResourceName, namespace: string, name: string): any | undefined {
    const key = this.#key(resource, namespace, name);
    const current = this.#objects.get(key);
    if (!current) return undefined;
    this.#objects.delete(key);
    const obj = strip(structuredClone(current));
    obj.metadata.resourceVersion = String(++this.#rv);
    this.#emit({ rv: this.#rv, type: "DELETED", resource, namespace, object: obj });
    return structuredClone(obj);
  }

  #write(type: EventType, resource: ResourceName, obj: any): any {
    const meta = obj.metadata;
    const key = this.#key(resource, meta.namespace ?? "", meta.name);
    const previous = this.#objects.get(key);
    meta.resourceVersion = String(++this.#rv);
    const stored = structuredClone(strip(obj));
    Object.defineProperty(stored, "__resource", { value: resource, enumerable: false });
    this.#objects.set(key, stored);
    this.#emit({
      rv: this.#rv,
      type,
      resource,
      namespace: meta.namespace ?? "",
      object: structuredClone(strip(stored)),
      previous: previous ? strip(structuredClone(previous)) : undefined,
    });
    return structuredClone(strip(stored));
  }

  #emit(event: StoreEvent): void {
    this.#history.push(event);
    if (this.#history.length > this.historyLimit) {
      const dropped = this.#history.splice(0, this.#history.length - this.historyLimit);
      this.#compactedRv = Math.max(this.#compactedRv, dropped[dropped.length - 1].rv);
    }
    for (const listener of [...this.#listeners]) listener(event);
  }

  /** Forgets the event history: a watch from an older resourceVersion gets 410 Expired. */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#history = [];
  }

  /**
   * Events of `resource` after resourceVersion `rv`; throws 410 Expired when
   * that point is older than the retained history.
   */
  eventsSince(resource: ResourceName, rv: number): StoreEvent[] {
    if (rv < this.#compactedRv) throw expired(String(rv));
    return this.#history.filter((e) => e.rv > rv && e.resource === resource);
  }

  /** Subscribes to every change; returns the unsubscribe function. */
  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

function strip(obj: any): any {
  return obj;
}
