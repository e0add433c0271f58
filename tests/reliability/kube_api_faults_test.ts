/**
 * Scenario 1 — Kubernetes API faults: 500s and latency on scale, ConfigMap
 * writes and watches; 409 conflicts on the ConfigMap during a switch; a
 * watch dropped in the middle of a cold start; the API server down when the
 * proxy starts. Every proxy runs against the fake API server enforcing the
 * generated least-privilege Role.
 */
import assert from "node:assert/strict";
import {
  assertRoleSufficed,
  chat,
  forwardTcp,
  freePort,
  kubeConfigAt,
  metricValue,
  scrape,
  startCluster,
  startKubeProxy,
  type TcpForwarder,
  waitUntil,
  within,
  withKubeProxy,
} from "./helpers.ts";

const failedCalls = (calls: { status: number; verb?: string; resource?: string; subresource?: string }[]) =>
  calls.filter((c) => c.status >= 500);

Deno.test("kube faults: 500s on the scale patch, the ConfigMap write and the pod watch are retried; the request is served", async () => {
  // A pod that takes 600 ms to turn Ready: the wait's first list sees it not Ready, so it must watch.
  const timing = { scheduleMs: 5, startMs: 15, readyMs: 600, terminateMs: 20 };
  await withKubeProxy({ fake: { timing } }, async ({ cluster, proxy }) => {
    const { fake } = cluster;
    fake.faults.failNext({ verb: "patch", subresource: "scale" }, 500, 3);
    fake.faults.failNext({ verb: "update", resource: "configmaps" }, 500, 2);
    fake.faults.failNext({ verb: "watch", resource: "pods" }, 500, 2);
    const res = await chat(proxy.url, "model-b");
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.model, "model-b");
    const injected = failedCalls(fake.calls);
    assert.equal(injected.filter((c) => c.subresource === "scale").length, 3, "3 scale faults injected");
    assert.equal(injected.filter((c) => c.resource === "configmaps").length, 2, "2 ConfigMap faults injected");
    // A re-list after the first refused watch may already see the pod Ready: at least one watch fault is hit.
    assert.ok(injected.filter((c) => c.verb === "watch").length >= 1, "watch faults injected");
    assert.equal(cluster.scalePatches().length, 1, "exactly one successful scale-up");
    assert.equal(cluster.configuredModel(), "model-b");
    // And the next request is served by the warm engine without another scale call.
    const again = await chat(proxy.url, "model-b");
    assert.equal(again.status, 200);
    assert.equal(cluster.scalePatches().length, 1);
  });
});

Deno.test("kube faults: 200 ms of latency on every API call slows a cold start but it is served", async () => {
  await withKubeProxy({}, async ({ cluster, proxy }) => {
    cluster.fake.faults.latency(200);
    const res = await chat(proxy.url, "model-a");
    assert.equal(res.status, 200);
    assert.equal(res.body.model, "model-a");
    assert.ok(res.ms >= 200, `latency was applied (${res.ms} ms)`);
    assert.ok(res.ms < 8000, `served within holdTimeout (${res.ms} ms)`);
  });
});

Deno.test("kube faults: a scale patch failing for good → held requests get 503/504 within holdTimeout, then recover", async () => {
  await withKubeProxy({ config: { holdTimeout: "1500ms", startTimeout: "1200ms" } }, async ({ cluster, proxy }) => {
    const { fake } = cluster;
    fake.faults.failNext({ verb: "patch", subresource: "scale" }, 500, 100_000);
    const held = await Promise.all([1, 2, 3].map(() => chat(proxy.url, "model-a", { timeoutMs: 10_000 })));
    for (const res of held) {
      assert.ok([503, 504].includes(res.status), `held request answered ${res.status}`);
      assert.ok(res.ms < 1500 + 1500, `held ${res.ms} ms, past holdTimeout + slack`);
      const error = res.body.error as { type: string; code: string };
      assert.ok(error?.code, "OpenAI error body");
      if (res.status === 503) assert.ok(res.headers.get("retry-after"), "503 carries Retry-After");
    }
    assert.ok(failedCalls(fake.calls).length >= 2, "retried the failing call");
    fake.faults.clear();
    const recovered = await chat(proxy.url, "model-a");
    assert.equal(recovered.status, 200, JSON.stringify(recovered.body));
    assert.equal(recovered.body.model, "model-a");
  });
});

