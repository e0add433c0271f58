/**
 * End-to-end, Kubernetes backend, model switching: a stream in flight on the
 * old model completes before it is scaled to 0; the new model's ConfigMap is
 * written only once the old pod is gone, then the Deployment goes to 1; every
 * waiting request for the new model goes at once; two clients on two models
 * do not cause one switch per request (minLoadedTime).
 */
import assert from "node:assert/strict";
import {
  delay,
  describeCall,
  findSample,
  metricsText,
  metricValue,
  modelStatuses,
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

Deno.test("kube e2e switch: two clients on two models for ~5 s with minLoadedTime 2s → scale-ups well below requests", async () => {
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
    assert.ok(scaleUps <= 5, `${scaleUps} scale-ups`);
    assert.ok(scaleUps * 5 <= requests, `${scaleUps} scale-ups for ${requests} requests`);
  });
});
