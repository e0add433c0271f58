/**
 * The verbs of the fake API server for one resource: get, list, create,
 * update, patch (four content types), delete, deletecollection and the
 * deployments/scale subresource, with a real server's checks
 * (resourceVersion preconditions, name/namespace mismatches, status
 * subresource, generation, unknown fields, validation).
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import { parse as parseYaml } from "yaml";
import type { ObjectStore } from "./store.ts";
import type { Cluster } from "./cluster.ts";
import { apiVersionOf, type ResourceInfo, RESOURCES } from "./resources.ts";
import { alreadyExists, ApiError, badRequest, conflict, notFound } from "./status.ts";
import { fieldsOf, parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { jsonPatch, mergePatch, strategicMergePatch } from "./patch.ts";
import { applyDefaults, randomSuffix, timestamp } from "./defaults.ts";
import { checkUnknownFields, invalid, validateObject } from "./validate.ts";

/** A parsed resource request. */
export interface ResourceRequest {
  info: ResourceInfo;
  namespace: string;
  name?: string;
  subresource?: string;
  query: URLSearchParams;
  headers: Headers;
  body: string;
}

/** A handler result: body, status and warnings. */
export interface Result {
  status: number;
  body: unknown;
  warnings?: string[];
}

const GENERATION_TRACKED = new Set(["deployments", "vllmmodels"]);
const PATCH_TYPES = [
  "application/json-patch+json",
  "application/merge-patch+json",
  "application/strategic-merge-patch+json",
  "application/apply-patch+yaml",
];

function parseJson(body: string, info: ResourceInfo): any {
  try {
    return JSON.parse(body);
  } catch (err) {
    throw badRequest(
      `${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: ` +
        `json: ${(err as Error).message}`,
    );
  }
}

