/**
 * The Kubernetes backend, shared layout: one vLLM Deployment is the only
 * engine slot (one model at a time; the scheduler's policy says so). Starting
 * writes the model's configuration (with vLLM's sleep mode when the model may
 * sleep) and gives the pod template the model's shape (model switching), and
 * scales to 1, then waits (watch) for a Ready pod and for vLLM's own /health
 * through the upstream URL; stopping scales to 0 and waits until the pod is
 * really gone. Sleep and wake go through vLLM's own endpoints on the upstream
 * (engine_http.ts); the pod lives on (it keeps its GPU allocation), and the
 * level is recorded on the Deployment while it sleeps.
 *
 * @module
 */
import type { ChillConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { ModelRegistry } from "../models/registry.ts";
import type { KubeClient } from "../kube/client.ts";
import { type KubeState, toObserved } from "../kube/state.ts";
import { watchPodLost } from "../kube/waits.ts";
import { type EngineCallOptions, probeSleeping, sleepEngine, wakeEngine } from "./engine_http.ts";
import { DEFAULT_PENDING_REPORT_MS, toBackendError, waitHealthy, waitPodReady } from "./kube_common.ts";
import type { Backend, EngineLaunch, Observed, StartOptions, WaitOptions } from "./types.ts";

/** Options of {@link createKubernetesBackend}. */
export interface KubernetesBackendOptions {
  /** The validated config (namespace, target, enableModelSwitch…). */
  config: ChillConfig;
  /** A client from `createKubeClient` (not closed by the backend). */
  client: KubeClient;
  /** The model registry (the first model is the initial configuration). */
  registry: ModelRegistry;
  /** Logger. */
  log: Logger;
  /** Where to forward; default `config.target.url` or `http://<service>:<port>`. */
  upstreamUrl?: string;
  /** True when the caller already ran `ensureVllmResources` successfully at start. */
  resourcesEnsured?: boolean;
  /** fetch used for the /health probe (tests). */
  fetch?: typeof fetch;
  /** How often a start whose pod stays unschedulable tells the scheduler again (default 15 s). */
  pendingReportMs?: number;
}

/** Longest one GET /is_sleeping of `observe` may take. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Creates the Kubernetes backend.
 *
 * @example
 * ```ts ignore
 * import { createKubernetesBackend } from "./kubernetes.ts";
 * const backend = createKubernetesBackend({ config, client: kube, registry, log });
 * await backend.start(registry.resolve("qwen3-8b")!, { signal, deadline: Date.now() + config.startTimeout });
 * ```
 */
export function createKubernetesBackend(options: KubernetesBackendOptions): Backend {
  const { config, client, log } = options;
  const upstreamUrl = (options.upstreamUrl ?? config.target.url?.replaceAll("{service}", config.target.service) ??
    `http://${config.target.service}:${config.target.port}`).replace(/\/+$/, "");
  const doFetch = options.fetch ?? fetch;
  const pendingReportMs = options.pendingReportMs ?? DEFAULT_PENDING_REPORT_MS;
  const closer = new AbortController();
  const listeners = new Set<(key: string, reason: string) => void>();
  /** The key of the engine the Deployment runs (from the last start or observe). */
  let currentKey: string | null = null;
  let ensured = options.resourcesEnsured ?? false;
  let monitor: AbortController | undefined;
  let last: { state?: KubeState; readyPod?: string; progress?: string; at?: string } = {};
  /** The engine's sleep: the level recorded on the Deployment (null: none), and whether it sleeps now. */
  let recordedLevel: 1 | 2 | null = null;
  let asleep = false;
  let operation: "falling asleep" | "waking" | null = null;

  const linked = (signal: AbortSignal) => AbortSignal.any([signal, closer.signal]);

  const stopMonitor = () => {
    monitor?.abort();
    monitor = undefined;
  };

  const startMonitor = (podName: string) => {
    stopMonitor();
    const controller = new AbortController();
    monitor = controller;
    watchPodLost(client.context, podName, AbortSignal.any([controller.signal, closer.signal])).then((reason) => {
      if (!reason || controller.signal.aborted) return;
      if (monitor === controller) monitor = undefined;
      last = { ...last, readyPod: undefined, progress: reason };
      log.warn("vLLM engine failed while ready", { reason });
      const key = currentKey;
      if (key === null) return;
      for (const listener of listeners) {
        try {
          listener(key, reason);
        } catch (error) {
          log.error("failure listener threw", { error });
        }
      }
    });
  };

  const becomeReady = async (what: string, options: StartOptions): Promise<void> => {
    const signal = linked(options.signal);
    const pod = await waitPodReady((o) => client.waitReady(o), { ...options, signal }, pendingReportMs, (reason) => {
      last = { ...last, progress: reason };
      log.info(`waiting for ${what}`, { state: reason });
    });
    last = { ...last, readyPod: pod, progress: `pod ${pod} Ready; waiting for vLLM /health` };
    await waitHealthy(doFetch, upstreamUrl, signal, options.deadline);
    last = { ...last, progress: undefined };
    log.info("vLLM is ready", { pod, upstream: upstreamUrl });
    startMonitor(pod);
  };

  const call = (key: string, signal: AbortSignal, deadline: number): EngineCallOptions => ({
    name: `model ${key}`,
    signal,
    deadline,
    onAnswer: (what, status, body) => log.warn("vLLM answered an error", { model: key, call: what, status, body }),
  });

  const backend: Backend = {
    kind: "kubernetes",

    async observe(signal: AbortSignal): Promise<Observed> {
      try {
        const state = await client.readState({ signal: linked(signal) });
        last = { ...last, state, at: new Date().toISOString() };
        const observed = toObserved(state);
        currentKey = observed.engines[0]?.key ?? currentKey;
        const engine = observed.engines[0];
        asleep = false;
        if (engine?.phase === "ready") {
          // Never /health to judge sleep: it answers 200 while asleep. A 404 (no sleep mode) reads as awake.
          const sleeping = await probeSleeping(upstreamUrl, PROBE_TIMEOUT_MS, linked(signal));
          recordedLevel = await client.readSleepLevel({ signal: linked(signal) });
          if (sleeping === true) {
            asleep = true;
            engine.phase = "sleeping";
            if (recordedLevel !== null) engine.sleepLevel = recordedLevel;
          }
        }
        return observed;
      } catch (error) {
        throw toBackendError(error, "reading the vLLM state", signal);
      }
    },

    async start(launch: EngineLaunch, options: StartOptions): Promise<void> {
      const { model } = launch;
      const signal = linked(options.signal);
      stopMonitor();
      currentKey = launch.key;
      asleep = false;
      try {
        if (model && config.enableModelSwitch) {
          // Resources may be missing (no model at start, or deleted since): create what is missing first.
          if (!ensured) {
            ensured = (await client.ensureVllmResources(config, model, { signal, deadline: options.deadline })).ensured;
          }
          // Always written (and remembered by the client) so a concurrent start-up ensure cannot undo it.
          await client.writeActiveModel(config, model, {
            signal,
            deadline: options.deadline,
            sleepMode: launch.sleepMode,
          });
          // At 0 replicas, before the scale-up: the new pod gets this model's image, GPUs and resources.
          await client.applyModelPodShape(config, model, { signal, deadline: options.deadline });
        }
        // A level recorded by an engine that slept and was stopped: the new one starts awake.
        if (recordedLevel !== null) {
          await client.setSleepLevel(null, { signal, deadline: options.deadline });
          recordedLevel = null;
        }
        await client.scale(1, { signal, deadline: options.deadline });
      } catch (error) {
        throw toBackendError(error, `starting ${model ? `model ${model.name}` : "vLLM"}`, signal);
      }
      await becomeReady(model ? `model ${model.name}` : "vLLM", options);
    },

    async waitReady(launch: EngineLaunch, options: StartOptions): Promise<void> {
      currentKey = launch.key;
      await becomeReady(launch.model ? `model ${launch.model.name}` : "vLLM", options);
    },

    async sleep(key: string, level: 1 | 2, options: WaitOptions): Promise<void> {
      const signal = linked(options.signal);
      const t0 = Date.now();
      log.info("putting the vLLM engine to sleep", { model: key, sleepLevel: level });
      operation = "falling asleep";
      try {
        // Recorded first: a proxy restarted mid-sleep wakes it as deep as it went.
        await client.setSleepLevel(level, { signal, deadline: options.deadline });
        recordedLevel = level;
        asleep = true;
        await sleepEngine(upstreamUrl, level, call(key, signal, options.deadline));
      } catch (error) {
        throw toBackendError(error, `putting model ${key} to sleep`, signal);
      } finally {
        operation = null;
      }
      log.info("vLLM engine asleep", { model: key, sleepLevel: level, ms: Date.now() - t0 });
    },

    async wake(key: string, level: 1 | 2, options: WaitOptions): Promise<void> {
      const signal = linked(options.signal);
      // Woken as deep as it slept: a level-1 wake of a level-2 sleeper would serve garbage weights.
      const depth = Math.max(level, recordedLevel ?? 1) as 1 | 2;
      const t0 = Date.now();
      log.info("waking the vLLM engine", { model: key, sleepLevel: depth });
      operation = "waking";
      try {
        await wakeEngine(upstreamUrl, depth, call(key, signal, options.deadline));
        asleep = false;
        await client.setSleepLevel(null, { signal, deadline: options.deadline });
        recordedLevel = null;
      } catch (error) {
        throw toBackendError(error, `waking model ${key}`, signal);
      } finally {
        operation = null;
      }
      log.info("vLLM engine awake", { model: key, sleepLevel: depth, ms: Date.now() - t0 });
    },

    async stop(_key: string, options: WaitOptions & { force?: boolean; reason: string }): Promise<void> {
      const signal = linked(options.signal);
      stopMonitor();
      last = { ...last, readyPod: undefined, progress: `stopping: ${options.reason}` };
      log.info("stopping vLLM", { reason: options.reason, force: options.force ?? false });
      try {
        await client.scale(0, { signal, deadline: options.deadline });
        if (options.force) await client.forceDeletePods({ signal, deadline: options.deadline });
      } catch (error) {
        throw toBackendError(error, "stopping vLLM", signal);
      }
      await client.waitGone({
        signal,
        deadline: options.deadline,
        onProgress: (reason) => {
          last = { ...last, progress: `stopping: ${reason}` };
          // Said in the log too: a stop that waits (a pod stuck terminating) must say why.
          log.info("waiting for the vLLM pod to be gone", { reason: options.reason, state: reason });
        },
      });
      last = { ...last, progress: undefined };
      asleep = false;
      log.info("vLLM stopped: no pod left", { reason: options.reason });
      if (recordedLevel !== null) {
        // Best effort: the next start clears it too.
        await client.setSleepLevel(null, { signal, deadline: options.deadline }).then(() => recordedLevel = null)
          .catch((error) => log.warn("could not clear the recorded sleep level", { error }));
      }
    },

    upstream(): string {
      return upstreamUrl;
    },

    onFailure(listener: (key: string, reason: string) => void): void {
      listeners.add(listener);
    },

    describe(): Record<string, unknown> {
      const state = last.state;
      return {
        backend: "kubernetes",
        namespace: config.namespace,
        deployment: config.target.deployment,
        upstream: upstreamUrl,
        replicas: state?.replicas,
        activeModel: state?.activeModel ?? null,
        pods: state?.pods.map((p) => ({ name: p.name, phase: p.phase, reason: p.reason, restarts: p.restarts })),
        phase: state?.phase,
        observedAt: last.at,
        readyPod: last.readyPod,
        progress: last.progress,
        sleeping: asleep,
        ...(recordedLevel !== null ? { sleepLevel: recordedLevel } : {}),
        ...(operation ? { operation } : {}),
      };
    },

    close(): Promise<void> {
      stopMonitor();
      closer.abort(new Error("backend closed"));
      return Promise.resolve();
    },
  };
  return backend;
}
