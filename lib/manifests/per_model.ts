/**
 * The per-model layout (`layout: "per-model"`): each model `M` gets its own
 * ConfigMap `<target.configMap>-M`, Service `<target.service>-M` and
 * Deployment `<target.deployment>-M` (0 replicas, its own pod shape), each
 * labelled `vllm.efortin.github.io/model: M`; the Service selects only its
 * model's pods. The shared objects (`vllm`, `vllm-config`, `vllm-svc`) are
 * not rendered then.
 *
 * @module
 */
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IService } from "kubernetes-models/v1/Service";
import type { ChillConfig, NamedModel, Target } from "../config/schema.ts";
import { namedModel } from "../models/registry.ts";
import { ACTIVE_MODEL_ANNOTATION, labelsFor, MODEL_LABEL, VLLM_SELECTOR } from "./labels.ts";
import {
  BASE_POD_SHAPE_ANNOTATION,
  baseShapeAnnotation,
  configPodShape,
  renderVllmPodTemplate,
} from "./pod_template.ts";
import { buildModelConfigMapData } from "./vllm.ts";

/** The names of one model's objects. */
export interface PerModelNames {
  /** `<target.deployment>-<model>`. */
  deployment: string;
  /** `<target.configMap>-<model>`. */
  configMap: string;
  /** `<target.service>-<model>`. */
  service: string;
}

/**
 * The names of model `key`'s Deployment, ConfigMap and Service.
 *
 * @example
 * ```ts
 * import { perModelNames } from "./per_model.ts";
 * perModelNames({ deployment: "vllm", configMap: "vllm-config", service: "vllm-svc" }, "qwen3-8b");
 * // { deployment: "vllm-qwen3-8b", configMap: "vllm-config-qwen3-8b", service: "vllm-svc-qwen3-8b" }
 * ```
 */
export function perModelNames(
  target: Pick<Target, "deployment" | "configMap" | "service">,
  key: string,
): PerModelNames {
  return {
    deployment: `${target.deployment}-${key}`,
    configMap: `${target.configMap}-${key}`,
    service: `${target.service}-${key}`,
  };
}

/**
 * The labels selecting model `key`'s pods (its Deployment's selector, its Service's selector).
 *
 * @example
 * ```ts
 * import { modelSelector } from "./per_model.ts";
 * modelSelector("a"); // { app: "vllm", "vllm.efortin.github.io/model": "a" }
 * ```
 */
export function modelSelector(key: string): Record<string, string> {
  return { ...VLLM_SELECTOR, [MODEL_LABEL]: key };
}

/**
 * Where the proxy forwards model `key`'s requests: `target.url` with `{service}` replaced by the model's
 * Service, else `http://<service>-<key>.<namespace>.svc:<target.port>` (no trailing slash).
 *
 * @example
 * ```ts
 * import { modelUpstream } from "./per_model.ts";
 * import { parseConfig } from "../config/define.ts";
 * modelUpstream(parseConfig({ layout: "per-model" }), "a"); // "http://vllm-svc-a.ai-apps.svc:80"
 * ```
 */
export function modelUpstream(config: Readonly<Pick<ChillConfig, "target" | "namespace">>, key: string): string {
  const { service } = perModelNames(config.target, key);
  const url = config.target.url
    ? config.target.url.replaceAll("{service}", service)
    : `http://${service}.${config.namespace}.svc:${config.target.port}`;
  return url.replace(/\/+$/, "");
}

/**
 * Model `key`'s ConfigMap: its engine config (with sleep mode when it may sleep) and env.
 *
 * @example
 * ```ts
 * import { renderModelConfigMap } from "./per_model.ts";
 * import { parseConfig } from "../config/define.ts";
 * const model = { name: "a", servedModelName: "a", source: "config" as const, modelName: "org/a" };
 * renderModelConfigMap(parseConfig({ layout: "per-model" }), model).metadata?.name; // "vllm-config-a"
 * ```
 */
export function renderModelConfigMap(
  config: Readonly<ChillConfig>,
  model: NamedModel,
  options: { sleepMode?: boolean } = {},
): IConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: perModelNames(config.target, model.name).configMap,
      namespace: config.namespace,
      labels: { ...labelsFor("vllm", "engine-config"), [MODEL_LABEL]: model.name },
      annotations: { [ACTIVE_MODEL_ANNOTATION]: model.name },
    },
    data: buildModelConfigMapData(config, model, options),
  };
}

