/**
 * A realistic vllm-chill config: one GPU shared by a chat model with a
 * reasoning parser, a coder model with tool calling and an embedding model,
 * switched by the request's `model` and scaled to zero after 15 idle minutes.
 *
 * Render its manifests: `deno run -A main.ts manifests --config examples/vllm-chill.config.ts`.
 *
 * @module
 */
import { defineVllmChill } from "../mod.ts";

export default defineVllmChill({
  namespace: "ai-apps",
  enableModelSwitch: true,
  backend: "kubernetes",
  port: 8080,
  idleTimeout: "15m",
  holdTimeout: "10m",
  startTimeout: "15m",
  drainTimeout: "2m",
  minLoadedTime: "1m",
  maxHeldRequests: 1000,
  maxBodyBytes: "32Mi",
  // apiKeys and adminToken live in the Secret vllm-chill-secrets (keys api-keys, admin-token).
  target: { deployment: "vllm", configMap: "vllm-config", service: "vllm-svc", port: 80 },
  vllm: {
    image: "vllm/vllm-openai:v0.11.0",
    gpus: 1,
    requests: { cpu: "4", memory: "24Gi" },
    limits: { memory: "48Gi" },
    shmSize: "16Gi",
    cache: { pvc: "hf-cache" },
    hfTokenSecret: { name: "hf-token", key: "token" },
    nodeSelector: { "nvidia.com/gpu.present": "true" },
    tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
    env: { VLLM_LOGGING_LEVEL: "INFO" },
    startupProbeSeconds: 1800,
  },
  defaultModel: "qwen3-8b",
  models: {
    "qwen3-8b": {
      modelName: "Qwen/Qwen3-8B",
      maxModelLen: 32768,
      gpuMemoryUtilization: 0.9,
      enablePrefixCaching: true,
      reasoningParser: "qwen3",
      extraArgs: ["--seed", "0"],
    },
    "qwen3-coder": {
      modelName: "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8",
      servedModelName: "qwen3-coder",
      maxModelLen: 65536,
      gpuMemoryUtilization: 0.92,
      enableAutoToolChoice: true,
      toolCallParser: "qwen3_coder",
      idleTimeout: "30m",
    },
    "bge-m3": {
      modelName: "BAAI/bge-m3",
      gpuMemoryUtilization: 0.3,
      maxModelLen: 8192,
      maxNumSeqs: 64,
      idleTimeout: "5m",
    },
  },
});
