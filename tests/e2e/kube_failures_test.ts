/**
 * End-to-end, Kubernetes backend, failures and bad input: a pod that never
 * turns Ready (startTimeout) or crash-loops gets held requests a 503 with
 * Retry-After and a clear message and the Deployment back to 0; bad requests
 * get their documented status and an OpenAI error body without waking
 * anything.
 */
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import OpenAI from "openai";
import { chat, describeCall, metricsText, metricValue, waitUntil, withKubeE2e } from "./kube_helpers.ts";

const assertOpenAiError = (body: any, code?: string) => {
  assert.equal(typeof body?.error?.message, "string", JSON.stringify(body));
  assert.ok(body.error.message.length > 10, body.error.message);
  assert.ok("type" in body.error && "param" in body.error && "code" in body.error, JSON.stringify(body));
  if (code) assert.equal(body.error.code, code);
};

Deno.test("kube e2e failure: pod never Ready within startTimeout 2s → held requests 503 + Retry-After, Deployment back to 0", async () => {
  await withKubeE2e({ config: { startTimeout: "2s" } }, async (env) => {
    env.fake.faults.podNeverReady(true);
    const started = performance.now();
    const openai = env.openai();
    const [a, b, sdk] = await Promise.allSettled([
      chat(env.url, "model-a"),
      chat(env.url, "model-a"),
      openai.chat.completions.create({ model: "model-a", messages: [{ role: "user", content: "x" }], max_tokens: 1 }),
    ]);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 1900 && elapsed < 8000, `answered after ${elapsed} ms`);
    for (const r of [a, b]) {
      assert.equal(r.status, "fulfilled");
      const { status, headers, body } = r.value;
      assert.equal(status, 503, JSON.stringify(body));
      assert.ok(Number(headers.get("retry-after")) > 0, "Retry-After set");
      assertOpenAiError(body);
      assert.match(body.error.message, /model-a|ready|start/i);
    }
    assert.equal(sdk.status, "rejected");
    const error = sdk.reason as InstanceType<typeof OpenAI.APIError>;
    assert.ok(error instanceof OpenAI.APIError, String(error));
    assert.equal(error.status, 503);
    assert.ok(Number(error.headers?.get("retry-after")) > 0);

    await env.fake.until(() => env.replicas() === 0, 5000, "the Deployment back to 0");
    await env.fake.until(() => env.fake.kubelet.pods().length === 0, 5000, "no pod left burning the GPU");
    assert.equal(env.fake.kubelet.gpusInUse(), 0);
    const metrics = await metricsText(env.url);
    assert.ok(metricValue(metrics, "vllm_chill_requests_total", { model: "model-a", code: "503" }) >= 2);
  });
});

Deno.test("kube e2e failure: a crash-looping pod → 503 fast, Deployment back to 0", async () => {
  await withKubeE2e({ config: { startTimeout: "20s" } }, async (env) => {
    env.fake.faults.crashLoop(true);
    const started = performance.now();
    const { status, headers, body } = await chat(env.url, "model-b");
    const elapsed = performance.now() - started;
    assert.equal(status, 503, JSON.stringify(body));
    assert.ok(Number(headers.get("retry-after")) > 0);
    assertOpenAiError(body);
    assert.match(body.error.message, /model-b.*failed to start.*admin\/status/);
    assert.doesNotMatch(body.error.message, /CrashLoopBackOff|restart/i, "the pod's state stays out of the body");
    const admin = await (await fetch(`${env.url}/admin/status`)).json();
    assert.match(JSON.stringify(admin.lastError), /crash|CrashLoopBackOff|restart/i);
    assert.ok(elapsed < 5000, `503 after ${elapsed.toFixed(0)} ms (startTimeout is 20 s)`);
    await env.fake.until(() => env.replicas() === 0, 5000, "the Deployment back to 0");
    await env.fake.until(() => env.fake.kubelet.pods().length === 0, 5000, "the crashing pod gone");
    assert.equal(env.engines.length, 0, "the container never ran");

    // Once the image is fixed, the next request wakes it again.
    env.fake.faults.crashLoop(false);
    const again = await chat(env.url, "model-b");
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.model, "model-b");
  });
});