Deno.test("kube faults: 409 conflicts on the ConfigMap during a switch are retried and the switch completes", async () => {
  await withKubeProxy({}, async ({ cluster, proxy }) => {
    const first = await chat(proxy.url, "model-a");
    assert.equal(first.status, 200);
    cluster.fake.faults.failNext({ verb: "update", resource: "configmaps" }, 409, 3);
    const switched = await chat(proxy.url, "model-c");
    assert.equal(switched.status, 200, JSON.stringify(switched.body));
    assert.equal(switched.body.model, "model-c");
    assert.equal(cluster.fake.calls.filter((c) => c.resource === "configmaps" && c.status === 409).length, 3);
    assert.equal(cluster.configuredModel(), "model-c");
    assert.equal(cluster.serving(), "model-c");
    assert.deepEqual(cluster.started, ["model-a", "model-c"]);
    const metrics = await scrape(proxy.url);
    assert.equal(metricValue(metrics, "vllm_chill_model_switches_total", { from: "model-a", to: "model-c" }), 1);
  });
});

Deno.test("kube faults: the pod watch dropped in the middle of a cold start is re-established; the request is served", async () => {
  let ready = false;
  await withKubeProxy({ fake: { readiness: () => ready } }, async ({ cluster, proxy }) => {
    const { fake } = cluster;
    const pending = chat(proxy.url, "model-b");
    const podWatches = () => fake.calls.filter((c) => c.verb === "watch" && c.resource === "pods").length;
    await fake.until(
      () => fake.kubelet.pods().some((p) => p.status?.phase === "Running") && podWatches() >= 1,
      5000,
      "a running pod the proxy watches",
    );
    const watchesBefore = podWatches();
    fake.faults.dropWatches("pods");
    // The wait re-opens its watch (or re-lists) before the pod turns Ready.
    await fake.until(
      () => podWatches() > watchesBefore,
      5000,
      "the pod watch to be re-established",
    );
    ready = true;
    const res = await within(pending, 8000, "the held request");
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.model, "model-b");
    assert.equal(cluster.scalePatches().length, 1);
  });
});

Deno.test("kube faults: API server down when the proxy starts → /readyz 503, then 200 once it is back, no restart", async () => {
  const cluster = await startCluster();
  try {
    const { fake } = cluster;
    fake.faults.failNext({}, 503, 1_000_000);
    const proxy = await startKubeProxy(cluster, { waitReady: false });
    try {
      // Every call fails: the proxy is up but not ready.
      await fake.until(() => failedCalls(fake.calls).length >= 3, 5000, "the proxy to try the API");
      const notReady = await fetch(`${proxy.url}/readyz`);
      await notReady.body?.cancel();
      assert.equal(notReady.status, 503);
      const health = await fetch(`${proxy.url}/healthz`);
      await health.body?.cancel();
      assert.equal(health.status, 200, "alive while not ready");
      // A request meanwhile is held, not lost.
      const early = chat(proxy.url, "model-a", { timeoutMs: 15_000 });
      fake.faults.clear();
      await waitUntil(
        async () => {
          const res = await fetch(`${proxy.url}/readyz`);
          await res.body?.cancel();
          return res.status === 200;
        },
        8000,
        "/readyz 200 after the API server came back",
      );
      const held = await within(early, 10_000, "the request held while the API was down");
      assert.equal(held.status, 200, JSON.stringify(held.body));
      assert.equal(held.body.model, "model-a");
      const later = await chat(proxy.url, "model-b");
      assert.equal(later.status, 200);
      assert.equal(later.body.model, "model-b");
      // The start-up work converged too: the resources exist and the ConfigMap names the running model.
      assert.ok(fake.store.getObject("services", "vllm-svc"), "Service ensured after the outage");
      assert.equal(cluster.configuredModel(), "model-b");
      assertRoleSufficed(cluster);
    } finally {
      await proxy.close();
    }
  } finally {
    await cluster.close();
  }
});

