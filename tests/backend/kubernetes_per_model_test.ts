// deno-lint-ignore-file no-explicit-any
// The per-model Kubernetes backend against the fake API server (Role enforced), each pod running a fake vLLM
// reached through its model's Service (the fake's service proxy, `{service}` in target.url).
import assert from "node:assert/strict";
import { createPerModelBackend } from "../../lib/backend/kubernetes_per_model.ts";
import { BackendError, type StartOptions } from "../../lib/backend/types.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfig } from "../../lib/config/schema.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { createFakeVllmHandler, type FakeVllmHandler } from "../support/fake_vllm.ts";
import { gpuBlockerPod } from "../e2e/kube_helpers.ts";
import { captureLogger, generatedRole } from "../kube/helpers.ts";
import { createKubeClient } from "../../lib/kube/mod.ts";
import { type FakeKube, type FakeKubeOptions, startFakeKube } from "../support/fake_kube.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 10, terminateMs: 20 };

interface Env {
  fake: FakeKube;
  config: ChillConfig;
  registry: ModelRegistry;
  backend: ReturnType<typeof createPerModelBackend>;
  /** A second backend on the same cluster (a restarted proxy). */
  restart(): ReturnType<typeof createPerModelBackend>;
  engines: Map<string, FakeVllmHandler>;
}

async function withPerModel(
  fn: (env: Env) => Promise<void>,
  options: { fake?: FakeKubeOptions; config?: Record<string, unknown>; pendingReportMs?: number } = {},
): Promise<void> {
  const servers = new Map<string, { url: string; server: Deno.HttpServer; handler: FakeVllmHandler }>();
  const engines = new Map<string, FakeVllmHandler>();
  const cluster: { fake?: FakeKube } = {};
  const onPodStart = (pod: any) => {
    const cm = cluster.fake!.store.getObject("configmaps", pod.spec.containers[0].envFrom[0].configMapRef.name);
    const handler = createFakeVllmHandler({
      model: cm.data.SERVED_MODEL_NAME,
      devMode: cm.data.VLLM_SERVER_DEV_MODE === "1",
      enableSleepMode: /^enable-sleep-mode: true$/m.test(cm.data.ENGINE_CONFIG_YAML),
    });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler.fetch);
    servers.set(pod.metadata.uid, { url: `http://127.0.0.1:${server.addr.port}`, server, handler });
    engines.set(cm.data.SERVED_MODEL_NAME, handler);
  };
  const onPodStop = async (pod: { metadata: { uid: string } }) => {
    const entry = servers.get(pod.metadata.uid);
    servers.delete(pod.metadata.uid);
    entry?.handler.shutdown();
    await entry?.server.shutdown();
  };
  const fake = cluster.fake = await startFakeKube({
    namespace: "ai-apps",
    gpusPerNode: 2,
    timing: FAST,
    ...options.fake,
    onPodStart,
    onPodStop,
    endpointOf: (pod) => servers.get(pod.metadata.uid)?.url,
    role: generatedRole(parseConfig({}) as ChillConfig) as never,
  });
  const config = parseConfig({
    namespace: "ai-apps",
    layout: "per-model",
    maxGpus: 2,
    enableModelSwitch: true,
    target: { url: `${fake.url}/api/v1/namespaces/ai-apps/services/{service}:80/proxy` },
    models: { a: { modelName: "org/a" }, b: { modelName: "org/b" } },
    ...options.config,
  });
  const registry = new ModelRegistry(config.models);
  const { log } = captureLogger();
  const clients: ReturnType<typeof createKubeClient>[] = [];
  const backends: ReturnType<typeof createPerModelBackend>[] = [];
  const make = () => {
    const client = createKubeClient({ kubeconfig: fake.kubeconfigPath, namespace: "ai-apps", target: config.target });
    clients.push(client);
    const backend = createPerModelBackend({
      config,
      client,
      registry,
      log,
      pendingReportMs: options.pendingReportMs,
    });
    backends.push(backend);
    return backend;
  };
  try {
    await fn({ fake, config, registry, backend: make(), restart: make, engines });
  } finally {
    for (const backend of backends) await backend.close();
    for (const client of clients) client.close();
    for (const uid of [...servers.keys()]) await onPodStop({ metadata: { uid } });
    await fake.close();
  }
}

const opts = (ms = 5000, extra: Partial<StartOptions> = {}): StartOptions => ({
  signal: AbortSignal.timeout(ms + 1000),
  deadline: Date.now() + ms,
  ...extra,
});

function launch(env: Env, key: string, sleepMode = false) {
  return { key, model: env.registry.resolve(key)!, gpus: ["0"], sleepMode };
}

