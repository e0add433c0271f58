/**
 * Sleep tiers on Kubernetes, end to end, in both layouts: a model that may sleep runs with vLLM's sleep mode
 * (flag in its engine config, VLLM_SERVER_DEV_MODE=1 in its env, both from its ConfigMap); after sleepAfter the
 * proxy calls POST /sleep through the Service and the pod lives on; a request wakes it (no new pod); idleTimeout
 * later scales it to 0; a restarted proxy reads the sleep back with GET /is_sleeping. The fake vLLM dies if
 * anything reaches it while asleep, so a forward to a sleeper fails these tests loudly.
 */
import assert from "node:assert/strict";
import { chat, type KubeE2e, modelStatuses, waitUntil, withKubeE2e } from "./kube_helpers.ts";

const SLEEP_LEVEL = "vllm.efortin.github.io/sleep-level";

async function served(env: KubeE2e, model: string): Promise<void> {
  const res = await chat(env.url, model);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.model, model);
}

const statusOf = async (env: KubeE2e, model: string) => (await modelStatuses(env.url))[model];

Deno.test("kube sleep (shared layout): sleepAfter → POST /sleep, the pod lives on; a request wakes it; idleTimeout scales to 0", async () => {
  await withKubeE2e({ config: { sleepAfter: "300ms", idleTimeout: "2s" } }, async (env) => {
    await served(env, "model-a");
    const cm = env.fake.store.getObject("configmaps", "vllm-config");
    assert.equal(cm.data.VLLM_SERVER_DEV_MODE, "1");
    assert.match(cm.data.ENGINE_CONFIG_YAML, /^enable-sleep-mode: true$/m);
    const engine = env.liveEngine("model-a")!;
    assert.ok(engine.sleepMode);
    await waitUntil(async () => await statusOf(env, "model-a") === "sleeping", 5000, "asleep");
    // "sleeping" holds from the moment /sleep is sent; the engine confirms it.
    await waitUntil(() => Promise.resolve(engine.stats().isSleeping), 2000, "the engine asleep");
    assert.equal(env.replicas(), 1);
    assert.equal(env.fake.store.getObject("deployments", "vllm").metadata.annotations[SLEEP_LEVEL], "1");
    const scaleUps = env.scalePatches().length;
    await served(env, "model-a");
    assert.equal(env.engines.length, 1, "woken, not a new pod");
    assert.equal(env.scalePatches().length, scaleUps, "no scale call");
    assert.equal(engine.stats().wakes, 1);
    assert.equal(engine.stats().forwardedWhileAsleep, 0);
    assert.equal(env.fake.store.getObject("deployments", "vllm").metadata.annotations?.[SLEEP_LEVEL], undefined);
    // Idle again: asleep, then scaled to 0 at idleTimeout (from the end of the last request).
    await waitUntil(async () => await statusOf(env, "model-a") === "sleeping", 5000, "asleep again");
    await env.fake.until(() => env.replicas() === 0 && env.fake.kubelet.pods().length === 0, 5000, "scaled to 0");
    await waitUntil(async () => await statusOf(env, "model-a") === "cold", 5000, "cold");
    assert.equal(engine.stats().sleeps, 2);
  });
});

Deno.test("kube sleep (shared layout): another model's request stops the sleeper (one Deployment) and never wakes it", async () => {
  await withKubeE2e({ config: { sleepAfter: "200ms", idleTimeout: "1m" } }, async (env) => {
    await served(env, "model-a");
    await waitUntil(async () => await statusOf(env, "model-a") === "sleeping", 5000, "a asleep");
    const a = env.liveEngine("model-a")!;
    await served(env, "model-b");
    assert.equal(a.stats().wakes, 0);
    assert.equal(a.stats().forwardedWhileAsleep, 0);
    assert.deepEqual(env.overlaps, []);
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, "model-b");
  });
});

Deno.test("kube sleep (shared layout): a restarted proxy reads the sleep back (GET /is_sleeping) and wakes it, no new pod", async () => {
  await withKubeE2e({ config: { sleepAfter: "200ms", idleTimeout: "1m", sleepLevel: 2 } }, async (env) => {
    await served(env, "model-a");
    await waitUntil(async () => await statusOf(env, "model-a") === "sleeping", 5000, "asleep");
    const engine = env.liveEngine("model-a")!;
    await waitUntil(() => Promise.resolve(engine.stats().isSleeping), 2000, "the engine asleep");
    await env.stopProxy();
    // The new proxy would not sleep at level 2 by itself: the level recorded on the Deployment says how deep.
    await env.startProxy({ sleepAfter: "200ms", idleTimeout: "1m", sleepLevel: 1 });
    assert.equal(await statusOf(env, "model-a"), "sleeping");
    await served(env, "model-a");
    assert.equal(env.engines.length, 1);
    assert.equal(engine.stats().wakes, 1);
    assert.equal(engine.stats().reloads, 1, "woken as deep as it slept: weights reloaded");
    assert.equal(engine.stats().corruptedResponses, 0);
  });
});

Deno.test("kube sleep (per-model layout): level 2 → weights reloaded and prefix cache reset on wake, through the Service", async () => {
  await withKubeE2e({
    config: { layout: "per-model", maxGpus: 2, sleepAfter: "200ms", sleepLevel: 2, idleTimeout: "1m" },
    fake: { gpusPerNode: 2 },
  }, async (env) => {
    await served(env, "model-b");
    await waitUntil(async () => await statusOf(env, "model-b") === "sleeping", 5000, "asleep");
    // "sleeping" holds from the moment the proxy decides to send /sleep; the engine confirms it.
    await waitUntil(() => Promise.resolve(env.liveEngine("model-b")!.stats().isSleeping), 2000, "the engine asleep");
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-b").metadata.annotations[SLEEP_LEVEL], "2");
    await served(env, "model-b");
    const stats = env.liveEngine("model-b")!.stats();
    assert.equal(stats.sleepLevel, 2);
    assert.equal(stats.reloads, 1);
    assert.equal(stats.resetSinceWake, true);
    assert.equal(stats.corruptedResponses, 0);
    assert.equal(stats.forwardedWhileAsleep, 0);
    assert.ok(
      env.fake.proxied.some((p) => p.service === "vllm-svc-model-b" && p.path === "/sleep"),
      "POST /sleep went through the model's Service",
    );
    assert.equal(env.engines.length, 1);
  });
});
