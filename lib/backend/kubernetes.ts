/**
 * The Kubernetes backend, shared layout: one vLLM Deployment is the only
 * engine slot (one model at a time; the scheduler's policy says so). Starting
 * writes the model's configuration and gives the pod template the model's
 * shape (model switching), and scales to 1, then
 * waits (watch) for a Ready pod and for vLLM's own /health through the
 * upstream URL; stopping scales to 0 and waits until the pod is really gone.
 *
 * @module
 */
import type { ChillConfig } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import type { ModelRegistry } from "../models/registry.ts";
import type { KubeClient } from "../kube/client.ts";
import { ForbiddenError, KubeError, UnavailableError } from "../kube/errors.ts";
import { type KubeState, toObserved } from "../kube/state.ts";
import { watchPodLost } from "../kube/waits.ts";
import { type Backend, BackendError, type EngineLaunch, type Observed, type WaitOptions } from "./types.ts";

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
}

const HEALTH_FIRST_DELAY_MS = 20;
const HEALTH_MAX_DELAY_MS = 500;
const HEALTH_REQUEST_TIMEOUT_MS = 2000;

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
  const upstreamUrl =
    (options.upstreamUrl ?? config.target.url ?? `http://${config.target.service}:${config.target.port}`)
      .replace(/\/+$/, "");
  const doFetch = options.fetch ?? fetch;
  const closer = new AbortController();
  const listeners = new Set<(key: string, reason: string) => void>();
  /** The key of the engine the Deployment runs (from the last start or observe). */
  let currentKey: string | null = null;
  let ensured = options.resourcesEnsured ?? false;
  let monitor: AbortController | undefined;
  let last: { state?: KubeState; readyPod?: string; progress?: string; at?: string } = {};

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

  const becomeReady = async (what: string, options: WaitOptions): Promise<void> => {
    const signal = linked(options.signal);
    const pod = await client.waitReady({
      signal,
      deadline: options.deadline,
      onProgress: (reason) => {
        last = { ...last, progress: reason };
        log.info(`waiting for ${what}`, { state: reason });
      },
    });
    last = { ...last, readyPod: pod, progress: `pod ${pod} Ready; waiting for vLLM /health` };
    await waitHealthy(doFetch, upstreamUrl, signal, options.deadline);
    last = { ...last, progress: undefined };
    log.info("vLLM is ready", { pod, upstream: upstreamUrl });
    startMonitor(pod);
  };

  const backend: Backend = {
    kind: "kubernetes",

    async observe(signal: AbortSignal): Promise<Observed> {
      try {
        const state = await client.readState({ signal: linked(signal) });
        last = { ...last, state, at: new Date().toISOString() };
        const observed = toObserved(state);
        currentKey = observed.engines[0]?.key ?? currentKey;
        return observed;
      } catch (error) {
        throw toBackendError(error, "reading the vLLM state", signal);
      }
    },

    async start(launch: EngineLaunch, options: WaitOptions): Promise<void> {
      const { model } = launch;
      const signal = linked(options.signal);
      stopMonitor();
      currentKey = launch.key;
      try {
        if (model && config.enableModelSwitch) {
          // Resources may be missing (no model at start, or deleted since): create what is missing first.
          if (!ensured) {
            ensured = (await client.ensureVllmResources(config, model, { signal, deadline: options.deadline })).ensured;
          }
          // Always written (and remembered by the client) so a concurrent start-up ensure cannot undo it.
          await client.writeActiveModel(config, model, { signal, deadline: options.deadline });
          // At 0 replicas, before the scale-up: the new pod gets this model's image, GPUs and resources.
          await client.applyModelPodShape(config, model, { signal, deadline: options.deadline });
        }
        await client.scale(1, { signal, deadline: options.deadline });
      } catch (error) {
        throw toBackendError(error, `starting ${model ? `model ${model.name}` : "vLLM"}`, signal);
      }
      await becomeReady(model ? `model ${model.name}` : "vLLM", options);
    },

    async waitReady(launch: EngineLaunch, options: WaitOptions): Promise<void> {
      currentKey = launch.key;
      await becomeReady(launch.model ? `model ${launch.model.name}` : "vLLM", options);
    },

    sleep(key: string): Promise<void> {
      return Promise.reject(
        new BackendError("failed", `sleep mode is not available on this backend yet (model ${key})`),
      );
    },

    wake(key: string): Promise<void> {
      return Promise.reject(
        new BackendError("failed", `sleep mode is not available on this backend yet (model ${key})`),
      );
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
      log.info("vLLM stopped: no pod left", { reason: options.reason });
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

/**
 * Probes `${upstream}/health` until it answers 200: 20 ms, doubling to
 * 500 ms between probes, bounded by the deadline and the signal.
 */
async function waitHealthy(doFetch: typeof fetch, upstream: string, signal: AbortSignal, deadline: number) {
  let delay = HEALTH_FIRST_DELAY_MS;
  let lastProblem = "no answer yet";
  for (;;) {
    if (signal.aborted) throw new BackendError("aborted", "waiting for vLLM /health aborted");
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new BackendError(
        "timeout",
        `the vLLM pod is Ready but ${upstream}/health did not answer 200 in time: ${lastProblem}`,
      );
    }
    try {
      const response = await doFetch(`${upstream}/health`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(Math.min(remaining, HEALTH_REQUEST_TIMEOUT_MS))]),
      });
      await response.body?.cancel();
      if (response.status === 200) return;
      lastProblem = `HTTP ${response.status}`;
    } catch (error) {
      if (signal.aborted) throw new BackendError("aborted", "waiting for vLLM /health aborted");
      lastProblem = (error as Error).message;
    }
    const wait = Math.min(delay, Math.max(0, deadline - Date.now()));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, wait);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
    delay = Math.min(HEALTH_MAX_DELAY_MS, delay * 2);
  }
}

function toBackendError(error: unknown, what: string, signal?: AbortSignal): BackendError {
  if (error instanceof BackendError) return error;
  if (signal?.aborted) return new BackendError("aborted", `${what}: aborted`, { cause: error });
  if (error instanceof ForbiddenError) {
    return new BackendError("forbidden", `${what}: ${error.message}`, { cause: error });
  }
  if (error instanceof UnavailableError) {
    return new BackendError("unavailable", `${what}: Kubernetes API unavailable: ${error.message}`, { cause: error });
  }
  if (error instanceof KubeError) return new BackendError("failed", `${what}: ${error.message}`, { cause: error });
  if (error instanceof DOMException && error.name === "AbortError") {
    return new BackendError("aborted", `${what}: aborted`, { cause: error });
  }
  return new BackendError("failed", `${what}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
}
