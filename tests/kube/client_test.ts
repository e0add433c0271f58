import assert from "node:assert/strict";
import { createKubeClient, loadKubeConfig } from "../../lib/kube/mod.ts";
import { startFakeKube } from "../support/fake_kube.ts";

Deno.test("loadKubeConfig: one clear error listing everything tried when no credentials work", () => {
  const env = (name: string) => ({ HOME: "/nonexistent-home" } as Record<string, string>)[name];
  assert.throws(
    () => loadKubeConfig("/nonexistent/kubeconfig", env),
    (e: Error) =>
      /^no usable Kubernetes credentials: /.test(e.message) &&
      e.message.includes("--kubeconfig /nonexistent/kubeconfig does not exist") &&
      e.message.includes("KUBECONFIG is not set") &&
      e.message.includes("not in a cluster") &&
      e.message.includes("/nonexistent-home/.kube/config does not exist"),
  );
});

Deno.test("loadKubeConfig: --kubeconfig, else KUBECONFIG, else ~/.kube/config", async () => {
  const fake = await startFakeKube();
  const home = await Deno.makeTempDir();
  try {
    assert.equal(loadKubeConfig(fake.kubeconfigPath, () => undefined).source, fake.kubeconfigPath);
    const viaEnv = loadKubeConfig(undefined, (n) => n === "KUBECONFIG" ? `${fake.kubeconfigPath}:/other` : undefined);
    assert.equal(viaEnv.source, fake.kubeconfigPath);
    assert.equal(viaEnv.kubeConfig.getCurrentCluster()?.server, fake.url);
    await Deno.mkdir(`${home}/.kube`);
    await Deno.copyFile(fake.kubeconfigPath, `${home}/.kube/config`);
    assert.equal(loadKubeConfig(undefined, (n) => n === "HOME" ? home : undefined).source, `${home}/.kube/config`);
    await Deno.writeTextFile(`${home}/bad.yaml`, "clusters: []\ncontexts: []\nusers: []\n");
    assert.throws(() => loadKubeConfig(`${home}/bad.yaml`, () => undefined), /has no current context with a cluster/);
  } finally {
    await Deno.remove(home, { recursive: true });
    await fake.close();
  }
});

Deno.test("createKubeClient talks to the API server named by the kubeconfig", async () => {
  const fake = await startFakeKube();
  const client = createKubeClient({ kubeconfig: fake.kubeconfigPath, namespace: "ai-apps" });
  try {
    assert.equal(await client.readReplicas(), null);
    assert.equal(fake.calls.length, 1);
    assert.equal(fake.calls[0].path, "/apis/apps/v1/namespaces/ai-apps/deployments/vllm/scale");
  } finally {
    client.close();
    await fake.close();
  }
});
