/**
 * The single source of truth for every shape vllm-chill reads: a model
 * (`ModelSpecSchema`, also the `spec` of a `VLLMModel` custom resource) and
 * the whole config file (`ChillConfigSchema`). Types, the CRD's
 * openAPIV3Schema, the README's config table and validation errors are all
 * derived from these schemas.
 *
 * Durations are strings ("500ms", "30s", "5m", "1h") parsed into
 * milliseconds; sizes are strings ("32Mi") parsed into bytes.
 *
 * @module
 */
import { z } from "zod";
import type { ChillConfig, ChillConfigInput, ModelSpec, ModelSpecInput } from "./types.ts";
import { DURATION_PATTERN, parseDuration, parseSize, SIZE_PATTERN } from "./units.ts";
import { findVllmFlag } from "../models/vllm_args.ts";
import {
  CHECKED_VALUES,
  MODEL_DTYPES,
  PINNED_VLLM_IMAGE,
  PINNED_VLLM_VERSION,
  QUANTIZATION_METHODS,
  TOOL_CALL_PARSERS,
} from "../models/vllm_release.ts";

/** A duration string such as "30s" or "5m", parsed into milliseconds. */
export const Duration = z
  .string()
  .regex(new RegExp(DURATION_PATTERN), {
    message: 'expected a duration such as "500ms", "30s", "5m" or "1h"',
  })
  .transform((text) => parseDuration(text)!)
  .describe('Duration such as "500ms", "30s", "5m", "1h".');

/** A byte size such as "32Mi" or "1Gi" (parsed into bytes), or a plain number of bytes. */
export const ByteSize = z
  .union([
    z.int().min(0),
    z
      .string()
      .regex(new RegExp(SIZE_PATTERN), {
        message: 'expected a size such as "512Ki", "32Mi" or "1Gi", or a number of bytes',
      })
      .transform((text) => parseSize(text)!),
  ])
  .describe('Size in bytes such as "512Ki", "32Mi", "1Gi", or a number of bytes.');

/** A Kubernetes-style resource quantity ("500m", "4", "16Gi"). */
const Quantity = z
  .string()
  .regex(/^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/, {
    message: 'expected a Kubernetes quantity such as "500m", "4" or "16Gi"',
  });

/** A name usable as a Kubernetes object name and in URLs (DNS-1123 subdomain). */
export const ObjectName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
    message: "expected a lowercase DNS name (a-z, 0-9, '-', '.')",
  });

/** The dtypes vLLM's `--dtype` accepts (vllm/config/model.py:67 in the pinned release). */
export const DTYPES = MODEL_DTYPES;

const positiveInt = () => z.int().positive();

/** vLLM sleep levels: 1 keeps the weights in CPU RAM (wake in seconds), 2 drops them (reloaded from disk on wake). */
const SleepLevel = z.literal([1, 2]);

/** A CUDA device id as CUDA_VISIBLE_DEVICES takes it: an index ("0") or a UUID ("GPU-…", "MIG-…"). */
const DeviceId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_:./-]*$/, {
  message: 'expected a CUDA device id such as "0" or "GPU-8f6a…" (no commas or spaces)',
});

/** ConfigMap keys vllm-chill writes itself; a model's `env` must not use them. */
export const RESERVED_ENV_KEYS = ["ENGINE_CONFIG_YAML", "MODEL_NAME", "SERVED_MODEL_NAME", "VLLM_CHILL_MODEL"] as const;

/** vLLM flags vllm-chill sets itself; `extraArgs` must not repeat them. */
export const MANAGED_VLLM_FLAGS = ["model", "host", "port", "config", "served-model-name"] as const;

/** Environment variable name (also a valid ConfigMap key). */
const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
  message: "expected an environment variable name (letters, digits, '_', not starting with a digit)",
});

/** Environment of one engine: valid names, none of the keys vllm-chill writes itself. */
const ModelEnv = z.record(EnvName, z.string()).superRefine((env, ctx) => {
  for (const key of Object.keys(env)) {
    if ((RESERVED_ENV_KEYS as readonly string[]).includes(key)) {
      ctx.addIssue({ code: "custom", path: [key], message: `"${key}" is written by vllm-chill; use another name` });
    }
  }
});

