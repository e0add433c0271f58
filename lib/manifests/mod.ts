/**
 * Pure functions from a config to Kubernetes objects: the VLLMModel CRD,
 * RBAC from the API call table, the vLLM ConfigMap/Service/Deployment, the
 * proxy's own objects, and YAML rendering.
 *
 * @example
 * ```ts
 * import { renderManifests, toYaml } from "./mod.ts";
 * import { parseConfig } from "../config/define.ts";
 * toYaml(renderManifests(parseConfig({}), { only: ["crd"] })).includes("kind: CustomResourceDefinition"); // true
 * ```
 *
 * @module
 */
export {
  ACTIVE_MODEL_ANNOTATION,
  CRD_GROUP,
  CRD_KIND,
  CRD_PLURAL,
  CRD_VERSION,
  labelsFor,
  MODEL_LABEL,
  PROXY_NAME,
  PROXY_SECRET,
  PROXY_SELECTOR,
  SLEEP_LEVEL_ANNOTATION,
  VLLM_SELECTOR,
} from "./labels.ts";
export {
  modelSelector,
  modelUpstream,
  type PerModelNames,
  perModelNames,
  renderModelConfigMap,
  renderModelDeployment,
  renderModelResources,
  renderModelService,
  renderPerModelResources,
} from "./per_model.ts";
export {
  type ObjectIssue,
  type OpenApiSchema,
  parseVllmModelObject,
  renderCrd,
  toStructural,
  validateVllmModelObject,
  vllmModelSpecSchema,
} from "./crd.ts";
export { type PolicyRule, renderRbac, roleRules } from "./rbac.ts";
export {
  BASE_POD_SHAPE_ANNOTATION,
  baseShapeAnnotation,
  configPodShape,
  type JsonPatchOp,
  modelPodShape,
  type PodShape,
  type PodShapePatch,
  podShapePatch,
  type PodTemplateOptions,
  renderVllmPodTemplate,
  type ShapeSettings,
} from "./pod_template.ts";
export {
  ACTIVE_MODEL_KEY,
  buildModelConfigMapData,
  DEV_MODE_ENV,
  ENGINE_CONFIG_DIR,
  ENGINE_CONFIG_KEY,
  ENGINE_CONFIG_PATH,
  initialModel,
  renderVllmConfigMap,
  renderVllmDeployment,
  renderVllmResources,
  renderVllmService,
} from "./vllm.ts";
export {
  PROXY_CONFIG_MAP,
  PROXY_IMAGE,
  PROXY_SERVICE_PORT,
  proxyConfigJson,
  renderProxy,
  UNRENDERED_KEYS,
} from "./proxy.ts";
export { type KubeObject, MANIFEST_PARTS, type ManifestPart, renderManifests, toYaml } from "./render.ts";
