/**
 * The pool on Kubernetes (per-model layout), end to end: the fake API server with the generated Role enforced,
 * a simulated kubelet and scheduler with several GPUs on its node that runs one fake vLLM per pod, the proxy
 * forwarding through each model's Service (the API server's service proxy, `{service}` in `target.url`), and
 * the OpenAI SDK as the client. GPU guarantees are read from the fake kubelet's own record of GPU use.
 */
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { APIError } from "openai";
import type { GpuEvent } from "../support/fake_kube.ts";
import { HAS_KUBECTL } from "../support/kubectl.ts";
import {
  FAST_TIMING,
  gpuBlockerPod,
  type KubeE2e,
  type KubeE2eOptions,
  modelStatuses,
  waitUntil,
  withKubeE2e,
} from "./kube_helpers.ts";

const THREE_MODELS = {
  "model-a": { modelName: "org/model-a" },
  "model-b": { modelName: "org/model-b" },
  "model-c": { modelName: "org/model-c" },
};

/** Per-model layout on a node with `gpus` GPUs and maxGpus = gpus (unless the test says otherwise). */
function pool(extra: KubeE2eOptions = {}, gpus = 2): KubeE2eOptions {
  return {
    ...extra,
    config: { layout: "per-model", maxGpus: gpus, models: THREE_MODELS, ...extra.config },
    fake: { gpusPerNode: gpus, ...extra.fake },
  };
}

async function ask(env: { openai(): OpenAI }, model: string): Promise<string> {
  const answer = await env.openai().chat.completions.create({
    model,
    messages: [{ role: "user", content: "hello" }],
    max_tokens: 3,
  });
  return answer.model;
}

/** Index in the kubelet's GPU log of the first `event` of a pod of `model`. */
function firstGpuEvent(log: readonly GpuEvent[], event: GpuEvent["event"], model: string, from = 0): number {
  return log.findIndex((e, i) => i >= from && e.event === event && e.model === model);
}

function chatsReceived(env: KubeE2e, model: string): number {
  return env.engines.filter((e) => e.model === model)
    .reduce((n, e) => n + e.received.filter((r) => r.path === "/v1/chat/completions").length, 0);
}

const podsOf = (env: KubeE2e, model: string) => env.engines.filter((e) => e.model === model).length;

// deno-lint-ignore no-explicit-any
async function adminStatus(env: KubeE2e): Promise<any> {
  const res = await fetch(`${env.url}/admin/status`);
  assert.equal(res.status, 200);
  return await res.json();
}

Deno.test("kube pool: two models on two GPUs at once, each behind its own Service", async () => {
  await withKubeE2e(pool(), async (env) => {
    const [a, b] = await Promise.all([ask(env, "model-a"), ask(env, "model-b")]);
    assert.equal(a, "model-a");
    assert.equal(b, "model-b");
    for (const model of ["model-a", "model-b"]) {
      assert.equal(env.fake.store.getObject("deployments", `vllm-${model}`).spec.replicas, 1);
      assert.equal(chatsReceived(env, model), 1, `${model}'s own engine answered it`);
    }
    // Both pods hold a GPU at once, and the node never had more in use than it has.
    assert.equal(env.fake.kubelet.gpusInUse(), 2);
    assert.equal(env.fake.kubelet.peakGpusInUse(), 2);
    assert.ok(env.fake.proxied.every((p) => p.pod?.startsWith(p.service.replace("vllm-svc-", "vllm-"))));
    const status = await adminStatus(env);
    assert.equal(status.models["model-a"].status, "ready");
    assert.equal(status.models["model-b"].status, "ready");
    assert.deepEqual([...status.models["model-a"].gpus, ...status.models["model-b"].gpus].sort(), ["0", "1"]);
    // The backend's view: every model's Deployment, replicas, pod phase and sleep state.
    const backend = status.backend;
    assert.equal(backend.layout, "per-model");
    await waitUntil(async () => (await adminStatus(env)).backend.watching === true, 5000, "the watch synced");
    const models = (await adminStatus(env)).backend.models;
    assert.equal(models["model-a"].deployment, "vllm-model-a");
    assert.equal(models["model-a"].replicas, 1);
    assert.deepEqual(models["model-a"].pods.map((p: { phase: string }) => p.phase), ["Ready"]);
    assert.equal(models["model-a"].sleeping, false);
    assert.equal(models["model-c"].replicas, 0);
    assert.deepEqual(models["model-c"].pods, []);
  });
});