/** Extra vLLM arguments: long flags (`--seed 7`, `--seed=7`, `--enforce-eager`), not the flags vllm-chill sets. */
const ExtraArgs = z.array(z.string()).superRefine((args, ctx) => {
  args.forEach((arg, index) => {
    if (index === 0 && !arg.startsWith("--")) {
      ctx.addIssue({ code: "custom", path: [index], message: `expected a "--flag" first, got ${JSON.stringify(arg)}` });
    } else if (/^-[A-Za-z]/.test(arg)) {
      ctx.addIssue({
        code: "custom",
        path: [index],
        message: `use the long form of ${arg} (e.g. --tensor-parallel-size)`,
      });
    } else if (arg.startsWith("--")) {
      const flag = arg.slice(2).split("=")[0];
      if (flag === "") {
        ctx.addIssue({ code: "custom", path: [index], message: "empty flag" });
      } else if ((MANAGED_VLLM_FLAGS as readonly string[]).includes(flag)) {
        ctx.addIssue({ code: "custom", path: [index], message: `--${flag} is set by vllm-chill; remove it` });
      }
    }
  });
});

/** CPU and memory of a container (GPUs are counted apart). */
const ResourceList = z.strictObject({
  cpu: Quantity.optional(),
  memory: Quantity.optional(),
});

/** How a value the pinned vLLM does not know is described; `values` quoted and comma-separated. */
function knownValues(values: readonly string[]): string {
  return values.map((v) => JSON.stringify(v)).join(", ");
}

/** The description of a field checked against the pinned release's names; `exempt` says when it is not checked. */
function checkedDescription(field: (typeof CHECKED_VALUES)[number]["field"], exempt = ""): string {
  const { flag, values } = CHECKED_VALUES.find((c) => c.field === field)!;
  return `\`--${flag}\`; vLLM ${PINNED_VLLM_VERSION} knows ${values.join(", ")} ` +
    `(${exempt}others are refused unless allowUnknownVllmValues is true).`;
}

