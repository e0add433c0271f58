/**
 * Scenario 2 — workload faults on the Kubernetes backend: a pod that never
 * becomes Ready, a crash-looping pod, the upstream connection reset in the
 * middle of a stream, an old pod stuck terminating during a switch.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { chat, metricValue, scrape, waitUntil, within, withKubeProxy } from "./helpers.ts";

async function adminStatus(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/admin/status`);
  assert.equal(res.status, 200);
  return await res.json();
}

Deno.test("workload faults: a pod that never becomes Ready → held requests get 503, Deployment back to 0, then recovers", async () => {
  await withKubeProxy(
    { config: { startTimeout: "1s", holdTimeout: "4s" } },
    async ({ cluster, proxy }) => {
      const { fake } = cluster;
      fake.faults.podNeverReady(true);
      const results = await Promise.all([chat(proxy.url, "model-a"), chat(proxy.url, "model-a")]);
      for (const res of results) {
        assert.equal(res.status, 503, JSON.stringify(res.body));
        assert.ok(res.headers.get("retry-after"), "503 carries Retry-After");
        assert.ok(res.ms < 4000, `answered before holdTimeout (${res.ms} ms)`);
        // The client is told which model and where the reason is; the reason itself stays in /admin/status.
        assert.match(
          String((res.body.error as { message: string }).message),
          /model-a.*failed to start.*admin\/status/,
        );
      }
      await fake.until(() => cluster.replicas() === 0 && fake.kubelet.pods().length === 0, 5000, "scaled back to 0");
      assert.equal(fake.kubelet.gpusInUse(), 0, "GPU freed");
      const status = await adminStatus(proxy.url);
      assert.match(JSON.stringify(status.lastError), /startTimeout|Ready/, "the reason is in /admin/status");
      fake.faults.clear();
      const ok = await chat(proxy.url, "model-a");
      assert.equal(ok.status, 200);
      assert.equal(ok.body.model, "model-a");
    },
  );
});

Deno.test("workload faults: a crash-looping pod → 503 quickly (the reason in /admin/status, not in the body), Deployment back to 0, then recovers", async () => {
  await withKubeProxy(
    { config: { startTimeout: "6s", holdTimeout: "7s" } },
    async ({ cluster, proxy }) => {
      const { fake } = cluster;
      fake.faults.crashLoop(true);
      const res = await chat(proxy.url, "model-b");
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.ok(res.ms < 6000, `failed fast instead of waiting for startTimeout (${res.ms} ms)`);
      assert.match(JSON.stringify(res.body), /model-b.*failed to start.*admin\/status/);
      assert.doesNotMatch(JSON.stringify(res.body), /CrashLoopBackOff|restart|exit/i, "no engine output in the body");
      await fake.until(() => cluster.replicas() === 0 && fake.kubelet.pods().length === 0, 5000, "scaled back to 0");
      const status = await adminStatus(proxy.url);
      assert.match(JSON.stringify(status.lastError), /crash|CrashLoopBackOff|restart/i);
      assert.ok(proxy.logs.lines.some((l) => /CrashLoopBackOff|crash/i.test(l)), "the log says why");
      fake.faults.clear();
      const ok = await chat(proxy.url, "model-b");
      assert.equal(ok.status, 200);
      assert.equal(ok.body.model, "model-b");
    },
  );
});

Deno.test("workload faults: upstream reset mid-stream → the SDK raises, it is counted, the next request works", async () => {
  await withKubeProxy(
    { vllm: { crashAfterChunks: 3, crashMode: "reset", tokensPerSec: 200 } },
    async ({ proxy }) => {
      const openai = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 10_000 });
      const stream = await openai.chat.completions.create({
        model: "model-c",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 12,
        stream: true,
      });
      let chunks = 0;
      await assert.rejects(
        within(
          (async () => {
            for await (const _ of stream) chunks++;
          })(),
          10_000,
          "the broken stream",
        ),
        "the client sees the cut stream as an error, not as a clean end",
      );
      assert.ok(chunks >= 1 && chunks < 12, `some chunks arrived before the reset (${chunks})`);
      await waitUntil(
        async () => {
          const text = await scrape(proxy.url);
          return metricValue(text, "vllm_chill_rejected_requests_total", { reason: "upstream_error" }) >= 1 &&
            metricValue(text, "vllm_chill_requests_total", { model: "model-c", code: "502" }) >= 1;
        },
        3000,
        "the cut stream counted as upstream_error / 502",
      );
      const text = await scrape(proxy.url);
      assert.equal(metricValue(text, "vllm_chill_inflight_requests", { model: "model-c" }), 0, "no stuck in-flight");
      const next = await chat(proxy.url, "model-c");
      assert.equal(next.status, 200);
      assert.equal(next.body.model, "model-c");
    },
  );
});

Deno.test("workload faults: an old pod stuck terminating → the switch waits (held requests bounded), says why, completes once it is gone", async () => {
  await withKubeProxy(
    { config: { holdTimeout: "1500ms" } },
    async ({ cluster, proxy }) => {
      const { fake } = cluster;
      assert.equal((await chat(proxy.url, "model-a")).status, 200);
      fake.faults.stuckTerminating(true);
      const held = chat(proxy.url, "model-b");
      await fake.until(
        () => fake.kubelet.pods().some((p) => p.metadata?.deletionTimestamp),
        5000,
        "the old pod to start terminating",
      );
      // While it waits, /admin/status says what for.
      const status = await waitUntil(
        async () => {
          const s = await adminStatus(proxy.url);
          return /terminating/i.test(JSON.stringify(s.backend)) ? s : null;
        },
        3000,
        "/admin/status to name the terminating pod",
      );
      assert.equal(status.state, "switching");
      assert.equal(status.nextModel, "model-b");
      assert.ok(proxy.logs.lines.some((l) => /switch to model-b/.test(l)), "the log says a switch is under way");
      await waitUntil(
        () => proxy.logs.lines.some((l) => /gone/.test(l) && /terminating/i.test(l)),
        3000,
        "the log to say the switch waits for a terminating pod",
      );
      const res = await held;
      assert.equal(res.status, 504, "the held request is bounded by holdTimeout");
      assert.ok(res.ms < 1500 + 1500, `answered in ${res.ms} ms`);
      assert.equal(cluster.configuredModel(), "model-a", "the ConfigMap was not rewritten while the old pod runs");
      assert.equal(fake.kubelet.gpusInUse(), 1);
      // The pod finally goes (an operator, or the kubelet): the switch completes and the next request is served.
      fake.faults.clear();
      const stuck = fake.kubelet.pods().find((p) => p.metadata?.deletionTimestamp);
      fake.store.deleteObject("pods", stuck.metadata.name, "ai-apps", 0);
      const next = await chat(proxy.url, "model-b");
      assert.equal(next.status, 200, JSON.stringify(next.body));
      assert.equal(next.body.model, "model-b");
      assert.equal(cluster.configuredModel(), "model-b");
    },
  );
});

Deno.test("workload faults: the pod deleted while serving a stream (eviction) → the stream errors, counted, the next request gets a new pod", async () => {
  await withKubeProxy({ vllm: { tokensPerSec: 20 } }, async ({ cluster, proxy }) => {
    const { fake } = cluster;
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "model-a",
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 40,
        stream: true,
      }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const first = await within(reader.read(), 5000, "the first chunk");
    assert.ok(!first.done);
    const pod = fake.kubelet.pods()[0];
    fake.store.deleteObject("pods", pod.metadata.name, "ai-apps", 0);
    let text = first.value ?? "";
    const ended = await within(
      (async () => {
        try {
          for (let i = 0; i < 1000; i++) {
            const { value, done } = await reader.read();
            if (done) return "done";
            text += value;
          }
          return "too long";
        } catch {
          return "error";
        }
      })(),
      8000,
      "the cut stream to end",
    );
    // Cut: either an error or an end without [DONE] (never a clean-looking complete stream).
    assert.ok(ended === "error" || !text.includes("[DONE]"), `the cut stream looked complete (${ended})`);
    await waitUntil(
      async () => {
        const metrics = await scrape(proxy.url);
        return metricValue(metrics, "vllm_chill_requests_total", { model: "model-a", code: "502" }) >= 1;
      },
      5000,
      "the cut stream counted as 502",
    );
    // The proxy notices the pod is gone (pod watch, tens of ms) and stops forwarding to it; a request sent in
    // that gap gets 502 upstream_error (see docs/RELIABILITY.md, known limits).
    await waitUntil(
      async () => {
        const status = await adminStatus(proxy.url);
        return status.state !== "ready" || cluster.started.length === 2;
      },
      2000,
      "the proxy to notice the lost pod",
    );
    assert.match(JSON.stringify((await adminStatus(proxy.url)).lastError), /disappeared|gone|terminat|deleted/i);
    const next = await chat(proxy.url, "model-a");
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(next.body.model, "model-a");
    // The Deployment's own replacement pod may start before the proxy's stop/start cycle removes it (a known extra
    // cold start, docs/RELIABILITY.md): a new pod either way, and exactly one left.
    assert.ok(cluster.started.length >= 2, "a new pod served the next request");
    await waitUntil(() => cluster.fake.kubelet.pods().length === 1, 3000, "exactly one pod");
    const metrics = await scrape(proxy.url);
    assert.equal(metricValue(metrics, "vllm_chill_inflight_requests", { model: "model-a" }), 0);
  });
});
