import assert from "node:assert/strict";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { parseVllmModel } from "../../lib/kube/mod.ts";
import { CuttingRelay } from "./cutting_relay.ts";
import { clientVia, eventually, withKube } from "./helpers.ts";

const vllmModel = (name: string, spec: unknown) => ({
  apiVersion: "vllm.efortin.github.io/v1alpha1",
  kind: "VLLMModel",
  metadata: { name, namespace: "ai-apps" },
  spec,
});

Deno.test("parseVllmModel accepts a valid spec and explains an invalid one", () => {
  const ok = parseVllmModel(vllmModel("good", { modelName: "org/good", maxModelLen: 1024 }));
  assert.equal(ok.ok, true);
  const bad = parseVllmModel(vllmModel("bad", { modelName: "org/bad", gpuMemoryUtilization: 7 }));
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.reason : "", /gpuMemoryUtilization/);
});

Deno.test("watchModels lists, skips invalid objects with a reason, and follows ADDED/MODIFIED/DELETED live", async () => {
  await withKube(async ({ fake, client, lines }) => {
    fake.store.createObject("vllmmodels", vllmModel("crd-one", { modelName: "org/one" }), "ai-apps");
    // The fake's API validates against the CRD schema; an object stored before a stricter CRD
    // (or written around it) is planted with updateObject, which stores it as given.
    const bad = fake.store.createObject("vllmmodels", vllmModel("crd-bad", { modelName: "org/bad" }), "ai-apps");
    fake.store.updateObject("vllmmodels", { ...bad, spec: { modelName: 42 } }, "ai-apps");
    const registry = new ModelRegistry({});
    const controller = new AbortController();
    const watch = client.watchModels(registry, controller.signal, { retryMinMs: 10, retryMaxMs: 50 });
    try {
      assert.equal(await watch.synced, true);
      assert.deepEqual(registry.list().map((m) => m.name), ["crd-one"]);
      assert.ok(lines().some((l) => l.msg === "skipping invalid VLLMModel" && l.name === "crd-bad" && l.reason));

      fake.store.createObject("vllmmodels", vllmModel("crd-two", { modelName: "org/two" }), "ai-apps");
      await eventually(() => registry.resolve("crd-two") !== undefined, 3000, "ADDED crd-two");

      const two = fake.store.getObject("vllmmodels", "crd-two", "ai-apps");
      fake.store.updateObject("vllmmodels", { ...two, spec: { modelName: "org/two-v2" } }, "ai-apps");
      await eventually(() => registry.resolve("crd-two")?.modelName === "org/two-v2", 3000, "MODIFIED crd-two");

      fake.store.deleteObject("vllmmodels", "crd-one", "ai-apps");
      await eventually(() => registry.resolve("crd-one") === undefined, 3000, "DELETED crd-one");

      // An object turning invalid is dropped from the registry with a logged reason.
      const one = fake.store.getObject("vllmmodels", "crd-two", "ai-apps");
      fake.store.updateObject(
        "vllmmodels",
        { ...one, spec: { modelName: "org/two", tensorParallelSize: -1 } },
        "ai-apps",
      );
      await eventually(() => registry.resolve("crd-two") === undefined, 3000, "crd-two turned invalid");
      assert.ok(lines().some((l) => l.msg === "skipping invalid VLLMModel" && l.name === "crd-two"));

      fake.faults.dropWatches("vllmmodels");
      fake.store.createObject("vllmmodels", vllmModel("crd-three", { modelName: "org/three" }), "ai-apps");
      await eventually(() => registry.resolve("crd-three") !== undefined, 3000, "ADDED after a dropped watch");
    } finally {
      controller.abort();
      await watch.done;
    }
  });
});

