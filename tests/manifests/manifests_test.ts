import assert from "node:assert/strict";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../lib/config/define.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { API_CALLS } from "../../lib/kube/api_calls.ts";
import {
  BASE_POD_SHAPE_ANNOTATION,
  buildModelConfigMapData,
  type KubeObject,
  parseVllmModelObject,
  renderCrd,
  renderManifests,
  renderProxy,
  renderVllmPodTemplate,
  renderVllmResources,
  roleRules,
  toYaml,
  validateVllmModelObject,
} from "../../lib/manifests/mod.ts";

const EXAMPLE = new URL("../../examples/vllm-chill.config.ts", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
const VALIDATORS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "apps/v1/Deployment": Deployment,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
  "apiextensions.k8s.io/v1/CustomResourceDefinition": CustomResourceDefinition,
};

function validateAll(objects: KubeObject[]): void {
  for (const object of objects) {
    const Model = VALIDATORS[`${object.apiVersion}/${object.kind}`];
    assert.ok(Model, `no validator for ${object.apiVersion} ${object.kind}`);
    // Validate the YAML round trip, as kubectl would read it.
    const roundTrip = parseYaml(toYaml([object]).replace(/^---\n/, ""));
    assert.doesNotThrow(() => new Model(roundTrip).validate(), `${object.kind} ${object.metadata?.name}`);
  }
}

Deno.test("every rendered object passes the official Kubernetes schemas (defaults and example)", async () => {
  const defaults = renderManifests(parseConfig({}));
  assert.deepEqual(defaults.map((o) => o.kind), [
    "CustomResourceDefinition",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Service",
    "Deployment",
    "ConfigMap",
    "Deployment",
    "Service",
  ]);
  validateAll(defaults);
  validateAll(renderManifests(await loadConfig({ file: EXAMPLE })));
  validateAll(
    renderManifests(parseConfig({
      vllm: { gpus: 0, cache: { hostPath: "/data/hf" }, env: { A: "1" } },
      models: { a: { modelName: "org/a", gpus: 2, image: "vllm/vllm-openai:v0.10.2" } },
    })),
  );
});

Deno.test("the validator is not a rubber stamp", () => {
  const [, , deployment] = renderVllmResources(parseConfig({}));
  const broken = structuredClone(deployment) as unknown as { spec: { replicas: unknown } };
  broken.spec.replicas = "zero";
  assert.throws(() => new Deployment(broken as never).validate());
});

Deno.test("the CRD's spec schema is structural and generated from ModelSpecSchema", () => {
  const crd = renderCrd() as KubeObject & { spec: { versions: { schema: { openAPIV3Schema: unknown } }[] } };
  const root = crd.spec.versions[0].schema.openAPIV3Schema as Record<string, unknown>;
  const visit = (node: Record<string, unknown>, path: string) => {
    assert.ok(
      typeof node.type === "string" || node["x-kubernetes-preserve-unknown-fields"] === true,
      `${path} has no type`,
    );
    assert.ok(
      !(node.properties && node.additionalProperties !== undefined),
      `${path}: properties + additionalProperties`,
    );
    assert.notEqual(node.additionalProperties, false, `${path}: additionalProperties: false`);
    for (const banned of ["$schema", "propertyNames", "$ref", "definitions"]) {
      assert.ok(!(banned in node), `${path}.${banned}`);
    }
    if (typeof node.maximum === "number") assert.ok(node.maximum < Number.MAX_SAFE_INTEGER, `${path}: maximum noise`);
    for (const [name, child] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) {
      visit(child, `${path}.${name}`);
    }
    if (node.items) visit(node.items as Record<string, unknown>, `${path}[]`);
    if (node.additionalProperties && typeof node.additionalProperties === "object") {
      visit(node.additionalProperties as Record<string, unknown>, `${path}{}`);
    }
  };
  visit(root, "");
  const spec = (root.properties as Record<string, Record<string, unknown>>).spec;
  assert.deepEqual(spec.required, ["modelName"]);
  const props = spec.properties as Record<string, Record<string, unknown>>;
  assert.equal(props.gpuMemoryUtilization.maximum, 1);
  assert.equal(props.gpuMemoryUtilization.minimum, 0.1);
  assert.deepEqual(props.dtype.enum, ["auto", "half", "float16", "bfloat16", "float", "float32"]);
  assert.ok(typeof props.idleTimeout.pattern === "string");
  assert.ok(typeof props.modelName.description === "string");
  assert.deepEqual(root.required, ["spec"]);
  const version = (crd.spec as unknown as { versions: Record<string, unknown>[] }).versions[0];
  assert.deepEqual(version.subresources, { status: {} });
  assert.deepEqual((version.additionalPrinterColumns as { name: string }[]).map((c) => c.name), [
    "Model",
    "Served",
    "Age",
  ]);
});

