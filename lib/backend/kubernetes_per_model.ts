/**
 * The Kubernetes backend, per-model layout (`layout: "per-model"`): one
 * engine per model, its own Deployment `<target.deployment>-M` (with its own
 * ConfigMap and Service), scaled between 0 and 1 independently of the others.
 *
 * - start: ensure the model's objects (create what is missing, write its
 *   ConfigMap with the engine config, sleep mode included when it may sleep),
 *   give its pod template the model's shape at 0 replicas, scale to 1, wait
 *   (watch) for a Ready pod, then for vLLM's /health through the model's
 *   Service. While its pod is unschedulable the scheduler is told
 *   (`onPending`) so that it can make room; at the deadline the start fails
 *   with the kube scheduler's own message.
 * - stop: scale to 0 and wait until its pod is gone (not just terminating).
 * - sleep / wake: vLLM's own endpoints through the model's Service
 *   (engine_http.ts); the pod lives on and keeps its GPUs; the level is
 *   recorded on the Deployment while it sleeps.
 * - observe: every model's Deployment (by the model label, and the known
 *   models by name), its replicas and pods, and `GET /is_sleeping` on the
 *   ready ones.
 * - describe: every model's Deployment, replicas, pods and sleep state, from a
 *   list + watch of the labelled Deployments and pods.
 *
 * @module
 */
import { type ChillConfig, type NamedModel, perModelNameProblem } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { ModelRegistry } from "../models/registry.ts";
import type { KubeClient, ModelKube, ModelObjectsWatch, ModelState } from "../kube/mod.ts";
import { modelUpstream } from "../manifests/per_model.ts";
import { type EngineCallOptions, probeSleeping, sleepEngine, wakeEngine } from "./engine_http.ts";
import { DEFAULT_PENDING_REPORT_MS, toBackendError, waitHealthy, waitPodReady } from "./kube_common.ts";
import {
  type Backend,
  BackendError,
  type EngineLaunch,
  type Observed,
  type ObservedEngine,
  type StartOptions,
  type WaitOptions,
} from "./types.ts";

/** Options of {@link createPerModelBackend}. */
export interface PerModelBackendOptions {
  /** The validated config (`layout: "per-model"`, namespace, target, vllm, sleepAfter…). */
  config: ChillConfig;
  /** A client from `createKubeClient` (not closed by the backend). */
  client: KubeClient;
  /** Known models (config and VLLMModel objects). */
  registry: ModelRegistry;
  /** Logger. */
  log: Logger;
  /** fetch used for the /health probe (tests). */
  fetch?: typeof fetch;
  /** How often a start whose pod stays unschedulable tells the scheduler again (default 15 s). */
  pendingReportMs?: number;
}

/** Longest one GET /is_sleeping of `observe` may take. */
const PROBE_TIMEOUT_MS = 2000;

/** What the backend knows of one model's engine besides the cluster's word. */
interface EngineInfo {
  readonly kube: ModelKube;
  readonly upstream: string;
  monitor?: AbortController;
  readyPod?: string;
  /** What it waits for now, or the last failure. */
  progress?: string;
  /** The level recorded on its Deployment (null: none). */
  recordedLevel: 1 | 2 | null;
  /** It sleeps now (from the moment /sleep is sent until a wake completes). */
  asleep: boolean;
  operation: "starting" | "falling asleep" | "waking" | "stopping" | null;
  lastError?: { at: string; message: string };
}

/**
 * Creates the per-model Kubernetes backend.
 *
 * @example
 * ```ts ignore
 * import { createPerModelBackend } from "./kubernetes_per_model.ts";
 * const backend = createPerModelBackend({ config, client: kube, registry, log });
 * await backend.start({ key: "a", model: registry.resolve("a")!, gpus: ["0"], sleepMode: true }, { signal, deadline });
 * backend.upstream("a"); // "http://vllm-svc-a.ai-apps.svc:80"
 * ```
 */
