/**
 * Shared harness of the end-to-end tests on the Kubernetes backend: the fake
 * API server (tests/support/fake_kube.ts) with the GENERATED Role enforced and
 * a simulated kubelet whose pods run a fake vLLM in-process (serving the model
 * the pod's ConfigMap names at pod start, with vLLM's sleep mode when the
 * ConfigMap asks for it, as `envFrom` and the mounted engine config would give
 * a real pod), and the proxy started in-process with `startServer`.
 *
 * - Shared layout: the fake vLLM listens on one fixed loopback port per test
 *   and the proxy forwards there (`target.url`).
 * - Per-model layout: every pod gets its own fake vLLM; the proxy forwards to
 *   each model's Service through the fake API server's service proxy
 *   (`target.url` with `{service}`, as through `kubectl proxy`), which picks a
 *   Ready pod the Service selects.
 *
 * A timeline records every change of the Deployment's replicas, the
 * ConfigMap's model and the pods, with the index of the API call it followed,
 * so tests can check orders.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import OpenAI from "openai";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfig, ChillConfigInput } from "../../lib/config/schema.ts";
import { API_CALLS } from "../../lib/kube/api_calls.ts";
import { renderRbac } from "../../lib/manifests/rbac.ts";
import type { LifecycleState } from "../../lib/scaler/types.ts";
import { type RunningServer, startServer } from "../../lib/server.ts";
import {
  type CallRecord,
  type FakeKube,
  type FakeKubeOptions,
  isReady,
  type RoleLike,
  startFakeKube,
} from "../support/fake_kube.ts";
import { createFakeVllmHandler, type FakeVllmHandler, type FakeVllmStats } from "../support/fake_vllm.ts";
import { captureLogs, within } from "./helpers.ts";
import { pickFreePort } from "../../lib/backend/free_port.ts";

export { collectStream, delay, postChat, waitUntil, within } from "./helpers.ts";
export type { CallRecord, FakeKube };

/**
 * Fast lifecycle delays of the simulated cluster (ms).
 *
 * @example
 * ```ts
 * import { FAST_TIMING } from "./kube_helpers.ts";
 * FAST_TIMING.startMs; // 20
 * ```
 */
export const FAST_TIMING = { scheduleMs: 10, startMs: 20, readyMs: 20, terminateMs: 40 } as const;

/**
 * Behaviour of the fake vLLM a pod runs.
 *
 * @example
 * ```ts
 * import type { EngineOptions } from "./kube_helpers.ts";
 * const slow: EngineOptions = { loadMs: 500, tokensPerSec: 10 };
 * ```
 */
export interface EngineOptions {
  /** Milliseconds before /health answers 200 (default 100). */
  loadMs?: number;
  /** Milliseconds `/sleep` and `/wake_up` take (default 0). */
  sleepMs?: number;
  wakeMs?: number;
  /** Generation speed (default 0: every token at once). */
  tokensPerSec?: number;
  /** Reset the connection after this many SSE chunks. */
  crashAfterChunks?: number;
}

/**
 * One fake vLLM started for one pod.
 *
 * @example
 * ```ts ignore
 * import type { Engine } from "./kube_helpers.ts";
 * const served = (e: Engine) => e.received.length;
 * ```
 */
export interface Engine {
  /** Pod name. */
  pod: string;
  /** Base URL of its fake vLLM. */
  url: string;
  /** Started with vLLM's sleep mode (the ConfigMap's VLLM_SERVER_DEV_MODE and `enable-sleep-mode`). */
  sleepMode: boolean;
  /** The fake vLLM's counters (sleeps, wakes, requests forwarded while asleep, …). */
  stats(): FakeVllmStats;
  /** Pod uid. */
  uid: string;
  /** Served model name it answers to (from the ConfigMap at pod start). */
  model: string;
  /** performance.now() at start. */
  startedAt: number;
  /** performance.now() when the kubelet first saw it Ready (its /health 200), if it did. */
  readyAt?: number;
  /** performance.now() when it was stopped. */
  stoppedAt?: number;
  /** Every request it received (except the probes /health and /is_sleeping), raw body bytes included. */
  received: { path: string; body: Uint8Array; headers: Headers }[];
  /** SSE response bodies the proxy cancelled before their end (client left, upstream aborted). */
  streamsCancelled: number;
}

