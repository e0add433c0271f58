import assert from "node:assert/strict";
import { ACTIVE_MODEL_ANNOTATION, ConflictError } from "../../lib/kube/mod.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { buildModelConfigMapData } from "../../lib/manifests/vllm.ts";
import { withKube } from "./helpers.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 };

Deno.test("ensureVllmResources creates ConfigMap, Service and Deployment (replicas 0) when missing", async () => {
  await withKube(async ({ fake, client, config }) => {
    const model = new ModelRegistry(config.models).first()!;
    const result = await client.ensureVllmResources(config, model);
    assert.equal(result.ensured, true);
    assert.deepEqual(result.created, ["ConfigMap/vllm-config", "Service/vllm-svc", "Deployment/vllm"]);
    const cm = fake.store.getObject("configmaps", "vllm-config", "ai-apps");
    assert.deepEqual(cm.data, buildModelConfigMapData(config, model));
    assert.equal(cm.metadata.annotations[ACTIVE_MODEL_ANNOTATION], "model-a");
    assert.equal(cm.metadata.labels["managed-by"], "vllm-chill");
    assert.ok(fake.store.getObject("services", "vllm-svc", "ai-apps"));
    const deployment = fake.store.getObject("deployments", "vllm", "ai-apps");
    assert.equal(deployment.spec.replicas, 0);
    assert.equal(fake.kubelet.pods().length, 0);
  }, { fake: { timing: FAST } });
});

Deno.test("ensureVllmResources updates an existing ConfigMap and leaves a user-managed Service and Deployment unchanged", async () => {
  await withKube(async ({ fake, client, config, lines }) => {
    fake.store.createObject("configmaps", {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "vllm-config", namespace: "ai-apps" },
      data: { MODEL_NAME: "old/model", STALE_KEY: "x" },
    }, "ai-apps");
    fake.store.createObject("services", {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "vllm-svc", namespace: "ai-apps", labels: { owner: "me" } },
      spec: { selector: { app: "vllm" }, ports: [{ port: 8080, targetPort: 9000 }] },
    }, "ai-apps");
    fake.store.createObject("deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "vllm", namespace: "ai-apps", labels: { owner: "me" } },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: "vllm" } },
        template: {
          metadata: { labels: { app: "vllm" } },
          spec: { containers: [{ name: "custom", image: "my/vllm:1" }] },
        },
      },
    }, "ai-apps");
    const svcBefore = structuredClone(fake.store.getObject("services", "vllm-svc", "ai-apps"));
    const depBefore = structuredClone(fake.store.getObject("deployments", "vllm", "ai-apps"));
    const model = new ModelRegistry(config.models).resolve("model-b")!;

    const result = await client.ensureVllmResources(config, model);

    assert.deepEqual(result.created, []);
    assert.deepEqual(result.updated, ["ConfigMap/vllm-config"]);
    assert.deepEqual(result.userManaged, ["Service/vllm-svc", "Deployment/vllm"]);
    const cm = fake.store.getObject("configmaps", "vllm-config", "ai-apps");
    assert.deepEqual(cm.data, buildModelConfigMapData(config, model));
    assert.equal(cm.metadata.annotations[ACTIVE_MODEL_ANNOTATION], "model-b");
    const svcAfter = fake.store.getObject("services", "vllm-svc", "ai-apps");
    assert.deepEqual([svcAfter.spec, svcAfter.metadata.labels], [svcBefore.spec, svcBefore.metadata.labels]);
    // The simulated controller may update the Deployment's status; its spec and labels must be the user's.
    const depAfter = fake.store.getObject("deployments", "vllm", "ai-apps");
    assert.deepEqual(
      [depAfter.spec, depAfter.metadata.labels, depAfter.metadata.generation],
      [depBefore.spec, depBefore.metadata.labels, depBefore.metadata.generation],
    );
    assert.ok(lines().some((l) => /user-managed/.test(l.msg) && l.object === "Deployment/vllm"));
    const writes = fake.calls.filter((c) => ["create", "update", "patch"].includes(c.verb ?? ""));
    assert.deepEqual(writes.map((c) => `${c.verb} ${c.resource}`), ["update configmaps"]);
  }, { fake: { timing: FAST } });
});

Deno.test("ensureVllmResources with no model logs a warning and creates nothing", async () => {
  await withKube(async ({ fake, client, config, lines }) => {
    const result = await client.ensureVllmResources(config, null);
    assert.equal(result.ensured, false);
    assert.equal(fake.calls.length, 0);
    assert.ok(lines().some((l) => l.level === "warn" && /first model is requested/.test(l.msg)));
  }, { config: { models: {} }, fake: { timing: FAST } });
});