/** The fields of a model, each checked alone ({@link ModelSpecSchema} checks them together). */
const ModelSpecFields = z
  .strictObject({
    modelName: z.string().min(1).describe("Hugging Face model id or local path (vLLM's `model`)."),
    servedModelName: z
      .string()
      .min(1)
      .optional()
      .describe("Name clients send as `model`; defaults to the model's key (or the VLLMModel's name)."),
    tensorParallelSize: positiveInt().optional().describe("GPUs to shard the model over (`--tensor-parallel-size`)."),
    maxModelLen: positiveInt().optional().describe("Context length (`--max-model-len`)."),
    gpuMemoryUtilization: z
      .number()
      .min(0.1)
      .max(1)
      .optional()
      .describe("Fraction of GPU memory vLLM may use, 0.1–1 (`--gpu-memory-utilization`)."),
    dtype: z.enum(DTYPES).optional().describe("Weights/activations dtype (`--dtype`)."),
    quantization: z.string().min(1).optional().describe(
      `\`--quantization\`; one of the ${QUANTIZATION_METHODS.length} methods of vLLM ${PINNED_VLLM_VERSION} ` +
        "(awq, gptq, fp8, compressed-tensors, bitsandbytes, gguf, …; see lib/models/vllm_release.ts), others are " +
        "refused unless allowUnknownVllmValues is true.",
    ),
    kvCacheDtype: z.string().min(1).optional().describe(checkedDescription("kvCacheDtype")),
    enableChunkedPrefill: z.boolean().optional().describe(
      "true: `--enable-chunked-prefill`; false: `--no-enable-chunked-prefill`, which vLLM v0.11.0 honours only " +
        "for pooling models (it always chunks prefills of generative models); absent: vLLM's default.",
    ),
    maxNumBatchedTokens: positiveInt().optional().describe("`--max-num-batched-tokens`."),
    maxNumSeqs: positiveInt().optional().describe("`--max-num-seqs`."),
    enablePrefixCaching: z.boolean().optional().describe(
      "true: `--enable-prefix-caching`; false: `--no-enable-prefix-caching` (vLLM v0.11.0 turns it on by default); " +
        "absent: vLLM's default.",
    ),
    disableCustomAllReduce: z.boolean().optional().describe(
      "true: `--disable-custom-all-reduce`; false: `--no-disable-custom-all-reduce`; absent: vLLM's default (false).",
    ),
    cpuOffloadGB: z.number().min(0).optional().describe("`--cpu-offload-gb`."),
    enableAutoToolChoice: z.boolean().optional().describe(
      "true: `--enable-auto-tool-choice` (needs toolCallParser); false: `--no-enable-auto-tool-choice`; absent: " +
        "vLLM's default (false).",
    ),
    toolCallParser: z.string().min(1).optional().describe(
      checkedDescription("toolCallParser", "not checked when extraArgs has --tool-parser-plugin; "),
    ),
    reasoningParser: z.string().min(1).optional().describe(checkedDescription("reasoningParser")),
    chatTemplate: z.string().min(1).optional().describe("`--chat-template` (path or inline template)."),
    trustRemoteCode: z.boolean().optional().describe(
      "true: `--trust-remote-code`; false: `--no-trust-remote-code`; absent: vLLM's default (false).",
    ),
    allowUnknownVllmValues: z.boolean().optional().describe(
      `true: reasoningParser, toolCallParser, kvCacheDtype and quantization may name values vLLM ` +
        `${PINNED_VLLM_VERSION} does not know (an image newer than ${PINNED_VLLM_IMAGE}, a plugin).`,
    ),
    extraArgs: ExtraArgs.optional().describe(
      'More vLLM arguments as long flags, e.g. ["--seed", "7", "--enforce-eager"]; they win over the fields above.',
    ),
    env: ModelEnv.optional().describe("Environment variables for the engine (keys of the vLLM ConfigMap)."),
    idleTimeout: Duration.optional().describe("Overrides the global idleTimeout for this model."),
    holdTimeout: Duration.optional().describe("Overrides the global holdTimeout for this model."),
    startTimeout: Duration.optional().describe("Overrides the global startTimeout for this model."),
    image: z.string().min(1).optional().describe(
      "Image of this model's pod, set on the Deployment at a switch; else the Deployment's (vllm.image).",
    ),
    requests: ResourceList.optional().describe(
      "CPU/memory requests of this model's vLLM container, over vllm.requests (set at a switch).",
    ),
    limits: ResourceList.optional().describe(
      "CPU/memory limits of this model's vLLM container, over vllm.limits (set at a switch).",
    ),
    gpus: z.int().min(0).optional().describe(
      "GPUs of this model's engine; else tensorParallelSize, else vllm.gpus (its footprint in the pool).",
    ),
    sleepAfter: Duration.optional().describe(
      "Idle this long → vLLM sleep mode (GPU memory freed, process kept); unset: this model never sleeps.",
    ),
    sleepLevel: SleepLevel.optional().describe("Overrides the global sleepLevel for this model."),
    command: z
      .array(z.string())
      .min(1)
      .optional()
      .describe(
        "Process backend: the engine command; placeholders {port}, {model}, {served}, and {args} (a whole element: " +
          "the vLLM engine arguments).",
      ),
  });

/**
 * One model: what vLLM needs to serve it plus per-model proxy overrides.
 * Also the `spec` of a `VLLMModel` custom resource.
 */
export const ModelSpecSchema = ModelSpecFields
  .superRefine((spec, ctx) => checkVllmValues(spec, ctx))
  .describe("One model vLLM can serve.");

/**
 * Refuses what makes the pinned vLLM exit at start, so that a switch never
 * lands on a crash-looping engine: `--enable-auto-tool-choice` without
 * `--tool-call-parser` (vllm/entrypoints/openai/cli_args.py:277-279), and
 * parser, KV cache dtype and quantization names it does not know (see
 * lib/models/vllm_release.ts). Values are read from what vLLM receives:
 * `extraArgs` win over the fields, as they do on vLLM's command line.
 */