/**
 * One observed change of the simulated cluster.
 *
 * @example
 * ```ts
 * import type { Sample } from "./kube_helpers.ts";
 * const s: Sample = { at: 0, callIndex: 3, replicas: 1, configModel: "model-a", pods: ["vllm-x:Running:ready"] };
 * ```
 */
export interface Sample {
  /** performance.now() of the change. */
  at: number;
  /** How many API calls had been served then (the change follows call `callIndex - 1`). */
  callIndex: number;
  /** Deployment spec.replicas (null: no Deployment). */
  replicas: number | null;
  /** SERVED_MODEL_NAME of the ConfigMap (null: no ConfigMap). */
  configModel: string | null;
  /** Pods as "name:phase[:ready][:terminating]". */
  pods: string[];
}

/**
 * Options of {@link startKubeE2e}.
 *
 * @example
 * ```ts
 * import type { KubeE2eOptions } from "./kube_helpers.ts";
 * const options: KubeE2eOptions = { config: { enableModelSwitch: false, models: {} }, engine: { loadMs: 50 } };
 * ```
 */
export interface KubeE2eOptions {
  /** Config over the test defaults (namespace ai-apps, two models a/b, model switching on). */
  config?: Partial<ChillConfigInput>;
  /** Fake API server options (role and hooks are set by the harness). */
  fake?: Omit<FakeKubeOptions, "role" | "onPodStart" | "onPodStop" | "readiness">;
  /** The fake vLLM of every pod. */
  engine?: EngineOptions;
  /** Served model name when no ConfigMap exists (scale-only mode); default "scale-only-model". */
  defaultServed?: string;
  /** Runs before the proxy starts (pre-create objects). */
  seed?: (fake: FakeKube) => void | Promise<void>;
  /** Start the proxy (default true); false to start it later with `env.startProxy()`. */
  startProxy?: boolean;
  /** Wait until the scaler has read the cluster back (default true). */
  waitReady?: boolean;
  /** The test injects 403s itself: don't fail on Forbidden answers. */
  allowForbidden?: boolean;
}

/**
 * Everything a test gets.
 *
 * @example
 * ```ts ignore
 * import type { KubeE2e } from "./kube_helpers.ts";
 * const scaledUp = (env: KubeE2e) => env.scalePatches().length > 0;
 * ```
 */
export interface KubeE2e {
  /** The fake API server. */
  fake: FakeKube;
  /** The validated config the proxy runs with. */
  config: ChillConfig;
  /** The running proxy (throws when none is running). */
  readonly proxy: RunningServer;
  /** Base URL of the running proxy. */
  readonly url: string;
  /** Captured proxy log lines (all proxies of this test). */
  logs: ReturnType<typeof captureLogs>;
  /** The fixed loopback port every pod's vLLM listens on. */
  vllmPort: number;
  /** Every engine started, in order. */
  engines: Engine[];
  /** Shared layout: pods that started while another engine still ran (must stay empty: one GPU). */
  overlaps: string[];
  /** The engine of `model` that runs now (per-model layout: its pod's), if any. */
  liveEngine(model: string): Engine | undefined;
  /** Changes of replicas / ConfigMap model / pods, in order. */
  timeline: Sample[];
  /**
   * Closes the running vLLM's port while its pod keeps passing its readiness probe (the proxy can't reach
   * the engine the API calls Ready: a partition, a dead port-forward).
   */
  killEngine(): Promise<void>;
  /** Starts a proxy (after `startProxy: false` or `stopProxy`). */
  startProxy(overrides?: Partial<ChillConfigInput>): Promise<RunningServer>;
  /** Shuts the running proxy down (like SIGTERM) and waits until it stopped. */
  stopProxy(): Promise<void>;
  /** An OpenAI SDK client for the running proxy. */
  openai(): OpenAI;
  /** The `deployments/scale` PATCH calls so far. */
  scalePatches(): CallRecord[];
  /** Every call that is not a read (get/list/watch) and not a SelfSubjectAccessReview. */
  writes(): CallRecord[];
  /** Deployment spec.replicas now (null: none). */
  replicas(): number | null;
  /** Resolves on the next transition into `state`, bounded. */
  nextState(state: LifecycleState, timeoutMs?: number): Promise<void>;
  /** Stops proxy, engines and fake; asserts no overlap, no hook error, and every call listed in API_CALLS. */
  close(): Promise<void>;
}

