import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, Watch } from "@kubernetes/client-node";
import { startFakeKube } from "/work/main/tests/support/fake_kube.ts";
const kube = await startFakeKube({ timing: { readyMs: 50 } });
const kc = kube.kubeConfig();
const apps = kc.makeApiClient(AppsV1Api);
const core = kc.makeApiClient(CoreV1Api);
const dep = await apps.createNamespacedDeployment({
  namespace: "ai-apps",
  body: {
    metadata: { name: "vllm", labels: { app: "vllm" } },
    spec: {
      replicas: 0,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { app: "vllm" } },
      template: {
        metadata: { labels: { app: "vllm" } },
        spec: {
          containers: [{
            name: "vllm",
            image: "vllm/vllm-openai:v0.11.0",
            resources: { limits: { "nvidia.com/gpu": "1" } },
          }],
        },
      },
    },
  },
});
console.log("created", dep.metadata?.resourceVersion, dep.spec?.replicas);
const w = new Watch(kc);
const events: string[] = [];
let resolveReady: () => void;
const ready = new Promise<void>((r) => resolveReady = r);
const ac = await w.watch("/api/v1/namespaces/ai-apps/pods", { labelSelector: "app=vllm" }, (type, obj) => {
  events.push(
    `${type} ${obj.metadata.name} ${obj.status?.phase} ${
      obj.status?.conditions?.find((c: any) => c.type === "Ready")?.status
    }`,
  );
  if (obj.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True")) resolveReady();
}, (err) => console.log("watch done", err?.message));
const sc = await apps.patchNamespacedDeploymentScale({
  name: "vllm",
  namespace: "ai-apps",
  body: { spec: { replicas: 1 } },
}, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
console.log("scale", sc.spec?.replicas);
await ready;
const d2 = await apps.readNamespacedDeployment({ name: "vllm", namespace: "ai-apps" });
console.log(JSON.stringify(d2.status));
await apps.patchNamespacedDeploymentScale({
  name: "vllm",
  namespace: "ai-apps",
  body: [{ op: "replace", path: "/spec/replicas", value: 0 }],
});
await new Promise((r) => setTimeout(r, 200));
console.log(events.join("\n"));
try {
  await core.readNamespacedConfigMap({ name: "nope", namespace: "ai-apps" });
} catch (e: any) {
  console.log("err", e.code, e.body);
}
ac.abort();
console.log(kube.calls.map((c) => `${c.method} ${c.path} ${c.verb} ${c.status}`).join("\n"));
await kube.close();
