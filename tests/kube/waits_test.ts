import assert from "node:assert/strict";
import { BackendError } from "../../lib/backend/types.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { CuttingRelay } from "./cutting_relay.ts";
import { clientVia, eventually, type KubeTestEnv, withKube } from "./helpers.ts";

const FAST = { scheduleMs: 5, startMs: 10, readyMs: 20, terminateMs: 20 };

async function ensure({ client, config }: KubeTestEnv) {
  await client.ensureVllmResources(config, new ModelRegistry(config.models).first()!);
}

const isKind = (kind: string, pattern?: RegExp) => (e: unknown) =>
  e instanceof BackendError && e.kind === kind && (!pattern || pattern.test(e.message));

Deno.test("waitReady resolves with the Ready pod; waitGone once it is deleted", async () => {
  await withKube(async (env) => {
    await ensure(env);
    const progress: string[] = [];
    await env.client.scale(1);
    const pod = await env.client.waitReady({ deadline: Date.now() + 5000, onProgress: (r) => progress.push(r) });
    assert.match(pod, /^vllm-/);
    assert.ok(progress.length >= 1, "progress reported while waiting");
    const watches = env.fake.calls.filter((c) => c.verb === "watch" && c.resource === "pods");
    assert.ok(watches.length >= 1, "the wait is driven by a watch");
    await env.client.scale(0);
    await env.client.waitGone({ deadline: Date.now() + 5000 });
    assert.equal(env.fake.kubelet.pods().length, 0);
    assert.equal(env.fake.kubelet.gpusInUse(), 0);
  }, { fake: { timing: { ...FAST, readyMs: 500 } } });
});

Deno.test("waitGone resolves at once when no pod exists, and when the Deployment does not exist", async () => {
  await withKube(async (env) => {
    await env.client.waitGone({ deadline: Date.now() + 2000 });
    await ensure(env);
    await env.client.waitGone({ deadline: Date.now() + 2000 });
  }, { fake: { timing: FAST } });
});

Deno.test("a dropped watch is re-established and the wait still sees the pod become Ready", async () => {
  await withKube(async (env) => {
    await ensure(env);
    await env.client.scale(1);
    const waiting = env.client.waitReady({ deadline: Date.now() + 5000 });
    await eventually(
      () => env.fake.calls.some((c) => c.verb === "watch" && c.resource === "pods"),
      2000,
      "the first pod watch",
    );
    env.fake.faults.dropWatches("pods");
    const pod = await waiting;
    assert.match(pod, /^vllm-/);
    const watches = env.fake.calls.filter((c) => c.verb === "watch" && c.resource === "pods");
    assert.ok(watches.length >= 2, `watch re-established (${watches.length} watches)`);
  }, { fake: { timing: { ...FAST, readyMs: 1500 } } });
});

Deno.test("a 410 Gone watch makes the wait list again from scratch", async () => {
  await withKube(async (env) => {
    await ensure(env);
    env.fake.faults.failNext({ verb: "watch", resource: "pods" }, 410, 1);
    await env.client.scale(1);
    await env.client.waitReady({ deadline: Date.now() + 5000 });
    const lists = env.fake.calls.filter((c) => c.verb === "list" && c.resource === "pods");
    assert.ok(lists.length >= 2, `re-listed after 410 (${lists.length} lists)`);
    assert.ok(env.fake.calls.some((c) => c.verb === "watch" && c.status === 410));
  }, { fake: { timing: { ...FAST, readyMs: 500 } } });
});

Deno.test("a watch resumed from a compacted resourceVersion (410 Expired) re-lists and misses nothing", async () => {
  await withKube(async (env) => {
    await ensure(env);
    await env.client.scale(1);
    const waiting = env.client.waitReady({ deadline: Date.now() + 5000 });
    await eventually(
      () => env.fake.calls.some((c) => c.verb === "watch" && c.resource === "pods"),
      2000,
      "the first pod watch",
    );
    env.fake.faults.dropWatches("pods");
    // History moves on and is compacted while the watch is down: resuming from the last seen version gets 410.
    env.fake.store.createObject("configmaps", { metadata: { name: "unrelated" }, data: {} }, "ai-apps");
    env.fake.store.compact();
    await waiting;
    const lists = env.fake.calls.filter((c) => c.verb === "list" && c.resource === "pods");
    assert.ok(lists.length >= 2, `re-listed after the 410 (${lists.length} lists)`);
    assert.ok(env.lines().some((l) => l.msg === "pod watch re-listing"), "re-list logged");
  }, { fake: { timing: { ...FAST, readyMs: 1500 } } });
});

Deno.test("pod list 500s are retried within the deadline", async () => {
  await withKube(async (env) => {
    await ensure(env);
    env.fake.faults.failNext({ verb: "list", resource: "pods" }, 500, 2);
    await env.client.scale(1);
    await env.client.waitReady({ deadline: Date.now() + 5000 });
    assert.equal(env.fake.calls.filter((c) => c.verb === "list" && c.status === 500).length, 2);
  }, { fake: { timing: FAST } });
});

Deno.test("waitReady fails fast with kind crashloop", async () => {
  await withKube(async (env) => {
    await ensure(env);
    env.fake.faults.crashLoop(true);
    await env.client.scale(1);
    const started = Date.now();
    await assert.rejects(env.client.waitReady({ deadline: Date.now() + 15_000 }), isKind("crashloop", /crash-looping/));
    assert.ok(Date.now() - started < 10_000, "failed before the deadline");
    env.fake.faults.crashLoop(false);
    await env.client.scale(0);
  }, { fake: { timing: FAST } });
});