Deno.test("kube e2e bad input: 400 / 404 / 413 / 404 with OpenAI error bodies, none wakes anything", async () => {
  await withKubeE2e({ config: { maxBodyBytes: "1Ki" } }, async (env) => {
    await waitUntil(() => env.logs.messages("vLLM resources ensured").length > 0, 5000, "resources ensured");
    const writesBefore = env.writes().map(describeCall);
    const post = (path: string, body: BodyInit, type = "application/json") =>
      fetch(`${env.url}${path}`, { method: "POST", headers: { "content-type": type }, body });

    const malformed = await post("/v1/chat/completions", '{"model": "model-a", "messages": [');
    assert.equal(malformed.status, 400);
    assertOpenAiError(await malformed.json());

    const noModel = await chat(env.url, undefined);
    assert.equal(noModel.status, 400);
    assertOpenAiError(noModel.body);
    assert.match(noModel.body.error.message, /model/);

    const openai = env.openai();
    await assert.rejects(
      openai.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError, String(error));
        assert.equal(error.code, "model_not_found");
        return true;
      },
    );

    const big = await post(
      "/v1/chat/completions",
      JSON.stringify({ model: "model-a", messages: [{ role: "user", content: "x".repeat(4096) }] }),
    );
    assert.equal(big.status, 413);
    assertOpenAiError(await big.json());
    await assert.rejects(
      openai.chat.completions.create({ model: "model-a", messages: [{ role: "user", content: "y".repeat(4096) }] }),
      (error: unknown) => error instanceof OpenAI.APIError && error.status === 413,
    );

    const unknownPath = await post("/v1/not-a-route", JSON.stringify({ model: "model-a" }));
    assert.equal(unknownPath.status, 404);
    assertOpenAiError(await unknownPath.json());
    const unknownGet = await fetch(`${env.url}/admin/nothing/here`);
    assert.equal(unknownGet.status, 404);
    await unknownGet.body?.cancel();

    assert.deepEqual(env.writes().map(describeCall), writesBefore, "no write (no scale) after the bad requests");
    assert.equal(env.scalePatches().length, 0);
    assert.equal(env.fake.kubelet.pods().length, 0);
    assert.equal(env.engines.length, 0);
    const metrics = await metricsText(env.url);
    assert.equal(metricValue(metrics, "vllm_chill_scale_events_total", { direction: "up" }), 0);
  });
});

Deno.test("kube e2e failure: the API refuses the ConfigMap write in the middle of a switch → 503 for the waiting requests, no GPU left on; then it recovers", async () => {
  await withKubeE2e({ allowForbidden: true }, async (env) => {
    const a = await chat(env.url, "model-a");
    assert.equal(a.status, 200);
    env.fake.faults.failNext({ verb: "update", resource: "configmaps" }, 403, 50);
    const openai = env.openai();
    const failed = await Promise.allSettled(
      [0, 1].map(() =>
        openai.chat.completions.create({ model: "model-b", messages: [{ role: "user", content: "b" }], max_tokens: 1 })
      ),
    );
    for (const r of failed) {
      assert.equal(r.status, "rejected");
      const error = r.reason as InstanceType<typeof OpenAI.APIError>;
      assert.ok(error instanceof OpenAI.APIError, String(error));
      assert.equal(error.status, 503);
      assert.match(error.message, /model-b.*admin\/status/);
    }
    const admin = await (await fetch(`${env.url}/admin/status`)).json();
    assert.match(JSON.stringify(admin.lastError), /forbidden|permission|403|configmap/i);
    assert.equal(env.replicas(), 0, "model-a was stopped for the switch and nothing runs");
    assert.equal(env.fake.kubelet.gpusInUse(), 0);

    env.fake.faults.clear();
    const b = await openai.chat.completions.create({
      model: "model-b",
      messages: [{ role: "user", content: "b" }],
      max_tokens: 1,
    });
    assert.equal(b.model, "model-b");
    assert.equal(env.fake.store.getObject("configmaps", "vllm-config").data.SERVED_MODEL_NAME, "model-b");
  });
});

