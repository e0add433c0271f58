// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import {
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { type FakeKube, type FakeKubeOptions, isReady, type RoleLike, startFakeKube } from "./fake_kube.ts";

const NS = "ai-apps";

async function withKube(options: FakeKubeOptions, fn: (kube: FakeKube) => Promise<void>): Promise<void> {
  const kube = await startFakeKube(options);
  try {
    await fn(kube);
  } finally {
    await kube.close();
  }
}

async function api(
  kube: FakeKube,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { authorization: `Bearer ${kube.token}` };
  if (body !== undefined) headers["content-type"] = contentType;
  const res = await fetch(`${kube.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

function deployment(name = "vllm", replicas = 0, gpus = 1, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels: { app: name } },
    spec: {
      replicas,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{
            name: "vllm",
            image: "vllm/vllm-openai:v0.11.0",
            resources: gpus ? { limits: { "nvidia.com/gpu": String(gpus) } } : {},
          }],
          ...extra,
        },
      },
    },
  };
}

const CM_PATH = `/api/v1/namespaces/${NS}/configmaps`;
const DEPLOY_PATH = `/apis/apps/v1/namespaces/${NS}/deployments`;
const MODELS_PATH = `/apis/vllm.efortin.github.io/v1alpha1/namespaces/${NS}/vllmmodels`;

function podsOf(kube: FakeKube, app = "vllm") {
  return kube.store.listObjects("pods").filter((p) => p.metadata.labels?.app === app);
}

/** Reads newline-delimited watch events until `stop` says so or the stream ends. */
async function readEvents(
  res: Response,
  stop: (events: any[]) => boolean,
  timeoutMs = 3000,
): Promise<{ events: any[]; ended: boolean }> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: any[] = [];
  let buffer = "";
  let ended = false;
  const timer = setTimeout(() => reader.cancel(), timeoutMs);
  try {
    while (!stop(events)) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        events.push(JSON.parse(buffer.slice(0, nl)));
        buffer = buffer.slice(nl + 1);
      }
    }
  } finally {
    clearTimeout(timer);
    if (!ended) await reader.cancel().catch(() => {});
  }
  return { events, ended };
}

Deno.test("configmaps: create, get, AlreadyExists, stale update Conflict, NotFound, delete", async () => {
  await withKube({}, async (kube) => {
    const created = await api(kube, "POST", CM_PATH, { metadata: { name: "vllm-config" }, data: { a: "1" } });
    assert.equal(created.status, 201);
    assert.equal(created.body.kind, "ConfigMap");
    assert.match(created.body.metadata.uid, /^[0-9a-f-]{36}$/);
    assert.equal(typeof created.body.metadata.resourceVersion, "string");
    assert.match(created.body.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const again = await api(kube, "POST", CM_PATH, { metadata: { name: "vllm-config" } });
    assert.equal(again.status, 409);
    assert.equal(again.body.reason, "AlreadyExists");
    assert.equal(again.body.message, 'configmaps "vllm-config" already exists');

    const stale = { ...created.body, data: { a: "2" } };
    const first = await api(kube, "PUT", `${CM_PATH}/vllm-config`, stale);
    assert.equal(first.status, 200);
    assert.notEqual(first.body.metadata.resourceVersion, created.body.metadata.resourceVersion);
    const second = await api(kube, "PUT", `${CM_PATH}/vllm-config`, { ...stale, data: { a: "3" } });
    assert.equal(second.status, 409);
    assert.deepEqual(second.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'Operation cannot be fulfilled on configmaps "vllm-config": the object has been modified; ' +
        "please apply your changes to the latest version and try again",
      reason: "Conflict",
      details: { name: "vllm-config", kind: "configmaps" },
      code: 409,
    });
    assert.equal(kube.store.getObject("configmaps", "vllm-config").data.a, "2");

    const missing = await api(kube, "GET", `${CM_PATH}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.message, 'configmaps "nope" not found');
    assert.deepEqual(missing.body.details, { name: "nope", kind: "configmaps" });

    const mismatch = await api(kube, "PUT", `${CM_PATH}/vllm-config`, { metadata: { name: "other" } });
    assert.equal(mismatch.status, 400);

    const deleted = await api(kube, "DELETE", `${CM_PATH}/vllm-config`);
    assert.equal(deleted.status, 200);
    assert.equal(deleted.body.status, "Success");
    assert.equal(kube.store.getObject("configmaps", "vllm-config"), undefined);
  });
});

