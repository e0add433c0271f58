/**
 * Server-side printing (`meta.k8s.io/v1` Table), which kubectl asks for on
 * `get`: the same columns a real API server returns for pods, deployments,
 * services, configmaps, leases and custom resources.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import type { ResourceInfo } from "./resources.ts";

interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

const col = (name: string, type = "string", priority = 0, format = ""): Column => ({
  name,
  type,
  format,
  description: name,
  priority,
});

/**
 * True when the Accept header asks for a Table.
 *
 * @example
 * ```ts
 * import { wantsTable } from "./table.ts";
 * wantsTable("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"); // true
 * ```
 */
export function wantsTable(accept: string | null): boolean {
  return !!accept && /as=Table/.test(accept) && /g=meta\.k8s\.io/.test(accept);
}

/**
 * Kubernetes' HumanDuration ("45s", "3m20s", "2h", "5d").
 *
 * @example
 * ```ts
 * import { humanDuration } from "./table.ts";
 * humanDuration(200_000); // "3m20s"
 * ```
 */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  return `${Math.floor(hours / 24 / 365)}y`;
}

function age(obj: any): string {
  const created = Date.parse(obj?.metadata?.creationTimestamp ?? "");
  return Number.isNaN(created) ? "<unknown>" : humanDuration(Date.now() - created);
}

function podStatus(pod: any): string {
  let reason = pod.status?.reason ?? pod.status?.phase ?? "Unknown";
  for (const cs of pod.status?.containerStatuses ?? []) {
    if (cs.state?.waiting?.reason) reason = cs.state.waiting.reason;
    else if (cs.state?.terminated?.reason) reason = cs.state.terminated.reason;
  }
  if (pod.metadata?.deletionTimestamp) reason = "Terminating";
  return reason;
}

function podRestarts(pod: any): string | number {
  let restarts = 0;
  let last: number | undefined;
  for (const cs of pod.status?.containerStatuses ?? []) {
    restarts += cs.restartCount ?? 0;
    const finished = Date.parse(cs.lastState?.terminated?.finishedAt ?? "");
    if (!Number.isNaN(finished)) last = Math.max(last ?? 0, finished);
  }
  return last !== undefined && restarts > 0 ? `${restarts} (${humanDuration(Date.now() - last)} ago)` : restarts;
}

