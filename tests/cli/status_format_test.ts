import assert from "node:assert/strict";
import { formatStatus } from "../../lib/cli/status.ts";

Deno.test("status --url, per-model layout: each model's line names its Deployment, replicas, pods and sleep", () => {
  const text = formatStatus({
    state: "ready",
    activeModel: "a",
    held: {},
    inflight: {},
    models: {
      a: {
        status: "sleeping",
        gpus: ["0"],
        share: 1,
        inflight: 0,
        held: 0,
        lastUsed: null,
        lastColdStartMs: null,
        lastWakeMs: null,
        error: null,
      },
      b: {
        status: "cold",
        gpus: [],
        share: 1,
        inflight: 0,
        held: 0,
        lastUsed: null,
        lastColdStartMs: null,
        lastWakeMs: null,
        error: null,
      },
    },
    backend: {
      backend: "kubernetes",
      layout: "per-model",
      models: {
        a: { deployment: "vllm-a", replicas: 1, pods: [{ name: "vllm-a-x", phase: "Ready" }], sleeping: true },
        b: { deployment: "vllm-b", replicas: 0, pods: [], sleeping: false },
      },
    },
  });
  assert.match(text, /^ {2}a {2}sleeping {2}gpus 0 \(share 1\) {2}vllm-a replicas 1 pods Ready \(asleep\)$/m);
  assert.match(text, /^ {2}b {2}cold {6}vllm-b replicas 0 pods none$/m);
  assert.match(text, /^backend {7}backend="kubernetes" layout="per-model"$/m, "the models are not repeated");
});
