/**
 * Model + config → the vLLM pod: one pure function ({@link renderVllmPodTemplate})
 * renders the Deployment's pod template, and the same shape rules give the
 * patch a switch applies ({@link podShapePatch}), so a model that needs two
 * GPUs, its own image or its own CPU/memory never starts in the previous
 * model's pod.
 *
 * The *pod shape* is what vllm-chill owns in the pod template, in the vLLM
 * container (the container named `vllm`, else the first one): `image` and
 * `resources` (requests and limits of cpu, memory and the GPU resource).
 * Nothing else of the Deployment is ever written besides replicas.
 *
 * A model's shape is the *base* shape with the model's own settings on top:
 * `image`, its GPU count (`gpus`, else `tensorParallelSize`), `requests`,
 * `limits`. The base is recorded on the Deployment in the annotation
 * {@link BASE_POD_SHAPE_ANNOTATION}: vllm-chill writes it when it renders
 * the Deployment (from `vllm.image`, `vllm.gpus`, `vllm.requests`,
 * `vllm.limits`), and for a Deployment it did not render it records the
 * Deployment's own values with its first change, so that a later model
 * without its own settings gets the user's values back.
 *
 * @module
 */
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import { type ChillConfig, gpuCountOf, type ModelSpec } from "../config/schema.ts";
import { labelsFor } from "./labels.ts";

/** Deployment annotation holding the base pod shape (JSON), over which each model's own settings apply. */
export const BASE_POD_SHAPE_ANNOTATION = "vllm.efortin.github.io/base-pod-shape";

/** Directory the engine config file is mounted in. */
export const ENGINE_CONFIG_DIR = "/etc/vllm-chill";
/** Path of the engine config file in the vLLM container. */
export const ENGINE_CONFIG_PATH = `${ENGINE_CONFIG_DIR}/config.yaml`;
/** ConfigMap key holding the vLLM `--config` YAML. */
export const ENGINE_CONFIG_KEY = "ENGINE_CONFIG_YAML";

/** The part of the vLLM container vllm-chill owns. */
export interface PodShape {
  /** Container image. */
  image: string;
  /** Container resources: quantities as strings, GPUs under the GPU resource name. */
  resources: { requests: Record<string, string>; limits: Record<string, string> };
}

/** The model settings that shape the pod. */
export type ShapeSettings = Pick<ModelSpec, "image" | "gpus" | "tensorParallelSize" | "requests" | "limits">;

/**
 * The base shape from the config alone: `vllm.image`, `vllm.requests`,
 * `vllm.limits` and `vllm.gpus` GPUs (no GPU limit when 0).
 *
 * @example
 * ```ts
 * import { configPodShape } from "./pod_template.ts";
 * import { parseConfig } from "../config/define.ts";
 * configPodShape(parseConfig({})).resources.limits; // { memory: "32Gi", "nvidia.com/gpu": "1" }
 * ```
 */
export function configPodShape(config: Readonly<ChillConfig>): PodShape {
  const vllm = config.vllm;
  return withGpus(
    { image: vllm.image, resources: { requests: clean(vllm.requests), limits: clean(vllm.limits) } },
    config,
    vllm.gpus,
  );
}

/**
 * `model`'s shape: `base` with the model's image, GPU count (`gpus`, else
 * `tensorParallelSize`, else the base's), requests and limits on top. A null
 * model gets the base.
 *
 * @example
 * ```ts
 * import { configPodShape, modelPodShape } from "./pod_template.ts";
 * import { parseConfig } from "../config/define.ts";
 * const config = parseConfig({});
 * modelPodShape(configPodShape(config), { tensorParallelSize: 2 }, config).resources.limits["nvidia.com/gpu"]; // "2"
 * ```
 */