function checkVllmValues(spec: z.output<typeof ModelSpecFields>, ctx: z.RefinementCtx): void {
  const extra = spec.extraArgs ?? [];
  const effective = (flag: string, field: keyof typeof spec) => {
    const found = findVllmFlag(extra, flag);
    if (found) return { value: found.value, path: ["extraArgs", found.index] };
    const value = spec[field];
    return value === undefined ? undefined : { value, path: [field] };
  };
  const autoTool = effective("enable-auto-tool-choice", "enableAutoToolChoice");
  const toolParser = effective("tool-call-parser", "toolCallParser");
  if (autoTool?.value === true && (toolParser === undefined || typeof toolParser.value !== "string")) {
    ctx.addIssue({
      code: "custom",
      path: autoTool.path,
      message: `needs toolCallParser: vLLM exits with "--enable-auto-tool-choice requires --tool-call-parser"; ` +
        `one of ${knownValues(TOOL_CALL_PARSERS)}`,
    });
  }
  if (spec.allowUnknownVllmValues === true) return;
  const pluginParsers = findVllmFlag(extra, "tool-parser-plugin") !== undefined;
  for (const { field, flag, what, values } of CHECKED_VALUES) {
    if (field === "toolCallParser" && pluginParsers) continue;
    const found = effective(flag, field);
    if (found === undefined || values.includes(found.value as string)) continue;
    ctx.addIssue({
      code: "custom",
      path: found.path,
      message: typeof found.value === "string"
        ? `${JSON.stringify(found.value)} is not a ${what} of vLLM ${PINNED_VLLM_VERSION}: must be one of ` +
          `${knownValues(values)} (for a newer vllm image or a plugin, set allowUnknownVllmValues: true)`
        : `--${flag} needs a value`,
    });
  }
}

/** An API key, either a plain string or a key limited to some models. */
export const ApiKeySchema = z.union([
  z.string().min(8, { message: "an API key must have at least 8 characters" }),
  z.strictObject({
    key: z.string().min(8, { message: "an API key must have at least 8 characters" }).describe("The key."),
    models: z.array(z.string().min(1)).optional().describe("Models this key may use; all when absent."),
    name: z.string().optional().describe("A label for logs (never the key itself)."),
  }),
]);

const Toleration = z.strictObject({
  key: z.string().optional(),
  operator: z.enum(["Exists", "Equal"]).optional(),
  value: z.string().optional(),
  effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
  tolerationSeconds: z.int().optional(),
});

/** The vLLM pod settings used when vllm-chill creates the Deployment. */
export const VllmPodSchema = z
  .strictObject({
    image: z.string().min(1).default(PINNED_VLLM_IMAGE).describe(
      "vLLM image, pinned to the release whose names validation checks.",
    ),
    imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent").describe(
      "Pull policy of the vLLM image.",
    ),
    gpus: z.int().min(0).default(1).describe("GPUs per pod."),
    gpuResource: z.string().min(1).default("nvidia.com/gpu").describe("Extended resource name of a GPU."),
    containerPort: z.int().min(1).max(65535).default(8000).describe("Port vLLM listens on in the pod."),
    requests: ResourceList.default({ cpu: "2", memory: "16Gi" }).describe("CPU/memory requests of the vLLM container."),
    limits: ResourceList.default({ memory: "32Gi" }).describe(
      "CPU/memory limits of the vLLM container (GPUs are added).",
    ),
    shmSize: Quantity.default("8Gi").describe("Size of the /dev/shm memory emptyDir."),
    cache: z
      .strictObject({
        hostPath: z.string().min(1).optional().describe("Node directory for the Hugging Face cache."),
        pvc: z.string().min(1).optional().describe("PersistentVolumeClaim for the Hugging Face cache."),
        mountPath: z.string().min(1).default("/root/.cache/huggingface").describe("Where the cache is mounted."),
      })
      .refine((c) => !(c.hostPath && c.pvc), { message: "set cache.hostPath or cache.pvc, not both" })
      .prefault({})
      .describe("Hugging Face cache volume: hostPath, PVC, or an emptyDir when neither is set."),
    hfTokenSecret: z
      .strictObject({
        name: ObjectName.describe("Secret name."),
        key: z.string().min(1).default("token").describe("Key in the Secret."),
      })
      .optional()
      .describe("Secret holding the Hugging Face token (exposed as HF_TOKEN)."),
    nodeSelector: z.record(z.string(), z.string()).optional().describe("Node labels the vLLM pod must match."),
    tolerations: z.array(Toleration).optional().describe("Tolerations of the vLLM pod (e.g. for GPU taints)."),
    env: z.record(z.string(), z.string()).optional().describe("Extra environment for every model."),
    startupProbeSeconds: z
      .int()
      .positive()
      .default(1800)
      .describe("How long the startup probe lets a model load before the kubelet restarts it."),
  })
  .refine((pod) => !(pod.hfTokenSecret && pod.env && "HF_TOKEN" in pod.env), {
    path: ["env", "HF_TOKEN"],
    message: "HF_TOKEN is already set from vllm.hfTokenSecret; keep the token in the Secret only",
  })
  .describe("vLLM pod settings (Deployment created by vllm-chill).");

