/**
 * The resources the fake API server serves: group, version, kind, plural,
 * subresources and discovery metadata, in one table.
 *
 * @module
 */

import { vllmModelCrd } from "./crd_schema.ts";

/** Resources the store can hold. */
export type ResourceName =
  | "configmaps"
  | "services"
  | "pods"
  | "deployments"
  | "leases"
  | "vllmmodels"
  | "serviceaccounts"
  | "roles"
  | "rolebindings"
  | "customresourcedefinitions";

/** One served resource. */
export interface ResourceInfo {
  name: ResourceName;
  group: string;
  version: string;
  kind: string;
  singular: string;
  shortNames: string[];
  subresources: string[];
  /** Status is only written through the /status subresource. */
  statusSubresource: boolean;
  /** Custom resource (no strategic merge patch, items keep kind/apiVersion in lists). */
  custom: boolean;
  /** Top-level fields the type declares. */
  fields: string[];
  categories?: string[];
  /** False for cluster-scoped resources (default true). */
  namespaced?: boolean;
  /** A CRD's additionalPrinterColumns. */
  printerColumns?: { name: string; type: string; jsonPath: string; priority?: number; format?: string }[];
}

const CRD = vllmModelCrd();

const ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/** The resource table. */
export const RESOURCES: Record<ResourceName, ResourceInfo> = {
  configmaps: {
    name: "configmaps",
    group: "",
    version: "v1",
    kind: "ConfigMap",
    singular: "configmap",
    shortNames: ["cm"],
    subresources: [],
    statusSubresource: false,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "data", "binaryData", "immutable"],
  },
  services: {
    name: "services",
    group: "",
    version: "v1",
    kind: "Service",
    singular: "service",
    shortNames: ["svc"],
    subresources: ["status"],
    statusSubresource: true,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "spec", "status"],
    categories: ["all"],
  },
  pods: {
    name: "pods",
    group: "",
    version: "v1",
    kind: "Pod",
    singular: "pod",
    shortNames: ["po"],
    subresources: ["status"],
    statusSubresource: true,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "spec", "status"],
    categories: ["all"],
  },
  deployments: {
    name: "deployments",
    group: "apps",
    version: "v1",
    kind: "Deployment",
    singular: "deployment",
    shortNames: ["deploy"],
    subresources: ["scale", "status"],
    statusSubresource: true,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "spec", "status"],
    categories: ["all"],
  },
  leases: {
    name: "leases",
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    singular: "lease",
    shortNames: [],
    subresources: [],
    statusSubresource: false,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "spec"],
  },
  vllmmodels: {
    name: "vllmmodels",
    group: CRD.group,
    version: CRD.version.name,
    kind: CRD.names.kind,
    singular: CRD.names.singular,
    shortNames: CRD.names.shortNames ?? [],
    subresources: CRD.version.subresources?.status ? ["status"] : [],
    statusSubresource: !!CRD.version.subresources?.status,
    custom: true,
    fields: ["apiVersion", "kind", "metadata", "spec", "status"],
    categories: CRD.names.categories,
    printerColumns: CRD.version.additionalPrinterColumns,
  },
  serviceaccounts: {
    name: "serviceaccounts",
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    singular: "serviceaccount",
    shortNames: ["sa"],
    subresources: [],
    statusSubresource: false,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "secrets", "imagePullSecrets", "automountServiceAccountToken"],
  },
  roles: {
    name: "roles",
    group: "rbac.authorization.k8s.io",
    version: "v1",
    kind: "Role",
    singular: "role",
    shortNames: [],
    subresources: [],
    statusSubresource: false,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "rules"],
  },
  rolebindings: {
    name: "rolebindings",
    group: "rbac.authorization.k8s.io",
    version: "v1",
    kind: "RoleBinding",
    singular: "rolebinding",
    shortNames: [],
    subresources: [],
    statusSubresource: false,
    custom: false,
    fields: ["apiVersion", "kind", "metadata", "subjects", "roleRef"],
  },
  customresourcedefinitions: {
    name: "customresourcedefinitions",
    group: "apiextensions.k8s.io",
    version: "v1",
    kind: "CustomResourceDefinition",
    singular: "customresourcedefinition",
    shortNames: ["crd", "crds"],
    subresources: ["status"],
    statusSubresource: true,
    custom: false,
    namespaced: false,
    fields: ["apiVersion", "kind", "metadata", "spec", "status"],
  },
};

/**
 * `group/version` (or `version` for core) of a resource.
 *
 * @example
 * ```ts
 * import { apiVersionOf, RESOURCES } from "./resources.ts";
 * apiVersionOf(RESOURCES.deployments); // "apps/v1"
 * ```
 */
export function apiVersionOf(info: ResourceInfo): string {
  return info.group ? `${info.group}/${info.version}` : info.version;
}

/**
 * Finds the resource served at `group`/`version`/`plural`.
 *
 * @example
 * ```ts
 * import { lookupResource } from "./resources.ts";
 * lookupResource("apps", "v1", "deployments")?.kind; // "Deployment"
 * ```
 */
export function lookupResource(group: string, version: string, plural: string): ResourceInfo | undefined {
  return Object.values(RESOURCES).find((r) => r.group === group && r.version === version && r.name === plural);
}