Deno.test("client-node: typed errors keep the Status; conflict on a stale replace", async () => {
  await withKube({}, async (kube) => {
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    const cm = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "c" }, data: {} } });
    await core.replaceNamespacedConfigMap({ name: "c", namespace: NS, body: { ...cm, data: { x: "1" } } });
    await assert.rejects(
      core.replaceNamespacedConfigMap({ name: "c", namespace: NS, body: { ...cm, data: { x: "2" } } }),
      (err: any) => err.code === 409 && JSON.parse(err.body).reason === "Conflict",
    );
    await assert.rejects(
      core.readNamespacedConfigMap({ name: "nope", namespace: NS }),
      (err: any) => err.code === 404 && JSON.parse(err.body).details.name === "nope",
    );
    const unconditional = await core.replaceNamespacedConfigMap({
      name: "c",
      namespace: NS,
      body: { metadata: { name: "c" }, data: { y: "1" } },
    });
    assert.deepEqual(unconditional.data, { y: "1" });
  });
});

Deno.test("PATCH: merge, strategic (containers by name), json-patch, apply, and 415 for others", async () => {
  await withKube({}, async (kube) => {
    const d = deployment("vllm", 0, 0);
    (d.spec.template.spec.containers as any[]).push({ name: "sidecar", image: "busybox:1" });
    assert.equal((await api(kube, "POST", DEPLOY_PATH, d)).status, 201);

    const merged = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm`,
      { metadata: { labels: { extra: "yes" } } },
      "application/merge-patch+json",
    );
    assert.equal(merged.status, 200);
    assert.equal(merged.body.metadata.labels.extra, "yes");
    assert.equal(merged.body.metadata.generation, 1, "metadata change keeps the generation");

    const strategic = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm`,
      { spec: { template: { spec: { containers: [{ name: "sidecar", image: "busybox:2" }] } } } },
      "application/strategic-merge-patch+json",
    );
    assert.equal(strategic.status, 200);
    const containers = strategic.body.spec.template.spec.containers;
    assert.deepEqual(containers.map((c: any) => [c.name, c.image]), [
      ["vllm", "vllm/vllm-openai:v0.11.0"],
      ["sidecar", "busybox:2"],
    ]);
    assert.equal(strategic.body.metadata.generation, 2);

    const json = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm`,
      [{ op: "test", path: "/spec/replicas", value: 0 }, { op: "replace", path: "/spec/replicas", value: 0 }],
      "application/json-patch+json",
    );
    assert.equal(json.status, 200);
    const failedTest = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm`,
      [{ op: "test", path: "/spec/replicas", value: 5 }],
      "application/json-patch+json",
    );
    assert.equal(failedTest.status, 422);

    const noManager = await api(
      kube,
      "PATCH",
      `${CM_PATH}/applied`,
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  k: v\n",
      "application/apply-patch+yaml",
    );
    assert.ok(noManager.status === 422 || noManager.status === 400, String(noManager.status));
    assert.match(noManager.body.message, /fieldManager/);
    const applied = await api(
      kube,
      "PATCH",
      `${CM_PATH}/applied?fieldManager=test`,
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  k: v\n",
      "application/apply-patch+yaml",
    );
    assert.equal(applied.status, 201);
    assert.equal(kube.store.getObject("configmaps", "applied").data.k, "v");

    const unsupported = await api(kube, "PATCH", `${DEPLOY_PATH}/vllm`, { spec: {} }, "application/json");
    assert.equal(unsupported.status, 415);
    assert.equal(unsupported.body.reason, "UnsupportedMediaType");

    await api(kube, "POST", MODELS_PATH, { metadata: { name: "m" }, spec: { modelName: "org/m" } });
    const strategicOnCr = await api(
      kube,
      "PATCH",
      `${MODELS_PATH}/m`,
      { spec: { maxModelLen: 10 } },
      "application/strategic-merge-patch+json",
    );
    assert.equal(strategicOnCr.status, 415, "custom resources do not take strategic merge patches");

    const stalePatch = await api(
      kube,
      "PATCH",
      `${CM_PATH}/applied`,
      { metadata: { resourceVersion: "1" }, data: { k: "w" } },
      "application/merge-patch+json",
    );
    assert.equal(stalePatch.status, 409);
  });
});