/** Names of the Kubernetes objects vllm-chill drives. */
export const TargetSchema = z.strictObject({
  deployment: ObjectName.default("vllm").describe(
    "vLLM Deployment scaled between 0 and 1; per-model layout: <deployment>-<model> for each model.",
  ),
  configMap: ObjectName.default("vllm-config").describe(
    "ConfigMap holding the active model's configuration; per-model layout: <configMap>-<model>.",
  ),
  service: ObjectName.default("vllm-svc").describe(
    "Service to ensure; forwarded to at http://<service>:<port>; per-model layout: <service>-<model>.",
  ),
  port: z.int().min(1).max(65535).default(80).describe("Port of the vLLM Service."),
  url: z
    .url()
    .optional()
    .describe(
      "Forward here instead of the Service (e.g. http://127.0.0.1:8000 through a port-forward); {service} is " +
        "replaced by the Service's name (per-model layout: required).",
    ),
});

/** Process backend settings. */
export const ProcessSchema = z.strictObject({
  host: z.string().default("127.0.0.1").describe("Address engines listen on."),
  gpus: z
    .array(DeviceId)
    .min(1)
    .refine((ids) => new Set(ids).size === ids.length, { message: "device ids must be unique" })
    .default(["0"])
    .describe("CUDA device ids the engines may use; each engine gets CUDA_VISIBLE_DEVICES of its placement."),
  stopGracePeriod: Duration.prefault("10s").describe("SIGTERM → SIGKILL delay."),
  stateDir: z
    .string()
    .min(1)
    .optional()
    // Default computed at run time (lib/backend/engine_state.ts defaultStateDir): $TMPDIR (or /tmp)/vllm-chill-<uid>.
    .describe(
      "Where the engine is recorded for restarts; default $XDG_RUNTIME_DIR/vllm-chill, else /tmp/vllm-chill-<uid>.",
    ),
});

