/**
 * End-to-end, Kubernetes backend, the own endpoints: GET /v1/models lists
 * config and VLLMModel models with their live status, /metrics exposes the
 * DESIGN names with values matching what happened, /healthz and /readyz
 * answer; none of them wakes anything.
 */
import assert from "node:assert/strict";
import { chat, metricsText, metricValue, modelStatuses, vllmModel, waitUntil, withKubeE2e } from "./kube_helpers.ts";

Deno.test("kube e2e observability: /v1/models statuses through a cold start and a switch; /metrics matches what happened", async () => {
  await withKubeE2e({
    engine: { loadMs: 1000 },
    seed: (fake) => void fake.store.createObject("vllmmodels", vllmModel("model-c", "org/model-c")),
  }, async (env) => {
    await waitUntil(async () => "model-c" in await modelStatuses(env.url), 5000, "model-c listed");
    const list = await (await fetch(`${env.url}/v1/models`)).json();
    assert.equal(list.object, "list");
    assert.deepEqual(
      list.data.map((m: { id: string; object: string; root: string; status: string }) => [m.id, m.root, m.status]),
      [["model-a", "org/model-a", "cold"], ["model-b", "org/model-b", "cold"], ["model-c", "org/model-c", "cold"]],
    );
    for (const path of ["/healthz", "/readyz"]) {
      const res = await fetch(`${env.url}${path}`);
      assert.equal(res.status, 200, path);
      await res.body?.cancel();
    }
    assert.equal(env.scalePatches().length, 0, "own endpoints woke nothing");

    // Cold start of model-a with three held requests.
    const held = [0, 1, 2].map(() => chat(env.url, "model-a"));
    await waitUntil(async () => (await modelStatuses(env.url))["model-a"] === "starting", 3000, "model-a starting");
    let metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_state", { state: "starting" }), 1);
    await waitUntil(
      async () => metricValue(await metricsText(env.url), "vllm_chill_held_requests", { model: "model-a" }) === 3,
      3000,
      "three held requests in the gauge",
    );
    for (const r of await Promise.all(held)) assert.equal(r.status, 200);
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "ready", "model-b": "cold", "model-c": "cold" });
    metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_requests_total", { model: "model-a", code: "200" }), 3);
    assert.equal(metricValue(metrics, "vllm_chill_request_duration_seconds_count", { model: "model-a" }), 3);
    assert.equal(metricValue(metrics, "vllm_chill_held_requests", { model: "model-a" }), 0);
    assert.equal(metricValue(metrics, "vllm_chill_inflight_requests", { model: "model-a" }), 0);
    assert.equal(metricValue(metrics, "vllm_chill_cold_start_seconds_count"), 1);
    assert.ok(metricValue(metrics, "vllm_chill_cold_start_seconds_sum") >= 0.9, "cold start took the load time");
    assert.equal(metricValue(metrics, "vllm_chill_scale_events_total", { direction: "up" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_replicas"), 1);
    assert.equal(metricValue(metrics, "vllm_chill_active_model", { model: "model-a" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_state", { state: "ready" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_state", { state: "starting" }), 0);

    // Switch to the VLLMModel-declared model.
    const c = await chat(env.url, "model-c");
    assert.equal(c.status, 200);
    assert.equal(c.body.model, "model-c");
    assert.deepEqual(await modelStatuses(env.url), { "model-a": "cold", "model-b": "cold", "model-c": "ready" });
    metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_model_switches_total", { from: "model-a", to: "model-c" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_switch_duration_seconds_count"), 1);
    assert.equal(metricValue(metrics, "vllm_chill_scale_events_total", { direction: "up" }), 2);
    assert.equal(metricValue(metrics, "vllm_chill_scale_events_total", { direction: "down" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_active_model", { model: "model-c" }), 1);
    assert.equal(metricValue(metrics, "vllm_chill_active_model", { model: "model-a" }), 0);
    assert.equal(metricValue(metrics, "vllm_chill_requests_total", { model: "model-c", code: "200" }), 1);
    assert.equal(env.scalePatches().length, 3, "a up, a down, c up");

    // Unknown model: counted as a 404, nothing scaled.
    assert.equal((await chat(env.url, "nope")).status, 404);
    metrics = await metricsText(env.url);
    assert.match(metrics, /^vllm_chill_requests_total\{[^}]*code="404"[^}]*\} 1$/m);
    assert.equal(env.scalePatches().length, 3);
  });
});