function servicePorts(svc: any): string {
  const ports = (svc.spec?.ports ?? []).map((p: any) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ""}/${p.protocol}`);
  return ports.length ? ports.join(",") : "<none>";
}

function selectorText(selector: any): string {
  const parts = Object.entries(selector?.matchLabels ?? selector ?? {}).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(",") : "<none>";
}

function columnsFor(info: ResourceInfo): { columns: Column[]; cells: (o: any) => unknown[] } {
  const name = col("Name", "string", 0, "name");
  switch (info.name) {
    case "pods":
      return {
        columns: [
          name,
          col("Ready"),
          col("Status"),
          col("Restarts", "string"),
          col("Age"),
          col("IP", "string", 1),
          col("Node", "string", 1),
          col("Nominated Node", "string", 1),
          col("Readiness Gates", "string", 1),
        ],
        cells: (p) => {
          const statuses = p.status?.containerStatuses ?? [];
          const total = (p.spec?.containers ?? []).length;
          const ready = statuses.filter((c: any) => c.ready).length;
          return [
            p.metadata.name,
            `${ready}/${total}`,
            podStatus(p),
            podRestarts(p),
            age(p),
            p.status?.podIP ?? "<none>",
            p.spec?.nodeName ?? "<none>",
            "<none>",
            "<none>",
          ];
        },
      };
    case "deployments":
      return {
        columns: [
          name,
          col("Ready"),
          col("Up-to-date", "integer"),
          col("Available", "integer"),
          col("Age"),
          col("Containers", "string", 1),
          col("Images", "string", 1),
          col("Selector", "string", 1),
        ],
        cells: (d) => [
          d.metadata.name,
          `${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 0}`,
          d.status?.updatedReplicas ?? 0,
          d.status?.availableReplicas ?? 0,
          age(d),
          (d.spec?.template?.spec?.containers ?? []).map((c: any) => c.name).join(","),
          (d.spec?.template?.spec?.containers ?? []).map((c: any) => c.image).join(","),
          selectorText(d.spec?.selector),
        ],
      };
    case "services":
      return {
        columns: [
          name,
          col("Type"),
          col("Cluster-IP"),
          col("External-IP"),
          col("Port(s)"),
          col("Age"),
          col("Selector", "string", 1),
        ],
        cells: (s) => [
          s.metadata.name,
          s.spec?.type ?? "ClusterIP",
          s.spec?.clusterIP ?? "<none>",
          "<none>",
          servicePorts(s),
          age(s),
          selectorText(s.spec?.selector),
        ],
      };
    case "configmaps":
      return {
        columns: [name, col("Data", "integer"), col("Age")],
        cells: (c) => [
          c.metadata.name,
          Object.keys(c.data ?? {}).length + Object.keys(c.binaryData ?? {}).length,
          age(c),
        ],
      };
    case "customresourcedefinitions":
    case "roles":
      return {
        columns: [name, col("Created At", "date")],
        cells: (o) => [o.metadata.name, o.metadata.creationTimestamp],
      };
    case "serviceaccounts":
      return {
        columns: [name, col("Secrets", "string"), col("Age")],
        cells: (o) => [o.metadata.name, (o.secrets ?? []).length, age(o)],
      };
    case "rolebindings":
      return {
        columns: [
          name,
          col("Role"),
          col("Age"),
          col("Users", "string", 1),
          col("Groups", "string", 1),
          col("ServiceAccounts", "string", 1),
        ],
        cells: (o) => {
          const subjects: any[] = o.subjects ?? [];
          const of = (kind: string) => subjects.filter((x) => x.kind === kind);
          return [
            o.metadata.name,
            `${o.roleRef?.kind}/${o.roleRef?.name}`,
            age(o),
            of("User").map((x) => x.name).join(", "),
            of("Group").map((x) => x.name).join(", "),
            of("ServiceAccount").map((x) => `${x.namespace ?? ""}/${x.name}`).join(", "),
          ];
        },
      };
    case "leases":
      return {
        columns: [name, col("Holder"), col("Age")],
        cells: (l) => [l.metadata.name, l.spec?.holderIdentity ?? "", age(l)],
      };
    default: {
      const printer = info.printerColumns ?? [{ name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" }];
      return {
        columns: [name, ...printer.map((p) => col(p.name, p.type, p.priority ?? 0, p.format ?? ""))],
        cells: (o) => [
          o.metadata.name,
          ...printer.map((p) => {
            const v = jsonPath(o, p.jsonPath);
            if (p.type === "date") return v === undefined ? "<unknown>" : age({ metadata: { creationTimestamp: v } });
            return v ?? null;
          }),
        ],
      };
    }
  }
}

function jsonPath(obj: any, path: string): any {
  let node = obj;
  for (const part of path.replace(/^\./, "").split(".")) node = node?.[part];
  return node;
}

function rowObject(obj: any, includeObject: string | null): unknown {
  if (includeObject === "None") return undefined;
  if (includeObject === "Object") return obj;
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: obj.metadata };
}

/**
 * A Table of `objects` (list) as a real server prints it.
 *
 * @example
 * ```ts
 * import { toTable } from "./table.ts";
 * import { RESOURCES } from "./resources.ts";
 * toTable(RESOURCES.configmaps, [{ metadata: { name: "a" }, data: { x: "1" } }], "5", null).rows.length; // 1
 * ```
 */
export function toTable(info: ResourceInfo, objects: any[], resourceVersion: string, includeObject: string | null) {
  const { columns, cells } = columnsFor(info);
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion },
    columnDefinitions: columns,
    rows: objects.map((o) => {
      const row: Record<string, unknown> = { cells: cells(o) };
      const object = rowObject(o, includeObject);
      if (object !== undefined) row.object = object;
      return row;
    }),
  };
}
