/**
 * Defaulting the API server applies on create (the fields a real cluster
 * fills in), plus small helpers shared by the simulation.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import type { ResourceName } from "./resources.ts";

/**
 * RFC 3339 timestamp with second precision, as Kubernetes writes them.
 *
 * @example
 * ```ts
 * import { timestamp } from "./defaults.ts";
 * timestamp(new Date(0)); // "1970-01-01T00:00:00Z"
 * ```
 */
export function timestamp(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

const ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

/**
 * A random suffix in Kubernetes' safe alphabet (for generateName and pod names).
 *
 * @example
 * ```ts
 * import { randomSuffix } from "./defaults.ts";
 * randomSuffix(5).length; // 5
 * ```
 */
export function randomSuffix(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET[Math.floor(Math.random() * ALPHABET.length)];
  return out;
}

/**
 * A stable hash of a value in the safe alphabet (the pod-template-hash).
 *
 * @example
 * ```ts
 * import { stableHash } from "./defaults.ts";
 * stableHash({ a: 1 }) === stableHash({ a: 1 }); // true
 * ```
 */
export function stableHash(value: unknown): string {
  const text = JSON.stringify(value) ?? "";
  let h = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ text.charCodeAt(i), 0x5bd1e995) >>> 0;
  }
  let n = BigInt(h) * 4294967296n + BigInt(h2);
  let out = "";
  for (let i = 0; i < 10; i++) {
    out += ALPHABET[Number(n % 27n)];
    n /= 27n;
  }
  return out;
}

function defaultPodSpec(spec: any): void {
  spec.restartPolicy ??= "Always";
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= "ClusterFirst";
  spec.schedulerName ??= "default-scheduler";
  spec.securityContext ??= {};
  for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
    if (!c || typeof c !== "object") continue;
    c.terminationMessagePath ??= "/dev/termination-log";
    c.terminationMessagePolicy ??= "File";
    c.imagePullPolicy ??= String(c.image ?? "").endsWith(":latest") || !String(c.image ?? "").includes(":")
      ? "Always"
      : "IfNotPresent";
    c.resources ??= {};
    for (const p of c.ports ?? []) p.protocol ??= "TCP";
  }
}

let nextClusterIp = 10;

/**
 * Fills in the defaults a real API server sets on create.
 *
 * @example
 * ```ts
 * import { applyDefaults } from "./defaults.ts";
 * applyDefaults("deployments", { spec: { template: { spec: { containers: [] } } } }).spec.replicas; // 1
 * ```
 */
export function applyDefaults(resource: ResourceName, obj: any): any {
  if (resource === "deployments") {
    const spec = (obj.spec ??= {});
    spec.replicas ??= 1;
    spec.revisionHistoryLimit ??= 10;
    spec.progressDeadlineSeconds ??= 600;
    spec.strategy ??= { type: "RollingUpdate" };
    if (spec.strategy.type === undefined) spec.strategy.type = "RollingUpdate";
    if (spec.strategy.type === "RollingUpdate") {
      spec.strategy.rollingUpdate ??= {};
      spec.strategy.rollingUpdate.maxSurge ??= "25%";
      spec.strategy.rollingUpdate.maxUnavailable ??= "25%";
    }
    spec.template ??= {};
    spec.template.metadata ??= {};
    spec.template.spec ??= {};
    defaultPodSpec(spec.template.spec);
  } else if (resource === "pods") {
    obj.spec ??= {};
    defaultPodSpec(obj.spec);
    obj.spec.enableServiceLinks ??= true;
    obj.spec.preemptionPolicy ??= "PreemptLowerPriority";
    obj.spec.priority ??= 0;
    obj.status = { phase: "Pending", qosClass: qosClass(obj.spec) };
  } else if (resource === "services") {
    const spec = (obj.spec ??= {});
    spec.type ??= "ClusterIP";
    spec.sessionAffinity ??= "None";
    if (spec.clusterIP === undefined && spec.type !== "ExternalName") {
      spec.clusterIP = `10.96.0.${nextClusterIp++ % 250 + 2}`;
      spec.clusterIPs = [spec.clusterIP];
    }
    spec.ipFamilies ??= ["IPv4"];
    spec.ipFamilyPolicy ??= "SingleStack";
    spec.internalTrafficPolicy ??= "Cluster";
    for (const p of spec.ports ?? []) {
      p.protocol ??= "TCP";
      p.targetPort ??= p.port;
    }
    obj.status ??= { loadBalancer: {} };
  }
  return obj;
}

function qosClass(spec: any): string {
  const containers: any[] = spec.containers ?? [];
  const any = containers.some((c) =>
    Object.keys(c?.resources?.requests ?? {}).length || Object.keys(c?.resources?.limits ?? {}).length
  );
  return any ? "Burstable" : "BestEffort";
}

/**
 * GPUs a pod asks for: the sum over containers of any resource whose name
 * ends in "/gpu" (limits, else requests).
 *
 * @example
 * ```ts
 * import { podGpus } from "./defaults.ts";
 * podGpus({ spec: { containers: [{ resources: { limits: { "nvidia.com/gpu": "1" } } }] } }); // 1
 * ```
 */
export function podGpus(pod: any): number {
  let total = 0;
  for (const c of pod?.spec?.containers ?? []) {
    const source = { ...(c?.resources?.requests ?? {}), ...(c?.resources?.limits ?? {}) };
    for (const [key, value] of Object.entries(source)) {
      if (key.endsWith("/gpu")) total += Number(value) || 0;
    }
  }
  return total;
}

/**
 * The GPU resource name a pod asks for (for the Unschedulable message).
 *
 * @example
 * ```ts
 * import { gpuResourceName } from "./defaults.ts";
 * gpuResourceName({ spec: { containers: [{ resources: { limits: { "nvidia.com/gpu": 1 } } }] } }); // "nvidia.com/gpu"
 * ```
 */
export function gpuResourceName(pod: any): string {
  for (const c of pod?.spec?.containers ?? []) {
    for (const key of Object.keys({ ...(c?.resources?.requests ?? {}), ...(c?.resources?.limits ?? {}) })) {
      if (key.endsWith("/gpu")) return key;
    }
  }
  return "nvidia.com/gpu";
}
