/**
 * The public TypeScript shapes of a config and a model, as readable
 * interfaces. They are checked against the zod schemas at compile time
 * (`schema.ts`), so they cannot drift from what validation accepts.
 *
 * @module
 */

/** A duration string such as "500ms", "30s", "5m", "1h" or "1h30m". */
export type DurationString = string;

/**
 * One model as written by users (also the `spec` of a `VLLMModel`).
 *
 * @example
 * ```ts
 * import type { ModelSpecInput } from "./types.ts";
 * const qwen: ModelSpecInput = { modelName: "Qwen/Qwen3-8B", maxModelLen: 32768, reasoningParser: "qwen3" };
 * ```
 */
export interface ModelSpecInput {
  /** Hugging Face model id or local path (vLLM's `model`). */
  modelName: string;
  /** Name clients send as `model`; defaults to the model's key (or the VLLMModel's name). */
  servedModelName?: string;
  /** `--tensor-parallel-size`. */
  tensorParallelSize?: number;
  /** `--max-model-len`. */
  maxModelLen?: number;
  /** `--gpu-memory-utilization`, 0.1–1. */
  gpuMemoryUtilization?: number;
  /** `--dtype`. */
  dtype?: "auto" | "half" | "float16" | "bfloat16" | "float" | "float32";
  /** `--quantization`: a method of the pinned vLLM. */
  quantization?: string;
  /** `--kv-cache-dtype`: a KV cache dtype of the pinned vLLM. */
  kvCacheDtype?: string;
  /** true: `--enable-chunked-prefill`; false: `--no-enable-chunked-prefill`. */
  enableChunkedPrefill?: boolean;
  /** `--max-num-batched-tokens`. */
  maxNumBatchedTokens?: number;
  /** `--max-num-seqs`. */
  maxNumSeqs?: number;
  /** true: `--enable-prefix-caching`; false: `--no-enable-prefix-caching`. */
  enablePrefixCaching?: boolean;
  /** true: `--disable-custom-all-reduce`; false: `--no-disable-custom-all-reduce`. */
  disableCustomAllReduce?: boolean;
  /** `--cpu-offload-gb`. */
  cpuOffloadGB?: number;
  /** true: `--enable-auto-tool-choice` (needs toolCallParser); false: `--no-enable-auto-tool-choice`. */
  enableAutoToolChoice?: boolean;
  /** `--tool-call-parser`: a tool call parser of the pinned vLLM. */
  toolCallParser?: string;
  /** `--reasoning-parser`: a reasoning parser of the pinned vLLM. */
  reasoningParser?: string;
  /** `--chat-template`. */
  chatTemplate?: string;
  /** true: `--trust-remote-code`; false: `--no-trust-remote-code`. */
  trustRemoteCode?: boolean;
  /** true: reasoningParser, toolCallParser, kvCacheDtype and quantization may name values the pinned vLLM does not know. */
  allowUnknownVllmValues?: boolean;
  /** More vLLM arguments as long flags. */
  extraArgs?: string[];
  /** Environment variables for the engine. */
  env?: Record<string, string>;
  /** Overrides the global idleTimeout. */
  idleTimeout?: DurationString;
  /** Overrides the global holdTimeout. */
  holdTimeout?: DurationString;
  /** Overrides the global startTimeout. */
  startTimeout?: DurationString;
  /** Image of this model's pod (set on the Deployment at a switch). */
  image?: string;
  /** GPUs of this model's engine; else tensorParallelSize, else vllm.gpus. */
  gpus?: number;
  /** CPU/memory requests of this model's vLLM container, over vllm.requests. */
  requests?: ResourceList;
  /** CPU/memory limits of this model's vLLM container, over vllm.limits. */
  limits?: ResourceList;
  /** Idle this long → vLLM sleep mode; unset: this model never sleeps. */
  sleepAfter?: DurationString;
  /** Overrides the global sleepLevel. */
  sleepLevel?: 1 | 2;
  /** Process backend: the engine command; placeholders {port}, {model}, {served}, {args}. */
  command?: string[];
}