Deno.test("kube pool: a third model evicts the least recently used idle one; its pod is gone before the new one is scheduled", async () => {
  await withKubeE2e(pool(), async (env) => {
    await ask(env, "model-a");
    await ask(env, "model-b"); // a is now the least recently used
    const bPod = env.liveEngine("model-b")!.pod;
    assert.equal(await ask(env, "model-c"), "model-c");
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-a").spec.replicas, 0, "a scaled to 0");
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-b").spec.replicas, 1, "b kept");
    assert.equal(env.liveEngine("model-b")?.pod, bPod, "b's pod untouched");
    const log = env.fake.kubelet.gpuLog;
    const released = firstGpuEvent(log, "released", "model-a");
    const bound = firstGpuEvent(log, "bound", "model-c");
    assert.ok(released >= 0 && bound > released, `a's GPU freed before c's pod was scheduled: ${JSON.stringify(log)}`);
    assert.equal(log.filter((e) => e.event === "unschedulable").length, 0, "c never waited for a GPU");
    // And c was scaled up only after a's pod was gone (the timeline notes how many API calls preceded each change).
    const aGone = env.timeline.findIndex((sample, i) =>
      i > 0 && env.timeline[i - 1].pods.some((p) => p.startsWith("vllm-model-a-")) &&
      !sample.pods.some((p) => p.startsWith("vllm-model-a-"))
    );
    const scaleC = env.fake.calls.findIndex((c) =>
      c.subresource === "scale" && c.verb === "patch" && c.name === "vllm-model-c"
    );
    assert.ok(aGone > 0 && scaleC >= env.timeline[aGone].callIndex, "c's scale-up came after a's pod was gone");
    assert.ok(env.fake.kubelet.peakGpusInUse() <= env.fake.kubelet.gpusPerNode);
    // The objects of the evicted model stay (scaled to 0, never deleted).
    assert.ok(env.fake.store.getObject("services", "vllm-svc-model-a"));
    assert.ok(env.fake.store.getObject("configmaps", "vllm-config-model-a"));
    // a comes back by evicting b (now the least recently used).
    assert.equal(await ask(env, "model-a"), "model-a");
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-b").spec.replicas, 0);
    assert.equal(chatsReceived(env, "model-a"), 2);
    assert.ok(env.fake.kubelet.peakGpusInUse() <= env.fake.kubelet.gpusPerNode);
  });
});

Deno.test("kube pool: a model with a stream in flight is never evicted: the idle one goes instead", async () => {
  await withKubeE2e(pool({ engine: { tokensPerSec: 20 } }), async (env) => {
    await ask(env, "model-a");
    await ask(env, "model-b");
    // a streams (and is the least recently used by its last request's end).
    const stream = await env.openai().chat.completions.create({
      model: "model-a",
      messages: [{ role: "user", content: "a long answer" }],
      max_tokens: 20,
      stream: true,
    });
    const chunks: string[] = [];
    const reading = (async () => {
      for await (const chunk of stream) chunks.push(chunk.choices[0]?.delta?.content ?? "");
    })();
    await waitUntil(() => Promise.resolve(chunks.length > 0), 5000, "a's stream started");
    assert.equal(await ask(env, "model-c"), "model-c");
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-b").spec.replicas, 0, "b (idle) made room");
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-a").spec.replicas, 1);
    await reading;
    assert.ok(chunks.join("").length > 0);
    assert.equal(env.liveEngine("model-a")!.streamsCancelled, 0, "a's stream ran to its end");
    assert.ok(env.fake.kubelet.peakGpusInUse() <= 2);
  });
});

Deno.test("kube pool: a pod Pending for lack of GPUs (another tenant) makes room from the least recently used idle model", async () => {
  // The pool may hold 2 GPUs, but another workload holds one of the node's two.
  await withKubeE2e(
    pool({
      seed: (fake) => {
        fake.store.createObject("pods", gpuBlockerPod("trainer"));
      },
    }),
    async (env) => {
      await env.fake.until(() => env.fake.kubelet.gpusInUse() === 1, 5000, "the other tenant on its GPU");
      assert.equal(await ask(env, "model-a"), "model-a");
      assert.equal(await ask(env, "model-b"), "model-b");
      const log = env.fake.kubelet.gpuLog;
      const pending = firstGpuEvent(log, "unschedulable", "model-b");
      const released = firstGpuEvent(log, "released", "model-a");
      const bound = firstGpuEvent(log, "bound", "model-b");
      assert.ok(pending >= 0, "b's pod waited for a GPU first");
      assert.ok(pending < released && released < bound, `a made room for b: ${JSON.stringify(log)}`);
      assert.equal(env.fake.kubelet.peakGpusInUse(), 2);
      assert.equal(env.fake.store.getObject("deployments", "vllm-model-a").spec.replicas, 0);
      const status = await adminStatus(env);
      assert.equal(status.models["model-a"].status, "cold");
      assert.equal(status.models["model-b"].status, "ready");
    },
  );
});