Deno.test("scale subresource: GET Scale, PATCH/PUT set replicas, stale PUT conflicts, negative is invalid", async () => {
  await withKube({}, async (kube) => {
    await api(kube, "POST", DEPLOY_PATH, deployment("vllm", 0, 0));
    const scale = await api(kube, "GET", `${DEPLOY_PATH}/vllm/scale`);
    assert.equal(scale.status, 200);
    assert.equal(scale.body.kind, "Scale");
    assert.equal(scale.body.apiVersion, "autoscaling/v1");
    assert.equal(scale.body.spec.replicas, 0);
    assert.equal(scale.body.status.selector, "app=vllm");

    const patched = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm/scale`,
      { spec: { replicas: 1 } },
      "application/merge-patch+json",
    );
    assert.equal(patched.body.spec.replicas, 1);
    const d = kube.store.getObject("deployments", "vllm");
    assert.equal(d.spec.replicas, 1);
    assert.equal(d.metadata.generation, 2);

    const stale = await api(kube, "PUT", `${DEPLOY_PATH}/vllm/scale`, scale.body);
    assert.equal(stale.status, 409);
    assert.match(stale.body.message, /^Operation cannot be fulfilled on deployments.apps "vllm"/);

    const negative = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm/scale`,
      [{ op: "replace", path: "/spec/replicas", value: -1 }],
      "application/json-patch+json",
    );
    assert.equal(negative.status, 422);

    const apps = kube.kubeConfig().makeApiClient(AppsV1Api);
    const viaClient = await apps.patchNamespacedDeploymentScale(
      { name: "vllm", namespace: NS, body: { spec: { replicas: 0 } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    assert.equal(viaClient.spec?.replicas, 0);
    const read = await apps.readNamespacedDeploymentScale({ name: "vllm", namespace: NS });
    assert.equal(read.spec?.replicas, 0);
    const scaleCalls = kube.calls.filter((c) =>
      c.resource === "deployments" && c.subresource === "scale" && c.verb === "patch" && c.status === 200
    );
    assert.equal(scaleCalls.length, 2);
  });
});

Deno.test("selectors: labelSelector operators and fieldSelector on list", async () => {
  await withKube({}, async (kube) => {
    for (
      const [name, labels] of [["a", { app: "x", tier: "1" }], ["b", { app: "y" }], ["c", { other: "z" }]] as const
    ) {
      kube.store.createObject("configmaps", { metadata: { name, labels } });
    }
    const names = async (query: string) =>
      (await api(kube, "GET", `${CM_PATH}?${query}`)).body.items.map((i: any) => i.metadata.name);
    assert.deepEqual(await names("labelSelector=app%3Dx"), ["a"]);
    assert.deepEqual(await names("labelSelector=app%3D%3Dx"), ["a"]);
    assert.deepEqual(await names("labelSelector=app!%3Dx"), ["b", "c"]);
    assert.deepEqual(await names("labelSelector=" + encodeURIComponent("app in (x,y)")), ["a", "b"]);
    assert.deepEqual(await names("labelSelector=" + encodeURIComponent("app notin (x)")), ["b", "c"]);
    assert.deepEqual(await names("labelSelector=app"), ["a", "b"]);
    assert.deepEqual(await names("labelSelector=!app"), ["c"]);
    assert.deepEqual(await names("labelSelector=" + encodeURIComponent("app,tier=1")), ["a"]);
    assert.deepEqual(await names("fieldSelector=metadata.name%3Db"), ["b"]);
    assert.deepEqual(await names("fieldSelector=metadata.namespace%3Dai-apps"), ["a", "b", "c"]);
    const bad = await api(kube, "GET", `${CM_PATH}?fieldSelector=data.x%3D1`);
    assert.equal(bad.status, 400);
    kube.store.createObject("pods", { metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "i:1" }] } });
    const byPhase = await api(kube, "GET", `/api/v1/namespaces/${NS}/pods?fieldSelector=status.phase%3DPending`);
    assert.deepEqual(byPhase.body.items.map((i: any) => i.metadata.name), ["p"]);
    const list = await api(kube, "GET", CM_PATH);
    assert.equal(list.body.kind, "ConfigMapList");
    assert.equal(list.body.metadata.resourceVersion, kube.store.resourceVersion());
  });
});