/**
 * Model `key`'s Service: `target.port` → the container's port, selecting only its model's pods.
 *
 * @example
 * ```ts
 * import { renderModelService } from "./per_model.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderModelService(parseConfig({ layout: "per-model" }), "a").spec?.selector;
 * // { app: "vllm", "vllm.efortin.github.io/model": "a" }
 * ```
 */
export function renderModelService(config: Readonly<ChillConfig>, key: string): IService {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: perModelNames(config.target, key).service,
      namespace: config.namespace,
      labels: { ...labelsFor("vllm", "engine"), [MODEL_LABEL]: key },
    },
    spec: {
      type: "ClusterIP",
      selector: modelSelector(key),
      ports: [{ name: "http", port: config.target.port, targetPort: config.vllm.containerPort, protocol: "TCP" }],
    },
  };
}

/**
 * Model `key`'s Deployment: 0 replicas (the proxy scales it), Recreate, the model's pod shape (its image, GPUs
 * and resources), reading its own ConfigMap, its pods labelled with the model.
 *
 * @example
 * ```ts
 * import { renderModelDeployment } from "./per_model.ts";
 * import { parseConfig } from "../config/define.ts";
 * const model = { name: "a", servedModelName: "a", source: "config" as const, modelName: "org/a", gpus: 2 };
 * const deployment = renderModelDeployment(parseConfig({ layout: "per-model", maxGpus: 2 }), model);
 * deployment.spec?.template.spec?.containers[0].resources?.limits?.["nvidia.com/gpu"]; // "2"
 * ```
 */
export function renderModelDeployment(config: Readonly<ChillConfig>, model: NamedModel): IDeployment {
  const names = perModelNames(config.target, model.name);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: names.deployment,
      namespace: config.namespace,
      labels: { ...labelsFor("vllm", "engine"), [MODEL_LABEL]: model.name },
      annotations: { [BASE_POD_SHAPE_ANNOTATION]: baseShapeAnnotation(configPodShape(config)) },
    },
    spec: {
      replicas: 0,
      revisionHistoryLimit: 2,
      strategy: { type: "Recreate" },
      selector: { matchLabels: modelSelector(model.name) },
      template: renderVllmPodTemplate(config, model, {
        configMap: names.configMap,
        labels: { [MODEL_LABEL]: model.name },
      }),
    },
  };
}

/**
 * Model `key`'s ConfigMap, Service and Deployment, in apply order.
 *
 * @example
 * ```ts
 * import { renderModelResources } from "./per_model.ts";
 * import { parseConfig } from "../config/define.ts";
 * const model = { name: "a", servedModelName: "a", source: "config" as const, modelName: "org/a" };
 * renderModelResources(parseConfig({ layout: "per-model" }), model).map((o) => o.metadata?.name);
 * // ["vllm-config-a", "vllm-svc-a", "vllm-a"]
 * ```
 */
export function renderModelResources(
  config: Readonly<ChillConfig>,
  model: NamedModel,
  options: { sleepMode?: boolean } = {},
): [IConfigMap, IService, IDeployment] {
  return [
    renderModelConfigMap(config, model, options),
    renderModelService(config, model.name),
    renderModelDeployment(config, model),
  ];
}

/**
 * Every config model's objects (per-model layout), models in config order.
 *
 * @example
 * ```ts
 * import { renderPerModelResources } from "./per_model.ts";
 * import { parseConfig } from "../config/define.ts";
 * const config = parseConfig({ layout: "per-model", models: { a: { modelName: "org/a" }, b: { modelName: "org/b" } } });
 * renderPerModelResources(config).map((o) => o.kind);
 * // ["ConfigMap", "Service", "Deployment", "ConfigMap", "Service", "Deployment"]
 * ```
 */
export function renderPerModelResources(config: Readonly<ChillConfig>): (IConfigMap | IService | IDeployment)[] {
  return Object.entries(config.models).flatMap(([name, spec]) =>
    renderModelResources(config, namedModel(name, spec, "config"))
  );
}