Deno.test("watchModels survives a missing CRD (404): warns once, retries, then syncs", async () => {
  await withKube(async ({ fake, client, lines }) => {
    fake.faults.failNext({ verb: "list", resource: "vllmmodels" }, 404, 3);
    fake.store.createObject("vllmmodels", vllmModel("late", { modelName: "org/late" }), "ai-apps");
    const registry = new ModelRegistry({});
    const controller = new AbortController();
    const watch = client.watchModels(registry, controller.signal, { retryMinMs: 10, retryMaxMs: 40 });
    try {
      assert.equal(await watch.synced, false);
      await eventually(() => registry.resolve("late") !== undefined, 3000, "models after the CRD appears");
      const warnings = lines().filter((l) => /CRD is not installed/.test(l.msg));
      assert.equal(warnings.length, 1);
    } finally {
      controller.abort();
      await watch.done;
    }
  });
});

for (const fault of ["dropped (stream ended)", "reset mid-stream"] as const) {
  Deno.test(`watchModels: a watch ${fault} is resumed at once and a model added in the gap is seen`, async () => {
    await withKube(async ({ fake, client, config }) => {
      const relay = new CuttingRelay(fake.url);
      const kube = fault === "reset mid-stream" ? clientVia({ fake, config }, relay.url) : client;
      const registry = new ModelRegistry({});
      const controller = new AbortController();
      const watch = kube.watchModels(registry, controller.signal, { retryMinMs: 10, retryMaxMs: 50 });
      try {
        assert.equal(await watch.synced, true);
        await eventually(
          () =>
            fake.calls.some((c) => c.verb === "watch" && c.resource === "vllmmodels") &&
            (fault !== "reset mid-stream" || relay.streamingWatches() === 1),
          2000,
          "an open VLLMModel watch",
        );
        const started = Date.now();
        if (fault === "reset mid-stream") assert.equal(relay.cutWatches(), 1);
        else fake.faults.dropWatches("vllmmodels");
        // Added while no watch is open: only a resume from the last resourceVersion sees it.
        fake.store.createObject("vllmmodels", vllmModel("in-the-gap", { modelName: "org/gap" }), "ai-apps");
        await eventually(() => registry.resolve("in-the-gap") !== undefined, 3000, "the model added in the gap");
        const elapsed = Date.now() - started;
        assert.ok(elapsed < 3000, `seen ${elapsed} ms after the ${fault} watch (watchTimeoutMs 60 s)`);
        const lists = fake.calls.filter((c) => c.verb === "list" && c.resource === "vllmmodels");
        assert.equal(lists.length, 1, "resumed from the last resourceVersion, no re-list needed");
      } finally {
        controller.abort();
        await watch.done;
        if (kube !== client) kube.close();
        await relay.close();
      }
    });
  });
}

Deno.test("VLLMModel resources get the vLLM checks: an unknown parser is skipped with the allowed names; the escape hatch passes the CRD", async () => {
  await withKube(async ({ fake, client, lines }) => {
    // Both are accepted by the API server (the CRD's schema knows allowUnknownVllmValues): the check is vllm-chill's.
    fake.store.createObject("vllmmodels", vllmModel("typo", { modelName: "org/a", reasoningParser: "qwen-3" }));
    fake.store.createObject(
      "vllmmodels",
      vllmModel("newer", { modelName: "org/b", reasoningParser: "qwen4", allowUnknownVllmValues: true }),
    );
    fake.store.createObject("vllmmodels", vllmModel("tools", { modelName: "org/c", enableAutoToolChoice: true }));
    const registry = new ModelRegistry({});
    const controller = new AbortController();
    const watch = client.watchModels(registry, controller.signal, { retryMinMs: 10, retryMaxMs: 50 });
    try {
      assert.equal(await watch.synced, true);
      assert.deepEqual(registry.list().map((m) => m.name), ["newer"]);
      assert.equal(registry.resolve("newer")?.reasoningParser, "qwen4");
      const reasons = new Map(
        lines().filter((l) => l.msg === "skipping invalid VLLMModel").map((l) => [l.name, String(l.reason)]),
      );
      assert.match(
        reasons.get("typo")!,
        /spec\.reasoningParser: "qwen-3" is not a reasoning parser of vLLM v0\.11\.0: must be one of "deepseek_r1",.*"qwen3"/,
      );
      assert.match(reasons.get("tools")!, /spec\.enableAutoToolChoice: needs toolCallParser/);
    } finally {
      controller.abort();
      await watch.done;
    }
  });
});