function parseBody(req: ResourceRequest): any {
  const type = (req.headers.get("content-type") ?? "application/json").split(";")[0].trim();
  if (type === "application/yaml") {
    try {
      return parseYaml(req.body);
    } catch (err) {
      throw badRequest(`yaml: ${(err as Error).message}`);
    }
  }
  if (type !== "application/json" && type !== "*/*" && type !== "") {
    throw new ApiError(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format - accepted media types include: application/json, ` +
        `application/yaml, application/vnd.kubernetes.protobuf`,
    );
  }
  return parseJson(req.body, req.info);
}

function withTypeMeta(info: ResourceInfo, obj: any): any {
  return { apiVersion: apiVersionOf(info), kind: info.kind, ...obj };
}

function specOf(obj: any): string {
  return JSON.stringify(obj?.spec ?? null);
}

function comparable(obj: any): string {
  const copy = structuredClone(obj);
  delete copy.metadata.resourceVersion;
  delete copy.metadata.managedFields;
  return JSON.stringify(copy);
}

function selectorText(selector: any): string {
  const parts = Object.entries(selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector?.matchExpressions ?? []) {
    if (e.operator === "In") parts.push(`${e.key} in (${e.values.join(",")})`);
    if (e.operator === "NotIn") parts.push(`${e.key} notin (${e.values.join(",")})`);
    if (e.operator === "Exists") parts.push(e.key);
    if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
  }
  return parts.join(",");
}

/**
 * The resource verbs on top of a store and the simulated cluster.
 *
 * @example
 * ```ts ignore
 * const handlers = new ResourceHandlers(store, cluster);
 * handlers.get(req);
 * ```
 */
export class ResourceHandlers {
  readonly #store: ObjectStore;
  readonly #cluster: Cluster;
  /** Remaining items of paginated lists, by continue token. */
  readonly #snapshots = new Map<string, { rv: string; items: any[] }>();
  #snapshotSeq = 0;

  constructor(store: ObjectStore, cluster: Cluster) {
    this.#store = store;
    this.#cluster = cluster;
  }

  #current(req: ResourceRequest): any {
    const obj = this.#store.get(req.info.name, req.namespace, req.name!);
    if (!obj) throw notFound(req.info.name, req.info.group, req.name!);
    return obj;
  }

  /** GET one object (or its scale/status). */
  get(req: ResourceRequest): Result {
    const obj = this.#current(req);
    if (req.subresource === "scale") return { status: 200, body: this.#scaleOf(obj) };
    return { status: 200, body: withTypeMeta(req.info, obj) };
  }

  /** Objects matching the request's selectors. */
  matching(req: ResourceRequest, namespace: string | undefined): any[] {
    const labels = parseLabelSelector(req.query.get("labelSelector"));
    const fields = parseFieldSelector(req.query.get("fieldSelector"), req.info.name);
    return this.#store
      .list(req.info.name, namespace)
      .filter((o) => labels(o.metadata.labels ?? {}) && fields(fieldsOf(o)));
  }

  /** LIST. */
  list(req: ResourceRequest, namespace: string | undefined): Result {
    const limitText = req.query.get("limit");
    const token = req.query.get("continue");
    let items: any[];
    let rv = String(this.#store.resourceVersion);
    if (token) {
      const snapshot = this.#snapshots.get(token);
      if (!snapshot || Number(snapshot.rv) < this.#store.compactedResourceVersion) {
        throw new ApiError(
          410,
          "Expired",
          "The provided continue parameter is too old to display a consistent list result. You can start a new " +
            "list without the continue parameter.",
        );
      }
      items = snapshot.items;
      rv = snapshot.rv;
    } else {
      items = this.matching(req, namespace).map((o) => req.info.custom ? withTypeMeta(req.info, o) : o);
    }
    const metadata: Record<string, unknown> = { resourceVersion: rv };
    const limit = limitText === null ? 0 : Number(limitText);
    if (limit > 0 && items.length > limit) {
      const next = `${rv}-${++this.#snapshotSeq}`;
      const nextToken = btoa(JSON.stringify({ rv, next }));
      this.#snapshots.set(nextToken, { rv, items: items.slice(limit) });
      if (this.#snapshots.size > 100) this.#snapshots.delete(this.#snapshots.keys().next().value!);
      metadata.continue = nextToken;
      metadata.remainingItemCount = items.length - limit;
      items = items.slice(0, limit);
    }
    return {
      status: 200,
      body: { kind: `${req.info.kind}List`, apiVersion: apiVersionOf(req.info), metadata, items },
    };
  }

  /** POST (create). */
  create(req: ResourceRequest): Result {
    const obj = parseBody(req);
    if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw badRequest("the body must be an object");
    return this.#createObject(req, obj);
  }

  #createObject(req: ResourceRequest, obj: any, warningsIn: string[] = []): Result {
    const info = req.info;
    obj.metadata ??= {};
    if (info.namespaced === false) delete obj.metadata.namespace;
    if (obj.metadata.namespace && obj.metadata.namespace !== req.namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    if (obj.metadata.resourceVersion) {
      throw new ApiError(
        500,
        "InternalError",
        "Internal error occurred: resourceVersion should not be set on objects to be created",
      );
    }
    if (!obj.metadata.name && obj.metadata.generateName) {
      obj.metadata.name = `${obj.metadata.generateName}${randomSuffix(5)}`;
    }
    const warnings = [...warningsIn, ...checkUnknownFields(info, obj, req.query.get("fieldValidation"))];
    if (info.namespaced !== false) obj.metadata.namespace = req.namespace;
    for (const key of ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]) {
      delete obj.metadata[key];
    }
    if (info.statusSubresource && info.name !== "services") delete obj.status;
    obj.apiVersion ??= apiVersionOf(info);
    obj.kind ??= info.kind;
    validateObject(info, obj);
    if (this.#store.get(info.name, req.namespace, obj.metadata.name)) {
      throw alreadyExists(info.name, info.group, obj.metadata.name);
    }
    applyDefaults(info.name, obj);
    if (GENERATION_TRACKED.has(info.name)) obj.metadata.generation = 1;
    if (isDryRun(req)) {
      obj.metadata.uid = crypto.randomUUID();
      obj.metadata.creationTimestamp = timestamp();
      return { status: 201, body: obj, warnings };
    }
    const stored = this.#store.insert(info.name, obj);
    return { status: 201, body: withTypeMeta(info, stored), warnings };
  }

  /** PUT (update, or the status/scale subresource). */
  update(req: ResourceRequest): Result {
    const body = parseBody(req);
    if (req.subresource === "scale") return this.#writeScale(req, this.#current(req), body);
    const current = this.#current(req);
    return this.#updateObject(req, current, body, true);
  }

  #updateObject(req: ResourceRequest, current: any, next: any, isPut: boolean, warningsIn: string[] = []): Result {
    const info = req.info;
    if (!next || typeof next !== "object" || Array.isArray(next)) throw badRequest("the body must be an object");
    next.metadata ??= {};
    if (info.namespaced === false) delete next.metadata.namespace;
    if (next.metadata.name !== undefined && next.metadata.name !== req.name) {
      throw badRequest(
        `the name of the object (${next.metadata.name}) does not match the name on the URL (${req.name})`,
      );
    }
    if (next.metadata.namespace !== undefined && next.metadata.namespace !== req.namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    const rv = next.metadata.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== current.metadata.resourceVersion) {
      throw conflict(info.name, info.group, req.name!);
    }
    if (isPut && (rv === undefined || rv === "") && info.custom) {
      throw invalid(info, req.name!, [{
        reason: "FieldValueInvalid",
        message: "Invalid value: 0x0: must be specified for an update",
        field: "metadata.resourceVersion",
      }]);
    }
    const warnings = [...warningsIn, ...checkUnknownFields(info, next, req.query.get("fieldValidation"))];
    let obj: any;
    if (req.subresource === "status") {
      obj = structuredClone(current);
      obj.status = next.status;
    } else {
      obj = next;
      if (info.statusSubresource) {
        if (current.status === undefined) delete obj.status;
        else obj.status = current.status;
      }
    }
    obj.apiVersion ??= apiVersionOf(info);
    obj.kind ??= info.kind;
    const meta = obj.metadata;
    meta.name = req.name;
    if (info.namespaced !== false) meta.namespace = req.namespace;
    meta.uid = current.metadata.uid;
    meta.creationTimestamp = current.metadata.creationTimestamp;
    if (current.metadata.deletionTimestamp) {
      meta.deletionTimestamp = current.metadata.deletionTimestamp;
      meta.deletionGracePeriodSeconds = current.metadata.deletionGracePeriodSeconds;
    } else {
      delete meta.deletionTimestamp;
      delete meta.deletionGracePeriodSeconds;
    }
    if (current.metadata.generation !== undefined) meta.generation = current.metadata.generation;
    else delete meta.generation;
    meta.resourceVersion = current.metadata.resourceVersion;
    validateObject(info, obj, current);
    applyDefaults(info.name, obj);
    if (info.name === "pods") obj.status = req.subresource === "status" ? obj.status : current.status;
    if (GENERATION_TRACKED.has(info.name) && specOf(obj) !== specOf(current)) {
      meta.generation = (meta.generation ?? 0) + 1;
    }
    if (comparable(obj) === comparable(current)) return { status: 200, body: withTypeMeta(info, current), warnings };
    if (isDryRun(req)) return { status: 200, body: obj, warnings };
    if (meta.deletionTimestamp && (meta.finalizers ?? []).length === 0 && info.name !== "pods") {
      const removed = this.#store.remove(info.name, req.namespace, req.name!);
      return { status: 200, body: withTypeMeta(info, removed), warnings };
    }
    const stored = this.#store.replace(info.name, obj);
    return { status: 200, body: withTypeMeta(info, stored), warnings };
  }

  /** PATCH, with the content type deciding the flavour. */
  patch(req: ResourceRequest): Result {
    const info = req.info;
    const type = (req.headers.get("content-type") ?? "").split(";")[0].trim();
    const accepted = info.custom ? PATCH_TYPES.filter((t) => !t.includes("strategic")) : PATCH_TYPES;
    if (!accepted.includes(type)) {
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: ${accepted.join(", ")}`,
      );
    }
    let patchBody: any;
    if (type === "application/apply-patch+yaml") {
      if (!req.query.get("fieldManager")) {
        throw invalid({ ...RESOURCES[info.name], kind: "PatchOptions", group: "meta.k8s.io" }, "", [{
          reason: "FieldValueRequired",
          message: "Required value: is required for apply patch",
          field: "fieldManager",
        }]);
      }
      try {
        patchBody = parseYaml(req.body);
      } catch (err) {
        throw badRequest(`error decoding YAML: ${(err as Error).message}`);
      }
    } else {
      try {
        patchBody = JSON.parse(req.body);
      } catch (err) {
        throw badRequest(`error decoding patch: ${(err as Error).message}`);
      }
    }
    const current = this.#store.get(info.name, req.namespace, req.name!);
    if (!current) {
      if (type === "application/apply-patch+yaml" && !req.subresource) {
        const obj = structuredClone(patchBody ?? {});
        obj.metadata ??= {};
        obj.metadata.name ??= req.name;
        if (obj.metadata.name !== req.name) {
          throw badRequest(
            `the name of the object (${obj.metadata.name}) does not match the name on the URL (${req.name})`,
          );
        }
        return this.#createObject(req, obj);
      }
      throw notFound(info.name, info.group, req.name!);
    }
    const base = req.subresource === "scale" ? this.#scaleOf(current) : withTypeMeta(info, current);
    let patched: any;
    switch (type) {
      case "application/json-patch+json":
        patched = jsonPatch(base, patchBody);
        break;
      case "application/merge-patch+json":
        patched = mergePatch(base, patchBody);
        break;
      case "application/strategic-merge-patch+json":
        patched = strategicMergePatch(base, patchBody);
        break;
      default: {
        if (!patchBody || typeof patchBody !== "object") throw badRequest("apply patch must be an object");
        if (patchBody.apiVersion && patchBody.apiVersion !== base.apiVersion) {
          throw badRequest(`apiVersion must be ${base.apiVersion}`);
        }
        patched = mergePatch(base, dropNulls(patchBody));
      }
    }
    if (req.subresource === "scale") return this.#writeScale(req, current, patched);
    const patchedRv = patched?.metadata?.resourceVersion;
    if (patchedRv !== undefined && patchedRv !== current.metadata.resourceVersion) {
      throw conflict(info.name, info.group, req.name!);
    }
    return this.#updateObject(req, current, patched, false);
  }

  #scaleOf(deployment: any): any {
    return {
      kind: "Scale",
      apiVersion: "autoscaling/v1",
      metadata: {
        name: deployment.metadata.name,
        namespace: deployment.metadata.namespace,
        uid: deployment.metadata.uid,
        resourceVersion: deployment.metadata.resourceVersion,
        creationTimestamp: deployment.metadata.creationTimestamp,
      },
      spec: { replicas: deployment.spec?.replicas ?? 0 },
      status: { replicas: deployment.status?.replicas ?? 0, selector: selectorText(deployment.spec?.selector) },
    };
  }

  #writeScale(req: ResourceRequest, deployment: any, scale: any): Result {
    if (!scale || typeof scale !== "object") throw badRequest("the body must be a Scale");
    if (scale.metadata?.name !== undefined && scale.metadata.name !== req.name) {
      throw badRequest(
        `the name of the object (${scale.metadata.name}) does not match the name on the URL (${req.name})`,
      );
    }
    const rv = scale.metadata?.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== deployment.metadata.resourceVersion) {
      throw conflict("deployments", "apps", req.name!);
    }
    const replicas = scale.spec?.replicas ?? 0;
    if (!Number.isInteger(replicas) || replicas < 0) {
      throw invalid({ ...RESOURCES.deployments, kind: "Scale", group: "autoscaling" }, req.name!, [{
        reason: "FieldValueInvalid",
        message: `Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`,
        field: "spec.replicas",
      }]);
    }
    if (replicas !== deployment.spec.replicas && !isDryRun(req)) {
      deployment.spec.replicas = replicas;
      deployment.metadata.generation = (deployment.metadata.generation ?? 1) + 1;
      deployment = this.#store.replace("deployments", deployment);
    } else if (replicas !== deployment.spec.replicas) {
      deployment = { ...deployment, spec: { ...deployment.spec, replicas } };
    }
    return { status: 200, body: this.#scaleOf(deployment) };
  }

  /** DELETE one object. */
  delete(req: ResourceRequest): Result {
    const info = req.info;
    const options = req.body.trim() ? parseJson(req.body, info) : {};
    const current = this.#current(req);
    const pre = options.preconditions ?? {};
    if (pre.uid && pre.uid !== current.metadata.uid) {
      throw new ApiError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${info.group ? `${info.name}.${info.group}` : info.name} "${req.name}": ` +
          `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${current.metadata.uid}`,
        { name: req.name, kind: info.name, ...(info.group ? { group: info.group } : {}) },
      );
    }
    if (pre.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw new ApiError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${info.group ? `${info.name}.${info.group}` : info.name} "${req.name}": ` +
          `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`,
        { name: req.name, kind: info.name, ...(info.group ? { group: info.group } : {}) },
      );
    }
    const queryGrace = req.query.get("gracePeriodSeconds");
    const grace = options.gracePeriodSeconds ?? (queryGrace !== null ? Number(queryGrace) : undefined);
    if (isDryRun(req)) return { status: 200, body: withTypeMeta(info, current) };
    return { status: 200, body: this.deleteObject(info, req.namespace, req.name!, grace) };
  }

  /** Deletes by name (pods gracefully); returns what a DELETE responds. */
  deleteObject(info: ResourceInfo, namespace: string, name: string, grace: number | undefined): any {
    if (info.name === "pods") return withTypeMeta(info, this.#cluster.deletePod(namespace, name, grace));
    const current = this.#store.get(info.name, namespace, name);
    if (!current) throw notFound(info.name, info.group, name);
    if ((current.metadata.finalizers ?? []).length > 0) {
      if (current.metadata.deletionTimestamp) return withTypeMeta(info, current);
      current.metadata.deletionTimestamp = timestamp();
      current.metadata.deletionGracePeriodSeconds = 0;
      return withTypeMeta(info, this.#store.replace(info.name, current));
    }
    const removed = this.#store.remove(info.name, namespace, name);
    if (info.custom) return withTypeMeta(info, removed);
    const details: Record<string, string> = { name, kind: info.name, uid: current.metadata.uid };
    if (info.group) details.group = info.group;
    return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details };
  }

  /** DELETE on a collection: every matching object. */
  deleteCollection(req: ResourceRequest): Result {
    const options = req.body.trim() ? parseJson(req.body, req.info) : {};
    const queryGrace = req.query.get("gracePeriodSeconds");
    const grace = options.gracePeriodSeconds ?? (queryGrace !== null ? Number(queryGrace) : undefined);
    const items: any[] = [];
    for (const obj of this.matching(req, req.namespace)) {
      if (isDryRun(req)) items.push(obj);
      else {
        const result = this.deleteObject(req.info, req.namespace, obj.metadata.name, grace);
        items.push(result.kind === "Status" ? obj : result);
      }
    }
    return {
      status: 200,
      body: {
        kind: `${req.info.kind}List`,
        apiVersion: apiVersionOf(req.info),
        metadata: { resourceVersion: String(this.#store.resourceVersion) },
        items,
      },
    };
  }
}

function dropNulls(value: any): any {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, dropNulls(v)]));
}

function isDryRun(req: ResourceRequest): boolean {
  return req.query.getAll("dryRun").includes("All");
}