/**
 * A validated model: durations in milliseconds.
 *
 * @example
 * ```ts
 * import type { ModelSpec } from "./types.ts";
 * const spec: ModelSpec = { modelName: "BAAI/bge-m3", idleTimeout: 300_000 };
 * ```
 */
export interface ModelSpec extends Omit<ModelSpecInput, "idleTimeout" | "holdTimeout" | "startTimeout" | "sleepAfter"> {
  /** Idle this long (ms) → vLLM sleep mode. */
  sleepAfter?: number;
  /** Overrides the global idleTimeout (ms). */
  idleTimeout?: number;
  /** Overrides the global holdTimeout (ms). */
  holdTimeout?: number;
  /** Overrides the global startTimeout (ms). */
  startTimeout?: number;
}

/**
 * A model with its key, as the registry holds it.
 *
 * @example
 * ```ts
 * import type { NamedModel } from "./types.ts";
 * const m: NamedModel = { name: "a", servedModelName: "a", source: "config", modelName: "org/a" };
 * ```
 */
export interface NamedModel extends ModelSpec {
  /** The model's key (config key or VLLMModel name). */
  name: string;
  /** Name clients use. */
  servedModelName: string;
  /** Where it was declared. */
  source: "config" | "crd";
}

/**
 * An API key: a plain string, or a key limited to some models.
 *
 * @example
 * ```ts
 * import type { ApiKey } from "./types.ts";
 * const key: ApiKey = { key: "team-a-key-123", models: ["qwen3-8b"] };
 * ```
 */
export type ApiKey = string | {
  /** The key. */
  key: string;
  /** Models this key may use; all when absent. */
  models?: string[];
  /** A label for logs. */
  name?: string;
};

/**
 * A pod toleration.
 *
 * @example
 * ```ts
 * import type { Toleration } from "./types.ts";
 * const t: Toleration = { key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" };
 * ```
 */
export interface Toleration {
  /** Taint key. */
  key?: string;
  /** Exists or Equal. */
  operator?: "Exists" | "Equal";
  /** Taint value (Equal). */
  value?: string;
  /** Taint effect. */
  effect?: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
  /** How long a NoExecute taint is tolerated. */
  tolerationSeconds?: number;
}

/**
 * CPU and memory quantities.
 *
 * @example
 * ```ts
 * import type { ResourceList } from "./types.ts";
 * const r: ResourceList = { cpu: "2", memory: "16Gi" };
 * ```
 */
export interface ResourceList {
  /** e.g. "500m", "4". */
  cpu?: string;
  /** e.g. "16Gi". */
  memory?: string;
}

/**
 * The vLLM pod settings as written by users.
 *
 * @example
 * ```ts
 * import type { VllmPodInput } from "./types.ts";
 * const pod: VllmPodInput = { image: "vllm/vllm-openai:v0.11.0", gpus: 1, cache: { pvc: "hf-cache" } };
 * ```
 */
export interface VllmPodInput {
  /** vLLM image, pinned to a release. */
  image?: string;
  /** Pull policy. */
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  /** GPUs per pod. */
  gpus?: number;
  /** Extended resource name of a GPU. */
  gpuResource?: string;
  /** Port vLLM listens on. */
  containerPort?: number;
  /** Requests. */
  requests?: ResourceList;
  /** Limits (GPUs are added). */
  limits?: ResourceList;
  /** Size of /dev/shm. */
  shmSize?: string;
  /** Hugging Face cache volume. */
  cache?: { hostPath?: string; pvc?: string; mountPath?: string };
  /** Secret holding the Hugging Face token. */
  hfTokenSecret?: { name: string; key?: string };
  /** Node labels the pod must match. */
  nodeSelector?: Record<string, string>;
  /** Tolerations. */
  tolerations?: Toleration[];
  /** Extra environment for every model. */
  env?: Record<string, string>;
  /** How long the startup probe lets a model load. */
  startupProbeSeconds?: number;
}

