/**
 * The vLLM objects: ConfigMap (the active model's configuration), Service
 * and Deployment (replicas 0, started by the proxy).
 *
 * How the container consumes the active model WITHOUT a shell: it runs
 * `vllm serve --config /etc/vllm-chill/config.yaml`; `config.yaml` is the
 * ConfigMap key `ENGINE_CONFIG_YAML` mounted as a file (a vLLM `--config`
 * file: `model`, `served-model-name`, `host`, `port` and one key per flag).
 * The other keys (`MODEL_NAME`, `SERVED_MODEL_NAME`, `VLLM_CHILL_MODEL`,
 * the model's `env`) reach the container through `envFrom`; they are for
 * people and for reading the active model back after a restart. A switch
 * rewrites the ConfigMap while replicas are 0, so the next pod reads it fresh,
 * and gives the pod template the model's shape (lib/manifests/pod_template.ts).
 *
 * @module
 */
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IService } from "kubernetes-models/v1/Service";
import { type ChillConfig, maySleep, type NamedModel } from "../config/schema.ts";
import { namedModel } from "../models/registry.ts";
import { engineConfigYaml, findVllmFlag } from "../models/vllm_args.ts";
import { ACTIVE_MODEL_ANNOTATION, labelsFor, VLLM_SELECTOR } from "./labels.ts";
import {
  BASE_POD_SHAPE_ANNOTATION,
  baseShapeAnnotation,
  configPodShape,
  ENGINE_CONFIG_DIR,
  ENGINE_CONFIG_KEY,
  ENGINE_CONFIG_PATH,
  renderVllmPodTemplate,
} from "./pod_template.ts";

export { ENGINE_CONFIG_DIR, ENGINE_CONFIG_KEY, ENGINE_CONFIG_PATH };
/** ConfigMap key holding the active model's key (empty when none). */
export const ACTIVE_MODEL_KEY = "VLLM_CHILL_MODEL";

/**
 * The model the vLLM objects are first rendered with: `defaultModel` when it
 * is a config model, else the first config model, else null.
 *
 * @example
 * ```ts
 * import { initialModel } from "./vllm.ts";
 * import { parseConfig } from "../config/define.ts";
 * initialModel(parseConfig({ models: { a: { modelName: "org/a" } } }))?.servedModelName; // "a"
 * ```
 */
export function initialModel(config: Readonly<ChillConfig>): NamedModel | null {
  const keys = Object.keys(config.models);
  const key = config.defaultModel && config.defaultModel in config.models ? config.defaultModel : keys[0];
  if (key === undefined) return null;
  return namedModel(key, config.models[key], "config");
}

/**
 * The vLLM ConfigMap's `data` for `model` (null: no model configured yet).
 * The Kubernetes layer writes it at each switch. A model that may sleep
 * (`sleepMode`, default: it has a `sleepAfter`) gets `enable-sleep-mode:
 * true` in its engine config and `VLLM_SERVER_DEV_MODE=1` in its env.
 *
 * @example
 * ```ts
 * import { buildModelConfigMapData } from "./vllm.ts";
 * import { parseConfig } from "../config/define.ts";
 * const data = buildModelConfigMapData(parseConfig({}), {
 *   name: "qwen3-8b", servedModelName: "qwen3-8b", source: "config", modelName: "Qwen/Qwen3-8B", maxModelLen: 32768,
 * });
 * data.ENGINE_CONFIG_YAML;
 * // 'model: "Qwen/Qwen3-8B"\nserved-model-name: "qwen3-8b"\nhost: "0.0.0.0"\nport: 8000\nmax-model-len: 32768\n'
 * data.VLLM_CHILL_MODEL; // "qwen3-8b"
 * ```
 */