/** The whole vllm-chill config file (`defineVllmChill({...})`, JSON or YAML). */
export const ChillConfigSchema = z
  .strictObject({
    namespace: ObjectName.default("ai-apps").describe(
      "Namespace of the vLLM objects (and of the VLLMModel resources watched).",
    ),
    enableModelSwitch: z.boolean().default(false).describe("Switch models by the request's `model` field."),
    backend: z
      .enum(["kubernetes", "process"])
      .default("kubernetes")
      .describe("kubernetes: scale a Deployment; process: run the engine as a local child process."),
    port: z.int().min(0).max(65535).default(8080).describe("Port the proxy listens on."),
    host: z.string().default("0.0.0.0").describe("Address the proxy listens on."),
    idleTimeout: Duration.prefault("5m").describe("Scale to zero after this long with nothing in flight."),
    holdTimeout: Duration.prefault("10m").describe("Longest a request waits for a cold model (then 504)."),
    startTimeout: Duration.prefault("15m").describe("Longest a model may take to become ready (then 503)."),
    drainTimeout: Duration.prefault("2m").describe("Longest in-flight requests may take to finish before a stop."),
    minLoadedTime: Duration.prefault("30s").describe(
      "A model stays loaded at least this long while its requests keep coming (anti-thrash).",
    ),
    heartbeatInterval: Duration.prefault("10s").describe(
      'SSE comment heartbeats to held streaming requests; "0s" turns them off.',
    ),
    maxHeldRequests: z.int().min(0).default(1000).describe("Held requests beyond this get 429."),
    sleepAfter: Duration.optional().describe(
      "Default of every model's sleepAfter: idle this long → vLLM sleep mode; unset: models never sleep.",
    ),
    sleepLevel: SleepLevel.default(1).describe(
      "vLLM sleep level: 1 keeps weights in CPU RAM (wake in seconds), 2 drops them (reload from disk on wake).",
    ),
    maxSleeping: z.int().min(0).default(2).describe(
      "Most engines asleep at once (each level-1 sleeper holds its weights in host RAM); the LRU one is stopped first.",
    ),
    layout: z
      .enum(["shared", "per-model"])
      .default("shared")
      .describe(
        "Kubernetes: shared (one Deployment, the ConfigMap names the active model) or per-model (a Deployment, " +
          "ConfigMap and Service per model).",
      ),
    maxGpus: z.int().min(1).default(1).describe(
      "per-model layout: most GPUs vllm-chill holds at once (a pod holds its GPUs while it exists, asleep or not).",
    ),
    maxBodyBytes: ByteSize.prefault("32Mi").describe("Larger request bodies get 413."),
    maxUploadingBytes: ByteSize.optional().describe(
      "Request-body bytes being received at once, all clients together; new uploads beyond it get 503 + " +
        "Retry-After. Default: 4 × maxBodyBytes.",
    ),
    apiKeys: z.array(ApiKeySchema).default([]).describe("Bearer keys for forwarded routes; none = open."),
    adminToken: z.string().min(8).optional().describe("Bearer token for /admin/* (open when unset)."),
    switchStrategy: z
      .enum(["graceful", "force"])
      .default("graceful")
      .describe("force deletes the old pod with grace period 0 when switching."),
    logFormat: z.enum(["json", "text"]).default("json").describe("Log lines as JSON (log pipelines) or text (people)."),
    kubeconfig: z.string().optional().describe("Kubeconfig path; else in-cluster, else ~/.kube/config."),
    target: TargetSchema.prefault({}).describe("The Kubernetes objects vllm-chill drives."),
    vllm: VllmPodSchema.prefault({}),
    process: ProcessSchema.prefault({}).describe("Settings of the process backend."),
    defaultModel: z.string().min(1).optional().describe("Model for requests that name none."),
    models: z
      .record(z.string().min(1), ModelSpecSchema)
      .default({})
      .describe("Models by key (the name clients use unless servedModelName is set)."),
  })
  .superRefine((config, ctx) => {
    for (const [key, model] of Object.entries(config.models)) {
      const gpus = gpuCountOf(model, config.vllm.gpus);
      if (config.backend === "process" && gpus > config.process.gpus.length) {
        ctx.addIssue({
          code: "custom",
          path: ["models", key, model.gpus !== undefined ? "gpus" : "tensorParallelSize"],
          message: `needs ${gpus} GPUs but process.gpus lists ${config.process.gpus.length}`,
        });
      }
      if (config.backend === "kubernetes" && config.layout === "per-model") {
        const problem = perModelNameProblem(key, config.target);
        if (problem) ctx.addIssue({ code: "custom", path: ["models", key], message: problem });
        else if (gpus > config.maxGpus) {
          ctx.addIssue({
            code: "custom",
            path: ["models", key, model.gpus !== undefined ? "gpus" : "tensorParallelSize"],
            message: `needs ${gpus} GPUs but maxGpus is ${config.maxGpus}`,
          });
        }
      }
    }
    if (
      config.backend === "kubernetes" && config.layout === "per-model" && config.target.url !== undefined &&
      !config.target.url.includes("{service}")
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["target", "url"],
        message: 'with layout "per-model" each model has its own Service: target.url must contain {service} ' +
          "(e.g. http://127.0.0.1:8001/api/v1/namespaces/ai-apps/services/{service}:80/proxy through kubectl proxy)",
      });
    }
    // Two models answering to the same name would make routing ambiguous.
    const seen = new Map<string, string>();
    for (const [key, model] of Object.entries(config.models)) {
      const served = model.servedModelName ?? key;
      const other = seen.get(served);
      if (other !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["models", key, "servedModelName"],
          message: `"${served}" is already the name of model "${other}"; served names must be unique`,
        });
      } else seen.set(served, key);
    }
  });