Deno.test("watch: replay from resourceVersion, 410 after compaction, selector transitions, bookmarks, timeout", async () => {
  await withKube({ bookmarkIntervalMs: 50 }, async (kube) => {
    const a = kube.store.createObject("configmaps", { metadata: { name: "a", labels: { app: "vllm" } } });
    kube.store.updateObject("configmaps", { ...a, data: { v: "1" } });
    kube.store.createObject("configmaps", { metadata: { name: "b" } });

    const replay = await fetch(`${kube.url}${CM_PATH}?watch=true&resourceVersion=${a.metadata.resourceVersion}`);
    const replayed = await readEvents(replay, (e) => e.length >= 2);
    assert.deepEqual(replayed.events.map((e) => [e.type, e.object.metadata.name]), [["MODIFIED", "a"], ["ADDED", "b"]]);
    assert.equal(replayed.events[0].object.kind, "ConfigMap");

    const initial = await fetch(`${kube.url}${CM_PATH}?watch=1`);
    const synthetic = await readEvents(initial, (e) => e.length >= 2);
    assert.deepEqual(synthetic.events.map((e) => e.type), ["ADDED", "ADDED"]);

    // An object leaving the selector is DELETED for that watcher, entering is ADDED.
    const selected = await fetch(
      `${kube.url}${CM_PATH}?watch=true&labelSelector=app%3Dvllm&resourceVersion=${kube.store.resourceVersion()}`,
    );
    const current = kube.store.getObject("configmaps", "a");
    kube.store.updateObject("configmaps", { ...current, metadata: { ...current.metadata, labels: {} } });
    const again = kube.store.getObject("configmaps", "a");
    kube.store.updateObject("configmaps", { ...again, metadata: { ...again.metadata, labels: { app: "vllm" } } });
    const transitions = await readEvents(selected, (e) => e.length >= 2);
    assert.deepEqual(transitions.events.map((e) => e.type), ["DELETED", "ADDED"]);

    const oldRv = kube.store.resourceVersion();
    kube.store.createObject("configmaps", { metadata: { name: "c" } });
    kube.store.compact();
    const expired = await fetch(`${kube.url}${CM_PATH}?watch=true&resourceVersion=${Number(oldRv) - 1}`);
    assert.equal(expired.status, 200);
    const expiredEvents = await readEvents(expired, (e) => e.length >= 1);
    assert.equal(expiredEvents.events[0].type, "ERROR");
    assert.equal(expiredEvents.events[0].object.code, 410);
    assert.equal(expiredEvents.events[0].object.reason, "Expired");

    const bookmarks = await fetch(
      `${kube.url}${CM_PATH}?watch=true&allowWatchBookmarks=true&resourceVersion=${kube.store.resourceVersion()}`,
    );
    const marks = await readEvents(bookmarks, (e) => e.length >= 1);
    assert.equal(marks.events[0].type, "BOOKMARK");
    assert.equal(marks.events[0].object.metadata.resourceVersion, kube.store.resourceVersion());

    const timed = await fetch(`${kube.url}${CM_PATH}?watch=true&timeoutSeconds=0.1&resourceVersion=${oldRv}`);
    const ended = await readEvents(timed, () => false, 3000);
    assert.equal(ended.ended, true, "the server ends the watch after timeoutSeconds");
  });
});

Deno.test("watch: dropWatches ends client-node watches; a reset connection is a network error", async () => {
  await withKube({}, async (kube) => {
    const watch = new Watch(kube.kubeConfig());
    let doneResolve!: (err: unknown) => void;
    const done = new Promise((r) => (doneResolve = r));
    const seen: string[] = [];
    let seenResolve!: () => void;
    const firstSeen = new Promise<void>((r) => (seenResolve = r));
    const controller = await watch.watch(`${CM_PATH}`, {}, (type, obj) => {
      seen.push(`${type}:${obj.metadata.name}`);
      seenResolve();
    }, (err) => doneResolve(err));
    kube.store.createObject("configmaps", { metadata: { name: "x" } });
    await firstSeen;
    kube.faults.dropWatches("configmaps");
    await done;
    assert.deepEqual(seen, ["ADDED:x"]);
    controller.abort();
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    kube.faults.failNext({ resource: "configmaps", verb: "get" }, 0);
    await assert.rejects(
      core.readNamespacedConfigMap({ name: "x", namespace: NS }),
      (err: any) => err.code === undefined,
    );
    assert.equal((await core.readNamespacedConfigMap({ name: "x", namespace: NS })).metadata?.name, "x");
  });
});

