import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { parseConfig } from "../../lib/config/define.ts";
import { PROXY_IMAGE_NAME, renderKustomize } from "../../lib/manifests/kustomize.ts";
import { type KubeObject, renderManifests } from "../../lib/manifests/mod.ts";
import { driftedFiles, renderRepoKustomize } from "../../scripts/render_kustomize.ts";

/** kubectl (installed on our machines) renders kustomize offline; without it these tests are reported as ignored. */
const HAS_KUBECTL = (() => {
  try {
    return new Deno.Command("kubectl", { args: ["version", "--client"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** The kinds the layout may contain, each with the official schema that validates it. */
const VALIDATORS: Record<string, (obj: KubeObject) => void> = {
  CustomResourceDefinition: (o) => new CustomResourceDefinition(o as never).validate(),
  ServiceAccount: (o) => new ServiceAccount(o as never).validate(),
  Role: (o) => new Role(o as never).validate(),
  RoleBinding: (o) => new RoleBinding(o as never).validate(),
  ConfigMap: (o) => new ConfigMap(o as never).validate(),
  Service: (o) => new Service(o as never).validate(),
  Deployment: (o) => new Deployment(o as never).validate(),
};

function validateAll(objects: KubeObject[]): void {
  for (const obj of objects) {
    const validate = VALIDATORS[obj.kind];
    assert.ok(validate, `kind ${obj.kind} is not in the allow-list of validated kinds`);
    try {
      validate(obj);
    } catch (error) {
      assert.fail(`${obj.kind}/${obj.metadata?.name} is invalid: ${(error as Error).message}`);
    }
  }
}

function parseDocs(text: string): KubeObject[] {
  return parseAllDocuments(text).map((doc) => {
    assert.equal(doc.errors.length, 0, String(doc.errors[0]));
    return doc.toJS() as KubeObject;
  }).filter((obj) => obj !== null);
}

async function writeLayout(files: Map<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const [path, text] of files) {
    await Deno.mkdir(dirname(join(dir, path)), { recursive: true });
    await Deno.writeTextFile(join(dir, path), text);
  }
  return dir;
}

async function kustomize(dir: string): Promise<KubeObject[]> {
  const out = await new Deno.Command("kubectl", {
    args: ["kustomize", dir],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `kubectl kustomize ${dir} failed: ${new TextDecoder().decode(out.stderr)}`);
  return parseDocs(new TextDecoder().decode(out.stdout));
}

const exampleConfig = async () => (await import("../../examples/vllm-chill.config.ts")).default;

Deno.test("manifests/base and manifests/overlays/example on disk match renderKustomize (drift)", async () => {
  const files = await renderRepoKustomize();
  assert.ok(files.size >= 8);
  assert.deepEqual(await driftedFiles(files), [], "run `deno run -A scripts/render_kustomize.ts`");
});

Deno.test("the drift check can fail: a changed file is reported", async () => {
  const files = await renderRepoKustomize();
  const changed = new Map(files);
  changed.set("manifests/base/proxy.yaml", files.get("manifests/base/proxy.yaml") + "# edited\n");
  assert.deepEqual(await driftedFiles(changed), ["manifests/base/proxy.yaml"]);
});

Deno.test("base: one file per part, together exactly renderManifests(config)", async () => {
  const config = await exampleConfig();
  const files = renderKustomize(config);
  const kustomization = parseDocs(files.get("manifests/base/kustomization.yaml")!)[0] as unknown as {
    resources: string[];
  };
  assert.deepEqual(kustomization.resources, ["crd.yaml", "rbac.yaml", "vllm.yaml", "proxy.yaml"]);
  const objects = kustomization.resources.flatMap((f) => parseDocs(files.get(`manifests/base/${f}`)!));
  assert.deepEqual(objects, JSON.parse(JSON.stringify(renderManifests(config))));
});

Deno.test({
  name: "kubectl kustomize manifests/base: every object passes the Kubernetes schemas",
  ignore: !HAS_KUBECTL,
}, async () => {
  const config = await exampleConfig();
  const dir = await writeLayout(renderKustomize(config));
  try {
    const objects = await kustomize(join(dir, "manifests/base"));
    assert.deepEqual(
      objects.map((o) => o.kind).sort(),
      renderManifests(config).map((o) => o.kind).sort(),
    );
    validateAll(objects);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "kubectl kustomize overlays/example: namespace, image tag, GPU nodes, proxy follows its namespace",
  ignore: !HAS_KUBECTL,
}, async () => {
  const config = await exampleConfig();
  const overlay = { namespace: "team-llm", imageTag: "9.9.9", nodeSelector: { "gpu-type": "l4" } };
  const dir = await writeLayout(renderKustomize(config, { overlay }));
  try {
    const objects = await kustomize(join(dir, "manifests/overlays/example"));
    validateAll(objects);
    for (const obj of objects) {
      if (obj.kind === "CustomResourceDefinition") assert.equal(obj.metadata?.namespace, undefined);
      else assert.equal(obj.metadata?.namespace, "team-llm", `${obj.kind}/${obj.metadata?.name}`);
    }
    const binding = objects.find((o) => o.kind === "RoleBinding") as unknown as {
      subjects: { namespace: string }[];
    };
    assert.equal(binding.subjects[0].namespace, "team-llm");
    type Dep = { metadata: { name: string }; spec: { template: { spec: unknown } } };
    const deployments = objects.filter((o) => o.kind === "Deployment") as unknown as Dep[];
    const proxy = deployments.find((d) => d.metadata.name === "vllm-chill")!.spec.template.spec as {
      containers: { image: string; env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[] }[];
    };
    assert.equal(proxy.containers[0].image, `${PROXY_IMAGE_NAME}:9.9.9`);
    const nsEnv = proxy.containers[0].env.find((e) => e.name === "VLLM_CHILL_NAMESPACE");
    assert.equal(nsEnv?.valueFrom?.fieldRef?.fieldPath, "metadata.namespace");
    assert.ok(proxy.containers[0].env.some((e) => e.name === "VLLM_CHILL_ADMIN_TOKEN"), "base env kept");
    const vllm = deployments.find((d) => d.metadata.name === config.target.deployment)!.spec.template.spec as {
      nodeSelector: Record<string, string>;
    };
    assert.equal(vllm.nodeSelector["gpu-type"], "l4");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kustomize output of the defaults validates too; the validation can fail", async () => {
  const dir = await writeLayout(renderKustomize(parseConfig({}), { overlay: { name: "plain" } }));
  try {
    const objects = await kustomize(join(dir, "manifests/overlays/plain"));
    validateAll(objects);
    const broken = structuredClone(objects.find((o) => o.kind === "Deployment")!) as KubeObject & {
      spec: { replicas: unknown };
    };
    broken.spec.replicas = "two";
    assert.throws(() => validateAll([broken]), /invalid/);
    assert.throws(() => validateAll([{ apiVersion: "v1", kind: "Secret", metadata: { name: "x" } }]), /allow-list/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "kubectl kustomize on the checked-in manifests/base and manifests/overlays/example",
  ignore: !HAS_KUBECTL,
}, async () => {
  const root = new URL("../../", import.meta.url).pathname;
  for (const dir of ["manifests/base", "manifests/overlays/example"]) {
    const objects = await kustomize(join(root, dir));
    assert.ok(objects.length >= 10, `${dir} renders the whole layout`);
    validateAll(objects);
  }
});
