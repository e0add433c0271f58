/**
 * End-to-end, Kubernetes backend, restart safety: a proxy shut down leaves
 * the cluster as it is (no scale-down); a new proxy reads replicas, the
 * active model and the pod back and serves it warm without a scale call; a
 * restart in the middle of a switch converges.
 */
import assert from "node:assert/strict";
import {
  chat,
  collectStream,
  describeCall,
  modelStatuses,
  settleCalls,
  waitUntil,
  withKubeE2e,
} from "./kube_helpers.ts";

for (const model of ["model-a", "model-b"]) {
  Deno.test(`kube e2e restart: ${model} loaded, proxy restarted → read back (replicas 1, ${model}, Ready), served warm with no scale call`, async () => {
    await withKubeE2e({}, async (env) => {
      const reply = await env.openai().chat.completions.create({
        model,
        messages: [{ role: "user", content: "before" }],
        max_tokens: 2,
      });
      assert.equal(reply.model, model);
      const scalesBefore = env.scalePatches().length;
      const writesBefore = env.writes().length;

      await env.stopProxy();
      assert.equal(env.scalePatches().length, scalesBefore, "shutdown did not scale down");
      assert.equal(env.replicas(), 1);
      assert.equal(env.fake.kubelet.pods().length, 1, "the pod keeps running");

      await env.startProxy();
      await waitUntil(async () => (await modelStatuses(env.url))[model] === "ready", 5000, `${model} ready again`);
      await settleCalls(env.fake);
      const again = await env.openai().chat.completions.create({
        model,
        messages: [{ role: "user", content: "after" }],
        max_tokens: 2,
      });
      assert.equal(again.model, model);
      assert.equal(env.engines.length, 1, "same engine, no restart of vLLM");
      assert.equal(env.engines[0].received.length, 2);
      assert.equal(env.scalePatches().length, scalesBefore, "no scale call after the restart");
      const cm = env.fake.store.getObject("configmaps", "vllm-config");
      assert.equal(cm.data.SERVED_MODEL_NAME, model, "the ConfigMap still names the running model");
      const newWrites = env.writes().slice(writesBefore).map(describeCall);
      assert.ok(
        newWrites.every((w) => w === "update configmaps"),
        `only a ConfigMap re-ensure after the restart: ${newWrites}`,
      );
    });
  });
}

Deno.test("kube e2e restart: in the middle of a switch (ConfigMap says b, replicas 1, pod starting) a new proxy converges", async () => {
  await withKubeE2e({ engine: { loadMs: 2000 } }, async (env) => {
    const a = await chat(env.url, "model-a");
    assert.equal(a.status, 200);
    const held = chat(env.url, "model-b");
    await env.fake.until(
      () => env.engines.length === 2 && env.engines[1].model === "model-b" && env.engines[1].readyAt === undefined,
      5000,
      "model-b's pod started, not Ready yet",
    );
    assert.equal(env.replicas(), 1);
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, "model-b");
    const scalesBefore = env.scalePatches().length;

    await env.stopProxy();
    const refused = await held;
    assert.equal(refused.status, 503, "a held request is refused on shutdown");
    assert.equal(env.scalePatches().length, scalesBefore, "shutdown did not scale down");

    await env.startProxy();
    const b = await env.openai().chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "after restart" }],
      max_tokens: 2,
    });
    assert.equal(b.model, "model-b");
    assert.equal(env.engines.length, 2, "the starting pod was adopted, not restarted");
    assert.equal(env.scalePatches().length, scalesBefore, "no scale call: the new proxy waited for the starting pod");
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "cold", "model-b": "ready" });
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, "model-b");
  });
});

Deno.test("kube e2e shutdown: a stream in flight finishes; new requests are refused; the cluster is left as it is", async () => {
  await withKubeE2e({ engine: { tokensPerSec: 20 } }, async (env) => {
    const openai = env.openai();
    const warm = await chat(env.url, "model-a");
    assert.equal(warm.status, 200);
    const stream = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "long" }],
      max_tokens: 20,
      stream: true,
    });
    const url = env.url;
    const text = collectStream(stream);
    const stopping = env.stopProxy();
    const refused = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "model-a", messages: [] }),
    }).then(async (r) => {
      await r.body?.cancel();
      return r.status;
    }, () => "connection refused");
    assert.ok(refused === 503 || refused === "connection refused", `a new request got ${refused}`);
    assert.equal((await text).trim().split(" ").length, 20, "the in-flight stream completed");
    await stopping;
    assert.equal(env.replicas(), 1, "no scale-down on shutdown");
    assert.equal(env.scalePatches().length, 1);
  });
});

Deno.test("kube e2e restart: while the old pod is still terminating (replicas 0) → the new proxy waits for it, then serves", async () => {
  await withKubeE2e({
    config: { idleTimeout: "300ms" },
    fake: { timing: { scheduleMs: 10, startMs: 20, readyMs: 20, terminateMs: 1200 } },
  }, async (env) => {
    assert.equal((await chat(env.url, "model-a")).status, 200);
    await env.fake.until(() => env.replicas() === 0, 3000, "idle scale-down");
    await env.stopProxy();
    assert.ok(env.fake.kubelet.pods()[0]?.metadata.deletionTimestamp, "the pod is still terminating");

    await env.startProxy();
    const b = await env.openai().chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "b" }],
      max_tokens: 1,
    });
    assert.equal(b.model, "model-b");
    assert.deepEqual(env.engines.map((e) => e.model), ["model-a", "model-b"]);
    assert.ok(env.engines[0].stoppedAt! <= env.engines[1].startedAt);
  });
});