Deno.test("kube e2e failure: scale-only with no Deployment → 503 fast; /admin/status names the missing object", async () => {
  await withKubeE2e({ config: { enableModelSwitch: false, models: {} } }, async (env) => {
    const started = performance.now();
    const { status, headers, body } = await chat(env.url, "anything");
    assert.equal(status, 503, JSON.stringify(body));
    assert.ok(Number(headers.get("retry-after")) > 0);
    assert.match(body.error.message, /failed to start.*admin\/status/);
    assert.ok(performance.now() - started < 3000);
    assert.deepEqual(env.writes().map(describeCall), ["patch deployments/scale"], "nothing created in scale-only mode");
    const admin = await (await fetch(`${env.url}/admin/status`)).json();
    assert.match(admin.lastError.reason, /deployments?.*vllm.*not found/i);
  });
});

Deno.test("kube e2e failure: API server failing at start → /readyz 503, requests held, served once it answers", async () => {
  await withKubeE2e({
    seed: (fake) => fake.faults.failNext({ resource: "deployments", subresource: "scale", verb: "get" }, 503, 2),
    waitReady: false,
  }, async (env) => {
    const readyz = await fetch(`${env.url}/readyz`);
    assert.equal(readyz.status, 503, "not ready before the state is read back");
    await readyz.body?.cancel();
    const reply = await chat(env.url, "model-a");
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.model, "model-a");
    const again = await fetch(`${env.url}/readyz`);
    assert.equal(again.status, 200);
    await again.body?.cancel();
    assert.equal(env.fake.calls.filter((c) => c.subresource === "scale" && c.status === 503).length, 2);
  });
});

Deno.test("kube e2e failure: the vLLM pod deleted while Ready (eviction) → the proxy notices, brings one back, requests succeed again", async () => {
  await withKubeE2e({}, async (env) => {
    assert.equal((await chat(env.url, "model-a")).status, 200);
    const pod = env.fake.kubelet.pods()[0];
    env.fake.store.deleteObject("pods", pod.metadata.name);
    await waitUntil(() => env.engines[0].stoppedAt !== undefined, 3000, "the evicted pod's vLLM stopped");
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await chat(env.url, "model-a", { user: `evicted-${i}` });
      statuses.push(r.status);
      if (r.status === 200) break;
    }
    // A request racing the watch event meets a closed engine (connection refused): never sent, so held again. One
    // written on a kept-alive connection that the dying engine then closes may have arrived: 502, never run twice.
    console.log(`kube e2e eviction: statuses until served again: ${statuses.join(",")}`);
    assert.ok(["200", "502,200"].includes(statuses.join(",")), `statuses ${statuses}`);
    const arrivals = (i: number) =>
      env.engines.flatMap((e) => e.received).filter((r) => new TextDecoder().decode(r.body).includes(`evicted-${i}`))
        .length;
    statuses.forEach((status, i) => {
      const n = arrivals(i);
      if (status === 200) assert.equal(n, 1, `request ${i} served once`);
      else assert.ok(n <= 1, `request ${i} (502) arrived ${n} times`);
    });
    // The Deployment's replacement pod may start before the proxy's stop/start cycle removes it (see the report).
    assert.ok(env.engines.length >= 2, "a new engine");
    assert.equal(env.engines.at(-1)?.model, "model-a");
    await waitUntil(() => env.fake.kubelet.pods().length === 1, 3000, "exactly one pod");
    assert.equal(env.fake.kubelet.gpusInUse(), 1);
  });
});
