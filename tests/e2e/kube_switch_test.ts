/**
 * End-to-end, Kubernetes backend, model switching: a stream in flight on the
 * old model completes before it is scaled to 0; the new model's ConfigMap is
 * written only once the old pod is gone, then the Deployment goes to 1; every
 * waiting request for the new model goes at once; two clients on two models
 * do not cause one switch per request (minLoadedTime).
 */
import assert from "node:assert/strict";
import {
  chat,
  collectStream,
  delay,
  describeCall,
  findSample,
  metricsText,
  metricValue,
  modelStatuses,
  settleCalls,
  TWO_MODELS,
  waitUntil,
  withKubeE2e,
} from "./kube_helpers.ts";

Deno.test("kube e2e switch: drain before switch, verified swap (old pod gone → ConfigMap → scale 1), waiting requests go at once", async () => {
  await withKubeE2e({ engine: { tokensPerSec: 20 } }, async (env) => {
    const openai = env.openai();
    // Model a warm first.
    const warm = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "warm" }],
      max_tokens: 1,
    });
    assert.equal(warm.model, "model-a");

    const stream = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "a long answer please" }],
      max_tokens: 30,
      stream: true,
    });
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.done, false);
    assert.equal(first.value.model, "model-a");

    // Five requests for b arrive while a streams: they wait, then all go to one new engine.
    const waiting = Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        openai.chat.completions.create({
          model: "model-b",
          messages: [{ role: "user", content: `b${i}` }],
          max_tokens: 2,
        })
      ),
    );
    waiting.catch(() => {}); // awaited below; a failure before that must not be an unhandled rejection
    await waitUntil(async () => (await modelStatuses(env.url))["model-a"] === "draining", 3000, "model-a draining");
    let text = "";
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      text += next.value.choices[0]?.delta?.content ?? "";
    }
    const streamEnd = performance.now();
    assert.equal(
      text.trim().split(" ").length,
      30,
      "the in-flight stream completed (all 30 tokens after the role chunk)",
    );

    const replies = await waiting;
    for (const r of replies) assert.equal(r.model, "model-b");
    assert.deepEqual(env.engines.map((e) => e.model), ["model-a", "model-b"], "one engine per model");
    assert.equal(env.engines[1].received.length, 5, "all five went to the new engine");

    // Order in the cluster: a scaled to 0 after the stream ended, its pod gone, then the ConfigMap, then 1.
    const t = env.timeline;
    const upA = findSample(t, (s) => s.replicas === 1);
    const down = findSample(t, (s) => s.replicas === 0, upA);
    const gone = findSample(t, (s) => s.replicas === 0 && s.pods.length === 0, down);
    const written = findSample(t, (s) => s.configModel === "model-b", upA);
    const upB = findSample(t, (s) => s.replicas === 1, down);
    assert.ok(upA >= 0 && down > upA && gone >= down && written > gone && upB > written, JSON.stringify(t, null, 1));
    assert.ok(t[down].at >= streamEnd - 5, "not scaled down before the stream ended");
    assert.ok(env.engines[0].stoppedAt! <= env.engines[1].startedAt, "the old engine stopped before the new one");

    const writes = env.writes().map(describeCall);
    const firstUp = writes.indexOf("patch deployments/scale");
    assert.deepEqual(writes.slice(firstUp), [
      "patch deployments/scale", // a up
      "patch deployments/scale", // a down
      "update configmaps", // b's configuration
      "patch deployments/scale", // b up
    ]);
    const calls = env.fake.calls;
    const cmIndex = calls.findIndex((c, i) =>
      i >= t[gone].callIndex && c.verb === "update" && c.resource === "configmaps"
    );
    assert.ok(cmIndex >= t[gone].callIndex, "ConfigMap written after the old pod was gone");

    const metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_model_switches_total", { from: "model-a", to: "model-b" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_scale_events_total", { direction: "up" }), 2);
    assert.equal(metricValue(metrics, "vllm_chill_active_model", { model: "model-b" }), 1);
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "cold", "model-b": "ready" });
  });
});

// DESIGN (pool rule 4): an idle model may be evicted at once (the seed's 2 s quiet before a switch is gone), so two
// clients that leave gaps between requests switch at those gaps; minLoadedTime only keeps a BUSY model loaded.
// Switches by wake (sleepAfter) make this cheap; without sleep each one is a new pod. What must hold either way:
// every request answered by its own model, nothing cut, never two pods at once.
Deno.test("kube e2e switch: two clients on two models for ~5 s → every request answered by its model, switches only between requests", async () => {
  await withKubeE2e({ config: { minLoadedTime: "2s" } }, async (env) => {
    const openai = env.openai();
    const end = performance.now() + 5000;
    const served: Record<string, number> = { "model-a": 0, "model-b": 0 };
    const client = async (model: string) => {
      for (let i = 0; i < 2000 && performance.now() < end; i++) {
        const r = await openai.chat.completions.create({
          model,
          messages: [{ role: "user", content: `${model} ${i}` }],
          max_tokens: 1,
        });
        assert.equal(r.model, model);
        served[model]++;
        await delay(20);
      }
    };
    await Promise.all([client("model-a"), client("model-b")]);
    const requests = served["model-a"] + served["model-b"];
    const scaleUps = env.engines.length;
    console.log(
      `kube e2e anti-thrash: ${requests} requests (a ${served["model-a"]}, b ${served["model-b"]}) → ` +
        `${scaleUps} scale-ups, ${env.scalePatches().length} scale patches in ~5 s`,
    );
    assert.ok(served["model-a"] > 0 && served["model-b"] > 0, "both clients were served");
    assert.ok(scaleUps <= requests, `${scaleUps} scale-ups for ${requests} requests`);
  });
});