Deno.test("deployment controller + kubelet: scale 0→1 reaches Ready, status stays true; scale to 0 removes the pod", async () => {
  const started: string[] = [];
  const stopped: string[] = [];
  await withKube({
    onPodStart: (p) => void started.push(p.metadata.name),
    onPodStop: (p) => void stopped.push(p.metadata.name),
  }, async (kube) => {
    const apps = kube.kubeConfig().makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({ namespace: NS, body: deployment() as any });
    await kube.until(() => kube.store.getObject("deployments", "vllm")?.status?.observedGeneration === 1);
    assert.equal(podsOf(kube).length, 0);
    await apps.patchNamespacedDeploymentScale(
      { name: "vllm", namespace: NS, body: { spec: { replicas: 1 } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await kube.until(() => podsOf(kube).some(isReady), 5000, "pod Ready");
    const [pod] = podsOf(kube);
    assert.match(pod.metadata.name, /^vllm-[a-z0-9]{10}-[a-z0-9]{5}$/);
    assert.equal(pod.metadata.ownerReferences[0].kind, "ReplicaSet");
    assert.equal(pod.status.phase, "Running");
    assert.equal(pod.status.containerStatuses[0].ready, true);
    assert.equal(pod.spec.nodeName, "fake-node");
    assert.equal(kube.kubelet.gpusInUse(), 1);
    await kube.until(() => kube.store.getObject("deployments", "vllm").status?.readyReplicas === 1);
    const status = kube.store.getObject("deployments", "vllm").status;
    assert.equal(status.availableReplicas, 1);
    assert.equal(status.updatedReplicas, 1);
    assert.equal(status.replicas, 1);
    assert.equal(status.observedGeneration, 2);
    assert.equal(status.conditions.find((c: any) => c.type === "Available").status, "True");
    assert.deepEqual(started, [pod.metadata.name]);

    await apps.patchNamespacedDeploymentScale(
      { name: "vllm", namespace: NS, body: [{ op: "replace", path: "/spec/replicas", value: 0 }] },
    );
    await kube.until(() => podsOf(kube).every((p) => p.metadata.deletionTimestamp), 2000, "terminating");
    const terminating = podsOf(kube)[0];
    if (terminating) {
      assert.equal(terminating.metadata.deletionGracePeriodSeconds, 30);
      assert.equal(kube.kubelet.gpusInUse(), 1, "a terminating pod still holds its GPU");
    }
    await kube.until(() => podsOf(kube).length === 0, 5000, "pod gone");
    assert.equal(kube.kubelet.gpusInUse(), 0);
    assert.deepEqual(stopped, [pod.metadata.name]);
    await kube.until(() => kube.store.getObject("deployments", "vllm").status?.readyReplicas === undefined);
  });
});

Deno.test("scheduler: a new GPU pod stays Pending/Unschedulable while the old one is terminating", async () => {
  await withKube({ timing: { terminateMs: 300 } }, async (kube) => {
    kube.store.createObject("deployments", deployment("vllm", 1));
    await kube.until(() => podsOf(kube).some(isReady), 5000, "first pod Ready");
    const old = podsOf(kube)[0];
    kube.store.updateObject("deployments", {
      ...kube.store.getObject("deployments", "vllm"),
      spec: { ...kube.store.getObject("deployments", "vllm").spec, replicas: 0 },
    });
    await kube.until(() => podsOf(kube).some((p) => p.metadata.deletionTimestamp), 2000, "old terminating");
    const d = kube.store.getObject("deployments", "vllm");
    kube.store.updateObject("deployments", { ...d, spec: { ...d.spec, replicas: 1 } });
    await kube.until(
      () =>
        podsOf(kube).some((p) =>
          p.metadata.name !== old.metadata.name &&
          p.status.conditions?.some((c: any) => c.type === "PodScheduled" && c.reason === "Unschedulable")
        ),
      2000,
      "new pod Unschedulable",
    );
    const pending = podsOf(kube).find((p) => p.metadata.name !== old.metadata.name)!;
    assert.equal(pending.status.phase, "Pending");
    assert.match(
      pending.status.conditions[0].message,
      /^0\/1 nodes are available: 1 Insufficient nvidia\.com\/gpu\./,
    );
    assert.ok(kube.store.getObject("pods", old.metadata.name), "old pod still there");
    await kube.until(() => !kube.store.getObject("pods", old.metadata.name), 3000, "old pod gone");
    await kube.until(() => podsOf(kube).some(isReady), 5000, "new pod Ready");
    assert.equal(kube.kubelet.gpusInUse(), 1);
  });
});

Deno.test("Recreate: a template change deletes old pods before creating new ones", async () => {
  await withKube({ gpusPerNode: 2, timing: { terminateMs: 100 } }, async (kube) => {
    kube.store.createObject("deployments", deployment("vllm", 1));
    await kube.until(() => podsOf(kube).some(isReady), 5000);
    const old = podsOf(kube)[0];
    const seenTogether: boolean[] = [];
    const watch = await fetch(
      `${kube.url}/api/v1/namespaces/${NS}/pods?watch=true&resourceVersion=${kube.store.resourceVersion()}`,
    );
    const patched = await api(
      kube,
      "PATCH",
      `${DEPLOY_PATH}/vllm`,
      { spec: { template: { spec: { containers: [{ name: "vllm", image: "vllm/vllm-openai:v0.12.0" }] } } } },
      "application/strategic-merge-patch+json",
    );
    assert.equal(patched.status, 200);
    const { events } = await readEvents(watch, (e) => e.some((x) => x.type === "ADDED"), 5000);
    const deletedIndex = events.findIndex((e) => e.type === "DELETED" && e.object.metadata.name === old.metadata.name);
    const addedIndex = events.findIndex((e) => e.type === "ADDED");
    seenTogether.push(deletedIndex >= 0 && deletedIndex < addedIndex);
    assert.deepEqual(seenTogether, [true], "old pod is DELETED before the new one is ADDED");
    await kube.until(() => podsOf(kube).some(isReady), 5000);
    assert.equal(podsOf(kube)[0].spec.containers[0].image, "vllm/vllm-openai:v0.12.0");
  });
});

Deno.test("pod deletion: grace period, force (0), stuckTerminating, deletecollection", async () => {
  await withKube({ timing: { terminateMs: 50 } }, async (kube) => {
    kube.store.createObject("deployments", deployment("vllm", 1, 0));
    await kube.until(() => podsOf(kube).some(isReady), 5000);
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    kube.faults.stuckTerminating(true);
    const pod = podsOf(kube)[0];
    const deleted = await core.deleteNamespacedPod({ name: pod.metadata.name, namespace: NS, gracePeriodSeconds: 5 });
    assert.ok(deleted.metadata?.deletionTimestamp);
    assert.equal(deleted.metadata?.deletionGracePeriodSeconds, 5);
    // The controller replaces it; the stuck one stays.
    await kube.until(() => podsOf(kube).length === 2, 2000);
    assert.ok(kube.store.getObject("pods", pod.metadata.name));
    const forced = await api(kube, "DELETE", `/api/v1/namespaces/${NS}/pods/${pod.metadata.name}`, {
      kind: "DeleteOptions",
      apiVersion: "v1",
      gracePeriodSeconds: 0,
    });
    assert.equal(forced.status, 200);
    assert.equal(kube.store.getObject("pods", pod.metadata.name), undefined);
    kube.faults.stuckTerminating(false);

    await kube.until(() => podsOf(kube).some(isReady), 5000);
    const collection = await api(kube, "DELETE", `/api/v1/namespaces/${NS}/pods?labelSelector=app%3Dvllm`);
    assert.equal(collection.status, 200);
    assert.equal(collection.body.kind, "PodList");
    assert.ok(collection.body.items.length >= 1);
    const missing = await api(kube, "DELETE", `/api/v1/namespaces/${NS}/pods/nope`);
    assert.equal(missing.status, 404);
  });
});

Deno.test("faults: failNext, latency, podNeverReady, crashLoop", async () => {
  await withKube({}, async (kube) => {
    kube.faults.failNext({ resource: "configmaps", verb: "get" }, 500, 2);
    for (let i = 0; i < 2; i++) {
      const failed = await api(kube, "GET", `${CM_PATH}/x`);
      assert.equal(failed.status, 500);
      assert.equal(failed.body.reason, "InternalError");
    }
    assert.equal((await api(kube, "GET", `${CM_PATH}/x`)).status, 404);
    kube.faults.failNext({ path: /\/scale$/ }, 503);
    const unavailable = await api(kube, "GET", `${DEPLOY_PATH}/vllm/scale`);
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.headers.get("retry-after"), "1");

    kube.faults.latency(150, { resource: "configmaps" });
    const t0 = performance.now();
    await api(kube, "GET", CM_PATH);
    assert.ok(performance.now() - t0 >= 140);
    kube.faults.clear();

    kube.faults.podNeverReady(true);
    kube.store.createObject("deployments", deployment("vllm", 1, 0));
    await kube.until(() => podsOf(kube).some((p) => p.status.phase === "Running"), 3000);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(podsOf(kube).some(isReady), false);
    kube.faults.podNeverReady(false);
    await kube.until(() => podsOf(kube).some(isReady), 3000, "ready once the fault is cleared");

    kube.faults.crashLoop(true);
    kube.store.createObject("deployments", deployment("crash", 1, 0));
    await kube.until(
      () => podsOf(kube, "crash").some((p) => p.status.containerStatuses?.[0]?.restartCount >= 2),
      5000,
      "restarts",
    );
    const crashing = podsOf(kube, "crash")[0].status.containerStatuses[0];
    assert.equal(crashing.state.waiting.reason, "CrashLoopBackOff");
    assert.equal(crashing.lastState.terminated.exitCode, 1);
    assert.equal(crashing.ready, false);
    kube.faults.clear();
  });
});

Deno.test("readiness hook gates Ready", async () => {
  let healthy = false;
  await withKube({ readiness: () => healthy }, async (kube) => {
    kube.store.createObject("deployments", deployment("vllm", 1, 0));
    await kube.until(() => podsOf(kube).some((p) => p.status.phase === "Running"), 3000);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(podsOf(kube).some(isReady), false);
    healthy = true;
    await kube.until(() => podsOf(kube).some(isReady), 3000);
    healthy = false;
    await kube.until(() => !podsOf(kube).some(isReady), 3000, "not ready again when the probe fails");
  });
});

const ROLE: RoleLike = {
  metadata: { name: "vllm-chill", namespace: NS },
  rules: [
    { apiGroups: ["apps"], resources: ["deployments"], verbs: ["get"] },
    { apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["get", "patch"] },
    { apiGroups: [""], resources: ["configmaps"], verbs: ["get", "create", "update"] },
  ],
};

Deno.test("RBAC: a Role is enforced with the real message; SelfSubjectAccessReview answers from it", async () => {
  await withKube({ role: ROLE }, async (kube) => {
    const denied = await api(kube, "PATCH", `${DEPLOY_PATH}/vllm`, { spec: {} }, "application/merge-patch+json");
    assert.equal(denied.status, 403);
    assert.equal(
      denied.body.message,
      'deployments.apps "vllm" is forbidden: User "system:serviceaccount:ai-apps:vllm-chill" cannot patch resource ' +
        '"deployments" in API group "apps" in the namespace "ai-apps"',
    );
    const list = await api(kube, "GET", `/api/v1/namespaces/${NS}/pods`);
    assert.equal(list.status, 403);
    assert.equal(
      list.body.message,
      'pods is forbidden: User "system:serviceaccount:ai-apps:vllm-chill" cannot list resource "pods" in API group "" ' +
        'in the namespace "ai-apps"',
    );
    const otherNs = await api(kube, "GET", `/api/v1/namespaces/default/configmaps/x`);
    assert.equal(otherNs.status, 403);
    assert.equal((await api(kube, "GET", `${CM_PATH}/x`)).status, 404, "allowed calls go through");
    const scale = await api(kube, "GET", `${DEPLOY_PATH}/vllm/scale`);
    assert.equal(scale.status, 404);

    const authz = kube.kubeConfig().makeApiClient(AuthorizationV1Api);
    const review = (verb: string, resource: string, subresource?: string, group = "") =>
      authz.createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { namespace: NS, verb, group, resource, subresource } } },
      });
    assert.equal((await review("patch", "deployments", "scale", "apps")).status?.allowed, true);
    assert.equal((await review("list", "pods")).status?.allowed, false);
    assert.equal((await review("update", "configmaps")).status?.allowed, true);
  });
});

