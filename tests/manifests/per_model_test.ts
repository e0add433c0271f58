// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../lib/config/define.ts";
import { renderKustomize } from "../../lib/manifests/kustomize.ts";
import {
  MODEL_LABEL,
  modelUpstream,
  perModelNames,
  renderManifests,
  renderModelConfigMap,
  toYaml,
} from "../../lib/manifests/mod.ts";

const VALIDATORS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
};

function perModelConfig(extra: Record<string, unknown> = {}) {
  return parseConfig({
    layout: "per-model",
    maxGpus: 2,
    enableModelSwitch: true,
    sleepAfter: "1m",
    models: {
      chat: { modelName: "org/chat", gpus: 2, image: "vllm/vllm-openai:v0.10.2", requests: { cpu: "4" } },
      embed: { modelName: "org/embed", gpus: 0, env: { HF_HOME: "/cache" } },
      plain: { modelName: "org/plain" },
    },
    ...extra,
  });
}

Deno.test("per-model manifests: each model's ConfigMap, Service and Deployment; no shared vLLM objects; valid", () => {
  const config = perModelConfig({ sleepAfter: undefined, models: { ...perModelConfig().models } });
  const objects = renderManifests(config, { only: ["vllm"] });
  assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata?.name}`), [
    "ConfigMap/vllm-config-chat",
    "Service/vllm-svc-chat",
    "Deployment/vllm-chat",
    "ConfigMap/vllm-config-embed",
    "Service/vllm-svc-embed",
    "Deployment/vllm-embed",
    "ConfigMap/vllm-config-plain",
    "Service/vllm-svc-plain",
    "Deployment/vllm-plain",
  ]);
  for (const object of objects) {
    const Model = VALIDATORS[`${object.apiVersion}/${object.kind}`];
    // As kubectl would read it: the YAML round trip.
    const roundTrip = parseYaml(toYaml([object]).replace(/^---\n/, ""));
    assert.doesNotThrow(() => new Model(roundTrip).validate(), `${object.kind} ${object.metadata?.name}`);
    const model = object.metadata!.name!.replace(/^vllm-(config-|svc-)?/, "");
    assert.equal(object.metadata?.labels?.[MODEL_LABEL], model, `${object.metadata?.name} carries the model label`);
  }
  const all = renderManifests(config);
  assert.ok(!all.some((o) => ["vllm", "vllm-config", "vllm-svc"].includes(o.metadata?.name ?? "")));
});

Deno.test("per-model manifests: each pod has its model's shape and ConfigMap; each Service selects only its model", () => {
  const config = perModelConfig();
  const byName = new Map(renderManifests(config, { only: ["vllm"] }).map((o) => [o.metadata?.name, o as any]));
  const chat = byName.get("vllm-chat");
  assert.equal(chat.spec.replicas, 0);
  assert.equal(chat.spec.strategy.type, "Recreate");
  assert.deepEqual(chat.spec.selector.matchLabels, { app: "vllm", [MODEL_LABEL]: "chat" });
  assert.equal(chat.spec.template.metadata.labels[MODEL_LABEL], "chat");
  const container = chat.spec.template.spec.containers[0];
  assert.equal(container.image, "vllm/vllm-openai:v0.10.2");
  assert.equal(container.resources.limits["nvidia.com/gpu"], "2");
  assert.equal(container.resources.requests.cpu, "4");
  assert.deepEqual(container.envFrom, [{ configMapRef: { name: "vllm-config-chat" } }]);
  assert.equal(chat.spec.template.spec.volumes[0].configMap.name, "vllm-config-chat");
  const embed = byName.get("vllm-embed").spec.template.spec.containers[0];
  assert.equal(embed.resources.limits["nvidia.com/gpu"], undefined, "a CPU model asks for no GPU");
  assert.equal(embed.image, config.vllm.image);
  assert.deepEqual(byName.get("vllm-svc-embed").spec.selector, { app: "vllm", [MODEL_LABEL]: "embed" });
  // Sleep mode for models that may sleep (global sleepAfter here): vLLM's flag in the file, its env switch.
  const cm = byName.get("vllm-config-embed");
  assert.match(cm.data.ENGINE_CONFIG_YAML, /^enable-sleep-mode: true$/m);
  assert.equal(cm.data.VLLM_SERVER_DEV_MODE, "1");
  assert.equal(cm.data.HF_HOME, "/cache");
  assert.equal(cm.data.VLLM_CHILL_MODEL, "embed");
});

Deno.test("per-model ConfigMap: no sleep mode for a model that never sleeps", () => {
  const config = perModelConfig({ sleepAfter: undefined });
  const model = { name: "plain", servedModelName: "plain", source: "config" as const, modelName: "org/plain" };
  const data = renderModelConfigMap(config, model).data!;
  assert.doesNotMatch(data.ENGINE_CONFIG_YAML, /sleep/);
  assert.equal(data.VLLM_SERVER_DEV_MODE, undefined);
  const sleepy = renderModelConfigMap(config, model, { sleepMode: true }).data!;
  assert.match(sleepy.ENGINE_CONFIG_YAML, /^enable-sleep-mode: true$/m);
});

Deno.test("per-model names, upstreams and {service}", () => {
  assert.deepEqual(perModelNames({ deployment: "d", configMap: "c", service: "s" }, "m"), {
    deployment: "d-m",
    configMap: "c-m",
    service: "s-m",
  });
  assert.equal(modelUpstream(perModelConfig(), "chat"), "http://vllm-svc-chat.ai-apps.svc:80");
  const proxied = perModelConfig({
    target: { url: "http://127.0.0.1:8001/api/v1/namespaces/ai-apps/services/{service}:80/proxy/" },
  });
  assert.equal(
    modelUpstream(proxied, "chat"),
    "http://127.0.0.1:8001/api/v1/namespaces/ai-apps/services/vllm-svc-chat:80/proxy",
  );
  assert.throws(
    () => perModelConfig({ target: { url: "http://127.0.0.1:8000" } }),
    /target\.url must contain \{service\}/,
  );
});

Deno.test("per-model kustomize overlay patches every model's Deployment by the model label", () => {
  const files = renderKustomize(perModelConfig());
  const kustomization = parseYaml(files.get("manifests/overlays/example/kustomization.yaml")!);
  assert.deepEqual(kustomization.patches[0].target, { kind: "Deployment", labelSelector: MODEL_LABEL });
  assert.ok(files.get("manifests/base/vllm.yaml")!.includes("name: vllm-chat"));
});