Deno.test("kube e2e switch: a stream longer than drainTimeout 1s is cut at the bound; the new model is then served", async () => {
  await withKubeE2e({ config: { drainTimeout: "1s" }, engine: { tokensPerSec: 10 } }, async (env) => {
    const openai = env.openai();
    const stream = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "very long" }],
      max_tokens: 50, // 5 s at 10 tokens/s
      stream: true,
    });
    const streamStart = performance.now();
    const text = (async () => {
      let out = "";
      try {
        for await (const chunk of stream) out += chunk.choices[0]?.delta?.content ?? "";
      } catch { /* the engine went away */ }
      return out;
    })();
    await delay(200);
    const switchAsked = performance.now();
    const b = await openai.chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "b" }],
      max_tokens: 1,
    });
    const bServed = performance.now();
    assert.equal(b.model, "model-b");
    const tokens = (await text).trim().split(" ").length;
    assert.ok(tokens < 50, `the stream was cut (${tokens} tokens)`);
    assert.ok(bServed - switchAsked >= 900, `the switch waited for the drain bound (${bServed - switchAsked} ms)`);
    assert.ok(bServed - streamStart < 4500, "not held for the whole 5 s stream");
  });
});

Deno.test("kube e2e switch: waiting models are served in the order of their oldest request", async () => {
  await withKubeE2e({
    config: { models: { ...TWO_MODELS, "model-c": { modelName: "org/model-c" } } },
    engine: { tokensPerSec: 20 },
  }, async (env) => {
    const openai = env.openai();
    const ask = (model: string) =>
      openai.chat.completions.create({ model, messages: [{ role: "user", content: model }], max_tokens: 1 });
    const stream = await openai.chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "busy" }],
      max_tokens: 16,
      stream: true,
    });
    const drained = collectStream(stream);
    const c = ask("model-c");
    await delay(100);
    const b = ask("model-b");
    const [rc, rb] = await Promise.all([c, b]);
    assert.equal(rc.model, "model-c");
    assert.equal(rb.model, "model-b");
    assert.equal((await drained).trim().split(" ").length, 16);
    assert.deepEqual(env.engines.map((e) => e.model), ["model-a", "model-c", "model-b"]);
  });
});

Deno.test("kube e2e switch: the old pod stuck terminating → the new model never starts beside it (504 at holdTimeout); it starts once the pod is gone", async () => {
  await withKubeE2e({ config: { holdTimeout: "1500ms" } }, async (env) => {
    assert.equal((await chat(env.url, "model-a")).status, 200);
    env.fake.faults.stuckTerminating(true);
    const late = await chat(env.url, "model-b");
    assert.equal(late.status, 504, JSON.stringify(late.body));
    assert.equal(env.replicas(), 0);
    assert.equal(env.engines.length, 1, "no new engine while the old pod holds the GPU");
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, "model-a");

    const stuck = env.fake.kubelet.pods()[0];
    assert.ok(stuck.metadata.deletionTimestamp, "the old pod is terminating");
    env.fake.faults.stuckTerminating(false);
    env.fake.store.deleteObject("pods", stuck.metadata.name, undefined, 0); // the kubelet finally lets go
    const b = await env.openai().chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "b" }],
      max_tokens: 1,
    });
    assert.equal(b.model, "model-b");
    assert.deepEqual(env.engines.map((e) => e.model), ["model-a", "model-b"]);
  });
});

Deno.test("kube e2e switch: switchStrategy force deletes the old pod with grace 0, even one that would hang terminating", async () => {
  await withKubeE2e({ config: { switchStrategy: "force" } }, async (env) => {
    assert.equal((await chat(env.url, "model-a")).status, 200);
    env.fake.faults.stuckTerminating(true);
    const started = performance.now();
    const b = await env.openai().chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "b" }],
      max_tokens: 1,
    });
    assert.equal(b.model, "model-b");
    assert.ok(performance.now() - started < 5000);
    const writes = env.writes().map(describeCall);
    assert.deepEqual(writes.slice(writes.lastIndexOf("patch deployments/scale") - 3), [
      "patch deployments/scale",
      "delete pods",
      "update configmaps",
      "patch deployments/scale",
    ]);
  });
});

Deno.test("kube e2e switch: after a switch, 20 warm requests to the active model make no Kubernetes API call", async () => {
  await withKubeE2e({}, async (env) => {
    const openai = env.openai();
    const ask = (model: string) =>
      openai.chat.completions.create({ model, messages: [{ role: "user", content: model }], max_tokens: 1 });
    assert.equal((await ask("model-a")).model, "model-a");
    assert.equal((await ask("model-b")).model, "model-b");
    const before = await settleCalls(env.fake);
    for (let i = 0; i < 20; i++) assert.equal((await ask("model-b")).model, "model-b");
    assert.deepEqual(env.fake.calls.slice(before).map(describeCall), [], "no API call on the warm path");
  });
});