/**
 * Two models (a, b) served by their keys; a config input for the tests.
 *
 * @example
 * ```ts
 * import { TWO_MODELS } from "./kube_helpers.ts";
 * Object.keys(TWO_MODELS); // ["model-a", "model-b"]
 * ```
 */
export const TWO_MODELS = {
  "model-a": { modelName: "org/model-a" },
  "model-b": { modelName: "org/model-b" },
} as const;

/**
 * A free loopback TCP port, below the ephemeral range (no outgoing connection takes it before a fake engine listens).
 *
 * @example
 * ```ts
 * import { freePort } from "./kube_helpers.ts";
 * freePort() > 0; // true
 * ```
 */
export function freePort(): number {
  return pickFreePort("127.0.0.1");
}

/**
 * The Role the manifests render for `config` (what the fake enforces).
 *
 * @example
 * ```ts
 * import { generatedRole } from "./kube_helpers.ts";
 * import { parseConfig } from "../../lib/config/define.ts";
 * generatedRole(parseConfig({})).rules.length > 0; // true
 * ```
 */
export function generatedRole(config: ChillConfig): RoleLike {
  return renderRbac(config)[1] as unknown as RoleLike;
}

/**
 * A pod that holds the node's GPU (another workload), not owned by the vLLM Deployment.
 *
 * @example
 * ```ts
 * import { gpuBlockerPod } from "./kube_helpers.ts";
 * gpuBlockerPod("blocker").metadata.name; // "blocker"
 * ```
 */
export function gpuBlockerPod(name: string): any {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { app: "other-workload" } },
    spec: {
      containers: [{ name: "train", image: "trainer:1", resources: { limits: { "nvidia.com/gpu": "1" } } }],
    },
  };
}

/**
 * A user-managed vLLM Deployment (as `kubectl apply` would create it), with one GPU and envFrom the ConfigMap.
 *
 * @example
 * ```ts
 * import { userDeployment } from "./kube_helpers.ts";
 * userDeployment().spec.replicas; // 0
 * ```
 */
export function userDeployment(replicas = 0, configMap = "vllm-config"): any {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "vllm", labels: { app: "vllm", team: "ml" }, annotations: { "owner": "someone" } },
    spec: {
      replicas,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { app: "vllm" } },
      template: {
        metadata: { labels: { app: "vllm" } },
        spec: {
          containers: [{
            name: "vllm",
            image: "registry.example/custom-vllm:1.2.3",
            args: ["--custom-flag"],
            envFrom: [{ configMapRef: { name: configMap } }],
            resources: { limits: { "nvidia.com/gpu": "1" } },
          }],
        },
      },
    },
  };
}

/**
 * A user-managed ConfigMap naming the served model (for scale-only mode).
 *
 * @example
 * ```ts
 * import { userConfigMap } from "./kube_helpers.ts";
 * userConfigMap("m").data.SERVED_MODEL_NAME; // "m"
 * ```
 */
export function userConfigMap(served: string, name = "vllm-config"): any {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name, labels: { app: "vllm" } },
    data: { MODEL_NAME: `org/${served}`, SERVED_MODEL_NAME: served },
  };
}

/**
 * A VLLMModel custom resource.
 *
 * @example
 * ```ts
 * import { vllmModel } from "./kube_helpers.ts";
 * vllmModel("c", "org/c").spec.modelName; // "org/c"
 * ```
 */
export function vllmModel(name: string, modelName: string, spec: Record<string, unknown> = {}): any {
  return {
    apiVersion: "vllm.efortin.github.io/v1alpha1",
    kind: "VLLMModel",
    metadata: { name },
    spec: { modelName, ...spec },
  };
}

/**
 * Reads one sample value from Prometheus text (0 when the series is absent).
 *
 * @example
 * ```ts
 * import { metricValue } from "./kube_helpers.ts";
 * metricValue('x_total{direction="up"} 2\n', "x_total", { direction: "up" }); // 2
 * ```
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/);
    if (!match || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      found[pair[1]] = pair[2];
    }
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return 0;
}

/**
 * Asserts every recorded API call is covered by API_CALLS (SelfSubjectAccessReviews aside).
 *
 * @example
 * ```ts ignore
 * import { assertCallsListed } from "./kube_helpers.ts";
 * assertCallsListed(fake.calls);
 * ```
 */
