import assert from "node:assert/strict";
import { API_CALLS } from "../../lib/kube/api_calls.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { assertCallsListed, type FakeKube, withKube } from "./helpers.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 };
// Slow readiness (the wait must watch) and lingering terminating pods (forceDeletePods has one to delete),
// so every table entry is exercised whatever the machine load.

Deno.test("every verb of lib/kube calls the API only in ways API_CALLS lists (Role enforced)", async () => {
  await withKube(async ({ fake, client, config }) => {
    const registry = new ModelRegistry(config.models);
    const controller = new AbortController();
    const models = client.watchModels(registry, controller.signal, { retryMinMs: 10, retryMaxMs: 20 });
    assert.equal(await models.synced, true);
    assert.equal((await client.rbacSelfCheck()).ok, true);
    await client.ensureVllmResources(config, registry.first()!);
    await client.writeActiveModel(config, registry.resolve("model-b")!);
    const shaped = await client.applyModelPodShape(config, { ...registry.resolve("model-b")!, image: "vllm:next" });
    assert.equal(shaped.outcome, "patched");
    await client.scale(1);
    await client.readReplicas();
    await client.waitReady({ deadline: Date.now() + 5000 });
    await client.readState();
    await client.scale(0);
    await client.forceDeletePods();
    await client.waitGone({ deadline: Date.now() + 5000 });
    // The per-model layout's reads: every model's Deployment by the model label, listed and watched.
    await client.readModelStates(["model-a"]);
    const objects = client.watchModelObjects(controller.signal);
    await fake.until(() => objects.synced(), 5000, "the per-model watch synced");
    await client.setSleepLevel(1);
    assert.equal(await client.readSleepLevel(), 1);
    controller.abort();
    await models.done;
    await objects.done;

    // Every table entry is exercised, so the table lists nothing the code does not need either.
    const used = new Set(fake.calls.map((c) => `${c.verb} ${c.resource}${c.subresource ? "/" + c.subresource : ""}`));
    for (const entry of API_CALLS) {
      for (const verb of entry.verbs) {
        const key = `${verb} ${entry.resource}${entry.subresource ? "/" + entry.subresource : ""}`;
        assert.ok(used.has(key), `API_CALLS lists "${key}" but no verb used it`);
      }
    }
    assert.equal(fake.calls.filter((c) => c.status === 403).length, 0, "the generated Role allowed every call");
  }, { fake: { timing: { ...FAST, readyMs: 800, terminateMs: 30_000 } } });
});

Deno.test("the API-call check fails on a call the table does not list", () => {
  const fake = {
    calls: [{
      method: "DELETE",
      path: "/apis/apps/v1/namespaces/ai-apps/deployments/vllm",
      verb: "delete",
      resource: "deployments",
      status: 200,
      query: "",
    }],
  } as unknown as FakeKube;
  assert.throws(() => assertCallsListed(fake), /DELETE .*deployments\/vllm .*not listed in lib\/kube\/api_calls.ts/);
});