Deno.test("VLLMModel: validated against the schema (422 with causes); fieldValidation Strict/Warn/Ignore", async () => {
  await withKube({}, async (kube) => {
    const custom = kube.kubeConfig().makeApiClient(CustomObjectsApi);
    const ok = await custom.createNamespacedCustomObject({
      group: "vllm.efortin.github.io",
      version: "v1alpha1",
      namespace: NS,
      plural: "vllmmodels",
      body: {
        apiVersion: "vllm.efortin.github.io/v1alpha1",
        kind: "VLLMModel",
        metadata: { name: "qwen3-8b" },
        spec: { modelName: "Qwen/Qwen3-8B", maxModelLen: 32768 },
      },
    });
    assert.equal(ok.metadata.generation, 1);

    const bad = await api(kube, "POST", MODELS_PATH, {
      apiVersion: "vllm.efortin.github.io/v1alpha1",
      kind: "VLLMModel",
      metadata: { name: "bad" },
      spec: { modelName: "x", dtype: "int3", maxModelLen: -5 },
    });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.reason, "Invalid");
    assert.match(bad.body.message, /^VLLMModel\.vllm\.efortin\.github\.io "bad" is invalid: /);
    const fields = bad.body.details.causes.map((c: any) => [c.field, c.reason]);
    assert.deepEqual(fields.sort(), [["spec.dtype", "FieldValueNotSupported"], [
      "spec.maxModelLen",
      "FieldValueInvalid",
    ]]);

    const unknown = {
      apiVersion: "vllm.efortin.github.io/v1alpha1",
      kind: "VLLMModel",
      metadata: { name: "unk" },
      spec: { modelName: "x", bogus: true },
    };
    const strict = await api(kube, "POST", `${MODELS_PATH}?fieldValidation=Strict`, unknown);
    assert.equal(strict.status, 400);
    assert.match(strict.body.message, /strict decoding error: unknown field "spec.bogus"/);
    const warn = await api(kube, "POST", `${MODELS_PATH}?fieldValidation=Warn`, unknown);
    assert.equal(warn.status, 201);
    assert.match(warn.headers.get("warning") ?? "", /unknown field \\"spec.bogus\\"/);
    assert.equal(warn.body.spec.bogus, undefined, "unknown fields are pruned");
    await api(kube, "DELETE", `${MODELS_PATH}/unk`);
    const ignore = await api(kube, "POST", `${MODELS_PATH}?fieldValidation=Ignore`, unknown);
    assert.equal(ignore.status, 201);
    assert.equal(ignore.headers.get("warning"), null);

    const noRv = await api(kube, "PUT", `${MODELS_PATH}/qwen3-8b`, { ...unknown, metadata: { name: "qwen3-8b" } });
    assert.equal(noRv.status, 422, "custom resources need a resourceVersion on update");

    const status = await api(kube, "PUT", `${MODELS_PATH}/qwen3-8b/status`, {
      ...kube.store.getObject("vllmmodels", "qwen3-8b"),
      status: { phase: "Ready" },
    });
    assert.equal(status.status, 200);
    assert.equal(kube.store.getObject("vllmmodels", "qwen3-8b").status.phase, "Ready");
    assert.equal(kube.store.getObject("vllmmodels", "qwen3-8b").metadata.generation, 1);
  });
});