Deno.test("writeActiveModel retries on 409 Conflict with a fresh read", async () => {
  await withKube(async ({ fake, client, config }) => {
    const registry = new ModelRegistry(config.models);
    await client.ensureVllmResources(config, registry.resolve("model-a")!);
    fake.faults.failNext({ method: "PUT", resource: "configmaps" }, 409, 2);
    await client.writeActiveModel(config, registry.resolve("model-b")!);
    const cm = fake.store.getObject("configmaps", "vllm-config", "ai-apps");
    assert.equal(cm.data.VLLM_CHILL_MODEL, "model-b");
    const puts = fake.calls.filter((c) => c.method === "PUT" && c.resource === "configmaps");
    assert.deepEqual(puts.map((c) => c.status), [409, 409, 200]);
    const gets = fake.calls.filter((c) => c.verb === "get" && c.resource === "configmaps");
    assert.ok(gets.length >= 4, "each retry reads the ConfigMap again");
  }, { fake: { timing: FAST } });
});

Deno.test("writeActiveModel gives up after bounded conflicts with a ConflictError", async () => {
  await withKube(async ({ fake, client, config }) => {
    const registry = new ModelRegistry(config.models);
    await client.ensureVllmResources(config, registry.resolve("model-a")!);
    fake.faults.failNext({ method: "PUT", resource: "configmaps" }, 409, 100);
    await assert.rejects(
      client.writeActiveModel(config, registry.resolve("model-b")!),
      (e) => e instanceof ConflictError && /ConfigMap ai-apps\/vllm-config/.test(e.message),
    );
    const puts = fake.calls.filter((c) => c.method === "PUT" && c.resource === "configmaps");
    assert.equal(puts.length, 8);
    fake.faults.clear();
  }, { fake: { timing: FAST } });
});

Deno.test("ensure survives API server 500s and latency (retried idempotent reads)", async () => {
  await withKube(async ({ fake, client, config }) => {
    fake.faults.failNext({ method: "GET", resource: "configmaps" }, 500, 2);
    fake.faults.failNext({ method: "GET", resource: "deployments" }, 503, 1);
    fake.faults.latency(30);
    const started = Date.now();
    const result = await client.ensureVllmResources(config, new ModelRegistry(config.models).first()!);
    assert.equal(result.ensured, true);
    assert.ok(Date.now() - started >= 30 * 3, "latency applied to the calls");
    const failed = fake.calls.filter((c) => c.status >= 500);
    assert.equal(failed.length, 3);
    assert.ok(fake.store.getObject("deployments", "vllm", "ai-apps"));
    fake.faults.clear();
  }, { fake: { timing: FAST } });
});

Deno.test("scale goes through deployments/scale with a merge patch; readReplicas reads it back", async () => {
  await withKube(async ({ fake, client, config }) => {
    await client.ensureVllmResources(config, new ModelRegistry(config.models).first()!);
    assert.equal(await client.readReplicas(), 0);
    await client.scale(1);
    assert.equal(fake.store.getObject("deployments", "vllm", "ai-apps").spec.replicas, 1);
    assert.equal(await client.readReplicas(), 1);
    const patches = fake.calls.filter((c) => c.method === "PATCH");
    assert.equal(patches.length, 1);
    assert.equal(patches[0].subresource, "scale");
    assert.equal(patches[0].status, 200);
    await client.scale(0);
  }, { fake: { timing: FAST } });
});

Deno.test("readReplicas is null when the Deployment does not exist", async () => {
  await withKube(async ({ client }) => {
    assert.equal(await client.readReplicas(), null);
  }, { fake: { timing: FAST } });
});

Deno.test("a late start-up ensure never undoes the model a start wrote (serialized ConfigMap writes)", async () => {
  await withKube(async ({ fake, client, config }) => {
    const registry = new ModelRegistry(config.models);
    // A start writes model-b while the start-up ensure (initial model-a) is still on its way.
    const start = client.writeActiveModel(config, registry.resolve("model-b")!);
    const ensure = client.ensureVllmResources(config, registry.resolve("model-a")!);
    await Promise.all([start, ensure]);
    const cm = fake.store.getObject("configmaps", "vllm-config", "ai-apps");
    assert.equal(cm.data.VLLM_CHILL_MODEL, "model-b");
    assert.equal(cm.metadata.annotations[ACTIVE_MODEL_ANNOTATION], "model-b");
    await client.ensureVllmResources(config, registry.resolve("model-a")!);
    assert.equal(fake.store.getObject("configmaps", "vllm-config", "ai-apps").data.VLLM_CHILL_MODEL, "model-b");
  }, { fake: { timing: FAST } });
});