Deno.test("per-model backend: start brings up its own Deployment behind its own Service; observe reads every model back", async () => {
  await withPerModel(async (env) => {
    assert.deepEqual(await env.backend.observe(AbortSignal.timeout(5000)), { engines: [] });
    await env.backend.start(launch(env, "a", true), opts());
    await env.backend.start(launch(env, "b"), opts());
    assert.equal(
      env.backend.upstream("a"),
      `${env.fake.url}/api/v1/namespaces/ai-apps/services/vllm-svc-a:80/proxy`,
    );
    await env.backend.sleep("a", 1, opts());
    assert.equal(env.engines.get("a")!.stats().isSleeping, true);
    // A restarted proxy: a sleeps (read with /is_sleeping, level from the Deployment), b is ready.
    const observed = await env.restart().observe(AbortSignal.timeout(5000));
    assert.deepEqual(
      observed.engines.sort((x, y) => (x.key ?? "").localeCompare(y.key ?? "")),
      [{ key: "a", phase: "sleeping", sleepLevel: 1 }, { key: "b", phase: "ready" }],
    );
    assert.equal(env.fake.kubelet.gpusInUse(), 2);
    // b's engine never got sleep mode: nothing for it in its ConfigMap.
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config-b").data.VLLM_SERVER_DEV_MODE, undefined);
    await env.backend.stop("a", { ...opts(), reason: "test" });
    assert.equal(env.fake.store.getObject("deployments", "vllm-a").spec.replicas, 0);
    assert.equal(
      env.fake.store.getObject("deployments", "vllm-a").metadata.annotations?.["vllm.efortin.github.io/sleep-level"],
      undefined,
      "the recorded sleep is cleared once the engine is gone",
    );
    assert.deepEqual((await env.backend.observe(AbortSignal.timeout(5000))).engines.map((e) => e.key), ["b"]);
  });
});

Deno.test("per-model backend: a restarted proxy wakes a level-2 sleeper as deep as it slept", async () => {
  await withPerModel(async (env) => {
    await env.backend.start(launch(env, "a", true), opts());
    await env.backend.sleep("a", 2, opts());
    const next = env.restart();
    await next.observe(AbortSignal.timeout(5000));
    await next.wake("a", 1, opts());
    const stats = env.engines.get("a")!.stats();
    assert.equal(stats.isSleeping, false);
    assert.equal(stats.reloads, 1, "weights reloaded (a level-1 wake would serve garbage)");
    assert.equal(stats.weightsCorrupted, false);
  });
});

Deno.test("per-model backend: a pod left Pending tells the scheduler (again while it stays so) and fails with the kube scheduler's words", async () => {
  await withPerModel(async (env) => {
    env.fake.store.createObject("pods", gpuBlockerPod("trainer"));
    await env.fake.until(() => env.fake.kubelet.gpusInUse() === 1, 5000, "the other tenant");
    const reasons: string[] = [];
    const error = await env.backend.start(launch(env, "a"), opts(700, { onPending: (r) => reasons.push(r) }))
      .then(() => null, (e) => e);
    assert.ok(error instanceof BackendError);
    assert.equal(error.kind, "unschedulable");
    assert.match(
      error.message,
      /its pod could not be scheduled: 0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu/,
    );
    assert.ok(reasons.length >= 2, `reported at once and again while Pending (${reasons.length})`);
    assert.match(reasons[0], /^0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu\./);
  }, { fake: { gpusPerNode: 1 }, pendingReportMs: 200 });
});

Deno.test("per-model backend: scale-only mode runs the default model's Deployment and leaves its objects alone", async () => {
  await withPerModel(async (env) => {
    await env.restart().start({ key: "*", model: null, gpus: ["0"], sleepMode: false }, opts()).then(
      () => assert.fail("without model switching the objects are the user's: none exists here"),
      (e) => assert.match((e as Error).message, /vllm-b/),
    );
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config-b"), undefined, "nothing created");
  }, { config: { enableModelSwitch: false, defaultModel: "b" } });
});

Deno.test("per-model backend: an engine found running after a restart is watched: its pod lost is reported", async () => {
  await withPerModel(async (env) => {
    await env.backend.start(launch(env, "a"), opts());
    const next = env.restart();
    const failures: string[] = [];
    next.onFailure((key, reason) => failures.push(`${key}: ${reason}`));
    await next.observe(AbortSignal.timeout(5000));
    const pod = env.fake.kubelet.pods().find((p) => p.metadata.name.startsWith("vllm-a-"));
    env.fake.store.deleteObject("pods", pod.metadata.name);
    await env.fake.until(() => failures.length > 0, 5000, "the failure reported");
    assert.match(failures[0], /^a: vLLM pod vllm-a-\S+ (is terminating|disappeared)/);
  });
});