export function createPerModelBackend(options: PerModelBackendOptions): Backend {
  const { config, client, registry, log } = options;
  const doFetch = options.fetch ?? fetch;
  const pendingReportMs = options.pendingReportMs ?? DEFAULT_PENDING_REPORT_MS;
  const closer = new AbortController();
  const listeners = new Set<(key: string, reason: string) => void>();
  const engines = new Map<string, EngineInfo>();
  let watch: ModelObjectsWatch | undefined;
  let observedAt: string | undefined;

  const linked = (signal: AbortSignal) => AbortSignal.any([signal, closer.signal]);

  /** The model key "*" (scale-only mode) stands for the default model. */
  const keyOf = (key: string): string => {
    if (key !== "*") return key;
    const models = registry.list();
    const chosen = config.defaultModel ? registry.resolve(config.defaultModel) : models.length === 1 ? models[0] : null;
    if (!chosen) {
      throw new BackendError(
        "failed",
        "the per-model layout needs a model for each engine: without model switching, set defaultModel or configure exactly one model",
      );
    }
    return chosen.name;
  };

  const info = (key: string): EngineInfo => {
    const name = keyOf(key);
    let engine = engines.get(name);
    if (!engine) {
      engine = {
        kube: client.model(name),
        upstream: modelUpstream(config, name),
        recordedLevel: null,
        asleep: false,
        operation: null,
      };
      engines.set(name, engine);
    }
    return engine;
  };

  const notify = (key: string, reason: string) => {
    for (const listener of listeners) {
      try {
        listener(key, reason);
      } catch (error) {
        log.error("failure listener threw", { error });
      }
    }
  };

  const stopMonitor = (engine: EngineInfo) => {
    engine.monitor?.abort();
    engine.monitor = undefined;
  };

  const startMonitor = (key: string, engine: EngineInfo, pod: string) => {
    stopMonitor(engine);
    const controller = new AbortController();
    engine.monitor = controller;
    engine.kube.watchPodLost(pod, AbortSignal.any([controller.signal, closer.signal])).then((reason) => {
      if (!reason || controller.signal.aborted) return;
      if (engine.monitor === controller) engine.monitor = undefined;
      engine.readyPod = undefined;
      engine.progress = reason;
      log.warn("vLLM engine failed while ready", { model: key, reason });
      notify(key, reason);
    });
  };

  const becomeReady = async (key: string, engine: EngineInfo, options: StartOptions): Promise<void> => {
    const signal = linked(options.signal);
    const pod = await waitPodReady(
      (o) => engine.kube.waitReady(o),
      { ...options, signal },
      pendingReportMs,
      (reason) => {
        engine.progress = reason;
        log.info("waiting for model", { model: key, state: reason });
      },
    );
    engine.readyPod = pod;
    engine.progress = `pod ${pod} Ready; waiting for vLLM /health`;
    await waitHealthy(doFetch, engine.upstream, signal, options.deadline);
    engine.progress = undefined;
    log.info("vLLM is ready", { model: key, pod, upstream: engine.upstream });
    startMonitor(key, engine, pod);
  };

  /** Runs one operation on a model's engine, recording what it is doing and its failure. */
  const operate = async <T>(
    key: string,
    engine: EngineInfo,
    operation: NonNullable<EngineInfo["operation"]>,
    run: () => Promise<T>,
  ): Promise<T> => {
    engine.operation = operation;
    try {
      return await run();
    } catch (error) {
      const e = toBackendError(error, `${operation} model ${key}`);
      if (e.kind !== "aborted") engine.lastError = { at: new Date().toISOString(), message: e.message };
      throw e;
    } finally {
      engine.operation = null;
    }
  };

  const call = (key: string, signal: AbortSignal, deadline: number): EngineCallOptions => ({
    name: `model ${key}`,
    signal,
    deadline,
    onAnswer: (what, status, body) => log.warn("vLLM answered an error", { model: key, call: what, status, body }),
  });

  const observedOf = async (state: ModelState, signal: AbortSignal): Promise<ObservedEngine | null> => {
    const engine = info(state.key);
    engine.recordedLevel = state.sleepLevel;
    engine.asleep = false;
    if (state.phase === "absent") return null;
    const observed: ObservedEngine = {
      key: state.key,
      phase: state.phase,
      ...(state.reason ? { reason: state.reason } : {}),
    };
    if (state.phase === "ready") {
      // Never /health to judge sleep: it answers 200 while asleep. A 404 (no sleep mode) reads as awake.
      if (await probeSleeping(engine.upstream, PROBE_TIMEOUT_MS, signal) === true) {
        engine.asleep = true;
        observed.phase = "sleeping";
        if (state.sleepLevel !== null) observed.sleepLevel = state.sleepLevel;
      }
      // An engine found running is watched like one this proxy started: its pod failing is reported.
      const pod = state.pods.find((p) => p.phase === "Ready");
      if (pod && !engine.monitor) {
        engine.readyPod = pod.name;
        startMonitor(state.key, engine, pod.name);
      }
    }
    return observed;
  };

  const backend: Backend = {
    kind: "kubernetes",

    async observe(signal: AbortSignal): Promise<Observed> {
      const s = linked(signal);
      // The watch behind describe(): started with the first read of the world.
      watch ??= client.watchModelObjects(closer.signal);
      let states: ModelState[];
      try {
        states = await client.readModelStates(registry.list().map((m) => m.name), { signal: s });
      } catch (error) {
        throw toBackendError(error, "reading the per-model vLLM state", signal);
      }
      observedAt = new Date().toISOString();
      const engines: ObservedEngine[] = [];
      for (const state of states) {
        const observed = await observedOf(state, s);
        if (observed) engines.push(observed);
      }
      return { engines };
    },

    async start(launch: EngineLaunch, options: StartOptions): Promise<void> {
      const key = keyOf(launch.key);
      const model: NamedModel | undefined = launch.model ?? registry.resolve(key);
      if (!model) throw new BackendError("failed", `model ${key} is not configured`);
      const problem = perModelNameProblem(key, config.target);
      if (problem) throw new BackendError("failed", `model ${key} cannot have its own objects: ${problem}`);
      const engine = info(key);
      const signal = linked(options.signal);
      stopMonitor(engine);
      engine.asleep = false;
      engine.readyPod = undefined;
      await operate(key, engine, "starting", async () => {
        try {
          // Without model switching the objects are the user's: only replicas (and the sleep level) are written.
          let recorded = engine.recordedLevel;
          if (config.enableModelSwitch) {
            const ensured = await engine.kube.ensure(config, model, {
              signal,
              deadline: options.deadline,
              sleepMode: launch.sleepMode,
            });
            recorded ??= ensured.sleepLevel;
            // At 0 replicas, before the scale-up: the new pod gets this model's image, GPUs and resources.
            await engine.kube.applyPodShape(config, model, { signal, deadline: options.deadline });
          }
          // A level recorded by an engine that slept and was stopped: the new one starts awake.
          if (recorded !== null) {
            await engine.kube.setSleepLevel(null, { signal, deadline: options.deadline });
            engine.recordedLevel = null;
          }
          await engine.kube.scale(1, { signal, deadline: options.deadline });
        } catch (error) {
          throw toBackendError(error, `starting model ${key}`, signal);
        }
        await becomeReady(key, engine, options);
      });
    },

    async waitReady(launch: EngineLaunch, options: StartOptions): Promise<void> {
      const key = keyOf(launch.key);
      const engine = info(key);
      await operate(key, engine, "starting", () => becomeReady(key, engine, options));
    },

    async sleep(key: string, level: 1 | 2, options: WaitOptions): Promise<void> {
      const name = keyOf(key);
      const engine = info(name);
      const signal = linked(options.signal);
      const t0 = Date.now();
      log.info("putting the vLLM engine to sleep", { model: name, sleepLevel: level });
      await operate(name, engine, "falling asleep", async () => {
        // Recorded first: a proxy restarted mid-sleep wakes it as deep as it went.
        await engine.kube.setSleepLevel(level, { signal, deadline: options.deadline });
        engine.recordedLevel = level;
        engine.asleep = true;
        await sleepEngine(engine.upstream, level, call(name, signal, options.deadline));
      });
      log.info("vLLM engine asleep", { model: name, sleepLevel: level, ms: Date.now() - t0 });
    },

    async wake(key: string, level: 1 | 2, options: WaitOptions): Promise<void> {
      const name = keyOf(key);
      const engine = info(name);
      const signal = linked(options.signal);
      // Woken as deep as it slept: a level-1 wake of a level-2 sleeper would serve garbage weights.
      const depth = Math.max(level, engine.recordedLevel ?? 1) as 1 | 2;
      const t0 = Date.now();
      log.info("waking the vLLM engine", { model: name, sleepLevel: depth });
      await operate(name, engine, "waking", async () => {
        await wakeEngine(engine.upstream, depth, call(name, signal, options.deadline));
        engine.asleep = false;
        await engine.kube.setSleepLevel(null, { signal, deadline: options.deadline });
        engine.recordedLevel = null;
      });
      log.info("vLLM engine awake", { model: name, sleepLevel: depth, ms: Date.now() - t0 });
    },

    async stop(key: string, options: WaitOptions & { force?: boolean; reason: string }): Promise<void> {
      const name = keyOf(key);
      const engine = info(name);
      const signal = linked(options.signal);
      stopMonitor(engine);
      engine.readyPod = undefined;
      log.info("stopping vLLM", { model: name, reason: options.reason, force: options.force ?? false });
      await operate(name, engine, "stopping", async () => {
        await engine.kube.scale(0, { signal, deadline: options.deadline });
        if (options.force) await engine.kube.forceDeletePods({ signal, deadline: options.deadline });
        await engine.kube.waitGone({
          signal,
          deadline: options.deadline,
          onProgress: (reason) => {
            engine.progress = `stopping: ${reason}`;
            log.info("waiting for the vLLM pod to be gone", { model: name, reason: options.reason, state: reason });
          },
        });
      });
      engine.progress = undefined;
      engine.asleep = false;
      log.info("vLLM stopped: no pod left", { model: name, reason: options.reason });
      if (engine.recordedLevel !== null) {
        // Best effort: the next start clears it too.
        await engine.kube.setSleepLevel(null, { signal, deadline: options.deadline })
          .then(() => engine.recordedLevel = null)
          .catch((error) => log.warn("could not clear the recorded sleep level", { model: name, error }));
      }
    },

    upstream(key: string): string {
      return info(key).upstream;
    },

    onFailure(listener: (key: string, reason: string) => void): void {
      listeners.add(listener);
    },

    describe(): Record<string, unknown> {
      const seen = watch?.view() ?? new Map();
      const keys = [...new Set([...registry.list().map((m) => m.name), ...seen.keys(), ...engines.keys()])];
      const models: Record<string, unknown> = {};
      for (const key of keys) {
        const watched = seen.get(key);
        const engine = engines.get(key);
        const names = engine?.kube.names ?? client.model(key).names;
        models[key] = {
          deployment: names.deployment,
          service: names.service,
          configMap: names.configMap,
          upstream: engine?.upstream ?? modelUpstream(config, key),
          replicas: watched?.replicas ?? 0,
          pods: (watched?.pods ?? []).map((p: { name: string; phase: string; reason?: string; restarts: number }) => ({
            name: p.name,
            phase: p.phase,
            ...(p.reason ? { reason: p.reason } : {}),
            restarts: p.restarts,
          })),
          sleeping: engine?.asleep ?? false,
          sleepLevel: watched?.sleepLevel ?? engine?.recordedLevel ?? null,
          ...(engine?.readyPod ? { readyPod: engine.readyPod } : {}),
          ...(engine?.operation ? { operation: engine.operation } : {}),
          ...(engine?.progress ? { progress: engine.progress } : {}),
          ...(engine?.lastError ? { lastError: engine.lastError } : {}),
        };
      }
      return {
        backend: "kubernetes",
        layout: "per-model",
        namespace: config.namespace,
        maxGpus: config.maxGpus,
        watching: watch?.synced() ?? false,
        observedAt,
        models,
      };
    },

    async close(): Promise<void> {
      for (const engine of engines.values()) stopMonitor(engine);
      closer.abort(new Error("backend closed"));
      await watch?.done;
    },
  };
  return backend;
}