/**
 * The discovery APIResourceList entries of one group/version.
 *
 * @example
 * ```ts
 * import { apiResourceList } from "./resources.ts";
 * apiResourceList("apps", "v1").resources.some((r) => r.name === "deployments/scale"); // true
 * ```
 */
export function apiResourceList(group: string, version: string) {
  const resources: Record<string, unknown>[] = [];
  for (const r of Object.values(RESOURCES)) {
    if (r.group !== group || r.version !== version) continue;
    const entry: Record<string, unknown> = {
      name: r.name,
      singularName: r.singular,
      namespaced: r.namespaced !== false,
      kind: r.kind,
      verbs: ALL_VERBS,
    };
    if (r.shortNames.length) entry.shortNames = r.shortNames;
    if (r.categories) entry.categories = r.categories;
    resources.push(entry);
    for (const sub of r.subresources) {
      const subEntry: Record<string, unknown> = {
        name: `${r.name}/${sub}`,
        singularName: "",
        namespaced: r.namespaced !== false,
        kind: r.kind,
        verbs: ["get", "patch", "update"],
      };
      if (sub === "scale") Object.assign(subEntry, { group: "autoscaling", version: "v1", kind: "Scale" });
      resources.push(subEntry);
    }
  }
  if (group === "authorization.k8s.io" && version === "v1") {
    resources.push({
      name: "selfsubjectaccessreviews",
      singularName: "selfsubjectaccessreview",
      namespaced: false,
      kind: "SelfSubjectAccessReview",
      verbs: ["create"],
    });
  }
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources,
  };
}

/** Every served API group (besides core) with its single version. */
export const API_GROUPS: { name: string; version: string }[] = [
  { name: "apps", version: "v1" },
  { name: "coordination.k8s.io", version: "v1" },
  { name: "authorization.k8s.io", version: "v1" },
  { name: "rbac.authorization.k8s.io", version: "v1" },
  { name: "apiextensions.k8s.io", version: "v1" },
  { name: "vllm.efortin.github.io", version: "v1alpha1" },
];

/**
 * The /apis APIGroupList.
 *
 * @example
 * ```ts
 * import { apiGroupList } from "./resources.ts";
 * apiGroupList().groups.length > 0; // true
 * ```
 */
export function apiGroupList() {
  return {
    kind: "APIGroupList",
    apiVersion: "v1",
    groups: API_GROUPS.map((g) => {
      const gv = { groupVersion: `${g.name}/${g.version}`, version: g.version };
      return { name: g.name, versions: [gv], preferredVersion: gv };
    }),
  };
}

function gvk(group: string, version: string, kind: string) {
  return { group, version, kind };
}

/**
 * The OpenAPI v3 discovery root (`/openapi/v3`): one entry per group/version.
 *
 * @example
 * ```ts
 * import { openApiRoot } from "./resources.ts";
 * "apis/apps/v1" in openApiRoot().paths; // true
 * ```
 */
export function openApiRoot() {
  const paths: Record<string, { serverRelativeURL: string }> = {
    "api/v1": { serverRelativeURL: "/openapi/v3/api/v1?hash=FAKE1" },
  };
  for (const g of API_GROUPS) {
    const key = `apis/${g.name}/${g.version}`;
    paths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=FAKE1` };
  }
  return { paths };
}

const QUERY_PARAMS = ["dryRun", "fieldManager", "fieldValidation", "force", "pretty"].map((name) => ({
  name,
  in: "query",
  schema: { type: name === "force" ? "boolean" : "string", uniqueItems: true },
}));

/**
 * A minimal OpenAPI v3 document for one group/version: every resource's
 * PATCH operation, tagged with its group-version-kind and its query
 * parameters, so kubectl knows the server validates fields itself
 * (server-side `fieldValidation`).
 *
 * @example
 * ```ts
 * import { openApiGroupVersion } from "./resources.ts";
 * openApiGroupVersion("apps", "v1")?.openapi; // "3.0.0"
 * ```
 */
export function openApiGroupVersion(group: string, version: string) {
  const prefix = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const known = group === "" ? version === "v1" : API_GROUPS.some((g) => g.name === group && g.version === version);
  if (!known) return undefined;
  const paths: Record<string, unknown> = {};
  for (const r of Object.values(RESOURCES)) {
    if (r.group !== group || r.version !== version) continue;
    const base = r.namespaced === false ? `${prefix}/${r.name}` : `${prefix}/namespaces/{namespace}/${r.name}`;
    const extension = { "x-kubernetes-group-version-kind": gvk(group, version, r.kind) };
    const op = (action: string) => ({
      ...extension,
      "x-kubernetes-action": action,
      parameters: QUERY_PARAMS,
      responses: { "200": { description: "OK" } },
    });
    paths[base] = { post: op("post"), get: op("list") };
    paths[`${base}/{name}`] = { get: op("get"), put: op("put"), patch: op("patch"), delete: op("delete") };
    for (const sub of r.subresources) {
      const subGvk = sub === "scale" ? gvk("autoscaling", "v1", "Scale") : gvk(group, version, r.kind);
      paths[`${base}/{name}/${sub}`] = {
        patch: { ...op("patch"), "x-kubernetes-group-version-kind": subGvk },
      };
    }
  }
  return {
    openapi: "3.0.0",
    info: { title: "Kubernetes", version: "v1.32.4" },
    paths,
    components: { schemas: {} },
  };
}