Deno.test("kube pool: a pod that stays Pending answers 503 with the kube scheduler's reason; its Deployment goes back to 0", async () => {
  await withKubeE2e(
    pool({
      config: { startTimeout: "1500ms" },
      seed: (fake) => {
        fake.store.createObject("pods", gpuBlockerPod("trainer"));
      },
    }, 1),
    async (env) => {
      await env.fake.until(() => env.fake.kubelet.gpusInUse() === 1, 5000, "the other tenant on the GPU");
      const error = await ask(env, "model-a").then(() => null, (e) => e);
      assert.ok(error instanceof APIError, String(error));
      assert.equal(error.status, 503);
      assert.match(error.message, /0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu/);
      await env.fake.until(
        () =>
          env.fake.store.getObject("deployments", "vllm-model-a").spec.replicas === 0 &&
          env.fake.kubelet.pods().every((p) => p.metadata.name === "trainer"),
        5000,
        "model-a back to 0 replicas, its pod gone",
      );
      assert.equal(env.engines.length, 0, "no engine ever ran");
      assert.match((await adminStatus(env)).models["model-a"].error, /Insufficient nvidia\.com\/gpu/);
    },
  );
});

Deno.test("kube pool: sleep → wake on Kubernetes without a new pod (per-model layout)", async () => {
  await withKubeE2e(
    pool({ config: { sleepAfter: "300ms", idleTimeout: "1m" }, engine: { loadMs: 400 } }),
    async (env) => {
      let t0 = performance.now();
      assert.equal(await ask(env, "model-a"), "model-a");
      const coldMs = performance.now() - t0;
      const engine = env.liveEngine("model-a")!;
      assert.ok(engine.sleepMode, "the pod runs with vLLM's sleep mode (flag and env from its ConfigMap)");
      await waitUntil(async () => (await modelStatuses(env.url))["model-a"] === "sleeping", 5000, "a asleep");
      await waitUntil(() => Promise.resolve(engine.stats().isSleeping), 2000, "the engine itself asleep");
      const deployment = env.fake.store.getObject("deployments", "vllm-model-a");
      assert.equal(deployment.spec.replicas, 1, "the pod lives on");
      assert.equal(deployment.metadata.annotations["vllm.efortin.github.io/sleep-level"], "1");
      t0 = performance.now();
      assert.equal(await ask(env, "model-a"), "model-a");
      const wakeMs = performance.now() - t0;
      assert.equal(podsOf(env, "model-a"), 1, "woken, not a new pod");
      assert.equal(env.fake.kubelet.gpuLog.filter((e) => e.event === "bound").length, 1);
      const stats = engine.stats();
      assert.equal(stats.sleeps, 1);
      assert.equal(stats.wakes, 1);
      assert.equal(stats.forwardedWhileAsleep, 0, "nothing reached the engine while it slept");
      assert.equal(stats.crashed, null);
      assert.equal(
        env.fake.store.getObject("deployments", "vllm-model-a").metadata.annotations?.[
          "vllm.efortin.github.io/sleep-level"
        ],
        undefined,
        "the recorded level is removed once awake",
      );
      const status = await adminStatus(env);
      console.log(
        `  figures (fake): cold start ${coldMs.toFixed(0)} ms (engine load 400 ms), wake ${wakeMs.toFixed(0)} ms; ` +
          `scheduler: coldStart ${status.models["model-a"].lastColdStartMs} ms, wake ${
            status.models["model-a"].lastWakeMs
          } ms`,
      );
    },
  );
});

Deno.test("kube pool: a sleeping model's pod still holds its GPU: the next model evicts it (stopped, not woken)", async () => {
  await withKubeE2e(
    pool({ config: { sleepAfter: "200ms", idleTimeout: "1m" } }, 1),
    async (env) => {
      await ask(env, "model-a");
      await waitUntil(async () => (await modelStatuses(env.url))["model-a"] === "sleeping", 5000, "a asleep");
      assert.equal(env.fake.kubelet.gpusInUse(), 1, "asleep, its pod still has the GPU");
      assert.equal(await ask(env, "model-b"), "model-b");
      const log = env.fake.kubelet.gpuLog;
      assert.ok(firstGpuEvent(log, "released", "model-a") < firstGpuEvent(log, "bound", "model-b"));
      assert.equal(env.engines.find((e) => e.model === "model-a")!.stats().wakes, 0);
      assert.equal(env.fake.kubelet.peakGpusInUse(), 1);
    },
  );
});

