// Checks the fake API server against the real client, kubectl: what kubectl prints and how it exits must be
// what it prints and how it exits against a real cluster.
import assert from "node:assert/strict";
import { type FakeKube, isReady, startFakeKube } from "./fake_kube.ts";
import { HAS_KUBECTL } from "./kubectl.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function kubectl(kube: FakeKube, cacheDir: string, args: string[], stdin?: string): Promise<Run> {
  const child = new Deno.Command("kubectl", {
    args: ["--kubeconfig", kube.kubeconfigPath, "--cache-dir", cacheDir, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function withKubectl(
  fn: (run: (args: string[], stdin?: string) => Promise<Run>, kube: FakeKube) => Promise<void>,
) {
  const kube = await startFakeKube({ timing: { terminateMs: 50 } });
  const cacheDir = await Deno.makeTempDir({ prefix: "fake-kube-kubectl-" });
  try {
    await fn((args, stdin) => kubectl(kube, cacheDir, args, stdin), kube);
  } finally {
    await kube.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
}

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm
  labels: {app: vllm}
spec:
  replicas: 0
  strategy: {type: Recreate}
  selector: {matchLabels: {app: vllm}}
  template:
    metadata: {labels: {app: vllm}}
    spec:
      containers:
      - name: vllm
        image: vllm/vllm-openai:v0.11.0
        resources: {limits: {nvidia.com/gpu: "1"}}
`;

const MODEL = `apiVersion: vllm.efortin.github.io/v1alpha1
kind: VLLMModel
metadata:
  name: qwen3-8b
spec:
  modelName: Qwen/Qwen3-8B
  maxModelLen: 32768
`;

Deno.test({
  name: "kubectl: get, apply (Deployment + VLLMModel, bad model rejected), scale, wait, patch, delete",
  ignore: !HAS_KUBECTL,
  async fn() {
    await withKubectl(async (run, kube) => {
      const empty = await run(["get", "pods"]);
      assert.equal(empty.code, 0, empty.stderr);
      assert.equal(empty.stdout, "");
      assert.match(empty.stderr, /No resources found in ai-apps namespace\./);

      const created = await run(["apply", "-f", "-"], DEPLOYMENT + "---\n" + MODEL);
      assert.equal(created.code, 0, created.stderr);
      assert.equal(
        created.stdout,
        "deployment.apps/vllm created\nvllmmodel.vllm.efortin.github.io/qwen3-8b created\n",
      );
      assert.equal(created.stderr, "", "no validation warnings");
      const unchanged = await run(["apply", "-f", "-"], DEPLOYMENT);
      assert.equal(unchanged.code, 0, unchanged.stderr);
      assert.equal(unchanged.stdout, "deployment.apps/vllm unchanged\n");
      assert.equal(unchanged.stderr, "");
      const model = kube.store.getObject("vllmmodels", "qwen3-8b");
      assert.equal(model.spec.maxModelLen, 32768);
      assert.ok(model.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]);

      const bad = await run(
        ["apply", "-f", "-"],
        MODEL.replace("qwen3-8b", "bad").replace("maxModelLen: 32768", 'maxModelLen: "lots"\n  dtype: int3'),
      );
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /The VLLMModel "bad" is invalid/);
      assert.match(bad.stderr, /spec\.dtype: Unsupported value: "int3"/);
      assert.match(bad.stderr, /spec\.maxModelLen: Invalid value: "lots"/);
      assert.equal(kube.store.getObject("vllmmodels", "bad"), undefined);

      const unknown = await run(["apply", "-f", "-"], MODEL.replace("qwen3-8b", "unk") + "  bogus: 1\n");
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /strict decoding error: unknown field "spec\.bogus"/);

      const updated = await run(["apply", "-f", "-"], MODEL.replace("32768", "16384"));
      assert.equal(updated.code, 0, updated.stderr);
      assert.equal(updated.stdout, "vllmmodel.vllm.efortin.github.io/qwen3-8b configured\n");
      assert.equal(kube.store.getObject("vllmmodels", "qwen3-8b").spec.maxModelLen, 16384);
      assert.equal(kube.store.getObject("vllmmodels", "qwen3-8b").metadata.generation, 2);

      const models = await run(["get", "vllmm"]);
      assert.equal(models.code, 0, models.stderr);
      assert.match(models.stdout, /^NAME\s+MODEL\s+SERVED\s+AGE\nqwen3-8b\s+Qwen\/Qwen3-8B\s+\d+s\n$/);

      const scaled = await run(["scale", "deployment/vllm", "--replicas=1"]);
      assert.equal(scaled.code, 0, scaled.stderr);
      assert.equal(scaled.stdout, "deployment.apps/vllm scaled\n");
      const scaleCalls = kube.calls.filter((c) =>
        c.resource === "deployments" && c.subresource === "scale" && c.verb === "patch"
      );
      assert.equal(scaleCalls.length, 1);

      const waited = await run(["wait", "--for=condition=Ready", "pod", "-l", "app=vllm", "--timeout=10s"]);
      assert.equal(waited.code, 0, waited.stderr);
      assert.match(waited.stdout, /^pod\/vllm-[a-z0-9]{10}-[a-z0-9]{5} condition met\n$/);

      const pods = await run(["get", "pods"]);
      assert.equal(pods.code, 0, pods.stderr);
      const [header, row] = pods.stdout.trim().split("\n");
      assert.match(header, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/);
      assert.match(row, /^vllm-\S+\s+1\/1\s+Running\s+0\s+\d+s$/);
      const deploy = await run(["get", "deployment", "vllm", "-o", "jsonpath={.status.readyReplicas}"]);
      assert.equal(deploy.stdout, "1");

      const merged = await run([
        "patch",
        "deployment",
        "vllm",
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"x":"y"}}}',
      ]);
      assert.equal(merged.code, 0, merged.stderr);
      assert.equal(merged.stdout, "deployment.apps/vllm patched\n");
      assert.equal(kube.store.getObject("deployments", "vllm").metadata.labels.x, "y");
      const noop = await run([
        "patch",
        "deployment",
        "vllm",
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"x":"y"}}}',
      ]);
      assert.equal(noop.stdout, "deployment.apps/vllm patched (no change)\n");
      const json = await run([
        "patch",
        "deployment",
        "vllm",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":0}]',
      ]);
      assert.equal(json.code, 0, json.stderr);
      assert.equal(json.stdout, "deployment.apps/vllm patched\n");
      await kube.until(() => kube.store.listObjects("pods").length === 0, 5000, "pods gone");

      const badPatch = await run(["patch", "vllmmodel", "qwen3-8b", "--type=merge", "-p", '{"spec":{"dtype":"int3"}}']);
      assert.equal(badPatch.code, 1);
      assert.match(badPatch.stderr, /The VLLMModel "qwen3-8b" is invalid: spec\.dtype: Unsupported value: "int3"/);

      const deleted = await run(["delete", "deployment", "vllm"]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(deleted.stdout, 'deployment.apps "vllm" deleted\n');
      const missing = await run(["get", "deployment", "vllm"]);
      assert.equal(missing.code, 1);
      assert.equal(missing.stderr.trim(), 'Error from server (NotFound): deployments.apps "vllm" not found');
      const deletedModel = await run(["delete", "-f", "-"], MODEL);
      assert.equal(deletedModel.stdout, 'vllmmodel.vllm.efortin.github.io "qwen3-8b" deleted\n');
    });
  },
});

Deno.test({
  name: "kubectl: get --watch streams pod changes; delete pod waits until it is gone",
  ignore: !HAS_KUBECTL,
  async fn() {
    await withKubectl(async (run, kube) => {
      assert.equal((await run(["apply", "-f", "-"], DEPLOYMENT)).code, 0);
      const watching = run(["get", "pods", "--watch", "--request-timeout=2s"]);
      await kube.until(() => kube.calls.some((c) => c.verb === "watch" && c.resource === "pods"), 5000, "watch");
      kube.store.updateObject("deployments", {
        ...kube.store.getObject("deployments", "vllm"),
        spec: { ...kube.store.getObject("deployments", "vllm").spec, replicas: 1 },
      });
      await kube.until(() => kube.store.listObjects("pods").some(isReady), 5000, "Ready");
      const watched = await watching;
      assert.equal(watched.code, 0, watched.stderr);
      const lines = watched.stdout.trim().split("\n");
      assert.match(lines[0], /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/);
      assert.ok(lines.some((l) => /\s0\/1\s+Pending\s/.test(l)), watched.stdout);
      assert.ok(lines.some((l) => /\s1\/1\s+Running\s/.test(l)), watched.stdout);

      const pod = kube.store.listObjects("pods")[0];
      const deleted = await run(["delete", "pod", pod.metadata.name, "--timeout=10s"]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(deleted.stdout, `pod "${pod.metadata.name}" deleted\n`);
      assert.equal(kube.store.getObject("pods", pod.metadata.name), undefined, "kubectl waited until it was gone");
      await kube.until(() => kube.store.listObjects("pods").some(isReady), 5000, "replacement Ready");
      const replacement = kube.store.listObjects("pods")[0];
      const forced = await run(["delete", "pod", replacement.metadata.name, "--grace-period=0", "--force"]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stderr, /Immediate deletion does not wait for confirmation/);
      assert.equal(forced.stdout, `pod "${replacement.metadata.name}" force deleted\n`);
    });
  },
});

Deno.test({
  name: "kubectl: the rendered manifests (CRD, RBAC, vLLM, proxy) apply, then apply unchanged",
  ignore: !HAS_KUBECTL,
  async fn() {
    const { renderManifests, toYaml } = await import("../../lib/manifests/mod.ts");
    const { parseConfig } = await import("../../lib/config/define.ts");
    const config = parseConfig({ enableModelSwitch: true, models: { a: { modelName: "org/a" } } });
    const yaml = toYaml(renderManifests(config as Parameters<typeof renderManifests>[0]));
    await withKubectl(async (run, kube) => {
      const first = await run(["apply", "-f", "-"], yaml);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stderr, "");
      const lines = first.stdout.trim().split("\n");
      assert.ok(lines.length >= 5, first.stdout);
      assert.ok(lines.every((l) => l.endsWith(" created")), first.stdout);
      assert.ok(
        lines.includes("customresourcedefinition.apiextensions.k8s.io/vllmmodels.vllm.efortin.github.io created"),
      );
      const second = await run(["apply", "-f", "-"], yaml);
      assert.equal(second.code, 0, second.stderr);
      assert.ok(second.stdout.trim().split("\n").every((l) => l.endsWith(" unchanged")), second.stdout);
      assert.ok(kube.store.getObject("customresourcedefinitions", "vllmmodels.vllm.efortin.github.io"));
      assert.equal(kube.store.getObject("roles", "vllm-chill").rules.length > 0, true);
      const bindings = await run(["get", "rolebindings"]);
      assert.match(bindings.stdout, /^NAME\s+ROLE\s+AGE\nvllm-chill\s+Role\/vllm-chill\s+\d+s\n$/);
    });
  },
});
