import assert from "node:assert/strict";
import type { NamedModel } from "../../lib/config/schema.ts";
import { BASE_POD_SHAPE_ANNOTATION } from "../../lib/manifests/pod_template.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { withKube } from "./helpers.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 };

function named(name: string, spec: Omit<NamedModel, "name" | "servedModelName" | "source">): NamedModel {
  return { ...spec, name, servedModelName: name, source: "config" };
}

const deploymentPatches = (calls: { verb?: string; resource?: string; subresource?: string }[]) =>
  calls.filter((c) => c.verb === "patch" && c.resource === "deployments" && !c.subresource).length;

Deno.test("a rendered Deployment gets each model's shape at 0 replicas, only when it differs", async () => {
  await withKube(async ({ fake, client, config }) => {
    const plain = new ModelRegistry(config.models).resolve("model-a")!;
    await client.ensureVllmResources(config, plain);
    const rendered = structuredClone(fake.store.getObject("deployments", "vllm"));
    const container = () => fake.store.getObject("deployments", "vllm").spec.template.spec.containers[0];

    const big = named("big", { modelName: "org/big", tensorParallelSize: 2, limits: { memory: "64Gi" } });
    const patched = await client.applyModelPodShape(config, big);
    assert.equal(patched.outcome, "patched");
    assert.deepEqual(patched.changes, ["limits.memory 32Gi → 64Gi", "limits.nvidia.com/gpu 1 → 2"]);
    assert.deepEqual(container().resources, {
      requests: { cpu: "2", memory: "16Gi" },
      limits: { memory: "64Gi", "nvidia.com/gpu": "2" },
    });

    const other = named("other", { modelName: "org/other", image: "vllm/vllm-openai:v0.11.1" });
    assert.deepEqual((await client.applyModelPodShape(config, other)).changes, [
      "image vllm/vllm-openai:v0.11.0 → vllm/vllm-openai:v0.11.1",
      "limits.memory 64Gi → 32Gi",
      "limits.nvidia.com/gpu 2 → 1",
    ]);

    // Back to a plain model: the rendered template again, field for field; then nothing to do.
    assert.equal((await client.applyModelPodShape(config, plain)).outcome, "patched");
    const after = fake.store.getObject("deployments", "vllm");
    assert.deepEqual(after.spec.template, rendered.spec.template);
    assert.deepEqual(after.metadata.annotations, rendered.metadata.annotations);
    const patches = deploymentPatches(fake.calls);
    assert.equal((await client.applyModelPodShape(config, plain)).outcome, "unchanged");
    assert.equal(deploymentPatches(fake.calls), patches, "no write when the shape is already there");
    assert.equal(patches, 3);
  }, { fake: { timing: FAST } });
});

Deno.test("a user-created Deployment: only the owned fields change, and its own values come back", async () => {
  await withKube(async ({ fake, client, config }) => {
    fake.store.createObject("deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "vllm", namespace: "ai-apps", labels: { owner: "me" } },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: "vllm" } },
        template: {
          metadata: { labels: { app: "vllm" } },
          spec: {
            containers: [
              { name: "sidecar", image: "busybox", resources: { limits: { cpu: "100m" } } },
              {
                name: "vllm",
                image: "my/vllm:patched",
                args: ["--config", "/cfg/config.yaml"],
                env: [{ name: "A", value: "1" }],
                resources: { requests: { cpu: "4", "nvidia.com/gpu": "1" }, limits: { "nvidia.com/gpu": "1" } },
              },
            ],
          },
        },
      },
    });
    const before = structuredClone(fake.store.getObject("deployments", "vllm"));
    const big = named("big", { modelName: "org/big", tensorParallelSize: 2, requests: { memory: "64Gi" } });
    assert.deepEqual((await client.applyModelPodShape(config, big)).changes, [
      "requests.memory (none) → 64Gi",
      "requests.nvidia.com/gpu 1 → 2",
      "limits.nvidia.com/gpu 1 → 2",
    ]);
    const during = fake.store.getObject("deployments", "vllm");
    const vllm = during.spec.template.spec.containers[1];
    assert.equal(vllm.image, "my/vllm:patched", "no image of the config's over the user's");
    assert.deepEqual(vllm.resources, {
      requests: { cpu: "4", "nvidia.com/gpu": "2", memory: "64Gi" },
      limits: { "nvidia.com/gpu": "2" },
    });
    assert.deepEqual(during.spec.template.spec.containers[0], before.spec.template.spec.containers[0]);
    assert.deepEqual(vllm.args, ["--config", "/cfg/config.yaml"]);
    assert.deepEqual(vllm.env, [{ name: "A", value: "1" }]);
    assert.equal(during.metadata.labels.owner, "me");
    assert.deepEqual(JSON.parse(during.metadata.annotations[BASE_POD_SHAPE_ANNOTATION]), {
      image: "my/vllm:patched",
      resources: { requests: { cpu: "4", "nvidia.com/gpu": "1" }, limits: { "nvidia.com/gpu": "1" } },
    });

    // A model with no settings of its own gets the user's pod back, exactly.
    const plain = new ModelRegistry(config.models).resolve("model-a")!;
    assert.equal((await client.applyModelPodShape(config, plain)).outcome, "patched");
    const after = fake.store.getObject("deployments", "vllm");
    assert.deepEqual(after.spec.template, before.spec.template);
  }, { fake: { timing: FAST } });
});

Deno.test("not at 0 replicas: the template is left alone; a Deployment changed meanwhile is read again", async () => {
  await withKube(async ({ fake, client, config, lines }) => {
    const plain = new ModelRegistry(config.models).resolve("model-a")!;
    await client.ensureVllmResources(config, plain);
    await client.scale(1);
    const big = named("big", { modelName: "org/big", gpus: 0, image: "cpu/vllm:1" });
    assert.equal((await client.applyModelPodShape(config, big)).outcome, "skipped");
    assert.equal(deploymentPatches(fake.calls), 0);
    assert.ok(lines().some((l) => l.level === "warn" && /not at 0 replicas/.test(l.msg)));
    await client.scale(0);
    await client.waitGone({ deadline: Date.now() + 5000 });

    // The first patch fails its `test` (422, as when replicas changed between the read and the patch).
    fake.faults.failNext({ verb: "patch", resource: "deployments" }, 422);
    const result = await client.applyModelPodShape(config, big);
    assert.equal(result.outcome, "patched");
    const container = fake.store.getObject("deployments", "vllm").spec.template.spec.containers[0];
    assert.equal(container.image, "cpu/vllm:1");
    assert.equal(container.resources.limits["nvidia.com/gpu"], undefined, "gpus 0: no GPU asked for");
    assert.equal(deploymentPatches(fake.calls), 2);
  }, { fake: { timing: FAST } });
});