Deno.test("kube pool: a restarted proxy reads every model back (ready, sleeping, starting) and converges", async () => {
  await withKubeE2e(
    pool({
      config: {
        idleTimeout: "1m",
        models: { ...THREE_MODELS, "model-b": { modelName: "org/model-b", sleepAfter: "200ms" } },
      },
      engine: { loadMs: 700 },
    }, 3),
    async (env) => {
      await ask(env, "model-a");
      await ask(env, "model-b");
      await waitUntil(async () => (await modelStatuses(env.url))["model-b"] === "sleeping", 5000, "b asleep");
      await waitUntil(() => Promise.resolve(env.liveEngine("model-b")!.stats().isSleeping), 2000, "b's engine asleep");
      // c is mid-start when the proxy goes away.
      const cHeld = ask(env, "model-c").then(() => "served", (e) => e);
      await env.fake.until(() => env.fake.kubelet.pods().length === 3, 5000, "c's pod created");
      await env.stopProxy();
      assert.equal((await cHeld as APIError).status, 503, "a held request is answered at shutdown");
      await env.startProxy();
      const statuses = await modelStatuses(env.url);
      assert.equal(statuses["model-a"], "ready");
      assert.equal(statuses["model-b"], "sleeping", "read back with GET /is_sleeping, not /health");
      assert.ok(["starting", "ready"].includes(statuses["model-c"]), statuses["model-c"]);
      assert.deepEqual(
        await Promise.all(["model-a", "model-b", "model-c"].map((m) => ask(env, m))),
        ["model-a", "model-b", "model-c"],
      );
      // Consistent: no pod was created again, none left over, every Deployment at 1, b woken (not restarted).
      assert.equal(env.engines.length, 3, "no new pod");
      assert.equal(env.fake.kubelet.pods().length, 3);
      for (const model of ["model-a", "model-b", "model-c"]) {
        assert.equal(env.fake.store.getObject("deployments", `vllm-${model}`).spec.replicas, 1);
      }
      const b = env.liveEngine("model-b")!;
      assert.equal(b.stats().wakes, 1);
      assert.equal(b.stats().forwardedWhileAsleep, 0);
      assert.ok(env.fake.kubelet.peakGpusInUse() <= 3);
    },
  );
});

Deno.test("kube pool: a proxy restarted mid-eviction (the victim's pod terminating) converges without overcommitting the GPUs", async () => {
  await withKubeE2e(pool({ fake: { timing: { ...FAST_TIMING, terminateMs: 800 } } }), async (env) => {
    await ask(env, "model-a");
    await ask(env, "model-b");
    const held = ask(env, "model-c").then(() => "served", (e) => e);
    await env.fake.until(
      () =>
        env.fake.kubelet.pods().some((p) =>
          p.metadata.deletionTimestamp && p.metadata.name.startsWith("vllm-model-a-")
        ),
      5000,
      "a's pod terminating for c",
    );
    await env.stopProxy();
    assert.equal((await held as APIError).status, 503);
    await env.startProxy();
    assert.equal(await ask(env, "model-c"), "model-c");
    assert.equal(await ask(env, "model-b"), "model-b");
    const log = env.fake.kubelet.gpuLog;
    assert.ok(firstGpuEvent(log, "released", "model-a") < firstGpuEvent(log, "bound", "model-c"), JSON.stringify(log));
    assert.equal(log.filter((e) => e.event === "unschedulable").length, 0);
    assert.ok(env.fake.kubelet.peakGpusInUse() <= 2);
    assert.equal(env.fake.store.getObject("deployments", "vllm-model-a").spec.replicas, 0);
    assert.equal(podsOf(env, "model-b"), 1, "b kept its pod through the restart");
  });
});