Deno.test("waitReady reports Unschedulable and times out with it in the error", async () => {
  await withKube(async (env) => {
    await ensure(env);
    await env.client.scale(1);
    const progress: string[] = [];
    await assert.rejects(
      env.client.waitReady({ deadline: Date.now() + 400, onProgress: (r) => progress.push(r) }),
      isKind("timeout", /Unschedulable/),
    );
    assert.ok(progress.some((p) => /Unschedulable/.test(p)), progress.join(" | "));
    await env.client.scale(0);
  }, { fake: { gpusPerNode: 0, timing: FAST } });
});

Deno.test("waitGone waits on a pod stuck terminating until the deadline, then fails clearly", async () => {
  await withKube(async (env) => {
    await ensure(env);
    await env.client.scale(1);
    await env.client.waitReady({ deadline: Date.now() + 5000 });
    env.fake.faults.stuckTerminating(true);
    await env.client.scale(0);
    await assert.rejects(env.client.waitGone({ deadline: Date.now() + 300 }), isKind("timeout", /terminating/));
    env.fake.faults.stuckTerminating(false);
    await env.client.forceDeletePods();
    await env.client.waitGone({ deadline: Date.now() + 3000 });
  }, { fake: { timing: FAST } });
});

Deno.test("forceDeletePods frees the GPU without waiting for the grace period", async () => {
  await withKube(async (env) => {
    await ensure(env);
    await env.client.scale(1);
    await env.client.waitReady({ deadline: Date.now() + 5000 });
    await env.client.scale(0);
    const deleted = await env.client.forceDeletePods();
    assert.equal(deleted.length, 1);
    const started = Date.now();
    await env.client.waitGone({ deadline: Date.now() + 3000 });
    assert.ok(Date.now() - started < 2000, "gone long before the 30 s termination");
    assert.equal(env.fake.kubelet.gpusInUse(), 0);
  }, { fake: { timing: { ...FAST, terminateMs: 30_000 } } });
});

Deno.test("a wait honours its AbortSignal (kind aborted)", async () => {
  await withKube(async (env) => {
    await ensure(env);
    await env.client.scale(1);
    const controller = new AbortController();
    const waiting = env.client.waitReady({ signal: controller.signal, deadline: Date.now() + 10_000 });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(waiting, isKind("aborted"));
    await env.client.scale(0);
  }, { fake: { gpusPerNode: 0, timing: FAST } });
});

/** Marks a pod Ready in the store, as the kubelet does when its readiness probe passes. */
function markReady(env: KubeTestEnv, name: string) {
  // deno-lint-ignore no-explicit-any
  const pod: any = env.fake.store.getObject("pods", name, "ai-apps");
  for (const c of pod.status.conditions) if (c.type === "Ready" || c.type === "ContainersReady") c.status = "True";
  for (const cs of pod.status.containerStatuses ?? []) cs.ready = true;
  env.fake.store.updateObject("pods", pod, "ai-apps");
}

for (const fault of ["dropped (stream ended)", "reset mid-stream"] as const) {
  Deno.test(`a watch ${fault} during waitReady is resumed at once and the pod turning Ready in the gap is seen`, async () => {
    const gate = { open: false };
    await withKube(async (env) => {
      const relay = new CuttingRelay(env.fake.url);
      const client = fault === "reset mid-stream" ? clientVia(env, relay.url) : env.client;
      try {
        await ensure(env);
        await client.scale(1);
        const progress: string[] = [];
        const waiting = client.waitReady({ deadline: Date.now() + 20_000, onProgress: (p) => progress.push(p) });
        waiting.catch(() => {}); // awaited below; a failed setup must not leave it unhandled
        await eventually(
          () =>
            progress.some((p) => /Running/.test(p)) &&
            env.fake.calls.some((c) => c.verb === "watch" && c.resource === "pods") &&
            (fault !== "reset mid-stream" || relay.streamingWatches() === 1),
          5000,
          "a Running, not Ready pod and an open pod watch",
        );
        const name = env.fake.kubelet.pods()[0].metadata.name;
        const watchesBefore = env.fake.calls.filter((c) => c.verb === "watch" && c.resource === "pods").length;
        const started = Date.now();
        if (fault === "reset mid-stream") assert.equal(relay.cutWatches(), 1);
        else env.fake.faults.dropWatches("pods");
        // The pod turns Ready while no watch is open: only a resume from the last resourceVersion sees it.
        gate.open = true;
        markReady(env, name);
        assert.equal(await waiting, name);
        const elapsed = Date.now() - started;
        assert.ok(elapsed < 3000, `Ready seen ${elapsed} ms after the ${fault} watch (watchTimeoutMs 60 s)`);
        const watches = env.fake.calls.filter((c) => c.verb === "watch" && c.resource === "pods");
        assert.ok(watches.length > watchesBefore, "the watch was re-established");
        const lists = env.fake.calls.filter((c) => c.verb === "list" && c.resource === "pods" && c.status === 200);
        assert.equal(lists.length, 1, "resumed from the last resourceVersion, no re-list needed");
      } finally {
        if (client !== env.client) client.close();
        await relay.close();
      }
    }, { fake: { timing: FAST, readiness: () => gate.open } });
  });
}