Deno.test("the Role is generated from API_CALLS, subresources included", () => {
  const role = renderManifests(parseConfig({}), { only: ["rbac"] }).find((o) => o.kind === "Role")!;
  const rules = role.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  assert.deepEqual(rules, roleRules(API_CALLS));
  for (const call of API_CALLS) {
    const resource = call.subresource ? `${call.resource}/${call.subresource}` : call.resource;
    const rule = rules.find((r) => r.apiGroups[0] === call.group && r.resources[0] === resource);
    assert.ok(rule, resource);
    for (const verb of call.verbs) assert.ok(rule.verbs.includes(verb), `${resource} ${verb}`);
  }
  assert.ok(rules.every((r) => !r.verbs.includes("*") && !r.resources.includes("*")), "least privilege");
  assert.deepEqual(
    roleRules([
      { group: "", resource: "pods", verbs: ["get"], why: "" },
      { group: "", resource: "pods", verbs: ["get", "list"], why: "" },
    ]),
    [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }],
  );
});

Deno.test("vLLM objects: ConfigMap consumed without a shell, Deployment and Service as designed", async () => {
  const config = await loadConfig({ file: EXAMPLE });
  const [cm, svc, deploy] = renderVllmResources(config);
  assert.equal(cm.metadata?.annotations?.["vllm.efortin.github.io/active-model"], "qwen3-8b");
  assert.deepEqual(parseYaml(cm.data!.ENGINE_CONFIG_YAML), {
    model: "Qwen/Qwen3-8B",
    "served-model-name": "qwen3-8b",
    host: "0.0.0.0",
    port: 8000,
    "max-model-len": 32768,
    "gpu-memory-utilization": 0.9,
    "enable-prefix-caching": true,
    "reasoning-parser": "qwen3",
    seed: "0",
  });
  assert.equal(cm.data!.MODEL_NAME, "Qwen/Qwen3-8B");
  assert.equal(cm.data!.SERVED_MODEL_NAME, "qwen3-8b");
  assert.equal(cm.data!.VLLM_CHILL_MODEL, "qwen3-8b");
  assert.deepEqual(svc.spec?.ports, [{ name: "http", port: 80, targetPort: 8000, protocol: "TCP" }]);
  assert.deepEqual(svc.spec?.selector, { app: "vllm" });
  const spec = deploy.spec!;
  assert.equal(spec.replicas, 0);
  assert.equal(spec.strategy?.type, "Recreate");
  const pod = spec.template.spec!;
  const container = pod.containers[0];
  assert.deepEqual(container.command, ["vllm", "serve"]);
  assert.deepEqual(container.args, ["--config", "/etc/vllm-chill/config.yaml"]);
  assert.deepEqual(container.envFrom, [{ configMapRef: { name: "vllm-config" } }]);
  assert.equal(container.resources?.limits?.["nvidia.com/gpu"], "1");
  assert.equal(container.readinessProbe?.httpGet?.path, "/health");
  const startup = container.startupProbe!;
  assert.equal(startup.httpGet?.path, "/health");
  assert.ok(startup.failureThreshold! * startup.periodSeconds! >= 1800);
  const volumes = Object.fromEntries(pod.volumes!.map((v) => [v.name, v]));
  assert.deepEqual(volumes["engine-config"].configMap?.items, [{ key: "ENGINE_CONFIG_YAML", path: "config.yaml" }]);
  assert.deepEqual(volumes.dshm.emptyDir, { medium: "Memory", sizeLimit: "16Gi" });
  assert.equal(volumes["hf-cache"].persistentVolumeClaim?.claimName, "hf-cache");
  assert.deepEqual(container.env?.[0], {
    name: "HF_TOKEN",
    valueFrom: { secretKeyRef: { name: "hf-token", key: "token" } },
  });
  assert.equal(container.volumeMounts?.find((m) => m.name === "engine-config")?.readOnly, true);
  assert.deepEqual(pod.nodeSelector, { "nvidia.com/gpu.present": "true" });
  for (const object of [cm, svc, deploy]) {
    assert.equal(object.metadata?.labels?.app, "vllm");
    assert.equal(object.metadata?.labels?.["managed-by"], "vllm-chill");
    assert.equal(object.metadata?.labels?.["app.kubernetes.io/part-of"], "vllm-chill");
  }
});

Deno.test("buildModelConfigMapData: model env as plain keys, null model, gpus 0 → no GPU limit", () => {
  const config = parseConfig({ vllm: { gpus: 0 } });
  const data = buildModelConfigMapData(config, {
    name: "a",
    servedModelName: "served-a",
    source: "crd",
    modelName: "org/a",
    env: { HF_HUB_OFFLINE: "1" },
    trustRemoteCode: false,
  });
  assert.equal(data.HF_HUB_OFFLINE, "1");
  // Strings are quoted (vLLM reads the file as YAML 1.1) and a false boolean is written in vLLM's `no-` form.
  assert.equal(
    data.ENGINE_CONFIG_YAML,
    'model: "org/a"\nserved-model-name: "served-a"\nhost: "0.0.0.0"\nport: 8000\nno-trust-remote-code: true\n',
  );
  assert.equal(buildModelConfigMapData(config, null).VLLM_CHILL_MODEL, "");
  const limits = renderVllmResources(config, null)[2].spec!.template.spec!.containers[0].resources!.limits!;
  assert.equal(Object.keys(limits).some((k) => k.includes("gpu")), false);
});