Deno.test("kube pool: a restarted proxy keeps a running VLLMModel-declared model (read back once the models are listed)", async () => {
  await withKubeE2e(
    pool({
      config: { models: { "model-a": { modelName: "org/model-a" } } },
      seed: (fake) => {
        fake.store.createObject("vllmmodels", {
          apiVersion: "vllm.efortin.github.io/v1alpha1",
          kind: "VLLMModel",
          metadata: { name: "crd-model" },
          spec: { modelName: "org/crd-model" },
        });
      },
      // A slow VLLMModel list: the proxy must not judge the engines before it knows the models.
      fake: { gpusPerNode: 2 },
    }),
    async (env) => {
      assert.equal(await ask(env, "crd-model"), "crd-model");
      await env.stopProxy();
      env.fake.faults.latency(300, { resource: "vllmmodels" });
      await env.startProxy();
      assert.equal(await ask(env, "crd-model"), "crd-model");
      assert.equal(podsOf(env, "crd-model"), 1, "the same pod serves it");
      assert.equal(
        env.scalePatches().filter((c) => c.name === "vllm-crd-model").length,
        1,
        "never scaled down and up again",
      );
    },
  );
});

Deno.test("kube pool: a VLLMModel created later gets its own objects; deleted, its engine is scaled to 0, objects kept", async () => {
  await withKubeE2e(pool({ config: { models: { "model-a": { modelName: "org/model-a" } } } }), async (env) => {
    await env.fake.until(
      () => env.fake.store.getObject("deployments", "vllm-model-a") !== undefined,
      5000,
      "a's objects",
    );
    env.fake.store.createObject("vllmmodels", {
      apiVersion: "vllm.efortin.github.io/v1alpha1",
      kind: "VLLMModel",
      metadata: { name: "late" },
      spec: { modelName: "org/late", gpus: 2 },
    });
    await env.fake.until(
      () =>
        env.fake.store.getObject("deployments", "vllm-late") !== undefined &&
        env.fake.store.getObject("services", "vllm-svc-late") !== undefined &&
        env.fake.store.getObject("configmaps", "vllm-config-late") !== undefined,
      5000,
      "the new model's objects",
    );
    const late = env.fake.store.getObject("deployments", "vllm-late");
    assert.equal(late.spec.replicas, 0);
    assert.equal(late.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"], "2", "its own pod shape");
    assert.equal(await ask(env, "late"), "late");
    env.fake.store.deleteObject("vllmmodels", "late");
    await env.fake.until(
      () =>
        env.fake.store.getObject("deployments", "vllm-late").spec.replicas === 0 &&
        env.fake.kubelet.pods().length === 0,
      5000,
      "the deleted model's engine scaled to 0",
    );
    assert.ok(env.fake.store.getObject("deployments", "vllm-late"), "never deleted");
    assert.ok(env.fake.store.getObject("services", "vllm-svc-late"));
  });
});

Deno.test({
  name: "kube pool: kubectl against the cluster shows the per-model objects (get deploy,svc,cm -l the model label)",
  ignore: !HAS_KUBECTL,
  fn: async () => {
    await withKubeE2e(pool(), async (env) => {
      await ask(env, "model-b");
      await env.fake.until(
        () => ["model-a", "model-c"].every((m) => env.fake.store.getObject("deployments", `vllm-${m}`)),
        5000,
        "every config model's objects ensured at start",
      );
      const cacheDir = await Deno.makeTempDir({ prefix: "kube-pool-kubectl-" });
      try {
        const out = await new Deno.Command("kubectl", {
          args: [
            // A person's kubectl, with their own access (not the proxy's Role).
            "--kubeconfig",
            env.fake.adminKubeconfigPath,
            "--cache-dir",
            cacheDir,
            "get",
            "deploy,svc,cm",
            "-l",
            "vllm.efortin.github.io/model",
            "-L",
            "vllm.efortin.github.io/model",
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        const row = (name: string) => text.split("\n").find((l) => l.split(/\s+/)[0] === name) ?? "";
        // Deployments: READY x/y and the model label column; b runs, a and c sit at 0.
        assert.match(row("deployment.apps/vllm-model-b"), /\s1\/1\s.*\smodel-b\s*$/);
        assert.match(row("deployment.apps/vllm-model-a"), /\s0\/0\s.*\smodel-a\s*$/);
        assert.match(row("deployment.apps/vllm-model-c"), /\s0\/0\s.*\smodel-c\s*$/);
        for (const model of ["model-a", "model-b", "model-c"]) {
          assert.match(row(`service/vllm-svc-${model}`), new RegExp(`ClusterIP.*\\s${model}\\s*$`));
          assert.match(row(`configmap/vllm-config-${model}`), new RegExp(`\\s${model}\\s*$`));
        }
        assert.ok(!/\/vllm-svc\s|\/vllm\s|\/vllm-config\s/.test(text), `no shared objects: ${text}`);
      } finally {
        await Deno.remove(cacheDir, { recursive: true });
      }
    });
  },
});