export function buildModelConfigMapData(
  config: Readonly<ChillConfig>,
  model: NamedModel | null,
  options: { sleepMode?: boolean } = {},
): Record<string, string> {
  if (model === null) {
    return {
      [ENGINE_CONFIG_KEY]:
        `# no model configured yet: vllm-chill writes one here\nhost: 0.0.0.0\nport: ${config.vllm.containerPort}\n`,
      [ACTIVE_MODEL_KEY]: "",
    };
  }
  const sleepMode = options.sleepMode ?? maySleep(model, config.sleepAfter);
  // vllm/engine/arg_utils.py:589 (v0.11.0): `--enable-sleep-mode`, in the config file `enable-sleep-mode: true`.
  const extraArgs = sleepMode && !findVllmFlag(model.extraArgs ?? [], "enable-sleep-mode")
    ? [...(model.extraArgs ?? []), "--enable-sleep-mode"]
    : model.extraArgs;
  // Every string quoted: vLLM reads this file as YAML 1.1, where a plain `on`/`no` would be a boolean.
  const yaml = engineConfigYaml({ ...model, extraArgs }, { host: "0.0.0.0", port: config.vllm.containerPort });
  return {
    ...(model.env ?? {}),
    // The sleep routes exist only with this variable (vllm/entrypoints/openai/api_server.py:965); it reaches the
    // container through envFrom.
    ...(sleepMode ? { [DEV_MODE_ENV]: "1" } : {}),
    [ENGINE_CONFIG_KEY]: yaml,
    MODEL_NAME: model.modelName,
    SERVED_MODEL_NAME: model.servedModelName,
    [ACTIVE_MODEL_KEY]: model.name,
  };
}

/** The environment variable vLLM serves its sleep routes under (set to "1" for a model that may sleep). */
export const DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE";

/**
 * The vLLM ConfigMap for `model`, annotated with the active model's key.
 *
 * @example
 * ```ts
 * import { renderVllmConfigMap } from "./vllm.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderVllmConfigMap(parseConfig({}), null).metadata?.name; // "vllm-config"
 * ```
 */
export function renderVllmConfigMap(config: Readonly<ChillConfig>, model: NamedModel | null): IConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: config.target.configMap,
      namespace: config.namespace,
      labels: labelsFor("vllm", "engine-config"),
      annotations: { [ACTIVE_MODEL_ANNOTATION]: model?.name ?? "" },
    },
    data: buildModelConfigMapData(config, model),
  };
}

/**
 * The vLLM Service: `target.port` → the container's port, selecting `app: vllm`.
 *
 * @example
 * ```ts
 * import { renderVllmService } from "./vllm.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderVllmService(parseConfig({})).spec?.ports?.[0].port; // 80
 * ```
 */
export function renderVllmService(config: Readonly<ChillConfig>): IService {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: config.target.service, namespace: config.namespace, labels: labelsFor("vllm", "engine") },
    spec: {
      type: "ClusterIP",
      selector: { ...VLLM_SELECTOR },
      ports: [{ name: "http", port: config.target.port, targetPort: config.vllm.containerPort, protocol: "TCP" }],
    },
  };
}

/**
 * The vLLM Deployment: replicas 0 (the proxy scales it), Recreate (one GPU
 * holder at a time), the pod template of `model` (its image, GPUs and
 * resources; see `renderVllmPodTemplate`), and the base pod shape recorded
 * in an annotation for the switches to come.
 *
 * @example
 * ```ts
 * import { renderVllmDeployment } from "./vllm.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderVllmDeployment(parseConfig({}), null).spec?.replicas; // 0
 * ```
 */
export function renderVllmDeployment(config: Readonly<ChillConfig>, model: NamedModel | null): IDeployment {
  const labels = labelsFor("vllm", "engine");
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: config.target.deployment,
      namespace: config.namespace,
      labels,
      annotations: { [BASE_POD_SHAPE_ANNOTATION]: baseShapeAnnotation(configPodShape(config)) },
    },
    spec: {
      replicas: 0,
      revisionHistoryLimit: 2,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { ...VLLM_SELECTOR } },
      template: renderVllmPodTemplate(config, model),
    },
  };
}

/**
 * The vLLM ConfigMap, Service and Deployment for `model` (default: {@link initialModel}).
 *
 * @example
 * ```ts
 * import { renderVllmResources } from "./vllm.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderVllmResources(parseConfig({})).map((o) => o.kind); // ["ConfigMap", "Service", "Deployment"]
 * ```
 */
export function renderVllmResources(
  config: Readonly<ChillConfig>,
  model: NamedModel | null = initialModel(config),
): [IConfigMap, IService, IDeployment] {
  return [renderVllmConfigMap(config, model), renderVllmService(config), renderVllmDeployment(config, model)];
}