Deno.test("the pod template is the model's shape: tensorParallelSize → GPUs, own image and resources, base recorded", () => {
  const config = parseConfig({ vllm: { requests: { cpu: "2", memory: "16Gi" }, limits: { memory: "32Gi" } } });
  const model = {
    name: "big",
    servedModelName: "big",
    source: "config" as const,
    modelName: "org/big",
    tensorParallelSize: 2,
    image: "vllm/vllm-openai:v0.11.1",
    limits: { memory: "96Gi" },
  };
  const [, , deployment] = renderVllmResources(config, model);
  const container = deployment.spec!.template.spec!.containers[0];
  assert.equal(container.image, "vllm/vllm-openai:v0.11.1");
  assert.deepEqual(container.resources, {
    requests: { cpu: "2", memory: "16Gi" },
    limits: { memory: "96Gi", "nvidia.com/gpu": "2" },
  });
  assert.deepEqual(deployment.spec!.template, renderVllmPodTemplate(config, model), "one function renders the pod");
  // The base (config only) is recorded, so a later switch to a plain model restores it.
  assert.deepEqual(JSON.parse(deployment.metadata!.annotations![BASE_POD_SHAPE_ANNOTATION]), {
    image: "vllm/vllm-openai:v0.11.0",
    resources: { requests: { cpu: "2", memory: "16Gi" }, limits: { memory: "32Gi", "nvidia.com/gpu": "1" } },
  });
  assert.equal(
    renderVllmPodTemplate(config, { gpus: 0, tensorParallelSize: 4 }).spec!.containers[0].resources!.limits![
      "nvidia.com/gpu"
    ],
    undefined,
    "gpus wins over tensorParallelSize",
  );
});

Deno.test("proxy objects: no secrets rendered, hardened pod, probes", () => {
  const config = parseConfig({ adminToken: "super-secret-token", apiKeys: ["team-key-123"], kubeconfig: "/k" });
  const yaml = toYaml(renderProxy(config));
  assert.equal(yaml.includes("super-secret-token"), false);
  assert.equal(yaml.includes("team-key-123"), false);
  const [cm, deploy, svc] = renderProxy(config);
  assert.deepEqual(JSON.parse(cm.data!["config.json"]), {});
  const pod = deploy.spec!.template.spec!;
  const c = pod.containers[0];
  assert.match(c.image!, /^ghcr\.io\/efortin\/vllm-chill:\d+\.\d+\.\d+/);
  assert.deepEqual(c.args, ["serve", "--config", "/etc/vllm-chill/config.json"]);
  assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext?.capabilities?.drop, ["ALL"]);
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  assert.equal(pod.serviceAccountName, "vllm-chill");
  assert.equal(c.readinessProbe?.httpGet?.path, "/readyz");
  assert.equal(c.livenessProbe?.httpGet?.path, "/healthz");
  assert.ok(c.resources?.requests && c.resources.limits);
  const token = c.env!.find((e) => e.name === "VLLM_CHILL_ADMIN_TOKEN")!;
  assert.deepEqual(token.valueFrom?.secretKeyRef, { name: "vllm-chill-secrets", key: "admin-token", optional: true });
  assert.equal(svc.spec?.ports?.[0].port, 8080);
});

Deno.test("--only selects parts", () => {
  const kinds = (only: ("crd" | "rbac" | "vllm" | "proxy")[]) =>
    renderManifests(parseConfig({}), { only }).map((o) => o.kind);
  assert.deepEqual(kinds(["crd"]), ["CustomResourceDefinition"]);
  assert.deepEqual(kinds(["vllm"]), ["ConfigMap", "Service", "Deployment"]);
  assert.deepEqual(kinds(["proxy", "crd"]), ["CustomResourceDefinition", "ConfigMap", "Deployment", "Service"]);
});

Deno.test("validateVllmModelObject reports paths as the API server would", () => {
  const base = { apiVersion: "vllm.efortin.github.io/v1alpha1", kind: "VLLMModel", metadata: { name: "qwen3-8b" } };
  assert.deepEqual(validateVllmModelObject({ ...base, spec: { modelName: "Qwen/Qwen3-8B" } }), []);
  const issues = validateVllmModelObject({
    ...base,
    spec: { modelName: "Qwen/Qwen3-8B", gpuMemoryUtilization: 1.5, maxModelLen: "long", typo: 1 },
  });
  assert.deepEqual(issues.map((i) => i.path).sort(), ["spec", "spec.gpuMemoryUtilization", "spec.maxModelLen"]);
  assert.match(issues.find((i) => i.path === "spec")!.message, /unknown field "typo"/);
  const envelope = validateVllmModelObject({ apiVersion: "v1", kind: "Pod", metadata: { name: "Bad_Name" }, extra: 1 });
  assert.deepEqual(envelope.map((i) => i.path).sort(), ["apiVersion", "extra", "kind", "metadata.name", "spec"]);
  assert.equal(parseVllmModelObject({ ...base, spec: { modelName: "m", idleTimeout: "1m" } }).spec.idleTimeout, 60_000);
  assert.throws(() => parseVllmModelObject({ ...base, spec: {} }), /spec\.modelName/);
});
