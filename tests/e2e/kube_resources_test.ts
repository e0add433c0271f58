/**
 * End-to-end, Kubernetes backend, model switching on: the vLLM objects are
 * ensured at start as the seed describes (first model as the initial
 * configuration; existing Service/Deployment left untouched, ConfigMap
 * updated; no model anywhere → warning, created on the first request), and
 * VLLMModel custom resources appear in and disappear from the proxy live.
 */
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import OpenAI from "openai";
import { describeCall, modelStatuses, userDeployment, vllmModel, waitUntil, withKubeE2e } from "./kube_helpers.ts";

const userService = () => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: "vllm-svc", labels: { team: "ml" } },
  spec: { selector: { app: "vllm" }, ports: [{ name: "web", port: 80, targetPort: 9000 }] },
});

const staleConfigMap = () => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "vllm-config", labels: { team: "ml" } },
  data: { MODEL_NAME: "org/old", SERVED_MODEL_NAME: "old", STALE_KEY: "1" },
});

const ensuredLog = (env: { logs: { messages(m: string): unknown[] } }) => env.logs.messages("vLLM resources ensured");

Deno.test("kube e2e resources: created at start from the first model, Deployment at 0, nothing scaled", async () => {
  await withKubeE2e({}, async (env) => {
    await waitUntil(() => ensuredLog(env).length > 0, 5000, "resources ensured");
    const cm = env.fake.store.getObject("configmaps", "vllm-config");
    const svc = env.fake.store.getObject("services", "vllm-svc");
    const dep = env.fake.store.getObject("deployments", "vllm");
    assert.equal(cm.data.SERVED_MODEL_NAME, "model-a", "the first model is the initial configuration");
    assert.equal(cm.data.MODEL_NAME, "org/model-a");
    for (const obj of [cm, svc, dep]) {
      assert.equal(obj.metadata.labels.app, "vllm");
      assert.equal(obj.metadata.labels["managed-by"], "vllm-chill");
    }
    assert.deepEqual(svc.spec.selector, { app: "vllm" });
    assert.equal(svc.spec.ports[0].port, 80);
    assert.equal(svc.spec.ports[0].targetPort, 8000);
    assert.equal(svc.spec.type, "ClusterIP");
    assert.equal(dep.spec.replicas, 0, "Deployment created at 0 replicas");
    assert.deepEqual(dep.spec.selector.matchLabels, { app: "vllm" });
    assert.deepEqual(
      env.writes().map(describeCall).sort(),
      ["create configmaps", "create deployments", "create services"],
    );
    assert.equal(env.scalePatches().length, 0, "nothing scaled at start");
    assert.equal(env.fake.kubelet.pods().length, 0);
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "cold", "model-b": "cold" });
  });
});

Deno.test("kube e2e resources: existing Service and Deployment left untouched, ConfigMap updated; switch works on them", async () => {
  let depBefore: Record<string, any> = {};
  let svcBefore: Record<string, any> = {};
  await withKubeE2e({
    seed: (fake) => {
      depBefore = fake.store.createObject("deployments", userDeployment(0));
      svcBefore = fake.store.createObject("services", userService());
      fake.store.createObject("configmaps", staleConfigMap());
    },
  }, async (env) => {
    await waitUntil(() => ensuredLog(env).length > 0, 5000, "resources ensured");
    assert.deepEqual(env.fake.store.getObject("services", "vllm-svc"), svcBefore, "Service unchanged");
    const dep = env.fake.store.getObject("deployments", "vllm");
    assert.deepEqual(dep.spec, depBefore.spec, "Deployment spec unchanged");
    assert.deepEqual(dep.metadata.labels, depBefore.metadata.labels);
    assert.deepEqual(dep.metadata.annotations, depBefore.metadata.annotations);
    const cm = env.fake.store.getObject("configmaps", "vllm-config");
    assert.equal(cm.data.SERVED_MODEL_NAME, "model-a", "ConfigMap updated with the first model");
    assert.equal(cm.data.STALE_KEY, undefined, "the ConfigMap holds exactly the model's configuration");
    assert.deepEqual(env.writes().map(describeCall), ["update configmaps"]);

    const openai = env.openai();
    const reply = await openai.chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    });
    assert.equal(reply.model, "model-b");
    assert.equal(env.engines.at(-1)?.model, "model-b");
    const after = env.fake.store.getObject("deployments", "vllm");
    assert.deepEqual({ ...after.spec, replicas: 0 }, depBefore.spec, "only replicas changed");
    assert.equal(after.spec.replicas, 1);
    assert.deepEqual(env.fake.store.getObject("services", "vllm-svc"), svcBefore);
    assert.ok(
      env.writes().every((c) => c.resource === "configmaps" || c.subresource === "scale"),
      `only the ConfigMap and replicas written: ${env.writes().map(describeCall)}`,
    );
  });
});

