/**
 * The simulated control plane and node: a deployment controller (Recreate
 * honoured), a scheduler with a per-node GPU count, a kubelet that moves pods
 * Pending → Running → Ready (optionally gated by a readiness hook), a
 * garbage collector, and graceful pod termination. Everything is driven by
 * store events and setTimeout; every timer is cleared on close().
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import type { ObjectStore, StoreEvent } from "./store.ts";
import { applyDefaults, gpuResourceName, podGpus, randomSuffix, stableHash, timestamp } from "./defaults.ts";
import { notFound } from "./status.ts";

/** Delays of the simulated lifecycle, in milliseconds. */
export interface Timing {
  scheduleMs?: number;
  startMs?: number;
  readyMs?: number;
  terminateMs?: number;
}

/** Switchable node faults. */
export interface NodeFaults {
  podNeverReady: boolean;
  crashLoop: boolean;
  stuckTerminating: boolean;
}

/**
 * One change of the node's GPU use, as the simulated kubelet and scheduler record it: a pod given GPUs (bound,
 * from the moment the scheduler picks it), a pod whose GPUs are free again (gone from the API), or a pod the
 * scheduler could not place for lack of them.
 */
export interface GpuEvent {
  /** performance.now() of the change. */
  at: number;
  event: "bound" | "released" | "unschedulable";
  pod: string;
  /** The pod's model label (`vllm.efortin.github.io/model`), when it has one. */
  model?: string;
  /** GPUs the pod asks for. */
  gpus: number;
  /** GPUs in use on the node right after the change. */
  inUse: number;
}

/** Options of the simulation. */
export interface ClusterOptions {
  gpusPerNode: number;
  timing: Required<Timing>;
  readiness?: (pod: any) => Promise<boolean> | boolean;
  onPodStart?: (pod: any) => void | Promise<void>;
  onPodStop?: (pod: any) => void | Promise<void>;
  faults: NodeFaults;
}

const NODE = "fake-node";
const PROBE_MS = 20;
const READY_PROBE_MS = 200;

interface PodRuntime {
  binding: boolean;
  bound: boolean;
  started: boolean;
  stopped: boolean;
  crashing: boolean;
  terminating: boolean;
}

/**
 * The simulation attached to a store.
 *
 * @example
 * ```ts ignore
 * const cluster = new Cluster(store, options);
 * cluster.close();
 * ```
 */
export class Cluster {
  readonly #store: ObjectStore;
  readonly #opts: ClusterOptions;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #runtime = new Map<string, PodRuntime>();
  readonly #unsubscribe: () => void;
  #reconcileQueued = false;
  #closed = false;
  #podIp = 10;
  /** Errors thrown by hooks (tests may assert it stays empty). */
  readonly hookErrors: unknown[] = [];
  /** Every change of the node's GPU use, in order. */
  readonly gpuLog: GpuEvent[] = [];
  /** Pods holding GPUs now (uid → GPUs), for the log. */
  readonly #holding = new Map<string, number>();

  constructor(store: ObjectStore, opts: ClusterOptions) {
    this.#store = store;
    this.#opts = opts;
    this.#unsubscribe = store.subscribe((e) => this.#onEvent(e));
  }