export function assertCallsListed(calls: readonly CallRecord[]): void {
  for (const call of calls) {
    if (call.resource === "selfsubjectaccessreviews" || call.resource === undefined) continue;
    const listed = API_CALLS.some((entry) =>
      entry.resource === call.resource && (entry.subresource ?? "") === (call.subresource ?? "") &&
      (entry.verbs as readonly string[]).includes(call.verb ?? "")
    );
    assert.ok(listed, `API call ${call.method} ${call.path} (${call.verb}) is not listed in lib/kube/api_calls.ts`);
  }
}

/**
 * Describes a call compactly: "patch deployments/scale", "update configmaps".
 *
 * @example
 * ```ts
 * import { describeCall } from "./kube_helpers.ts";
 * describeCall({ method: "PATCH", path: "/x", query: "", verb: "patch", resource: "deployments", subresource: "scale", status: 200 });
 * // "patch deployments/scale"
 * ```
 */
export function describeCall(call: CallRecord): string {
  return `${call.verb} ${call.resource}${call.subresource ? `/${call.subresource}` : ""}`;
}

const isWrite = (c: CallRecord) =>
  c.verb !== undefined && !["get", "list", "watch"].includes(c.verb) && c.resource !== "selfsubjectaccessreviews";

/**
 * Starts the fake cluster (generated Role enforced, GPUs 1 by default) and,
 * unless told otherwise, the proxy in front of it.
 *
 * @example
 * ```ts ignore
 * import { startKubeE2e } from "./kube_helpers.ts";
 * const env = await startKubeE2e({ config: { enableModelSwitch: false } });
 * await env.close();
 * ```
 */