Deno.test("kube e2e resources: the first VLLMModel (by name) is the initial configuration when the config has none", async () => {
  await withKubeE2e({
    config: { models: {} },
    seed: (fake) => {
      fake.store.createObject("vllmmodels", vllmModel("zeta", "org/zeta"));
      fake.store.createObject("vllmmodels", vllmModel("alpha", "org/alpha"));
    },
  }, async (env) => {
    await waitUntil(() => ensuredLog(env).length > 0, 5000, "resources ensured");
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, "alpha");
    assert.equal(env.fake.store.getObject("deployments", "vllm").spec.replicas, 0);
    assert.deepEqual(await modelStatuses(env.url), { alpha: "cold", zeta: "cold" });
  });
});

Deno.test("kube e2e resources: no model anywhere → warning and nothing created; a VLLMModel added later is created on its first request", async () => {
  await withKubeE2e({ config: { models: {} } }, async (env) => {
    await waitUntil(
      () => env.logs.records().some((r) => r.level === "warn" && /no model is defined/.test(String(r.msg))),
      5000,
      "the no-model warning",
    );
    assert.deepEqual(env.writes().map(describeCall), [], "nothing created");
    assert.deepEqual(await modelStatuses(env.url), {});

    env.fake.store.createObject("vllmmodels", vllmModel("model-c", "org/model-c", { maxModelLen: 2048 }));
    await waitUntil(async () => (await modelStatuses(env.url))["model-c"] === "cold", 5000, "model-c listed cold");
    assert.deepEqual(env.writes().map(describeCall), [], "still nothing created before a request");

    const reply = await env.openai().chat.completions.create({
      model: "model-c",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    });
    assert.equal(reply.model, "model-c");
    const cm = env.fake.store.getObject("configmaps", "vllm-config");
    assert.equal(cm.data.SERVED_MODEL_NAME, "model-c");
    assert.equal(cm.data.MODEL_NAME, "org/model-c");
    assert.ok(env.fake.store.getObject("services", "vllm-svc"), "Service created");
    assert.equal(env.fake.store.getObject("deployments", "vllm").spec.replicas, 1);
    assert.equal(env.engines.length, 1);
    assert.equal(env.engines[0].model, "model-c");
  });
});

Deno.test("kube e2e VLLMModel: created while running → listed cold and servable; deleted → 404 model_not_found", async () => {
  await withKubeE2e({}, async (env) => {
    await waitUntil(() => ensuredLog(env).length > 0, 5000, "resources ensured");
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "cold", "model-b": "cold" });

    env.fake.store.createObject("vllmmodels", vllmModel("model-c", "org/model-c"));
    await waitUntil(async () => (await modelStatuses(env.url))["model-c"] === "cold", 5000, "model-c listed");
    const openai = env.openai();
    const reply = await openai.chat.completions.create({
      model: "model-c",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    });
    assert.equal(reply.model, "model-c");
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "cold", "model-b": "cold", "model-c": "ready" });

    const scalesBefore = env.scalePatches().length;
    env.fake.store.deleteObject("vllmmodels", "model-c");
    await waitUntil(async () => !("model-c" in await modelStatuses(env.url)), 5000, "model-c gone from the list");
    await assert.rejects(
      openai.chat.completions.create({ model: "model-c", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError, String(error));
        assert.equal(error.status, 404);
        assert.equal(error.code, "model_not_found");
        return true;
      },
    );
    assert.equal(env.scalePatches().length, scalesBefore, "the 404 woke nothing");
  });
});

Deno.test("kube e2e resources: servedModelName (config and VLLMModel) — listed by served name, requested by key or served name", async () => {
  await withKubeE2e({
    config: { models: { "model-x": { modelName: "org/x", servedModelName: "x-served" } } },
    seed: (fake) =>
      void fake.store.createObject("vllmmodels", vllmModel("cr-y", "org/y", { servedModelName: "y-served" })),
  }, async (env) => {
    await waitUntil(async () => "y-served" in await modelStatuses(env.url), 5000, "the VLLMModel listed");
    assert.deepEqual(await modelStatuses(env.url), { "x-served": "cold", "y-served": "cold" });
    const openai = env.openai();
    for (const [asked, served] of [["model-x", "x-served"], ["x-served", "x-served"], ["cr-y", "y-served"]]) {
      const reply = await openai.chat.completions.create({
        model: asked,
        messages: [{ role: "user", content: asked }],
        max_tokens: 1,
      });
      assert.equal(reply.model, served, asked);
      assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, served);
    }
    assert.deepEqual(env.engines.map((e) => e.model), ["x-served", "y-served"], "one switch, by model not by name");
  });
});
