/**
 * LOCAL VARIANT, for trying the example inside the vllm-chill repository: the
 * same config as vllm-chill.config.ts, with the library imported by relative
 * path instead of the published specifier. A test keeps the two in sync.
 *
 *   deno run -A ../../main.ts validate --config vllm-chill.local.config.ts
 *
 * vllm-chill for the team's GPU node: two chat models and an embedding model
 * share one GPU; the engine scales to zero after 15 minutes without traffic.
 *
 * Validate: `deno task validate`. Render: `deno task render`. Apply: `deno task apply`.
 * Secrets (API keys, admin token) are not part of this file: they come from
 * the Secret `vllm-chill-secrets` (see README.md).
 */
import { defineVllmChill } from "../../mod.ts";

export default defineVllmChill({
  namespace: "ai-apps",
  enableModelSwitch: true,
  backend: "kubernetes",
  idleTimeout: "15m",
  holdTimeout: "10m",
  startTimeout: "15m",
  drainTimeout: "2m",
  minLoadedTime: "2m",
  maxHeldRequests: 500,
  target: {
    deployment: "vllm",
    configMap: "vllm-config",
    service: "vllm-svc",
    port: 80,
  },
  vllm: {
    image: "vllm/vllm-openai:v0.11.0",
    gpus: 1,
    requests: { cpu: "4", memory: "24Gi" },
    limits: { memory: "48Gi" },
    shmSize: "16Gi",
    cache: { pvc: "hf-cache" },
    hfTokenSecret: { name: "hf-token", key: "token" },
    nodeSelector: { "nvidia.com/gpu.present": "true" },
    tolerations: [{
      key: "nvidia.com/gpu",
      operator: "Exists",
      effect: "NoSchedule",
    }],
  },
  defaultModel: "qwen3-8b",
  models: {
    "qwen3-8b": {
      modelName: "Qwen/Qwen3-8B",
      maxModelLen: 32768,
      gpuMemoryUtilization: 0.9,
      enablePrefixCaching: true,
      reasoningParser: "qwen3",
    },
    "qwen-coder": {
      modelName: "Qwen/Qwen2.5-Coder-7B-Instruct",
      maxModelLen: 32768,
      enableAutoToolChoice: true,
      toolCallParser: "hermes",
      idleTimeout: "30m",
    },
    "bge-m3": {
      modelName: "BAAI/bge-m3",
      extraArgs: ["--task", "embed"],
      gpuMemoryUtilization: 0.5,
    },
  },
});
