/**
 * End-to-end, Kubernetes backend: a switch gives the pod the next model's
 * shape. From a 1-GPU model to a `tensorParallelSize: 2` model, the new pod
 * asks for 2 GPUs (and runs where the node has them, stays Pending where it
 * has not); back to the 1-GPU model, the pod asks for 1 again. The template
 * is patched after the old pod is gone and before the scale-up.
 */
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { parse } from "yaml";
import { chat, describeCall, type KubeE2e, modelStatuses, waitUntil, withKubeE2e } from "./kube_helpers.ts";

const MODELS = {
  small: { modelName: "org/small" },
  big: { modelName: "org/big", tensorParallelSize: 2, servedModelName: "on" },
};

const gpusOf = (pod: any) => pod.spec.containers[0].resources?.limits?.["nvidia.com/gpu"];
const vllmPods = (env: KubeE2e) => env.fake.store.listObjects("pods").filter((p) => p.metadata.labels?.app === "vllm");

Deno.test("kube e2e pod shape: 1-GPU model → tensorParallelSize 2 model → back; each pod asks for its model's GPUs", async () => {
  await withKubeE2e({ config: { models: MODELS }, fake: { gpusPerNode: 2 } }, async (env) => {
    const small = await chat(env.url, "small");
    assert.equal(small.status, 200, JSON.stringify(small.body));
    assert.deepEqual(vllmPods(env).map(gpusOf), ["1"]);

    // The served name "on" reaches the engine as the string "on" (a plain `on` is a boolean in YAML 1.1).
    const big = await chat(env.url, "on");
    assert.equal(big.status, 200, JSON.stringify(big.body));
    assert.equal(env.engines.at(-1)!.model, "on");
    const pods = vllmPods(env);
    assert.equal(pods.length, 1);
    assert.equal(gpusOf(pods[0]), "2", "the big model's pod asks for 2 GPUs");
    assert.equal(env.fake.kubelet.gpusInUse(), 2);
    const file = parse(env.fake.store.getObject("configmaps", "vllm-config").data.ENGINE_CONFIG_YAML, {
      version: "1.1",
    });
    assert.equal(file["served-model-name"], "on");
    assert.equal(file["tensor-parallel-size"], 2);

    const back = await chat(env.url, "small");
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.deepEqual(vllmPods(env).map(gpusOf), ["1"]);
    assert.deepEqual(env.engines.map((e) => e.model), ["small", "on", "small"]);

    // Each switch: old pod down, ConfigMap, pod template, then the scale-up; no template write without a change.
    const writes = env.writes().map(describeCall);
    const firstUp = writes.indexOf("patch deployments/scale");
    assert.deepEqual(writes.slice(firstUp), [
      "patch deployments/scale", // small up
      "patch deployments/scale", // small down
      "update configmaps", // big's configuration
      "patch deployments", // big's pod shape: 2 GPUs
      "patch deployments/scale", // big up
      "patch deployments/scale", // big down
      "update configmaps",
      "patch deployments", // back to 1 GPU
      "patch deployments/scale",
    ]);
    const patches = env.fake.calls.filter((c) => c.verb === "patch" && c.resource === "deployments" && !c.subresource);
    assert.ok(patches.every((c) => c.contentType?.startsWith("application/json-patch+json")));
  });
});

Deno.test("kube e2e pod shape: on a 1-GPU node the tensorParallelSize 2 pod stays Pending (Unschedulable), then 503", async () => {
  await withKubeE2e({ config: { models: MODELS, startTimeout: "2s" }, fake: { gpusPerNode: 1 } }, async (env) => {
    assert.equal((await chat(env.url, "small")).status, 200);
    const pending = chat(env.url, "on");
    await waitUntil(
      () => {
        const pods = vllmPods(env);
        return pods.length === 1 && gpusOf(pods[0]) === "2" &&
          pods[0].status?.conditions?.some((c: any) => c.type === "PodScheduled" && c.reason === "Unschedulable");
      },
      5000,
      "the 2-GPU pod Pending and Unschedulable",
    );
    assert.equal(vllmPods(env)[0].status.phase, "Pending");
    assert.equal(env.engines.length, 1, "no engine started in a pod without its GPUs");
    const result = await pending;
    assert.equal(result.status, 503, JSON.stringify(result.body));
    await waitUntil(async () => (await modelStatuses(env.url))["on"] !== "starting", 5000, "the start given up");
    assert.equal(env.replicas(), 0, "the Deployment is back to 0: no GPU held");
  });
});