  /** Stops every timer and detaches from the store. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    for (const id of this.#timers) clearTimeout(id);
    this.#timers.clear();
  }

  #after(ms: number, fn: () => void | Promise<void>): void {
    if (this.#closed) return;
    const id = setTimeout(() => {
      this.#timers.delete(id);
      if (this.#closed) return;
      Promise.resolve()
        .then(fn)
        .catch((err) => this.hookErrors.push(err));
    }, Math.max(0, ms));
    this.#timers.add(id);
  }

  #onEvent(e: StoreEvent): void {
    if (e.resource === "pods" && e.type === "DELETED") {
      this.#runtime.delete(e.object.metadata.uid);
      if (this.#holding.delete(e.object.metadata.uid)) this.#logGpu("released", e.object);
    }
    if (e.resource === "deployments" || e.resource === "pods") this.kick();
  }

  /** Queues a reconcile pass (coalesced). */
  kick(): void {
    if (this.#reconcileQueued || this.#closed) return;
    this.#reconcileQueued = true;
    this.#after(0, () => {
      this.#reconcileQueued = false;
      this.#reconcile();
    });
  }

  #rt(pod: any): PodRuntime {
    let rt = this.#runtime.get(pod.metadata.uid);
    if (!rt) {
      rt = { binding: false, bound: false, started: false, stopped: false, crashing: false, terminating: false };
      this.#runtime.set(pod.metadata.uid, rt);
    }
    return rt;
  }

  #logGpu(event: GpuEvent["event"], pod: any): void {
    const model = pod.metadata?.labels?.["vllm.efortin.github.io/model"];
    this.gpuLog.push({
      at: performance.now(),
      event,
      pod: pod.metadata.name,
      ...(model ? { model } : {}),
      gpus: podGpus(pod),
      inUse: this.gpusInUse(),
    });
  }

  /** The most GPUs in use at once on the node so far. */
  peakGpusInUse(): number {
    return this.gpuLog.reduce((peak, e) => Math.max(peak, e.inUse), 0);
  }

  /** GPUs held by pods bound (or being bound) to the node, terminating ones included. */
  gpusInUse(): number {
    let used = 0;
    for (const pod of this.#store.list("pods")) {
      if (pod.spec?.nodeName || this.#runtime.get(pod.metadata.uid)?.binding) used += podGpus(pod);
    }
    return used;
  }

  #reconcile(): void {
    for (const d of this.#store.list("deployments")) this.#reconcileDeployment(d);
    this.#collectOrphans();
    this.#schedule();
    for (const d of this.#store.list("deployments")) this.#updateDeploymentStatus(d);
  }

  #ownedPods(d: any): any[] {
    const prefix = `${d.metadata.name}-`;
    return this.#store.list("pods", d.metadata.namespace).filter((p) =>
      (p.metadata.ownerReferences ?? []).some((o: any) =>
        o.kind === "ReplicaSet" && o.controller && o.name.startsWith(prefix) &&
        !o.name.slice(prefix.length).includes("-")
      )
    );
  }

  #templateHash(d: any): string {
    return stableHash(d.spec.template);
  }

  #reconcileDeployment(d: any): void {
    if (d.metadata.deletionTimestamp) return;
    const hash = this.#templateHash(d);
    const owned = this.#ownedPods(d);
    const isCurrent = (p: any) => p.metadata.labels?.["pod-template-hash"] === hash;
    const oldPods = owned.filter((p) => !isCurrent(p));
    const activeOld = oldPods.filter((p) => !p.metadata.deletionTimestamp);
    for (const p of activeOld) this.deletePod(p.metadata.namespace, p.metadata.name, undefined);
    const recreate = d.spec.strategy?.type === "Recreate";
    const current = owned.filter((p) => isCurrent(p) && !p.metadata.deletionTimestamp);
    const desired = d.spec.replicas ?? 1;
    if (current.length > desired) {
      const rank = (p: any) => (isReady(p) ? 2 : p.spec.nodeName ? 1 : 0);
      const victims = [...current]
        .sort((a, b) => rank(a) - rank(b) || b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp))
        .slice(0, current.length - desired);
      for (const p of victims) this.deletePod(p.metadata.namespace, p.metadata.name, undefined);
    } else if (current.length < desired && !(recreate && oldPods.length > 0)) {
      for (let i = current.length; i < desired; i++) this.#createPod(d, hash);
    }
  }

  #createPod(d: any, hash: string): void {
    const template = structuredClone(d.spec.template ?? {});
    const rsName = `${d.metadata.name}-${hash}`;
    const pod = applyDefaults("pods", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `${rsName}-${randomSuffix(5)}`,
        generateName: `${rsName}-`,
        namespace: d.metadata.namespace,
        labels: { ...(template.metadata?.labels ?? {}), "pod-template-hash": hash },
        ...(template.metadata?.annotations ? { annotations: template.metadata.annotations } : {}),
        ownerReferences: [{
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: rsName,
          uid: `rs-${d.metadata.uid}-${hash}`,
          controller: true,
          blockOwnerDeletion: true,
        }],
      },
      spec: template.spec ?? {},
    });
    this.#store.insert("pods", pod);
  }

  #collectOrphans(): void {
    const deployments = new Set(
      this.#store.list("deployments").map((d) => `${d.metadata.namespace}/${d.metadata.name}`),
    );
    for (const p of this.#store.list("pods")) {
      if (p.metadata.deletionTimestamp) continue;
      const owner = (p.metadata.ownerReferences ?? []).find((o: any) => o.kind === "ReplicaSet" && o.controller);
      if (!owner || !String(owner.uid).startsWith("rs-")) continue;
      const deployName = owner.name.slice(0, owner.name.lastIndexOf("-"));
      if (!deployments.has(`${p.metadata.namespace}/${deployName}`)) {
        this.deletePod(p.metadata.namespace, p.metadata.name, undefined);
      }
    }
  }

  #schedule(): void {
    const pending = this.#store
      .list("pods")
      .filter((p) => !p.spec?.nodeName && !p.metadata.deletionTimestamp && !this.#rt(p).binding)
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
    for (const pod of pending) {
      const gpus = podGpus(pod);
      if (gpus > 0 && this.gpusInUse() + gpus > this.#opts.gpusPerNode) {
        this.#markUnschedulable(pod);
        continue;
      }
      this.#rt(pod).binding = true;
      if (gpus > 0) {
        this.#holding.set(pod.metadata.uid, gpus);
        this.#logGpu("bound", pod);
      }
      this.#after(
        this.#opts.timing.scheduleMs,
        () => this.#bind(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid),
      );
    }
  }

  #markUnschedulable(pod: any): void {
    const resource = gpuResourceName(pod);
    const message = `0/1 nodes are available: 1 Insufficient ${resource}. preemption: 0/1 nodes are available: ` +
      "1 No preemption victims found for incoming pod.";
    const existing = (pod.status?.conditions ?? []).find((c: any) => c.type === "PodScheduled");
    if (existing?.status === "False" && existing.reason === "Unschedulable" && existing.message === message) return;
    this.#logGpu("unschedulable", pod);
    pod.status = {
      ...pod.status,
      phase: "Pending",
      conditions: [{
        type: "PodScheduled",
        status: "False",
        lastProbeTime: null,
        lastTransitionTime: timestamp(),
        reason: "Unschedulable",
        message,
      }],
    };
    this.#store.replace("pods", pod);
  }

  #fresh(namespace: string, name: string, uid: string): any | undefined {
    const pod = this.#store.get("pods", namespace, name);
    return pod && pod.metadata.uid === uid ? pod : undefined;
  }

  #bind(namespace: string, name: string, uid: string): void {
    const pod = this.#fresh(namespace, name, uid);
    const rt = this.#runtime.get(uid);
    if (!pod || !rt) return;
    rt.binding = false;
    if (pod.metadata.deletionTimestamp) return;
    const now = timestamp();
    pod.spec.nodeName = NODE;
    pod.status = {
      ...pod.status,
      phase: "Pending",
      hostIP: "192.168.0.10",
      hostIPs: [{ ip: "192.168.0.10" }],
      startTime: now,
      conditions: [
        { type: "PodReadyToStartContainers", status: "False", lastProbeTime: null, lastTransitionTime: now },
        { type: "Initialized", status: "True", lastProbeTime: null, lastTransitionTime: now },
        {
          type: "Ready",
          status: "False",
          lastProbeTime: null,
          lastTransitionTime: now,
          reason: "ContainersNotReady",
          message: `containers with unready status: [${containerNames(pod).join(" ")}]`,
        },
        {
          type: "ContainersReady",
          status: "False",
          lastProbeTime: null,
          lastTransitionTime: now,
          reason: "ContainersNotReady",
          message: `containers with unready status: [${containerNames(pod).join(" ")}]`,
        },
        { type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: now },
      ],
      containerStatuses: (pod.spec.containers ?? []).map((c: any) => ({
        name: c.name,
        state: { waiting: { reason: "ContainerCreating" } },
        lastState: {},
        ready: false,
        restartCount: 0,
        image: c.image,
        imageID: "",
        started: false,
      })),
    };
    rt.bound = true;
    this.#store.replace("pods", pod);
    this.#after(this.#opts.timing.startMs, () => this.#startContainers(namespace, name, uid));
  }

  async #startContainers(namespace: string, name: string, uid: string): Promise<void> {
    let pod = this.#fresh(namespace, name, uid);
    const rt = this.#runtime.get(uid);
    if (!pod || !rt || pod.metadata.deletionTimestamp) return;
    if (this.#opts.faults.crashLoop) return this.#crash(namespace, name, uid);
    rt.crashing = false;
    if (!rt.started) {
      rt.started = true;
      try {
        await this.#opts.onPodStart?.(structuredClone(pod));
      } catch (err) {
        // The container could not start: the kubelet reports it and retries later.
        this.hookErrors.push(err);
        rt.started = false;
        const failed = this.#fresh(namespace, name, uid);
        if (!failed || failed.metadata.deletionTimestamp) return;
        for (const cs of failed.status.containerStatuses ?? []) {
          cs.state = { waiting: { reason: "CreateContainerError", message: String((err as Error)?.message ?? err) } };
        }
        this.#store.replace("pods", failed);
        this.#after(Math.max(this.#opts.timing.startMs, 50), () => this.#startContainers(namespace, name, uid));
        return;
      }
      pod = this.#fresh(namespace, name, uid);
      if (!pod || pod.metadata.deletionTimestamp) return;
    }
    const now = timestamp();
    pod.status.phase = "Running";
    pod.status.podIP ??= `10.244.0.${this.#podIp++ % 250 + 2}`;
    pod.status.podIPs = [{ ip: pod.status.podIP }];
    setCondition(pod, "PodReadyToStartContainers", "True");
    pod.status.containerStatuses = (pod.spec.containers ?? []).map((c: any, i: number) => {
      const previous = pod.status.containerStatuses?.[i] ?? {};
      return {
        name: c.name,
        state: { running: { startedAt: now } },
        lastState: previous.lastState ?? {},
        ready: false,
        restartCount: previous.restartCount ?? 0,
        image: c.image,
        imageID: `docker.io/${c.image}@sha256:${"0".repeat(64)}`,
        containerID: `containerd://${stableHash([uid, previous.restartCount ?? 0])}`,
        started: true,
      };
    });
    this.#store.replace("pods", pod);
    this.#after(this.#opts.timing.readyMs, () => this.#probe(namespace, name, uid));
  }

  #crash(namespace: string, name: string, uid: string): void {
    const pod = this.#fresh(namespace, name, uid);
    const rt = this.#runtime.get(uid);
    if (!pod || !rt || pod.metadata.deletionTimestamp) return;
    rt.crashing = true;
    const now = timestamp();
    pod.status.phase = "Running";
    setCondition(pod, "Ready", "False", "ContainersNotReady");
    setCondition(pod, "ContainersReady", "False", "ContainersNotReady");
    pod.status.containerStatuses = (pod.spec.containers ?? []).map((c: any, i: number) => {
      const previous = pod.status.containerStatuses?.[i] ?? {};
      return {
        name: c.name,
        state: {
          waiting: {
            reason: "CrashLoopBackOff",
            message: `back-off 10s restarting failed container=${c.name} pod=${name}_${namespace}(${uid})`,
          },
        },
        lastState: {
          terminated: {
            exitCode: 1,
            reason: "Error",
            startedAt: now,
            finishedAt: now,
            containerID: "containerd://crashed",
          },
        },
        ready: false,
        restartCount: (previous.restartCount ?? 0) + 1,
        image: c.image,
        imageID: `docker.io/${c.image}@sha256:${"0".repeat(64)}`,
        containerID: "containerd://crashed",
        started: false,
      };
    });
    this.#store.replace("pods", pod);
    this.#after(Math.max(this.#opts.timing.startMs, 50), () => this.#startContainers(namespace, name, uid));
  }

  async #probe(namespace: string, name: string, uid: string): Promise<void> {
    const pod = this.#fresh(namespace, name, uid);
    const rt = this.#runtime.get(uid);
    if (!pod || !rt || pod.metadata.deletionTimestamp || rt.terminating) return;
    if (this.#opts.faults.crashLoop) return this.#crash(namespace, name, uid);
    const wasReady = isReady(pod);
    let ready = !this.#opts.faults.podNeverReady;
    if (ready && this.#opts.readiness) {
      try {
        ready = await this.#opts.readiness(structuredClone(pod));
      } catch {
        ready = false;
      }
    }
    const latest = this.#fresh(namespace, name, uid);
    if (!latest || latest.metadata.deletionTimestamp || this.#closed) return;
    if (ready !== wasReady) this.#setReady(latest, ready);
    const keepProbing = !ready || this.#opts.readiness !== undefined || this.#opts.faults.podNeverReady;
    if (keepProbing) this.#after(ready ? READY_PROBE_MS : PROBE_MS, () => this.#probe(namespace, name, uid));
    else this.#after(READY_PROBE_MS, () => this.#probe(namespace, name, uid));
  }

  #setReady(pod: any, ready: boolean): void {
    const status = ready ? "True" : "False";
    const reason = ready ? undefined : "ContainersNotReady";
    setCondition(pod, "Ready", status, reason);
    setCondition(pod, "ContainersReady", status, reason);
    for (const cs of pod.status.containerStatuses ?? []) cs.ready = ready;
    this.#store.replace("pods", pod);
  }

  /**
   * Deletes a pod like the API server + kubelet: unscheduled pods and grace
   * period 0 go at once; otherwise the pod gets deletionTimestamp and is
   * removed after the termination delay (never while stuckTerminating).
   * Returns the pod as the DELETE response shows it.
   */
  deletePod(namespace: string, name: string, gracePeriodSeconds: number | undefined): any {
    const pod = this.#store.get("pods", namespace, name);
    if (!pod) throw notFound("pods", "", name);
    const rt = this.#rt(pod);
    const grace = gracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const unscheduled = !pod.spec?.nodeName && !rt.binding;
    const finished = pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
    if (grace <= 0 || unscheduled || finished) {
      if (!pod.metadata.deletionTimestamp) {
        pod.metadata.deletionTimestamp = timestamp();
        pod.metadata.deletionGracePeriodSeconds = 0;
      }
      this.#stopHook(pod, rt);
      return this.#store.remove("pods", namespace, name) ?? pod;
    }
    if (pod.metadata.deletionTimestamp) return pod;
    pod.metadata.deletionTimestamp = timestamp(new Date(Date.now() + grace * 1000));
    pod.metadata.deletionGracePeriodSeconds = grace;
    const updated = this.#store.replace("pods", pod);
    rt.terminating = true;
    if (!this.#opts.faults.stuckTerminating) {
      const uid = pod.metadata.uid;
      const started = Date.now();
      this.#after(0, async () => {
        await this.#stopHook(pod, rt);
        const wait = Math.min(this.#opts.timing.terminateMs, grace * 1000) - (Date.now() - started);
        this.#after(wait, () => {
          if (this.#fresh(namespace, name, uid)) this.#store.remove("pods", namespace, name);
        });
      });
    }
    return updated;
  }

  async #stopHook(pod: any, rt: PodRuntime): Promise<void> {
    if (!rt.started || rt.stopped) return;
    rt.stopped = true;
    try {
      await this.#opts.onPodStop?.(structuredClone(pod));
    } catch (err) {
      this.hookErrors.push(err);
    }
  }

  #updateDeploymentStatus(d: any): void {
    const hash = this.#templateHash(d);
    const active = this.#ownedPods(d).filter((p) => !p.metadata.deletionTimestamp);
    const desired = d.spec.replicas ?? 1;
    const ready = active.filter(isReady).length;
    const updated = active.filter((p) => p.metadata.labels?.["pod-template-hash"] === hash).length;
    const maxUnavailable = d.spec.strategy?.type === "RollingUpdate" && desired > 0
      ? resolvePercent(d.spec.strategy.rollingUpdate?.maxUnavailable ?? "25%", desired, false)
      : 0;
    const available = ready >= desired - maxUnavailable;
    const rsName = `${d.metadata.name}-${hash}`;
    const progressed = updated === desired && ready >= desired;
    const status: any = { observedGeneration: d.metadata.generation ?? 1 };
    if (active.length) status.replicas = active.length;
    if (updated) status.updatedReplicas = updated;
    if (ready) status.readyReplicas = ready;
    if (ready) status.availableReplicas = ready;
    if (Math.max(0, desired - ready) > 0 || active.length > ready) {
      const unavailable = Math.max(desired, active.length) - ready;
      if (unavailable > 0) status.unavailableReplicas = unavailable;
    }
    const previous = d.status?.conditions ?? [];
    const condition = (type: string, value: string, reason: string, message: string) => {
      const old = previous.find((c: any) => c.type === type);
      const now = timestamp();
      const changed = !old || old.status !== value;
      return {
        type,
        status: value,
        lastUpdateTime: changed || old.reason !== reason ? now : old.lastUpdateTime,
        lastTransitionTime: changed ? now : old.lastTransitionTime,
        reason,
        message,
      };
    };
    status.conditions = [
      available
        ? condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        : condition(
          "Available",
          "False",
          "MinimumReplicasUnavailable",
          "Deployment does not have minimum availability.",
        ),
      progressed
        ? condition(
          "Progressing",
          "True",
          "NewReplicaSetAvailable",
          `ReplicaSet "${rsName}" has successfully progressed.`,
        )
        : condition("Progressing", "True", "ReplicaSetUpdated", `ReplicaSet "${rsName}" is progressing.`),
    ];
    const comparable = (s: any) =>
      JSON.stringify({ ...s, conditions: s?.conditions?.map((c: any) => [c.type, c.status, c.reason, c.message]) });
    if (comparable(d.status ?? {}) === comparable(status)) return;
    d.status = status;
    this.#store.replace("deployments", d);
  }

  /** Copies of all pods on the node or waiting for it. */
  pods(): any[] {
    return this.#store.list("pods");
  }
}