export function modelPodShape(base: PodShape, model: ShapeSettings | null, config: Readonly<ChillConfig>): PodShape {
  if (model === null) return base;
  const shape: PodShape = {
    image: model.image ?? base.image,
    resources: {
      requests: { ...base.resources.requests, ...clean(model.requests ?? {}) },
      limits: { ...base.resources.limits, ...clean(model.limits ?? {}) },
    },
  };
  return withGpus(shape, config, gpuCountOf(model, gpusOf(base, config)));
}

/** Where a pod template differs between layouts. */
export interface PodTemplateOptions {
  /** The ConfigMap the pod reads its engine config and env from (default `target.configMap`). */
  configMap?: string;
  /** Labels added to the pod's (per-model layout: the model label). */
  labels?: Readonly<Record<string, string>>;
}

/**
 * The vLLM pod template for `model` (null: the config's base shape): the
 * `vllm` container runs `vllm serve --config` on the mounted engine config,
 * probes /health, and gets the model's {@link PodShape}. Rendering and the
 * per-model layout share it.
 *
 * @example
 * ```ts
 * import { renderVllmPodTemplate } from "./pod_template.ts";
 * import { parseConfig } from "../config/define.ts";
 * const config = parseConfig({});
 * renderVllmPodTemplate(config, { tensorParallelSize: 2 }).spec?.containers[0].resources?.limits;
 * // { memory: "32Gi", "nvidia.com/gpu": "2" }
 * ```
 */
export function renderVllmPodTemplate(
  config: Readonly<ChillConfig>,
  model: ShapeSettings | null,
  options: PodTemplateOptions = {},
): IPodTemplateSpec {
  const vllm = config.vllm;
  const configMap = options.configMap ?? config.target.configMap;
  const shape = modelPodShape(configPodShape(config), model, config);
  const cacheVolume = vllm.cache.hostPath
    ? { name: "hf-cache", hostPath: { path: vllm.cache.hostPath, type: "DirectoryOrCreate" as const } }
    : vllm.cache.pvc
    ? { name: "hf-cache", persistentVolumeClaim: { claimName: vllm.cache.pvc } }
    : { name: "hf-cache", emptyDir: {} };
  const env = [
    ...(vllm.hfTokenSecret
      ? [{
        name: "HF_TOKEN",
        valueFrom: { secretKeyRef: { name: vllm.hfTokenSecret.name, key: vllm.hfTokenSecret.key } },
      }]
      : []),
    ...Object.entries(vllm.env ?? {}).map(([name, value]) => ({ name, value })),
  ];
  const probe = (failureThreshold: number) => ({
    httpGet: { path: "/health", port: "http" },
    periodSeconds: PROBE_PERIOD_SECONDS,
    timeoutSeconds: 5,
    failureThreshold,
  });
  return {
    metadata: { labels: { ...labelsFor("vllm", "engine"), ...options.labels } },
    spec: {
      // A Service named like an engine variable (vllm → VLLM_PORT) would confuse vLLM.
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 30,
      ...(vllm.nodeSelector ? { nodeSelector: { ...vllm.nodeSelector } } : {}),
      ...(vllm.tolerations ? { tolerations: vllm.tolerations.map((t) => ({ ...t })) } : {}),
      containers: [
        {
          name: VLLM_CONTAINER,
          image: shape.image,
          imagePullPolicy: vllm.imagePullPolicy,
          command: ["vllm", "serve"],
          args: ["--config", ENGINE_CONFIG_PATH],
          ports: [{ name: "http", containerPort: vllm.containerPort, protocol: "TCP" }],
          envFrom: [{ configMapRef: { name: configMap } }],
          ...(env.length > 0 ? { env } : {}),
          resources: { requests: { ...shape.resources.requests }, limits: { ...shape.resources.limits } },
          readinessProbe: { ...probe(3), periodSeconds: 5 },
          startupProbe: probe(Math.max(1, Math.ceil(vllm.startupProbeSeconds / PROBE_PERIOD_SECONDS))),
          volumeMounts: [
            { name: "engine-config", mountPath: ENGINE_CONFIG_DIR, readOnly: true },
            { name: "dshm", mountPath: "/dev/shm" },
            { name: "hf-cache", mountPath: vllm.cache.mountPath },
          ],
        },
      ],
      volumes: [
        {
          name: "engine-config",
          configMap: { name: configMap, items: [{ key: ENGINE_CONFIG_KEY, path: "config.yaml" }] },
        },
        { name: "dshm", emptyDir: { medium: "Memory", sizeLimit: vllm.shmSize } },
        cacheVolume,
      ],
    },
  };
}