export async function startKubeE2e(options: KubeE2eOptions = {}): Promise<KubeE2e> {
  const perModel = options.config?.layout === "per-model";
  const vllmPort = freePort();
  let baseInput: ChillConfigInput = {
    namespace: "ai-apps",
    host: "127.0.0.1",
    port: 0,
    enableModelSwitch: true,
    idleTimeout: "1m",
    holdTimeout: "30s",
    startTimeout: "20s",
    drainTimeout: "10s",
    minLoadedTime: "0s",
    heartbeatInterval: "0s",
    models: { ...TWO_MODELS },
    ...options.config,
    // Per-model: the real URL (the fake's service proxy) is known once the fake runs; a placeholder until then.
    target: {
      ...options.config?.target,
      url: perModel ? `http://127.0.0.1:1/{service}` : `http://127.0.0.1:${vllmPort}`,
    },
  };
  let config = parseConfig(baseInput);
  const engineOptions = options.engine ?? {};
  const engines: Engine[] = [];
  const overlaps: string[] = [];
  const timeline: Sample[] = [];
  const live = new Map<string, { engine: Engine; handler: FakeVllmHandler; server: Deno.HttpServer }>();
  const closing = new Set<Promise<void>>();

  const stopEngine = (uid: string) => {
    const entry = live.get(uid);
    if (!entry) return Promise.resolve();
    live.delete(uid);
    entry.engine.stoppedAt = performance.now();
    entry.handler.shutdown();
    const done = entry.server.shutdown().finally(() => closing.delete(done));
    closing.add(done);
    return done;
  };

  const isVllmPod = (pod: any) => pod?.metadata?.labels?.app === "vllm";

  const onPodStart = async (pod: any) => {
    if (!isVllmPod(pod)) return;
    if (!perModel) {
      // The previous engine may still be closing (its pod just terminated): the port must be free.
      await Promise.all([...closing]);
      if (live.size) {
        overlaps.push(`${pod.metadata.name} started while ${[...live.values()].map((e) => e.engine.pod)} still ran`);
        for (const uid of [...live.keys()]) await stopEngine(uid);
      }
    }
    // What envFrom and the mounted engine config give the container.
    const cmName = pod.spec?.containers?.[0]?.envFrom?.[0]?.configMapRef?.name ?? config.target.configMap;
    const cm = fake.store.getObject("configmaps", cmName);
    const served = cm?.data?.SERVED_MODEL_NAME ?? options.defaultServed ?? "scale-only-model";
    const devMode = cm?.data?.VLLM_SERVER_DEV_MODE === "1";
    const enableSleepMode = /^enable-sleep-mode: true$/m.test(cm?.data?.ENGINE_CONFIG_YAML ?? "");
    const serving: { server?: Deno.HttpServer } = {};
    const handler = createFakeVllmHandler({
      model: served,
      modelName: cm?.data?.MODEL_NAME ?? served,
      loadMs: engineOptions.loadMs ?? 100,
      tokensPerSec: engineOptions.tokensPerSec,
      crashAfterChunks: engineOptions.crashAfterChunks,
      devMode,
      enableSleepMode,
      sleepMs: engineOptions.sleepMs,
      wakeMs: engineOptions.wakeMs,
      // A dead engine's process exits: its port closes (the kubelet then sees it unready).
      onEngineDead: () => void serving.server?.shutdown(),
    });
    const engine: Engine = {
      pod: pod.metadata.name,
      url: "",
      sleepMode: devMode && enableSleepMode,
      stats: () => handler.stats(),
      uid: pod.metadata.uid,
      model: served,
      startedAt: performance.now(),
      received: [],
      streamsCancelled: 0,
    };
    const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
    const serve = async (handle: Deno.ServeHandler) => {
      // The previous engine's socket may take a moment to be released after its server shut down: retry, bounded.
      for (let attempt = 0;; attempt++) {
        try {
          return Deno.serve({
            hostname: "127.0.0.1",
            port: perModel ? 0 : vllmPort,
            onListen: (addr) => resolve(addr as Deno.NetAddr),
          }, handle);
        } catch (error) {
          if (!(error instanceof Deno.errors.AddrInUse) || attempt >= 100) throw error;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const server = serving.server = await serve(
      async (req) => {
        const path = new URL(req.url).pathname;
        // Probes (readiness, sleep state) are not requests the engine serves.
        if (path === "/health" || path === "/is_sleeping") return handler.fetch(req);
        const body = new Uint8Array(await req.arrayBuffer());
        engine.received.push({ path, body, headers: req.headers });
        const res = await handler.fetch(
          new Request(req.url, { method: req.method, headers: req.headers, body: req.method === "GET" ? null : body }),
        );
        if (!res.body || !res.headers.get("content-type")?.startsWith("text/event-stream")) return res;
        // Pass the stream on unbuffered, noting when the reader (the proxy) cancels it before its end.
        const reader = res.body.getReader();
        const relayed = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const { done, value } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          },
          cancel(reason) {
            engine.streamsCancelled++;
            return reader.cancel(reason);
          },
        }, { highWaterMark: 0 });
        return new Response(relayed, { status: res.status, headers: res.headers });
      },
    );
    engine.url = `http://127.0.0.1:${(await listening).port}`;
    live.set(engine.uid, { engine, handler, server });
    engines.push(engine);
  };

  const stillReady = new Set<string>();
  const readiness = async (pod: any) => {
    if (stillReady.has(pod.metadata.uid)) return true;
    const entry = live.get(pod.metadata.uid);
    if (!entry) return false;
    const res = await entry.handler.fetch(new Request("http://pod/health"));
    await res.body?.cancel();
    const ready = res.status === 200;
    if (ready && entry.engine.readyAt === undefined) entry.engine.readyAt = performance.now();
    return ready;
  };

  const fake: FakeKube = await startFakeKube({
    namespace: "ai-apps",
    gpusPerNode: 1,
    timing: FAST_TIMING,
    ...options.fake,
    role: generatedRole(config),
    onPodStart,
    onPodStop: (pod) => stopEngine(pod.metadata.uid),
    readiness,
    endpointOf: (pod) => live.get(pod.metadata.uid)?.engine.url,
  });
  if (perModel) {
    // Each model's Service, through the API server's service proxy (as `kubectl proxy` would expose it).
    baseInput = {
      ...baseInput,
      target: { ...baseInput.target, url: `${fake.url}/api/v1/namespaces/ai-apps/services/{service}:80/proxy` },
    };
    config = parseConfig(baseInput);
  }

  // Timeline: sampled on every stored change and every served call (the fake's `until` re-checks on both).
  let recording = true;
  let lastKey = "";
  const sample = () => {
    const dep = perModel ? undefined : fake.store.getObject("deployments", config.target.deployment);
    const cm = perModel ? undefined : fake.store.getObject("configmaps", config.target.configMap);
    const pods = fake.store.listObjects("pods").filter(isVllmPod).map((p: any) =>
      [p.metadata.name, p.status?.phase ?? "?", isReady(p) ? "ready" : "", p.metadata.deletionTimestamp ? "term" : ""]
        .filter(Boolean).join(":")
    );
    const s: Sample = {
      at: performance.now(),
      callIndex: fake.calls.length,
      replicas: dep ? dep.spec?.replicas ?? 1 : null,
      configModel: cm ? cm.data?.SERVED_MODEL_NAME ?? null : null,
      pods,
    };
    const key = JSON.stringify([s.replicas, s.configModel, s.pods]);
    if (key !== lastKey) {
      lastKey = key;
      timeline.push(s);
    }
    return !recording;
  };
  const recorder = fake.until(sample, 10 * 60_000, "the end of the test").catch(() => {});

  try {
    await options.seed?.(fake);
  } catch (error) {
    recording = false;
    await fetch(`${fake.url}/healthz`).then((r) => r.body?.cancel());
    await recorder;
    await fake.close();
    throw error;
  }

  const logs = captureLogs();
  let proxy: RunningServer | undefined;
  const transitions = new Set<(state: LifecycleState) => void>();

  const env: KubeE2e = {
    fake,
    get config() {
      return config;
    },
    get proxy() {
      if (!proxy) throw new Error("no proxy running");
      return proxy;
    },
    get url() {
      return env.proxy.url;
    },
    logs,
    vllmPort,
    engines,
    overlaps,
    liveEngine: (model) => [...live.values()].map((e) => e.engine).find((e) => e.model === model),
    timeline,
    async killEngine() {
      for (const uid of [...live.keys()]) {
        stillReady.add(uid);
        await stopEngine(uid);
      }
    },
    async startProxy(overrides) {
      if (proxy) throw new Error("a proxy is already running");
      if (overrides) config = parseConfig({ ...baseInput, ...overrides, target: baseInput.target });
      const server = await startServer(config, { log: logs.log, kubeConfig: fake.kubeConfig(), shutdownGraceMs: 3000 });
      server.scaler.onTransition((t) => {
        for (const listener of transitions) listener(t.to);
      });
      proxy = server;
      if (options.waitReady !== false) {
        await within(
          new Promise<void>((resolve) => {
            const check = () => server.scaler.ready() ? resolve() : setTimeout(check, 10);
            check();
          }),
          10_000,
          "the scaler to read the cluster back",
        );
      }
      return server;
    },
    async stopProxy() {
      const server = proxy;
      if (!server) return;
      proxy = undefined;
      await server.shutdown();
      await server.finished;
    },
    openai: () => new OpenAI({ baseURL: `${env.url}/v1`, apiKey: "x", maxRetries: 0, timeout: 20_000 }),
    scalePatches: () => fake.calls.filter((c) => c.verb === "patch" && c.subresource === "scale"),
    writes: () => fake.calls.filter(isWrite),
    replicas: () => fake.store.getObject("deployments", config.target.deployment)?.spec?.replicas ?? null,
    nextState(state, timeoutMs = 10_000) {
      const { promise, resolve } = Promise.withResolvers<void>();
      const listener = (to: LifecycleState) => to === state && resolve();
      transitions.add(listener);
      return within(promise, timeoutMs, `state ${state}`).finally(() => transitions.delete(listener));
    },
    async close() {
      let failure: unknown;
      try {
        await env.stopProxy();
      } catch (error) {
        failure = error;
      }
      recording = false;
      // One more served call makes the recorder re-check and finish.
      await fetch(`${fake.url}/healthz`).then((r) => r.body?.cancel()).catch(() => {});
      await recorder;
      for (const uid of [...live.keys()]) await stopEngine(uid);
      await Promise.all([...closing]);
      await fake.close();
      if (failure) throw failure;
      assert.deepEqual(overlaps, [], "two vLLM pods ran at once on one GPU");
      assert.deepEqual(fake.kubelet.hookErrors, [], "kubelet hooks failed");
      assertCallsListed(fake.calls);
      if (!options.allowForbidden) {
        const forbidden = fake.calls.filter((c) => c.status === 403).map((c) => `${describeCall(c)} ${c.path}`);
        assert.deepEqual(forbidden, [], "the generated Role refused a call the proxy made");
      }
      if (Deno.env.get("KUBE_E2E_PRINT_WARNINGS")) {
        for (const r of logs.records()) if (r.level === "warn" || r.level === "error") console.log(JSON.stringify(r));
      }
    },
  };
  if (options.startProxy !== false) {
    try {
      await env.startProxy();
    } catch (error) {
      await env.close().catch(() => {});
      throw error;
    }
  }
  return env;
}