Deno.test("discovery, auth and unknown routes", async () => {
  await withKube({}, async (kube) => {
    assert.equal((await api(kube, "GET", "/version")).body.major, "1");
    const groups = (await api(kube, "GET", "/apis")).body.groups.map((g: any) => g.name);
    assert.ok(groups.includes("vllm.efortin.github.io"));
    const apps = (await api(kube, "GET", "/apis/apps/v1")).body.resources.map((r: any) => r.name);
    assert.ok(apps.includes("deployments/scale"));
    const wrongToken = await fetch(`${kube.url}/api/v1/namespaces/${NS}/pods`, {
      headers: { authorization: "Bearer wrong" },
    });
    assert.equal(wrongToken.status, 401);
    await wrongToken.body?.cancel();
    assert.equal((await api(kube, "GET", "/apis/apps/v1/namespaces/ai-apps/replicasets")).status, 404);
    assert.equal((await api(kube, "GET", "/nope")).status, 404);
  });
});

Deno.test("RBAC: the Role generated from API_CALLS allows every listed call and nothing else", async () => {
  const { roleRules } = await import("../../lib/manifests/rbac.ts");
  const { API_CALLS } = await import("../../lib/kube/api_calls.ts");
  await withKube({ role: { metadata: { name: "vllm-chill", namespace: NS }, rules: roleRules() } }, async (kube) => {
    const authz = kube.kubeConfig().makeApiClient(AuthorizationV1Api);
    for (const call of API_CALLS) {
      for (const verb of call.verbs) {
        const review = await authz.createSelfSubjectAccessReview({
          body: {
            spec: {
              resourceAttributes: {
                namespace: NS,
                verb,
                group: call.group,
                resource: call.resource,
                subresource: call.subresource,
              },
            },
          },
        });
        assert.equal(review.status?.allowed, true, `${verb} ${call.resource}/${call.subresource ?? ""}`);
      }
    }
    const denied = await authz.createSelfSubjectAccessReview({
      body: { spec: { resourceAttributes: { namespace: NS, verb: "delete", group: "apps", resource: "deployments" } } },
    });
    assert.equal(denied.status?.allowed, false);
  });
});