/** One RFC 6902 JSON Patch operation. */
export interface JsonPatchOp {
  /** add | replace | test. */
  op: "add" | "replace" | "test";
  /** JSON pointer. */
  path: string;
  /** Value. */
  value: unknown;
}

/** What a switch must change in the Deployment for a model, from {@link podShapePatch}. */
export interface PodShapePatch {
  /** The JSON Patch: guarded by `test` ops (replicas 0, the container's name), then the changes. */
  ops: JsonPatchOp[];
  /** What changes, for the log: "image a → b", "limits.nvidia.com/gpu 1 → 2". */
  changes: string[];
}

/**
 * The JSON Patch that gives `deployment`'s pod template `model`'s shape, or
 * null when it already has it (or has no container). The patch applies only
 * while `spec.replicas` is 0 (a `test` op), so a running pod is never
 * replaced by it; it also records the base shape annotation when the
 * Deployment has none (a Deployment vllm-chill did not render).
 *
 * @example
 * ```ts
 * import { podShapePatch, renderVllmPodTemplate } from "./pod_template.ts";
 * import { parseConfig } from "../config/define.ts";
 * const config = parseConfig({});
 * const deployment = { metadata: { name: "vllm" }, spec: { replicas: 0, selector: {}, template: renderVllmPodTemplate(config, null) } };
 * podShapePatch(deployment, config, { modelName: "org/big", tensorParallelSize: 2 })?.changes;
 * // ["limits.nvidia.com/gpu 1 → 2"]
 * podShapePatch(deployment, config, { modelName: "org/small" }); // null
 * ```
 */
export function podShapePatch(
  deployment: IDeployment,
  config: Readonly<ChillConfig>,
  model: ShapeSettings,
): PodShapePatch | null {
  const containers = deployment.spec?.template?.spec?.containers ?? [];
  const named = containers.findIndex((c) => c.name === VLLM_CONTAINER);
  const index = named >= 0 ? named : 0;
  const container = containers[index];
  if (!container) return null;
  const current: PodShape = {
    image: container.image ?? "",
    resources: {
      requests: stringMap(container.resources?.requests),
      limits: stringMap(container.resources?.limits),
    },
  };
  const annotations = deployment.metadata?.annotations ?? {};
  const recorded = parseShape(annotations[BASE_POD_SHAPE_ANNOTATION]);
  const base = recorded ?? current;
  const desired = modelPodShape(base, model, config);
  const changes = describeChanges(current, desired);
  if (changes.length === 0) return null;
  const at = `/spec/template/spec/containers/${index}`;
  const ops: JsonPatchOp[] = [
    { op: "test", path: "/spec/replicas", value: 0 },
    { op: "test", path: `${at}/name`, value: container.name },
    { op: "add", path: `${at}/image`, value: desired.image },
    { op: "add", path: `${at}/resources`, value: toResources(desired) },
  ];
  if (!recorded) {
    if (deployment.metadata?.annotations === undefined) {
      ops.push({ op: "add", path: "/metadata/annotations", value: {} });
    }
    ops.push({
      op: "add",
      path: `/metadata/annotations/${pointerEscape(BASE_POD_SHAPE_ANNOTATION)}`,
      value: baseShapeAnnotation(base),
    });
  }
  return { ops, changes };
}