/**
 * The vLLM pod settings, defaulted.
 *
 * @example
 * ```ts
 * import type { VllmPod } from "./types.ts";
 * const gpus = (pod: VllmPod) => pod.gpus;
 * ```
 */
export interface VllmPod extends
  Required<
    Omit<VllmPodInput, "cache" | "hfTokenSecret" | "nodeSelector" | "tolerations" | "env">
  > {
  /** Hugging Face cache volume. */
  cache: { hostPath?: string; pvc?: string; mountPath: string };
  /** Secret holding the Hugging Face token. */
  hfTokenSecret?: { name: string; key: string };
  /** Node labels the pod must match. */
  nodeSelector?: Record<string, string>;
  /** Tolerations. */
  tolerations?: Toleration[];
  /** Extra environment for every model. */
  env?: Record<string, string>;
}

/**
 * Names of the Kubernetes objects vllm-chill drives, defaulted.
 *
 * @example
 * ```ts
 * import type { Target } from "./types.ts";
 * const t: Target = { deployment: "vllm", configMap: "vllm-config", service: "vllm-svc", port: 80 };
 * ```
 */
export interface Target {
  /** vLLM Deployment. */
  deployment: string;
  /** vLLM ConfigMap. */
  configMap: string;
  /** vLLM Service. */
  service: string;
  /** vLLM Service port. */
  port: number;
  /** Forward here instead of the Service. */
  url?: string;
}

/**
 * The whole config as written by users (`defineVllmChill({...})`, JSON or YAML).
 *
 * @example
 * ```ts
 * import type { ChillConfigInput } from "./types.ts";
 * const input: ChillConfigInput = { enableModelSwitch: true, idleTimeout: "15m" };
 * ```
 */
export interface ChillConfigInput {
  /** Namespace of the vLLM objects. */
  namespace?: string;
  /** Switch models by the request's `model` field. */
  enableModelSwitch?: boolean;
  /** kubernetes or process. */
  backend?: "kubernetes" | "process";
  /** Port the proxy listens on. */
  port?: number;
  /** Address the proxy listens on. */
  host?: string;
  /** Scale to zero after this long idle. */
  idleTimeout?: DurationString;
  /** Longest a request waits for a cold model. */
  holdTimeout?: DurationString;
  /** Longest a model may take to become ready. */
  startTimeout?: DurationString;
  /** Longest in-flight requests may take before a stop. */
  drainTimeout?: DurationString;
  /** A model stays loaded at least this long while used. */
  minLoadedTime?: DurationString;
  /** SSE heartbeats to held streaming requests. */
  heartbeatInterval?: DurationString;
  /** Held requests beyond this get 429. */
  maxHeldRequests?: number;
  /** Default of every model's sleepAfter. */
  sleepAfter?: DurationString;
  /** vLLM sleep level, 1 or 2. */
  sleepLevel?: 1 | 2;
  /** Most engines asleep at once. */
  maxSleeping?: number;
  /** Kubernetes: one shared Deployment or one per model. */
  layout?: "shared" | "per-model";
  /** per-model layout: most GPUs held at once. */
  maxGpus?: number;
  /** Larger bodies get 413 ("32Mi", or a number of bytes). */
  maxBodyBytes?: string | number;
  /** Body bytes being received at once; beyond it new uploads get 503 (default 4 × maxBodyBytes). */
  maxUploadingBytes?: string | number;
  /** Bearer keys for forwarded routes. */
  apiKeys?: ApiKey[];
  /** Bearer token for /admin/*. */
  adminToken?: string;
  /** graceful or force. */
  switchStrategy?: "graceful" | "force";
  /** json or text. */
  logFormat?: "json" | "text";
  /** Kubeconfig path. */
  kubeconfig?: string;
  /** The Kubernetes objects vllm-chill drives. */
  target?: Partial<Target>;
  /** vLLM pod settings. */
  vllm?: VllmPodInput;
  /** Process backend settings. */
  process?: { host?: string; gpus?: string[]; stopGracePeriod?: DurationString; stateDir?: string };
  /** Model for requests that name none. */
  defaultModel?: string;
  /** Models by key. */
  models?: Record<string, ModelSpecInput>;
}

