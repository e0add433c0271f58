// The fake API server's pool features: several GPUs on its node with the kubelet's record of GPU use, the
// service proxy to a Ready pod the Service selects, and a person's (admin) access beside the proxy's Role.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { type FakeKube, type FakeKubeOptions, isReady, startFakeKube } from "./fake_kube.ts";

async function withKube(options: FakeKubeOptions, fn: (kube: FakeKube) => Promise<void>): Promise<void> {
  const kube = await startFakeKube({ timing: { scheduleMs: 5, startMs: 5, readyMs: 5, terminateMs: 20 }, ...options });
  try {
    await fn(kube);
  } finally {
    await kube.close();
  }
}

function deployment(name: string, replicas: number, gpus = 1) {
  return {
    metadata: { name, labels: { app: name } },
    spec: {
      replicas,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, "vllm.efortin.github.io/model": name } },
        spec: { containers: [{ name: "vllm", image: "x", resources: { limits: { "nvidia.com/gpu": String(gpus) } } }] },
      },
    },
  };
}

const readyPodsOf = (kube: FakeKube, app: string) =>
  kube.store.listObjects("pods").filter((p) => p.metadata.labels?.app === app && isReady(p));

Deno.test("fake kubelet: several GPUs on the node; bound, unschedulable and released are recorded; the peak never exceeds the node", async () => {
  await withKube({ gpusPerNode: 2 }, async (kube) => {
    kube.store.createObject("deployments", deployment("a", 1));
    kube.store.createObject("deployments", deployment("b", 1));
    await kube.until(() => readyPodsOf(kube, "a").length === 1 && readyPodsOf(kube, "b").length === 1, 5000, "a, b");
    assert.equal(kube.kubelet.gpusInUse(), 2);
    kube.store.createObject("deployments", deployment("c", 1));
    await kube.until(() => kube.kubelet.gpuLog.some((e) => e.event === "unschedulable" && e.model === "c"), 5000, "c");
    const pending = kube.store.listObjects("pods").find((p) => p.metadata.labels?.app === "c");
    const condition = pending.status.conditions.find((c: any) => c.type === "PodScheduled");
    assert.equal(condition.reason, "Unschedulable");
    assert.match(condition.message, /^0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu\./);
    // a scaled to 0: its GPU is released once its pod is gone, then c is bound.
    const a = kube.store.getObject("deployments", "a");
    kube.store.updateObject("deployments", { ...a, spec: { ...a.spec, replicas: 0 } });
    await kube.until(() => readyPodsOf(kube, "c").length === 1, 5000, "c scheduled");
    const events = kube.kubelet.gpuLog.map((e) => `${e.event} ${e.model} ${e.inUse}`);
    const released = events.indexOf("released a 1");
    assert.ok(released > 0 && events.indexOf("bound c 2") > released, events.join("; "));
    assert.equal(kube.kubelet.peakGpusInUse(), 2);
    assert.equal(kube.kubelet.gpusPerNode, 2);
  });
});

Deno.test("fake service proxy: to a Ready pod the Service selects (path, query, body, streaming); 503 without one", async () => {
  const servers: Deno.HttpServer[] = [];
  const urls = new Map<string, string>();
  try {
    await withKube({
      gpusPerNode: 2,
      onPodStart: (pod) => {
        const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
          const url = new URL(req.url);
          if (url.pathname === "/stream") {
            return new Response(
              new ReadableStream({
                start(c) {
                  c.enqueue(new TextEncoder().encode("one "));
                  c.enqueue(new TextEncoder().encode("two"));
                  c.close();
                },
              }),
              { headers: { "content-type": "text/event-stream" } },
            );
          }
          return Response.json({
            pod: pod.metadata.name,
            path: url.pathname,
            query: url.search,
            body: req.body ? await req.text() : "",
          });
        });
        servers.push(server);
        urls.set(pod.metadata.uid, `http://127.0.0.1:${server.addr.port}`);
      },
      endpointOf: (pod) => urls.get(pod.metadata.uid),
    }, async (kube) => {
      kube.store.createObject("services", {
        metadata: { name: "svc-a" },
        spec: { selector: { app: "a" }, ports: [{ port: 80, targetPort: 8000 }] },
      });
      const base = `${kube.url}/api/v1/namespaces/ai-apps/services/svc-a:80/proxy`;
      const none = await fetch(`${base}/health`);
      assert.equal(none.status, 503);
      assert.match((await none.json()).message, /no endpoints available for service "svc-a"/);
      kube.store.createObject("deployments", deployment("a", 1));
      kube.store.createObject("deployments", deployment("b", 1));
      await kube.until(() => readyPodsOf(kube, "a").length === 1 && readyPodsOf(kube, "b").length === 1, 5000, "pods");
      const res = await fetch(`${base}/v1/chat/completions?x=1`, { method: "POST", body: "hello" });
      assert.equal(res.status, 200);
      const answer = await res.json();
      assert.equal(answer.pod, readyPodsOf(kube, "a")[0].metadata.name, "only a's pod, never b's");
      assert.equal(answer.path, "/v1/chat/completions");
      assert.equal(answer.query, "?x=1");
      assert.equal(answer.body, "hello");
      assert.equal(await (await fetch(`${base}/stream`)).text(), "one two");
      assert.deepEqual(kube.proxied.map((p) => [p.service, p.path, p.status]), [
        ["svc-a", "/health", 503],
        ["svc-a", "/v1/chat/completions", 200],
        ["svc-a", "/stream", 200],
      ]);
      assert.equal(kube.calls.filter((c) => c.path.includes("/proxy")).length, 0, "traffic, not API calls");
      assert.equal((await fetch(`${kube.url}/api/v1/namespaces/ai-apps/services/nope/proxy/`)).status, 404);
    });
  } finally {
    for (const server of servers) await server.shutdown();
  }
});

Deno.test("fake admin access: not bound by the Role, its calls kept apart", async () => {
  await withKube({
    role: { rules: [{ apiGroups: [""], resources: ["configmaps"], verbs: ["get"] }] },
  }, async (kube) => {
    const server = (await Deno.readTextFile(kube.adminKubeconfigPath)).match(/server: (\S+)/)![1];
    const asAdmin = await fetch(`${server}/api/v1/namespaces/ai-apps/services`);
    assert.equal(asAdmin.status, 200);
    await asAdmin.body?.cancel();
    const asProxy = await fetch(`${kube.url}/api/v1/namespaces/ai-apps/services`, {
      headers: { authorization: `Bearer ${kube.token}` },
    });
    assert.equal(asProxy.status, 403);
    await asProxy.body?.cancel();
    assert.equal(kube.adminCalls.length, 1);
    assert.equal(kube.calls.length, 1);
  });
});