function resolvePercent(value: string | number, total: number, roundUp: boolean): number {
  if (typeof value === "number") return value;
  const pct = Number(value.replace("%", "")) / 100 * total;
  return roundUp ? Math.ceil(pct) : Math.floor(pct);
}

function containerNames(pod: any): string[] {
  return (pod.spec?.containers ?? []).map((c: any) => c.name);
}

/**
 * True when a pod's Ready condition is True.
 *
 * @example
 * ```ts
 * import { isReady } from "./cluster.ts";
 * isReady({ status: { conditions: [{ type: "Ready", status: "True" }] } }); // true
 * ```
 */
export function isReady(pod: any): boolean {
  return (pod?.status?.conditions ?? []).some((c: any) => c.type === "Ready" && c.status === "True");
}

function setCondition(pod: any, type: string, status: string, reason?: string): void {
  const conditions: any[] = (pod.status.conditions ??= []);
  const existing = conditions.find((c) => c.type === type);
  const now = timestamp();
  const names = containerNames(pod).join(" ");
  const next: any = { type, status, lastProbeTime: null, lastTransitionTime: now };
  if (reason) {
    next.reason = reason;
    next.message = `containers with unready status: [${names}]`;
  }
  if (existing) {
    if (existing.status === status && existing.reason === reason) return;
    Object.keys(existing).forEach((k) => delete existing[k]);
    Object.assign(existing, next);
  } else conditions.push(next);
}
