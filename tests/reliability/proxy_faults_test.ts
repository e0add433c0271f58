/**
 * Scenario 3 — proxy faults: SIGTERM with several streams in flight and a
 * request held for another model (process backend, `main.ts serve` as a
 * child process); the proxy SIGKILLed in the middle of a switch on the
 * Kubernetes backend and started again (it converges: no double scale-up,
 * the ConfigMap names exactly one model and the running pod serves it).
 */
import assert from "node:assert/strict";
import { assertNoEngines, fakeEngineCommand, newMarker, spawnDeno, type SpawnedCli } from "../e2e/helpers.ts";
import { assertRoleSufficed, chat, type FakeCluster, startCluster, waitUntil, within } from "./helpers.ts";

async function writeConfig(config: Record<string, unknown>): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "vllm-chill-reliability-", suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(config));
  return file;
}

async function stopCli(cli: SpawnedCli): Promise<void> {
  try {
    cli.child.kill("SIGKILL");
  } catch { /* already exited */ }
  await cli.exited;
}

/** Reads an SSE body to its end (bounded). */
async function readAll(body: ReadableStream<Uint8Array>, timeoutMs: number): Promise<string> {
  let text = "";
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  for (let i = 0; i < 100_000; i++) {
    const { value, done } = await within(reader.read(), timeoutMs, "the stream");
    if (done) break;
    text += value;
  }
  return text;
}

Deno.test("proxy faults: SIGTERM with 3 streams in flight and 1 held request → streams complete, held gets 503, exit 0 in the grace bound", async () => {
  const marker = newMarker();
  const file = await writeConfig({
    backend: "process",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port: 0,
    logFormat: "json",
    drainTimeout: "6s",
    minLoadedTime: "30s",
    heartbeatInterval: "0s",
    process: { stopGracePeriod: "2s" },
    models: {
      a: { modelName: "org/a", command: fakeEngineCommand(marker, { loadMs: 50, tokensPerSec: 15 }) },
      b: { modelName: "org/b", command: fakeEngineCommand(marker, { loadMs: 50 }) },
    },
  });
  const cli = spawnDeno(["main.ts", "serve", "--config", file]);
  try {
    const url = JSON.parse(await cli.waitForLine(/"msg":"listening"/, 20_000)).url as string;
    const streams = await Promise.all([1, 2, 3].map(() =>
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "a", messages: [{ role: "user", content: "hi" }], max_tokens: 15, stream: true }),
      })
    ));
    for (const res of streams) assert.equal(res.status, 200);
    const bodies = streams.map((res) => readAll(res.body!, 10_000));
    // Model b waits behind a (minLoadedTime 30s, a is busy): held.
    const held = chat(url, "b", { timeoutMs: 15_000 });
    await waitUntil(
      async () => {
        const status = await (await fetch(`${url}/admin/status`)).json();
        return Object.values(status.held ?? {}).some((n) => Number(n) > 0);
      },
      5000,
      "the request for b to be held",
    );
    const signalled = performance.now();
    cli.child.kill("SIGTERM");
    const texts = await Promise.all(bodies);
    for (const text of texts) {
      assert.ok(text.endsWith("data: [DONE]\n\n"), `a stream in flight was cut: ${text.slice(-80)}`);
      assert.match(text, /"finish_reason":"length"/, "the stream reached its last token");
    }
    const refused = await held;
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.ok(refused.headers.get("retry-after"), "the refused held request may retry");
    const status = await within(cli.exited, 10_000, "the proxy to exit");
    assert.equal(status.code, 0, cli.stderr.join("\n"));
    assert.ok(performance.now() - signalled < 6000 + 2000, "exited within drainTimeout + stop grace");
    await assertNoEngines(marker, 3000);
  } finally {
    await stopCli(cli);
    await Deno.remove(file);
    await assertNoEngines(marker, 3000);
  }
});

/** Starts `main.ts serve` on the cluster's kubeconfig; resolves with its URL. */
async function spawnKubeProxy(cluster: FakeCluster, file: string): Promise<{ cli: SpawnedCli; url: string }> {
  const cli = spawnDeno(["main.ts", "serve", "--config", file, "--kubeconfig", cluster.fake.kubeconfigPath]);
  try {
    const url = JSON.parse(await cli.waitForLine(/"msg":"listening"/, 20_000)).url as string;
    await waitUntil(
      async () => {
        const res = await fetch(`${url}/readyz`);
        await res.body?.cancel();
        return res.status === 200;
      },
      10_000,
      "the restarted proxy to read the cluster back",
    );
    return { cli, url };
  } catch (error) {
    await stopCli(cli);
    throw error;
  }
}

function kubeConfigFile(cluster: FakeCluster): Promise<string> {
  return writeConfig({
    namespace: "ai-apps",
    backend: "kubernetes",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port: 0,
    logFormat: "json",
    idleTimeout: "1m",
    minLoadedTime: "0s",
    holdTimeout: "15s",
    startTimeout: "15s",
    heartbeatInterval: "0s",
    target: { url: cluster.targetUrl },
    models: { "model-a": { modelName: "org/model-a" }, "model-b": { modelName: "org/model-b" } },
  });
}