/**
 * A model's GPU count in the pool: its `gpus`, else its `tensorParallelSize`, else `vllm.gpus`.
 *
 * @example
 * ```ts
 * import { gpuCountOf } from "./schema.ts";
 * gpuCountOf({ tensorParallelSize: 2 }, 1); // 2
 * gpuCountOf({ gpus: 0, tensorParallelSize: 2 }, 1); // 0
 * gpuCountOf({}, 1); // 1
 * ```
 */
export function gpuCountOf(model: { gpus?: number; tensorParallelSize?: number }, defaultGpus: number): number {
  return model.gpus ?? model.tensorParallelSize ?? defaultGpus;
}

/**
 * Whether a model "may sleep" (DESIGN.md): its `sleepAfter`, else the global one, is set. Its engine then runs
 * with vLLM's sleep mode (`--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1`).
 *
 * @example
 * ```ts
 * import { maySleep } from "./schema.ts";
 * maySleep({ sleepAfter: 60_000 }, undefined); // true
 * maySleep({}, 30_000); // true
 * maySleep({}, undefined); // false
 * ```
 */
export function maySleep(model: { sleepAfter?: number }, defaultSleepAfter: number | undefined): boolean {
  return (model.sleepAfter ?? defaultSleepAfter) !== undefined;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Why `key` cannot name a model's objects in the per-model layout (`<target.deployment>-<key>`,
 * `<target.configMap>-<key>`, `<target.service>-<key>`, and the label `vllm.efortin.github.io/model: <key>`),
 * or null when it can.
 *
 * @example
 * ```ts
 * import { perModelNameProblem } from "./schema.ts";
 * perModelNameProblem("qwen3-8b", { deployment: "vllm", configMap: "vllm-config", service: "vllm-svc" }); // null
 * perModelNameProblem("Qwen", { deployment: "vllm", configMap: "vllm-config", service: "vllm-svc" })?.length! > 0; // true
 * ```
 */
export function perModelNameProblem(
  key: string,
  target: { deployment: string; configMap: string; service: string },
): string | null {
  if (!DNS_LABEL.test(key)) {
    return `with layout "per-model" a model key must be a DNS-1123 label (a-z, 0-9, '-', starting and ending ` +
      `with a letter or digit), got ${JSON.stringify(key)}`;
  }
  for (const base of [target.deployment, target.configMap, target.service]) {
    const name = `${base}-${key}`;
    // Service names are DNS-1035 labels (≤ 63); the Deployment's name is also a pod label value (≤ 63).
    if (name.length > 63) {
      return `with layout "per-model" the object name "${name}" would be longer than 63 characters; ` +
        `use a model key of at most ${63 - base.length - 1} characters`;
    }
  }
  return null;
}

export type {
  ApiKey,
  ChillConfig,
  ChillConfigInput,
  ModelSpec,
  ModelSpecInput,
  NamedModel,
  ResourceList,
  Target,
  Toleration,
  VllmPod,
  VllmPodInput,
} from "./types.ts";

// The readable interfaces of types.ts must describe exactly what the schemas accept and return.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _shapesMatch: [
  Same<z.input<typeof ModelSpecSchema>, ModelSpecInput>,
  Same<z.output<typeof ModelSpecSchema>, ModelSpec>,
  Same<z.input<typeof ChillConfigSchema>, ChillConfigInput>,
  Same<z.output<typeof ChillConfigSchema>, ChillConfig>,
] = [true, true, true, true];