/**
 * Runs `fn` with a fresh environment and always closes it.
 *
 * @example
 * ```ts ignore
 * import { withKubeE2e } from "./kube_helpers.ts";
 * await withKubeE2e({}, async (env) => { await fetch(env.url + "/healthz"); });
 * ```
 */
export async function withKubeE2e(options: KubeE2eOptions, fn: (env: KubeE2e) => Promise<void>): Promise<void> {
  const env = await startKubeE2e(options);
  let failed = true;
  try {
    await fn(env);
    failed = false;
  } catch (error) {
    printDiagnostics(env);
    throw error;
  } finally {
    if (failed) await env.close().catch(() => {});
    else await env.close();
  }
}

/** On a failure: the proxy's last log lines, the pods and the GPU log, for a failure seen only in CI to be read. */
function printDiagnostics(env: KubeE2e): void {
  const pods = env.fake.store.listObjects("pods").map((p) => ({
    name: p.metadata.name,
    node: p.spec?.nodeName,
    phase: p.status?.phase,
    deleting: Boolean(p.metadata.deletionTimestamp),
    conditions: (p.status?.conditions ?? []).map((c: { type: string; status: string; reason?: string }) =>
      `${c.type}=${c.status}${c.reason ? `(${c.reason})` : ""}`
    ),
  }));
  console.error(
    [
      "--- diagnostics of the failed kube e2e test ---",
      ...env.logs.records().slice(-80).map((r) => JSON.stringify(r)),
      `pods: ${JSON.stringify(pods)}`,
      `gpu log: ${JSON.stringify(env.fake.kubelet.gpuLog.slice(-20))}`,
      `kubelet hook errors: ${env.fake.kubelet.hookErrors.map((e) => String((e as Error)?.stack ?? e)).join("\n")}`,
      `replicas: ${env.replicas()}`,
    ].join("\n"),
  );
}

