import assert from "node:assert/strict";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { toObserved } from "../../lib/kube/mod.ts";
import { withKube } from "./helpers.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 };

Deno.test("readState on a fresh namespace: absent, no model", async () => {
  await withKube(async ({ client }) => {
    const state = await client.readState();
    assert.deepEqual(toObserved(state), { engines: [] });
    assert.equal(state.deploymentExists, false);
  }, { fake: { timing: FAST } });
});

Deno.test("readState after a restart (new client) reads replicas, active model and a Ready pod", async () => {
  await withKube(async ({ client, config, newClient }) => {
    const registry = new ModelRegistry(config.models);
    await client.ensureVllmResources(config, registry.resolve("model-b")!);
    await client.scale(1);
    await client.waitReady({ deadline: Date.now() + 5000 });
    client.close();

    const restarted = newClient();
    const state = await restarted.readState();
    assert.equal(state.replicas, 1);
    assert.equal(state.activeModel, "model-b");
    assert.equal(state.phase, "ready");
    assert.equal(state.pods.length, 1);
    assert.equal(state.pods[0].phase, "Ready");
    await restarted.scale(0);
    await restarted.waitGone({ deadline: Date.now() + 3000 });
  }, { fake: { timing: FAST } });
});

Deno.test("readState shows Pending with its reason, and Terminating", async () => {
  await withKube(async ({ client, config, fake }) => {
    await client.ensureVllmResources(config, new ModelRegistry(config.models).first()!);
    await client.scale(1);
    await client.waitReady({ deadline: Date.now() + 5000 });
    fake.faults.stuckTerminating(true);
    await client.scale(0);
    // Scaling to 0 deletes the pod; the watch sees it terminating before any further read.
    await assert.rejects(client.waitGone({ deadline: Date.now() + 150 }));
    const terminating = await client.readState();
    assert.equal(terminating.phase, "terminating");
    assert.match(terminating.reason ?? "", /terminating/);

    // A new pod cannot be scheduled while the old one holds the only GPU.
    await client.scale(1);
    const seen = new AbortController();
    await client.waitReady({
      signal: seen.signal,
      deadline: Date.now() + 3000,
      onProgress: (reason) => /Unschedulable/.test(reason) && seen.abort(),
    }).catch(() => {});
    const state = await client.readState();
    assert.equal(state.phase, "pending");
    assert.match(state.reason ?? "", /Unschedulable/);
    fake.faults.stuckTerminating(false);
    await client.scale(0);
    await client.forceDeletePods();
    await client.waitGone({ deadline: Date.now() + 3000 });
  }, { fake: { gpusPerNode: 1, timing: FAST } });
});