Deno.test("kube faults: API server unreachable (closed port) at start → /readyz 503; reachable later → 200, served, no restart", async () => {
  const cluster = await startCluster();
  try {
    const port = freePort();
    const proxy = await startKubeProxy(cluster, {
      waitReady: false,
      kubeConfig: kubeConfigAt(`http://127.0.0.1:${port}`, cluster.fake.token),
    });
    let forwarder: TcpForwarder | undefined;
    try {
      await waitUntil(() => proxy.logs.lines.some((l) => /observe failed|could not/.test(l)), 5000, "a failed attempt");
      const notReady = await fetch(`${proxy.url}/readyz`);
      await notReady.body?.cancel();
      assert.equal(notReady.status, 503);
      assert.equal(cluster.fake.calls.length, 0, "nothing reached the API server");
      // The API server becomes reachable on the same address.
      forwarder = forwardTcp(port, Number(new URL(cluster.fake.url).port));
      await waitUntil(
        async () => {
          const res = await fetch(`${proxy.url}/readyz`);
          await res.body?.cancel();
          return res.status === 200;
        },
        15_000,
        "/readyz 200 once the API server is reachable",
      );
      const res = await chat(proxy.url, "model-c");
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.model, "model-c");
      assertRoleSufficed(cluster);
    } finally {
      await proxy.close();
      await forwarder?.close();
    }
  } finally {
    await cluster.close();
  }
});

Deno.test("kube faults: 3 s latency on the scale patch and the pod watch → held requests answered at holdTimeout, never later", async () => {
  await withKubeProxy({ config: { holdTimeout: "1s", startTimeout: "10s" } }, async ({ cluster, proxy }) => {
    cluster.fake.faults.latency(3000, { subresource: "scale" });
    cluster.fake.faults.latency(3000, { verb: "watch", resource: "pods" });
    const results = await Promise.all([1, 2, 3, 4].map(() => chat(proxy.url, "model-a")));
    for (const res of results) {
      assert.equal(res.status, 504, JSON.stringify(res.body));
      assert.ok(res.ms >= 900 && res.ms < 2000, `answered after ${Math.round(res.ms)} ms (holdTimeout 1 s)`);
    }
    // The start goes on in the background (the calls already delayed finish); then the model is served.
    cluster.fake.faults.clear();
    const served = await waitUntil(
      async () => {
        const res = await chat(proxy.url, "model-a");
        assert.ok([200, 504].includes(res.status), `after the latency: ${res.status}`);
        return res.status === 200 ? res : null;
      },
      15_000,
      "the model served once the API is fast again",
    );
    assert.equal(served.body.model, "model-a");
    assert.equal(cluster.scalePatches().length, 1, "one scale-up, however long it took");
  });
});

Deno.test("kube faults: scale-only mode — API down at start, then 500s on the scale patch: recovers, served, only replicas touched", async () => {
  const cluster = await startCluster({
    config: { enableModelSwitch: false },
    servedFallback: "model-a",
    userDeployment: true,
  });
  try {
    const { fake } = cluster;
    fake.faults.failNext({}, 503, 1_000_000);
    const proxy = await startKubeProxy(cluster, { waitReady: false });
    try {
      await fake.until(() => failedCalls(fake.calls).length >= 2, 5000, "the proxy to try the API");
      const notReady = await fetch(`${proxy.url}/readyz`);
      await notReady.body?.cancel();
      assert.equal(notReady.status, 503);
      const early = chat(proxy.url, "model-a", { timeoutMs: 15_000 });
      fake.faults.clear();
      fake.faults.failNext({ verb: "patch", subresource: "scale" }, 500, 2);
      const res = await within(early, 12_000, "the request held while the API was down");
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.model, "model-a");
      const writes = fake.calls.filter((c) => c.status < 300 && !["get", "list", "watch"].includes(c.verb ?? ""))
        .filter((c) => c.resource !== "selfsubjectaccessreviews");
      assert.deepEqual(writes.map((c) => `${c.verb} ${c.resource}/${c.subresource ?? ""}`), [
        "patch deployments/scale",
      ], "scale-only mode writes nothing but replicas");
      assertRoleSufficed(cluster);
    } finally {
      await proxy.close();
    }
  } finally {
    await cluster.close();
  }
});