/**
 * Sends a chat completion as JSON with fetch and returns status, headers and parsed body.
 *
 * @example
 * ```ts ignore
 * import { chat } from "./kube_helpers.ts";
 * const { status, body } = await chat(env.url, "model-a");
 * ```
 */
export async function chat(
  url: string,
  model: string | undefined,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      ...(model === undefined ? {} : { model }),
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 3,
      ...extra,
    }),
  });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, body };
}

/**
 * GET /v1/models of the proxy as `{ id: status }`.
 *
 * @example
 * ```ts ignore
 * import { modelStatuses } from "./kube_helpers.ts";
 * (await modelStatuses(env.url))["model-a"]; // "cold"
 * ```
 */
export async function modelStatuses(url: string): Promise<Record<string, string>> {
  const res = await fetch(`${url}/v1/models`);
  assert.equal(res.status, 200);
  const body = await res.json() as { data: { id: string; status: string }[] };
  return Object.fromEntries(body.data.map((m) => [m.id, m.status]));
}

/**
 * GET /metrics of the proxy.
 *
 * @example
 * ```ts ignore
 * import { metricsText } from "./kube_helpers.ts";
 * (await metricsText(env.url)).includes("vllm_chill_"); // true
 * ```
 */
export async function metricsText(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  return await res.text();
}

/**
 * Index (in the timeline) of the first sample at or after `from` matching `check`, or -1.
 *
 * @example
 * ```ts
 * import { findSample } from "./kube_helpers.ts";
 * findSample([{ at: 0, callIndex: 0, replicas: 1, configModel: null, pods: [] }], (s) => s.replicas === 1); // 0
 * ```
 */
export function findSample(timeline: readonly Sample[], check: (s: Sample) => boolean, from = 0): number {
  for (let i = from; i < timeline.length; i++) if (check(timeline[i])) return i;
  return -1;
}

/**
 * Waits (bounded) until the fake has served no new call for `quietMs`, e.g. until the
 * watches a start opens are established; returns the call count then.
 *
 * @example
 * ```ts ignore
 * import { settleCalls } from "./kube_helpers.ts";
 * const before = await settleCalls(env.fake);
 * ```
 */
export async function settleCalls(fake: FakeKube, quietMs = 250, timeoutMs = 5000): Promise<number> {
  const end = Date.now() + timeoutMs;
  let count = fake.calls.length;
  for (let i = 0; i < 1000; i++) {
    await new Promise((resolve) => setTimeout(resolve, quietMs));
    if (fake.calls.length === count) return count;
    count = fake.calls.length;
    if (Date.now() > end) break;
  }
  throw new Error(`the fake API server did not go quiet within ${timeoutMs} ms`);
}
