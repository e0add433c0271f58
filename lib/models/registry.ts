/**
 * The model registry: config models plus `VLLMModel` custom resources, looked
 * up by key or by served name. Config models win over a resource of the same
 * name (the file is what the operator reviewed).
 *
 * @module
 */
import type { ModelSpec, NamedModel } from "../config/schema.ts";

/**
 * Known models, updated live as VLLMModel objects come and go.
 *
 * @example
 * ```ts
 * import { ModelRegistry } from "./registry.ts";
 * const registry = new ModelRegistry({ "qwen3-8b": { modelName: "Qwen/Qwen3-8B" } });
 * registry.resolve("qwen3-8b")?.modelName; // "Qwen/Qwen3-8B"
 * ```
 */
export class ModelRegistry {
  #config = new Map<string, NamedModel>();
  #crd = new Map<string, NamedModel>();
  #byServed = new Map<string, NamedModel>();
  #listeners = new Set<() => void>();

  /** Creates a registry from the config's `models`. */
  constructor(configModels: Readonly<Record<string, ModelSpec>> = {}) {
    for (const [name, spec] of Object.entries(configModels)) this.#config.set(name, namedModel(name, spec, "config"));
    this.#reindex();
  }

  /** The model a request names, by key or by served name; undefined when unknown. */
  resolve(name: string): NamedModel | undefined {
    return this.#config.get(name) ?? this.#crd.get(name) ?? this.#byServed.get(name);
  }

  /** Every known model, config ones first, each name once. */
  list(): NamedModel[] {
    const out = [...this.#config.values()];
    for (const [name, model] of this.#crd) if (!this.#config.has(name)) out.push(model);
    return out;
  }

  /** The first model (config order, then resources by name): the initial configuration. */
  first(): NamedModel | undefined {
    return this.list()[0];
  }

  /** Adds or replaces a model declared by a VLLMModel object. */
  setCrdModel(name: string, spec: ModelSpec): void {
    this.#crd.set(name, namedModel(name, spec, "crd"));
    this.#reindex();
  }

  /** Removes a model declared by a VLLMModel object. */
  deleteCrdModel(name: string): void {
    if (this.#crd.delete(name)) this.#reindex();
  }

  /** Replaces every resource-declared model at once (after a list). */
  replaceCrdModels(models: ReadonlyMap<string, ModelSpec>): void {
    this.#crd = new Map(
      [...models].sort(([a], [b]) => a.localeCompare(b)).map(([n, s]) => [n, namedModel(n, s, "crd")]),
    );
    this.#reindex();
  }

  /** Calls `listener` after every change; returns a function that unsubscribes. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #reindex(): void {
    this.#byServed = new Map();
    for (const model of this.list()) {
      if (!this.#byServed.has(model.servedModelName)) this.#byServed.set(model.servedModelName, model);
    }
    for (const listener of this.#listeners) listener();
  }
}

/**
 * Model `name` as the rest of the proxy sees it: its spec, its key, its served name (the key unless set).
 *
 * @example
 * ```ts
 * import { namedModel } from "./registry.ts";
 * namedModel("qwen3-8b", { modelName: "Qwen/Qwen3-8B" }, "config").servedModelName; // "qwen3-8b"
 * ```
 */
export function namedModel(name: string, spec: ModelSpec, source: NamedModel["source"]): NamedModel {
  return { ...spec, name, servedModelName: spec.servedModelName ?? name, source };
}