/** What must hold once a restarted proxy served `model`: one pod, serving what the ConfigMap names. */
function assertConverged(cluster: FakeCluster, model: string): void {
  const pods = cluster.fake.kubelet.pods().filter((p) => !p.metadata?.deletionTimestamp);
  assert.equal(pods.length, 1, "exactly one pod");
  assert.equal(cluster.replicas(), 1);
  assert.equal(cluster.configuredModel(), model, "the ConfigMap names the model served");
  const cm = cluster.fake.store.getObject("configmaps", "vllm-config", "ai-apps");
  assert.equal(cm.data.SERVED_MODEL_NAME, model, "no half-written ConfigMap");
  assert.match(cm.data.ENGINE_CONFIG_YAML, new RegExp(`served-model-name: "${model}"\\n`));
  assert.equal(cluster.serving(), model, "the running pod serves it");
  assert.equal(cluster.fake.kubelet.gpusInUse(), 1);
  assertRoleSufficed(cluster);
}

Deno.test("proxy faults: SIGKILL while the old pod terminates during a switch → restarted proxy converges, one scale-up", async () => {
  const cluster = await startCluster();
  const file = await kubeConfigFile(cluster);
  try {
    const first = await spawnKubeProxy(cluster, file);
    try {
      assert.equal((await chat(first.url, "model-a")).status, 200);
      // The old pod stays terminating until the test lets it go: the restart always lands in that window.
      cluster.fake.faults.stuckTerminating(true);
      const cut = chat(first.url, "model-b", { timeoutMs: 15_000 }).catch((error) => error);
      await cluster.fake.until(
        () => cluster.fake.kubelet.pods().some((p) => p.metadata?.deletionTimestamp),
        5000,
        "the old pod to start terminating",
      );
      first.cli.child.kill("SIGKILL");
      assert.ok((await cut) instanceof Error, "the request in the killed proxy got a connection error");
    } finally {
      await stopCli(first.cli);
    }
    // A restarted proxy that still sees the old pod terminating may say "0 replicas" once more (level-triggered):
    // what must not happen twice is a scale-up.
    const scaleUpsBefore = cluster.scaleUps().length;
    const second = await spawnKubeProxy(cluster, file);
    try {
      const old = cluster.fake.kubelet.pods().find((p) => p.metadata?.deletionTimestamp);
      assert.ok(old, "the restarted proxy found the old pod still terminating");
      const held = chat(second.url, "model-b");
      await second.cli.waitForLine(/"msg":"waiting for the vLLM pod to be gone"/, 10_000);
      cluster.fake.faults.stuckTerminating(false);
      cluster.fake.store.deleteObject("pods", old.metadata!.name!, undefined, 0); // its container exits at last
      const res = await held;
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.model, "model-b");
      assertConverged(cluster, "model-b");
      const log = () =>
        [...first.cli.stdout, ...first.cli.stderr, "--- restarted ---", ...second.cli.stdout, ...second.cli.stderr]
          .join("\n");
      assert.equal(cluster.scaleUps().length - scaleUpsBefore, 1, `one scale-up after the restart\n${log()}`);
      assert.deepEqual(cluster.started, ["model-a", "model-b"], `no pod started twice\n${log()}`);
    } finally {
      await stopCli(second.cli);
    }
  } finally {
    await Deno.remove(file);
    await cluster.close();
  }
});

Deno.test("proxy faults: SIGKILL after the new model was scaled up, before Ready → restarted proxy waits for it, no second scale-up", async () => {
  let ready = false;
  const cluster = await startCluster({
    fake: { readiness: () => ready },
  });
  const file = await kubeConfigFile(cluster);
  try {
    const first = await spawnKubeProxy(cluster, file);
    try {
      ready = true;
      assert.equal((await chat(first.url, "model-a")).status, 200);
      ready = false;
      const cut = chat(first.url, "model-b", { timeoutMs: 15_000 }).catch((error) => error);
      await cluster.fake.until(
        () => cluster.started.length === 2 && cluster.fake.kubelet.pods().some((p) => p.status?.phase === "Running"),
        8000,
        "the model-b pod to run (not Ready)",
      );
      first.cli.child.kill("SIGKILL");
      assert.ok((await cut) instanceof Error);
    } finally {
      await stopCli(first.cli);
    }
    assert.equal(cluster.configuredModel(), "model-b", "the kill came after the ConfigMap write");
    const patchesBefore = cluster.scalePatches().length;
    const second = await spawnKubeProxy(cluster, file);
    try {
      const pending = chat(second.url, "model-b");
      await new Promise((r) => setTimeout(r, 200));
      ready = true;
      const res = await pending;
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.model, "model-b");
      assertConverged(cluster, "model-b");
      assert.equal(
        cluster.scalePatches().length,
        patchesBefore,
        "no scale patch: the pod already starting was awaited",
      );
      assert.deepEqual(cluster.started, ["model-a", "model-b"], "no pod started twice");
    } finally {
      await stopCli(second.cli);
    }
  } finally {
    await Deno.remove(file);
    await cluster.close();
  }
});