Deno.test("list pagination: limit + continue; an expired continue token is 410", async () => {
  await withKube({}, async (kube) => {
    for (const name of ["a", "b", "c", "d", "e"]) kube.store.createObject("configmaps", { metadata: { name } });
    const first = await api(kube, "GET", `${CM_PATH}?limit=2`);
    assert.deepEqual(first.body.items.map((i: any) => i.metadata.name), ["a", "b"]);
    assert.equal(first.body.metadata.remainingItemCount, 3);
    kube.store.createObject("configmaps", { metadata: { name: "f" } });
    const second = await api(
      kube,
      "GET",
      `${CM_PATH}?limit=2&continue=${encodeURIComponent(first.body.metadata.continue)}`,
    );
    assert.deepEqual(second.body.items.map((i: any) => i.metadata.name), ["c", "d"]);
    assert.equal(second.body.metadata.resourceVersion, first.body.metadata.resourceVersion, "a consistent snapshot");
    const third = await api(
      kube,
      "GET",
      `${CM_PATH}?limit=2&continue=${encodeURIComponent(second.body.metadata.continue)}`,
    );
    assert.deepEqual(third.body.items.map((i: any) => i.metadata.name), ["e"]);
    assert.equal(third.body.metadata.continue, undefined);
    const again = await api(kube, "GET", `${CM_PATH}?limit=1`);
    kube.store.createObject("configmaps", { metadata: { name: "g" } });
    kube.store.compact();
    const expired = await api(
      kube,
      "GET",
      `${CM_PATH}?limit=1&continue=${encodeURIComponent(again.body.metadata.continue)}`,
    );
    assert.equal(expired.status, 410);
    assert.equal(expired.body.reason, "Expired");
  });
});

Deno.test("kubelet: a failing onPodStart shows CreateContainerError and is retried", async () => {
  let attempts = 0;
  await withKube({
    onPodStart: () => {
      attempts++;
      if (attempts === 1) throw new Error("fake vLLM failed to spawn");
    },
  }, async (kube) => {
    kube.store.createObject("deployments", deployment("vllm", 1, 0));
    await kube.until(
      () =>
        podsOf(kube).some((p) => p.status.containerStatuses?.[0]?.state?.waiting?.reason === "CreateContainerError"),
      3000,
      "CreateContainerError",
    );
    await kube.until(() => podsOf(kube).some(isReady), 3000, "Ready after the retry");
    assert.equal(attempts, 2);
    assert.equal(kube.kubelet.hookErrors.length, 1);
  });
});
