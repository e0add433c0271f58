import assert from "node:assert/strict";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { testConfig, withKube } from "../kube/helpers.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function status(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...Deno.env.toObject() };
  for (const name of Object.keys(env)) if (name.startsWith("VLLM_CHILL_")) delete env[name];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "status", ...args],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("status --cluster reads replicas, the active model and the pods from the cluster (Role enforced)", async () => {
  await withKube(async ({ client, config, fake }) => {
    await client.ensureVllmResources(config, new ModelRegistry(config.models).resolve("model-b")!);
    await client.scale(1);
    await client.waitReady({ deadline: Date.now() + 5000 });

    const text = await status(["--cluster", "--kubeconfig", fake.kubeconfigPath, "--namespace", config.namespace]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /replicas\s+1/);
    assert.match(text.stdout, /active model\s+model-b/);
    assert.match(text.stdout, /engine\s+ready/);
    assert.match(text.stdout, /pod\s+vllm-\S+ Ready/);

    const json = await status(["--cluster", "--json", "--kubeconfig", fake.kubeconfigPath]);
    assert.equal(json.code, 0, json.stderr);
    const state = JSON.parse(json.stdout);
    assert.equal(state.activeModel, "model-b");
    assert.equal(state.phase, "ready");
    await client.scale(0);
    await client.waitGone({ deadline: Date.now() + 5000 });
  }, { fake: { timing: { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 } } });
});

Deno.test("status --cluster with an unreachable API server: one clear line, exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/kubeconfig`;
    await Deno.writeTextFile(
      path,
      `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t0ken}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ai-apps}}]
current-context: x
`,
    );
    const result = await status(["--cluster", "--kubeconfig", path, "--timeout", "1s"]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^status: cannot read the cluster: /);
    assert.equal(result.stderr.trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status --cluster, per-model layout: every model's Deployment, replicas, pods and recorded sleep state", async () => {
  await withKube(async ({ client, fake }) => {
    const dir = await Deno.makeTempDir();
    try {
      const models = { "model-a": { modelName: "org/model-a" }, "model-b": { modelName: "org/model-b" } };
      const file = `${dir}/config.json`;
      await Deno.writeTextFile(
        file,
        JSON.stringify({ namespace: "ai-apps", layout: "per-model", maxGpus: 2, enableModelSwitch: true, models }),
      );
      const config = testConfig({ layout: "per-model", maxGpus: 2, models });
      const registry = new ModelRegistry(config.models);
      for (const key of ["model-a", "model-b"]) {
        await client.model(key).ensure(config, registry.resolve(key)!, { sleepMode: true });
      }
      const a = client.model("model-a");
      await a.scale(1);
      await a.waitReady({ deadline: Date.now() + 5000 });
      await a.setSleepLevel(1);

      const text = await status(["--cluster", "--config", file, "--kubeconfig", fake.kubeconfigPath]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /layout\s+per-model/);
      const blocks = text.stdout.split("\n\n");
      const blockA = blocks.find((b) => b.includes("model         model-a"))!;
      assert.match(blockA, /deployment\s+vllm-model-a\n/);
      assert.match(blockA, /replicas\s+1/);
      assert.match(blockA, /engine\s+ready/);
      assert.match(blockA, /sleep\s+asleep \(level 1\)/);
      assert.match(blockA, /pod\s+vllm-model-a-\S+ Ready/);
      const blockB = blocks.find((b) => b.includes("model         model-b"))!;
      assert.match(blockB, /replicas\s+0/);
      assert.match(blockB, /engine\s+absent/);

      const json = await status(["--cluster", "--json", "--config", file, "--kubeconfig", fake.kubeconfigPath]);
      assert.equal(json.code, 0, json.stderr);
      const state = JSON.parse(json.stdout);
      assert.equal(state.layout, "per-model");
      const jsonA = state.models.find((m: { key: string }) => m.key === "model-a");
      assert.equal(jsonA.sleepLevel, 1);
      assert.equal(jsonA.pods[0].phase, "Ready");
      await a.scale(0);
      await a.waitGone({ deadline: Date.now() + 5000 });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }, { fake: { gpusPerNode: 2, timing: { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 } } });
});
