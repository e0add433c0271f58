import assert from "node:assert/strict";
import { createKubernetesBackend } from "../../lib/backend/kubernetes.ts";
import { BackendError, type Observed } from "../../lib/backend/types.ts";
import type { NamedModel } from "../../lib/config/schema.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { type KubeTestEnv, withKube } from "../kube/helpers.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 };

/** A stand-in for vLLM behind the Service: /health answers 503 `unhealthyFor` times, then 200. */
function startHealth(unhealthyFor = 0) {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    if (new URL(req.url).pathname !== "/health") return new Response("not found", { status: 404 });
    hits++;
    return new Response(hits > unhealthyFor ? "" : "loading", { status: hits > unhealthyFor ? 200 : 503 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    hits: () => hits,
    close: () => server.shutdown(),
  };
}

function backendFor(env: KubeTestEnv, upstreamUrl: string, configOverride?: Partial<KubeTestEnv["config"]>) {
  const config = { ...env.config, ...configOverride };
  return createKubernetesBackend({
    config,
    client: env.client,
    registry: new ModelRegistry(config.models),
    log: env.log,
    upstreamUrl,
  });
}

const launch = (model: NamedModel) => ({ key: model.name, model, gpus: ["0"], sleepMode: false });
const phaseOf = (observed: Observed) => observed.engines[0]?.phase ?? "absent";

const isKind = (kind: string, pattern?: RegExp) => (e: unknown) =>
  e instanceof BackendError && e.kind === kind && (!pattern || pattern.test(e.message));

Deno.test("kubernetes backend: start creates resources, writes the model, waits for Ready and /health; stop frees the GPU", async () => {
  const health = startHealth(3);
  try {
    await withKube(async (env) => {
      const backend = backendFor(env, health.url);
      const registry = new ModelRegistry(env.config.models);
      try {
        assert.equal(phaseOf(await backend.observe(AbortSignal.timeout(5000))), "absent");
        const started = Date.now();
        await backend.start(launch(registry.resolve("model-b")!), {
          signal: AbortSignal.timeout(10_000),
          deadline: Date.now() + 10_000,
        });
        assert.ok(Date.now() - started >= 250, "waited for the delayed readiness");
        assert.ok(health.hits() >= 4, "probed /health until 200");
        const cm = env.fake.store.getObject("configmaps", "vllm-config", "ai-apps");
        assert.equal(cm.data.VLLM_CHILL_MODEL, "model-b");
        const observed = await backend.observe(AbortSignal.timeout(5000));
        assert.deepEqual(observed, { engines: [{ key: "model-b", phase: "ready" }] });
        assert.equal(backend.upstream("model-b"), health.url);
        assert.equal(backend.describe().replicas, 1);
        assert.equal(env.fake.calls.filter((c) => c.method === "PATCH" && c.subresource === "scale").length, 1);

        await backend.stop("model", { reason: "idle", signal: AbortSignal.timeout(5000), deadline: Date.now() + 5000 });
        assert.equal(env.fake.kubelet.pods().length, 0);
        assert.equal(env.fake.kubelet.gpusInUse(), 0);
        assert.equal(phaseOf(await backend.observe(AbortSignal.timeout(5000))), "absent");

        // A second start only rewrites the ConfigMap (resources exist now).
        await backend.start(launch(registry.resolve("model-a")!), {
          signal: AbortSignal.timeout(10_000),
          deadline: Date.now() + 10_000,
        });
        assert.equal(env.fake.store.getObject("configmaps", "vllm-config", "ai-apps").data.VLLM_CHILL_MODEL, "model-a");
        await backend.stop("model", {
          reason: "switch",
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
      } finally {
        await backend.close();
      }
    }, { fake: { timing: { ...FAST, readyMs: 250 } } });
  } finally {
    await health.close();
  }
});

Deno.test("kubernetes backend: scale-only mode never touches ConfigMap, Service or Deployment spec", async () => {
  const health = startHealth();
  try {
    await withKube(async (env) => {
      env.fake.store.createObject("deployments", {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "vllm", namespace: "ai-apps" },
        spec: {
          replicas: 0,
          selector: { matchLabels: { app: "vllm" } },
          template: { metadata: { labels: { app: "vllm" } }, spec: { containers: [{ name: "vllm", image: "x" }] } },
        },
      }, "ai-apps");
      const backend = backendFor(env, health.url, { enableModelSwitch: false });
      try {
        await backend.start({ key: "*", model: null, gpus: ["0"], sleepMode: false }, {
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
        await backend.stop("model", { reason: "idle", signal: AbortSignal.timeout(5000), deadline: Date.now() + 5000 });
      } finally {
        await backend.close();
      }
      const writes = env.fake.calls.filter((c) => !["get", "list", "watch"].includes(c.verb ?? ""));
      assert.deepEqual(writes.map((c) => `${c.verb} ${c.resource}/${c.subresource ?? ""}`), [
        "patch deployments/scale",
        "patch deployments/scale",
      ]);
      assert.equal(env.fake.calls.filter((c) => c.resource === "configmaps" || c.resource === "services").length, 0);
    }, { fake: { timing: FAST } });
  } finally {
    await health.close();
  }
});

Deno.test("kubernetes backend: crash-looping pod makes start fail fast", async () => {
  const health = startHealth();
  try {
    await withKube(async (env) => {
      env.fake.faults.crashLoop(true);
      const backend = backendFor(env, health.url);
      try {
        const started = Date.now();
        await assert.rejects(
          backend.start(launch(new ModelRegistry(env.config.models).first()!), {
            signal: AbortSignal.timeout(20_000),
            deadline: Date.now() + 20_000,
          }),
          isKind("crashloop"),
        );
        assert.ok(Date.now() - started < 10_000);
        assert.equal(phaseOf(await backend.observe(AbortSignal.timeout(5000))), "failed");
        env.fake.faults.crashLoop(false);
        await backend.stop("model", {
          reason: "failed",
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
      } finally {
        await backend.close();
      }
    }, { fake: { timing: FAST } });
  } finally {
    await health.close();
  }
});

Deno.test("kubernetes backend: stop on a pod stuck terminating waits until the deadline with a clear error", async () => {
  const health = startHealth();
  try {
    await withKube(async (env) => {
      const backend = backendFor(env, health.url);
      try {
        await backend.start(launch(new ModelRegistry(env.config.models).first()!), {
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
        env.fake.faults.stuckTerminating(true);
        const started = Date.now();
        await assert.rejects(
          backend.stop("model", { reason: "idle", signal: AbortSignal.timeout(5000), deadline: Date.now() + 400 }),
          isKind("timeout", /gone.*terminating/s),
        );
        assert.ok(Date.now() - started >= 390, "waited until the deadline");
        assert.equal(phaseOf(await backend.observe(AbortSignal.timeout(5000))), "terminating");
        env.fake.faults.stuckTerminating(false);
        await backend.stop("model", {
          reason: "retry",
          force: true,
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 3000,
        });
        assert.equal(env.fake.kubelet.gpusInUse(), 0);
      } finally {
        await backend.close();
      }
    }, { fake: { timing: FAST } });
  } finally {
    await health.close();
  }
});

Deno.test("kubernetes backend: onFailure fires once when the Ready pod disappears", async () => {
  const health = startHealth();
  try {
    await withKube(async (env) => {
      const backend = backendFor(env, health.url);
      const reasons: string[] = [];
      let failed!: () => void;
      const failure = new Promise<void>((r) => failed = r);
      backend.onFailure((_key, reason) => {
        reasons.push(reason);
        failed();
      });
      try {
        await backend.start(launch(new ModelRegistry(env.config.models).first()!), {
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
        const pod = env.fake.kubelet.pods()[0];
        env.fake.store.deleteObject("pods", pod.metadata.name, "ai-apps", 0);
        await Promise.race([
          failure,
          new Promise((_, reject) => {
            const t = setTimeout(() => reject(new Error("no failure reported")), 3000);
            failure.then(() => clearTimeout(t));
          }),
        ]);
        assert.equal(reasons.length, 1);
        assert.match(reasons[0], new RegExp(pod.metadata.name));
        await backend.stop("model", {
          reason: "failed",
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
        assert.equal(reasons.length, 1, "an expected stop is not a failure");
      } finally {
        await backend.close();
      }
    }, { fake: { timing: FAST } });
  } finally {
    await health.close();
  }
});

Deno.test("kubernetes backend: start honours its deadline when /health never answers 200", async () => {
  const health = startHealth(Number.MAX_SAFE_INTEGER);
  try {
    await withKube(async (env) => {
      const backend = backendFor(env, health.url);
      try {
        await assert.rejects(
          backend.start(launch(new ModelRegistry(env.config.models).first()!), {
            signal: AbortSignal.timeout(5000),
            deadline: Date.now() + 600,
          }),
          isKind("timeout", /health/),
        );
        await backend.stop("model", {
          reason: "failed",
          signal: AbortSignal.timeout(5000),
          deadline: Date.now() + 5000,
        });
      } finally {
        await backend.close();
      }
    }, { fake: { timing: FAST } });
  } finally {
    await health.close();
  }
});

Deno.test("kubernetes backend: start rides out API server 5xx and latency on the scale call", async () => {
  const health = startHealth();
  try {
    await withKube(async (env) => {
      const backend = backendFor(env, health.url);
      try {
        env.fake.faults.failNext({ method: "PATCH", resource: "deployments", subresource: "scale" }, 503, 3);
        env.fake.faults.latency(20, { resource: "pods" });
        await backend.start(launch(new ModelRegistry(env.config.models).first()!), {
          signal: AbortSignal.timeout(10_000),
          deadline: Date.now() + 10_000,
        });
        const patches = env.fake.calls.filter((c) => c.method === "PATCH" && c.subresource === "scale");
        assert.deepEqual(patches.map((c) => c.status), [503, 503, 503, 200]);
        env.fake.faults.clear();
        await backend.stop("model", { reason: "idle", signal: AbortSignal.timeout(5000), deadline: Date.now() + 5000 });
      } finally {
        await backend.close();
      }
    }, { fake: { timing: FAST } });
  } finally {
    await health.close();
  }
});