/**
 * A validated, fully defaulted config: durations in milliseconds, sizes in bytes.
 *
 * @example
 * ```ts
 * import type { ChillConfig } from "./types.ts";
 * const idleSeconds = (config: ChillConfig) => config.idleTimeout / 1000;
 * ```
 */
export interface ChillConfig {
  /** Namespace of the vLLM objects. */
  namespace: string;
  /** Switch models by the request's `model` field. */
  enableModelSwitch: boolean;
  /** kubernetes or process. */
  backend: "kubernetes" | "process";
  /** Port the proxy listens on. */
  port: number;
  /** Address the proxy listens on. */
  host: string;
  /** ms. */
  idleTimeout: number;
  /** ms. */
  holdTimeout: number;
  /** ms. */
  startTimeout: number;
  /** ms. */
  drainTimeout: number;
  /** ms. */
  minLoadedTime: number;
  /** ms; 0 = off. */
  heartbeatInterval: number;
  /** Held requests beyond this get 429. */
  maxHeldRequests: number;
  /** ms; default of every model's sleepAfter. */
  sleepAfter?: number;
  /** vLLM sleep level, 1 or 2. */
  sleepLevel: 1 | 2;
  /** Most engines asleep at once. */
  maxSleeping: number;
  /** Kubernetes: one shared Deployment or one per model. */
  layout: "shared" | "per-model";
  /** per-model layout: most GPUs held at once. */
  maxGpus: number;
  /** Bytes. */
  maxBodyBytes: number;
  /** Bytes; unset = 4 × maxBodyBytes. */
  maxUploadingBytes?: number;
  /** Bearer keys for forwarded routes. */
  apiKeys: ApiKey[];
  /** Bearer token for /admin/*. */
  adminToken?: string;
  /** graceful or force. */
  switchStrategy: "graceful" | "force";
  /** json or text. */
  logFormat: "json" | "text";
  /** Kubeconfig path. */
  kubeconfig?: string;
  /** The Kubernetes objects vllm-chill drives. */
  target: Target;
  /** vLLM pod settings. */
  vllm: VllmPod;
  /** Process backend settings (stopGracePeriod in ms; stateDir: where the running engine is recorded). */
  process: { host: string; gpus: string[]; stopGracePeriod: number; stateDir?: string };
  /** Model for requests that name none. */
  defaultModel?: string;
  /** Models by key. */
  models: Record<string, ModelSpec>;
}

/** One validation problem as a schema reports it. */
export interface SchemaIssue {
  /** Kind of problem, e.g. "too_big", "invalid_type", "unrecognized_keys". */
  readonly code: string;
  /** Path of the bad field. */
  readonly path: PropertyKey[];
  /** Default message. */
  readonly message: string;
}

/**
 * A schema as the public API exposes it: parse (throws) or safeParse. At
 * runtime it is the zod schema itself.
 *
 * @example
 * ```ts
 * import type { Schema } from "./types.ts";
 * const isValid = <T>(schema: Schema<T>, data: unknown) => schema.safeParse(data).success;
 * ```
 */
export interface Schema<Output> {
  /** Returns the validated value or throws. */
  parse(data: unknown): Output;
  /** Returns `{ success: true, data }` or `{ success: false, error: { issues } }`. */
  safeParse(
    data: unknown,
  ): { success: true; data: Output } | { success: false; error: { issues: SchemaIssue[] } };
}