/**
 * The annotation value recording `shape` as the base (for rendering).
 *
 * @example
 * ```ts
 * import { baseShapeAnnotation, configPodShape } from "./pod_template.ts";
 * import { parseConfig } from "../config/define.ts";
 * JSON.parse(baseShapeAnnotation(configPodShape(parseConfig({})))).image; // "vllm/vllm-openai:v0.11.0"
 * ```
 */
export function baseShapeAnnotation(shape: PodShape): string {
  return JSON.stringify(shape);
}

const VLLM_CONTAINER = "vllm";
const PROBE_PERIOD_SECONDS = 10;

function withGpus(shape: PodShape, config: Readonly<ChillConfig>, gpus: number): PodShape {
  const resource = config.vllm.gpuResource;
  const requests = { ...shape.resources.requests };
  const limits = { ...shape.resources.limits };
  if (gpus > 0) {
    limits[resource] = String(gpus);
    // Kubernetes wants requests = limits for an extended resource: keep a GPU request only where one was.
    if (resource in requests) requests[resource] = String(gpus);
  } else {
    delete limits[resource];
    delete requests[resource];
  }
  return { image: shape.image, resources: { requests, limits } };
}

function gpusOf(shape: PodShape, config: Readonly<ChillConfig>): number {
  const value = shape.resources.limits[config.vllm.gpuResource] ?? shape.resources.requests[config.vllm.gpuResource];
  const count = value === undefined ? 0 : Number(value);
  return Number.isInteger(count) && count >= 0 ? count : 0;
}

function clean(list: { cpu?: string; memory?: string }): Record<string, string> {
  return Object.fromEntries(Object.entries(list).filter((e): e is [string, string] => e[1] !== undefined));
}

function stringMap(list: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(list ?? {}).map(([k, v]) => [k, String(v)]));
}

function toResources(shape: PodShape): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  if (Object.keys(shape.resources.requests).length > 0) out.requests = { ...shape.resources.requests };
  if (Object.keys(shape.resources.limits).length > 0) out.limits = { ...shape.resources.limits };
  return out;
}

function describeChanges(current: PodShape, desired: PodShape): string[] {
  const changes: string[] = [];
  if (current.image !== desired.image) changes.push(`image ${current.image || "(none)"} → ${desired.image}`);
  for (const kind of ["requests", "limits"] as const) {
    const before = current.resources[kind];
    const after = desired.resources[kind];
    for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
      if (!sameQuantity(before[key], after[key])) {
        changes.push(`${kind}.${key} ${before[key] ?? "(none)"} → ${after[key] ?? "(none)"}`);
      }
    }
  }
  return changes;
}

const SUFFIX: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Equal quantities in any spelling ("0.5" and "500m", "1Gi" and "1024Mi"): the API server canonicalizes them. */
function sameQuantity(a: string | undefined, b: string | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  const x = quantityValue(a);
  const y = quantityValue(b);
  return x !== undefined && y !== undefined && Math.abs(x - y) <= 1e-9 * Math.max(Math.abs(x), Math.abs(y));
}

function quantityValue(text: string): number | undefined {
  const match = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:[eE]([+-]?\d+)|(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei))?$/.exec(
    text.trim(),
  );
  if (!match) return undefined;
  const number = Number(match[1]);
  return match[2] !== undefined ? number * 10 ** Number(match[2]) : number * SUFFIX[match[3] ?? ""];
}

function parseShape(text: string | undefined): PodShape | null {
  if (text === undefined) return null;
  try {
    const value = JSON.parse(text);
    if (
      typeof value?.image === "string" && value.resources && typeof value.resources === "object" &&
      isStringMap(value.resources.requests) && isStringMap(value.resources.limits)
    ) return { image: value.image, resources: { requests: value.resources.requests, limits: value.resources.limits } };
  } catch {
    // An unreadable annotation counts as none: the current values become the base again.
  }
  return null;
}

function isStringMap(value: unknown): value is Record<string, string> {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === "string");
}

function pointerEscape(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}
