/**
 * A faithful fake Kubernetes API server for tests: an in-process HTTP server
 * on 127.0.0.1 that `@kubernetes/client-node` and `kubectl` talk to, with a
 * simulated deployment controller, scheduler (GPU count per node) and
 * kubelet, RBAC from a Role, fault injection and a call log.
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import { KubeConfig } from "@kubernetes/client-node";
import { ObjectStore } from "./fake_kube/store.ts";
import { Cluster, type GpuEvent, isReady as podIsReady, type Timing } from "./fake_kube/cluster.ts";
import { ResourceHandlers, type ResourceRequest, type Result } from "./fake_kube/handlers.ts";
import {
  apiGroupList,
  apiResourceList,
  lookupResource,
  openApiGroupVersion,
  openApiRoot,
  type ResourceName,
  RESOURCES,
} from "./fake_kube/resources.ts";
import { ApiError, statusResponse } from "./fake_kube/status.ts";
import { allows, type Attributes, FAKE_USER, forbidden, type RoleLike } from "./fake_kube/rbac.ts";
import { parseFieldSelector, parseLabelSelector } from "./fake_kube/selectors.ts";
import { type OpenWatch, openWatch } from "./fake_kube/watch.ts";
import { applyDefaults } from "./fake_kube/defaults.ts";
import { validateObject } from "./fake_kube/validate.ts";
import { toTable, wantsTable } from "./fake_kube/table.ts";
import { TcpRelay } from "./fake_kube/tcp_proxy.ts";

export type { PolicyRuleLike, RoleLike } from "./fake_kube/rbac.ts";
export type { ResourceName } from "./fake_kube/resources.ts";
export { type GpuEvent, isReady } from "./fake_kube/cluster.ts";

/** A Pod object as the fake stores it (plain JSON). */
export type Pod = any;

/** Options of {@link startFakeKube}. */
export interface FakeKubeOptions {
  /** Namespace of the kubeconfig context (default "ai-apps"); any namespace is accepted. */
  namespace?: string;
  /** When set, RBAC is enforced for the token's user from this Role's rules. */
  role?: RoleLike | null;
  /** GPUs on the single node (default 1). */
  gpusPerNode?: number;
  /** Lifecycle delays in ms (defaults: schedule 5, start 20, ready 20, terminate 30). */
  timing?: Timing;
  /** A pod turns Ready only when this returns true; polled every ~20 ms while Running. */
  readiness?: (pod: Pod) => Promise<boolean> | boolean;
  /** Called when a pod's containers start (e.g. start a fake vLLM). */
  onPodStart?: (pod: Pod) => void | Promise<void>;
  /** Called when a started pod begins terminating or is force-deleted. */
  onPodStop?: (pod: Pod) => void | Promise<void>;
  /** Interval of BOOKMARK events on watches that allow them (default 1000 ms). */
  bookmarkIntervalMs?: number;
  /**
   * Where a pod's container port answers (a base URL), for the service proxy: requests to
   * `/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH` go to a Ready pod the Service selects, as the API
   * server (and `kubectl proxy` in front of it) does.
   */
  endpointOf?: (pod: Pod) => string | undefined;
}

/** One request the service proxy relayed (kept apart from `calls`: it is traffic, not an API call). */
export interface ProxiedRecord {
  /** Service name. */
  service: string;
  method: string;
  /** The path after `/proxy`. */
  path: string;
  /** The pod it went to (null: no Ready endpoint). */
  pod: string | null;
  status: number;
}

/** One request the fake served. */
export interface CallRecord {
  method: string;
  /** URL path (no query). */
  path: string;
  /** The query string without "?". */
  query: string;
  verb?: "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";
  group?: string;
  resource?: string;
  subresource?: string;
  name?: string;
  namespace?: string;
  status: number;
  contentType?: string;
  /** For a write to a `scale` subresource answered 2xx: the replicas the object desires after it. */
  replicas?: number;
}

/** Which requests a fault applies to (all given fields must match). */
export interface CallMatch {
  method?: string;
  path?: RegExp | string;
  verb?: string;
  resource?: string;
  subresource?: string;
}

/** Fault injection. */
export interface FakeKubeFaults {
  /**
   * The next `count` (default 1) matching calls fail with `status` (a Status body); status 0 resets the
   * connection instead (the client sees a network error).
   */
  failNext(match: CallMatch, status: number, count?: number): void;
  /** Adds `ms` of latency before matching calls (all when no match). */
  latency(ms: number, match?: CallMatch): void;
  /** Ends open watch streams (of one resource, or all) at once, with no final event (client-node: done(null)). */
  dropWatches(resource?: string): void;
  /** Running pods never turn Ready while on. */
  podNeverReady(on: boolean): void;
  /** Containers crash on start (CrashLoopBackOff, restartCount grows) while on. */
  crashLoop(on: boolean): void;
  /** Pod deletions (grace > 0) started while on never complete. */
  stuckTerminating(on: boolean): void;
  /** Removes every fault. */
  clear(): void;
}

/** Direct access to stored objects for test setup and assertions (no RBAC, no faults, not logged). */
export interface FakeKubeStore {
  /** A copy of the object, or undefined. */
  getObject(resource: ResourceName, name: string, namespace?: string): any | undefined;
  /** Copies of all objects of a resource in a namespace. */
  listObjects(resource: ResourceName, namespace?: string): any[];
  /** Creates (defaulted and validated as the API would); returns the stored copy. */
  createObject(resource: ResourceName, obj: any, namespace?: string): any;
  /** Replaces an existing object as given, status included (e.g. to set a VLLMModel's status). */
  updateObject(resource: ResourceName, obj: any, namespace?: string): any;
  /** Deletes as the API would (pods gracefully unless gracePeriodSeconds is 0). */
  deleteObject(resource: ResourceName, name: string, namespace?: string, gracePeriodSeconds?: number): void;
  /** Forgets the watch event history: watches from an older resourceVersion get 410 Expired. */
  compact(): void;
  /** The current global resourceVersion. */
  resourceVersion(): string;
}

/** A running fake API server. */
export interface FakeKube {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Temp kubeconfig: cluster server=url, user with a bearer token, context with the namespace. */
  kubeconfigPath: string;
  /** The bearer token of the kubeconfig's user. */
  token: string;
  /**
   * A kubeconfig for a person with full access (e.g. `kubectl` run by a cluster admin): not bound by the
   * Role, its calls recorded in `adminCalls`, not `calls`.
   */
  adminKubeconfigPath: string;
  /** Calls made with `adminKubeconfigPath`. */
  adminCalls: CallRecord[];
  /** A client-node KubeConfig loaded from kubeconfigPath. */
  kubeConfig(): KubeConfig;
  store: FakeKubeStore;
  /** Every request served, in order. */
  calls: CallRecord[];
  faults: FakeKubeFaults;
  kubelet: {
    gpusInUse(): number;
    pods(): Pod[];
    hookErrors: unknown[];
    /** Every change of the node's GPU use (bound, released, unschedulable), in order. */
    gpuLog: GpuEvent[];
    /** The most GPUs in use at once so far. */
    peakGpusInUse(): number;
    /** GPUs on the node. */
    gpusPerNode: number;
  };
  /** Requests relayed by the service proxy, in order. */
  proxied: ProxiedRecord[];
  /**
   * Resolves once `check()` is true, re-checking on every stored change and every served call (no
   * polling); rejects after `timeoutMs` (default 5000) with `what` in the message.
   */
  until(check: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Stops server, timers and watches. */
  close(): Promise<void>;
}

const TOKEN = "fake-kube-token-vllm-chill";

interface FailRule {
  match: CallMatch;
  status: number;
  remaining: number;
}

function matchesCall(match: CallMatch, call: Omit<CallRecord, "status">): boolean {
  if (match.method && match.method.toUpperCase() !== call.method) return false;
  if (match.verb && match.verb !== call.verb) return false;
  if (match.resource && match.resource !== call.resource) return false;
  if (match.subresource && match.subresource !== call.subresource) return false;
  if (match.path !== undefined) {
    if (typeof match.path === "string" ? call.path !== match.path : !match.path.test(call.path)) return false;
  }
  return true;
}

const REASONS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  409: "Conflict",
  410: "Expired",
  422: "Invalid",
  429: "TooManyRequests",
  500: "InternalError",
  503: "ServiceUnavailable",
  504: "Timeout",
};

interface Route {
  group: string;
  version: string;
  namespace?: string;
  resource: string;
  name?: string;
  subresource?: string;
}

function parseRoute(path: string): Route | undefined {
  const parts = path.split("/").filter((p) => p !== "").map(decodeURIComponent);
  let group: string, version: string, rest: string[];
  if (parts[0] === "api" && parts.length >= 3) {
    group = "";
    version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 4) {
    group = parts[1];
    version = parts[2];
    rest = parts.slice(3);
  } else return undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    return { group, version, namespace: rest[1], resource: rest[2], name: rest[3], subresource: rest[4] };
  }
  return { group, version, resource: rest[0], name: rest[1], subresource: rest[2] };
}

function verbOf(method: string, route: Route, query: URLSearchParams): CallRecord["verb"] {
  const watch = query.get("watch");
  switch (method) {
    case "GET":
      if (watch === "true" || watch === "1") return "watch";
      return route.name ? "get" : "list";
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    case "DELETE":
      return route.name ? "delete" : "deletecollection";
  }
  return undefined;
}

/**
 * Starts a fake API server on 127.0.0.1 (random port) with its simulated
 * cluster, and writes a kubeconfig pointing at it.
 *
 * @example
 * ```ts ignore
 * import { startFakeKube } from "./fake_kube.ts";
 * const kube = await startFakeKube({ gpusPerNode: 1 });
 * const core = kube.kubeConfig().makeApiClient(CoreV1Api);
 * await kube.close();
 * ```
 */
export async function startFakeKube(options: FakeKubeOptions = {}): Promise<FakeKube> {
  const namespace = options.namespace ?? "ai-apps";
  const store = new ObjectStore();
  const nodeFaults = { podNeverReady: false, crashLoop: false, stuckTerminating: false };
  const cluster = new Cluster(store, {
    gpusPerNode: options.gpusPerNode ?? 1,
    timing: {
      scheduleMs: options.timing?.scheduleMs ?? 5,
      startMs: options.timing?.startMs ?? 20,
      readyMs: options.timing?.readyMs ?? 20,
      terminateMs: options.timing?.terminateMs ?? 30,
    },
    readiness: options.readiness,
    onPodStart: options.onPodStart,
    onPodStop: options.onPodStop,
    faults: nodeFaults,
  });
  const handlers = new ResourceHandlers(store, cluster);
  const calls: CallRecord[] = [];
  const callListeners = new Set<() => void>();
  const watches = new Set<OpenWatch>();
  const failRules: FailRule[] = [];
  const latencies: { ms: number; match?: CallMatch }[] = [];
  const sleeps = new Set<{ id: ReturnType<typeof setTimeout>; resolve: () => void }>();
  let closing = false;
  const role = options.role ?? null;
  const namespaces = new Set<string>(["default", "kube-system", namespace]);

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const entry = { id: undefined as unknown as ReturnType<typeof setTimeout>, resolve };
      entry.id = setTimeout(() => {
        sleeps.delete(entry);
        resolve();
      }, ms);
      sleeps.add(entry);
    });

  const authorize = (a: Attributes) => {
    if (role && !allows(role, namespace, a)) throw forbidden(a);
  };

  const respond = (result: Result): Response => {
    const headers = new Headers({ "content-type": "application/json" });
    for (const w of result.warnings ?? []) headers.append("warning", `299 - ${JSON.stringify(w)}`);
    return new Response(JSON.stringify(result.body), { status: result.status, headers });
  };

  const selfSubjectAccessReview = (body: string): Response => {
    let review: any;
    try {
      review = JSON.parse(body);
    } catch (err) {
      throw new ApiError(400, "BadRequest", `json: ${(err as Error).message}`);
    }
    const attrs = review?.spec?.resourceAttributes;
    let allowed = true;
    let reason = "";
    if (attrs) {
      const a: Attributes = {
        verb: attrs.verb ?? "",
        group: attrs.group ?? "",
        resource: attrs.resource ?? "",
        subresource: attrs.subresource || undefined,
        name: attrs.name || undefined,
        namespace: attrs.namespace ?? "",
      };
      allowed = !role || allows(role, namespace, a);
      if (allowed && role) {
        const roleName = role.metadata?.name ?? "vllm-chill";
        reason = `RBAC: allowed by RoleBinding "${roleName}/${namespace}" of Role "${roleName}" to ServiceAccount ` +
          `"vllm-chill/${namespace}"`;
      }
    }
    const status: Record<string, unknown> = { allowed };
    if (reason) status.reason = reason;
    if (!allowed) status.denied = false;
    return Response.json(
      {
        kind: "SelfSubjectAccessReview",
        apiVersion: "authorization.k8s.io/v1",
        metadata: { creationTimestamp: null },
        spec: review.spec ?? {},
        status,
      },
      { status: 201 },
    );
  };

  const discovery = (path: string): Response | undefined => {
    if (path === "/version") {
      return Response.json({
        major: "1",
        minor: "32",
        gitVersion: "v1.32.4",
        gitCommit: "0000000000000000000000000000000000000000",
        gitTreeState: "clean",
        buildDate: "2025-04-22T16:00:00Z",
        goVersion: "go1.23.8",
        compiler: "gc",
        platform: "linux/amd64",
      });
    }
    if (path === "/api") {
      return Response.json({
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "127.0.0.1" }],
      });
    }
    if (path === "/apis") return Response.json(apiGroupList());
    if (path === "/api/v1") {
      const list = apiResourceList("", "v1");
      list.resources.push({
        name: "namespaces",
        singularName: "namespace",
        namespaced: false,
        kind: "Namespace",
        verbs: ["get", "list"],
        shortNames: ["ns"],
      });
      return Response.json(list);
    }
    const gv = path.match(/^\/apis\/([^/]+)\/([^/]+)$/);
    if (gv) {
      const list = apiResourceList(gv[1], gv[2]);
      if (list.resources.length === 0) return undefined;
      return Response.json(list);
    }
    const g = path.match(/^\/apis\/([^/]+)$/);
    if (g) {
      const group = apiGroupList().groups.find((x) => x.name === g[1]);
      return group ? Response.json({ kind: "APIGroup", apiVersion: "v1", ...group }) : undefined;
    }
    if (path === "/openapi/v3") return Response.json(openApiRoot());
    const oa = path.match(/^\/openapi\/v3\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/);
    if (oa) {
      const doc = oa[1] ? openApiGroupVersion("", "v1") : openApiGroupVersion(oa[2], oa[3]);
      return doc ? Response.json(doc) : undefined;
    }
    if (path === "/healthz" || path === "/readyz" || path === "/livez") return new Response("ok");
    return undefined;
  };

  const namespaceObject = (name: string) => ({
    kind: "Namespace",
    apiVersion: "v1",
    metadata: { name, uid: `ns-${name}`, resourceVersion: "1", labels: { "kubernetes.io/metadata.name": name } },
    spec: { finalizers: ["kubernetes"] },
    status: { phase: "Active" },
  });

  const serveResource = async (
    req: Request,
    url: URL,
    route: Route,
    call: Omit<CallRecord, "status">,
    admin: boolean,
  ) => {
    if (
      route.group === "authorization.k8s.io" && route.version === "v1" && route.resource === "selfsubjectaccessreviews"
    ) {
      if (req.method !== "POST" || route.namespace || route.name) {
        throw new ApiError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource`);
      }
      return selfSubjectAccessReview(await req.text());
    }
    if (route.group === "" && route.version === "v1" && route.resource === "namespaces" && !route.namespace) {
      if (req.method !== "GET") {
        throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
      }
      if (route.name) return Response.json(namespaceObject(route.name));
      return Response.json({
        kind: "NamespaceList",
        apiVersion: "v1",
        metadata: { resourceVersion: String(store.resourceVersion) },
        items: [...namespaces].sort().map(namespaceObject),
      });
    }
    const info = lookupResource(route.group, route.version, route.resource);
    if (!info) throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    if (route.subresource && !info.subresources.includes(route.subresource)) {
      throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    }
    const verb = call.verb!;
    const clusterScoped = info.namespaced === false;
    if (clusterScoped && route.namespace) {
      throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    }
    if (!clusterScoped && !route.namespace && !(verb === "list" || verb === "watch")) {
      throw new ApiError(404, "NotFound", "the server could not find the requested resource");
    }
    if (route.subresource && !["get", "update", "patch"].includes(verb)) {
      throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }
    if (route.name && verb === "create") {
      throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }
    if (!admin) {
      authorize({
        verb,
        group: info.group,
        resource: info.name,
        subresource: route.subresource,
        name: route.name,
        namespace: route.namespace ?? "",
      });
    }
    if (route.namespace) namespaces.add(route.namespace);
    const rr: ResourceRequest = {
      info,
      namespace: route.namespace ?? "",
      name: route.name,
      subresource: route.subresource,
      query: url.searchParams,
      headers: req.headers,
      body: req.method === "GET" ? "" : await req.text(),
    };
    switch (verb) {
      case "get": {
        const result = handlers.get(rr);
        if (!route.subresource && wantsTable(req.headers.get("accept"))) {
          const obj = result.body as any;
          result.body = toTable(info, [obj], obj.metadata.resourceVersion, url.searchParams.get("includeObject"));
        }
        return respond(result);
      }
      case "list": {
        const result = handlers.list(rr, route.namespace);
        if (wantsTable(req.headers.get("accept"))) {
          const list = result.body as any;
          const includeObject = url.searchParams.get("includeObject");
          result.body = toTable(info, list.items, list.metadata.resourceVersion, includeObject);
        }
        return respond(result);
      }
      case "watch": {
        const timeout = url.searchParams.get("timeoutSeconds");
        return openWatch(store, {
          info,
          namespace: route.namespace,
          labels: parseLabelSelector(url.searchParams.get("labelSelector")),
          fields: parseFieldSelector(url.searchParams.get("fieldSelector"), info.name),
          resourceVersion: url.searchParams.get("resourceVersion"),
          allowBookmarks: url.searchParams.get("allowWatchBookmarks") === "true",
          sendInitialEvents: url.searchParams.get("sendInitialEvents") === "true",
          timeoutSeconds: timeout !== null ? Number(timeout) : null,
          bookmarkMs: options.bookmarkIntervalMs ?? 1000,
          table: wantsTable(req.headers.get("accept"))
            ? { includeObject: url.searchParams.get("includeObject") }
            : null,
        }, watches);
      }
      case "create":
        return respond(handlers.create(rr));
      case "update":
        return respond(handlers.update(rr));
      case "patch":
        return respond(handlers.patch(rr));
      case "delete":
        return respond(handlers.delete(rr));
      case "deletecollection":
        return respond(handlers.deleteCollection(rr));
    }
  };

  const proxied: ProxiedRecord[] = [];
  const SERVICE_PROXY = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/:]+)(?::[^/]+)?\/proxy(\/.*)?$/;

  /**
   * The API server's service proxy, as `kubectl proxy` exposes it to a person with their own credentials (so
   * the proxy's Role is not asked): to the first Ready, not terminating pod the Service selects.
   */
  const serviceProxy = async (req: Request, url: URL, match: RegExpMatchArray): Promise<Response> => {
    const [, ns, name, rest = "/"] = match;
    const record: ProxiedRecord = { service: name, method: req.method, path: rest, pod: null, status: 0 };
    proxied.push(record);
    const service = store.get("services", ns, name);
    if (!service) {
      await req.body?.cancel();
      record.status = 404;
      return statusResponse(new ApiError(404, "NotFound", `services "${name}" not found`));
    }
    const selector = service.spec?.selector ?? {};
    const endpoint = store.list("pods", ns)
      .filter((p: Pod) =>
        !p.metadata.deletionTimestamp && podIsReady(p) &&
        Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v)
      )
      .sort((a: Pod, b: Pod) => a.metadata.name.localeCompare(b.metadata.name))
      .map((p: Pod) => ({ pod: p, url: options.endpointOf?.(p) }))
      .find((e: { url?: string }) => e.url !== undefined);
    if (!endpoint) {
      await req.body?.cancel();
      record.status = 503;
      return statusResponse(new ApiError(503, "ServiceUnavailable", `no endpoints available for service "${name}"`));
    }
    record.pod = endpoint.pod.metadata.name;
    try {
      const headers = new Headers(req.headers);
      headers.delete("host");
      const res = await fetch(`${endpoint.url}${rest}${url.search}`, {
        method: req.method,
        headers,
        body: req.body,
        signal: req.signal,
      });
      record.status = res.status;
      return new Response(res.body, { status: res.status, headers: res.headers });
    } catch (err) {
      record.status = 503;
      return statusResponse(
        new ApiError(503, "ServiceUnavailable", `error trying to reach service: ${(err as Error).message}`),
      );
    }
  };

  const handle = async (req: Request, connectionPort: number, admin = false): Promise<Response> => {
    const url = new URL(req.url);
    const proxiedService = url.pathname.match(SERVICE_PROXY);
    if (proxiedService && !closing) return await serviceProxy(req, url, proxiedService);
    const route = parseRoute(url.pathname);
    const call: Omit<CallRecord, "status"> = {
      method: req.method,
      path: url.pathname,
      query: url.search.replace(/^\?/, ""),
    };
    const contentType = req.headers.get("content-type");
    if (contentType) call.contentType = contentType;
    if (route) {
      call.verb = verbOf(req.method, route, url.searchParams);
      call.group = route.group;
      call.resource = route.resource;
      if (route.subresource) call.subresource = route.subresource;
      if (route.name) call.name = route.name;
      if (route.namespace) call.namespace = route.namespace;
    }
    let response: Response;
    try {
      // Faults are the proxy's connection's, not a person's.
      for (const l of admin ? [] : latencies) {
        if (!l.match || matchesCall(l.match, call)) await sleep(l.ms);
      }
      if (closing) throw new ApiError(503, "ServiceUnavailable", "the fake API server is shutting down");
      const rule = admin ? undefined : failRules.find((r) => r.remaining > 0 && matchesCall(r.match, call));
      if (rule && rule.status === 0) {
        rule.remaining--;
        relay.reset(connectionPort);
        await req.body?.cancel();
        response = new Response(null, { status: 502 });
      } else if (rule) {
        rule.remaining--;
        const retry = rule.status === 429 || rule.status === 503 ? { "retry-after": "1" } : undefined;
        const reason = REASONS[rule.status] ?? "InternalError";
        const message = rule.status === 500 ? "Internal error occurred: injected fault" : `injected fault: ${reason}`;
        await req.body?.cancel();
        response = statusResponse(new ApiError(rule.status, reason, message), retry);
      } else {
        // kubectl does not send bearer tokens over plain http, so a request without credentials is taken as
        // the kubeconfig's user; a wrong credential is still refused as a real server would.
        const auth = req.headers.get("authorization");
        if (auth !== null && auth !== `Bearer ${TOKEN}`) {
          await req.body?.cancel();
          response = statusResponse(new ApiError(401, "Unauthorized", "Unauthorized"));
        } else {
          const found = req.method === "GET" ? discovery(url.pathname) : undefined;
          if (found) response = found;
          else if (route) response = await serveResource(req, url, route, call, admin);
          else {
            await req.body?.cancel();
            response = new Response("404 page not found\n", { status: 404, headers: { "content-type": "text/plain" } });
          }
        }
      }
    } catch (err) {
      if (!req.bodyUsed) await req.body?.cancel().catch(() => {});
      if (err instanceof ApiError) response = statusResponse(err);
      else {
        response = statusResponse(
          new ApiError(500, "InternalError", `Internal error occurred: ${(err as Error)?.message ?? String(err)}`),
        );
      }
    }
    const record: CallRecord = { ...call, status: response.status };
    if (call.subresource === "scale" && (call.verb === "patch" || call.verb === "update") && response.ok) {
      record.replicas = (await response.clone().json()).spec?.replicas ?? 0;
    }
    (admin ? adminCalls : calls).push(record);
    for (const listener of [...callListeners]) listener();
    return response;
  };
  const adminCalls: CallRecord[] = [];

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => handle(req, (info.remoteAddr as Deno.NetAddr).port),
  );
  // Clients connect through a relay so that faults can break connections abruptly.
  const relay = new TcpRelay(server.addr.port);
  const url = `http://127.0.0.1:${relay.port}`;
  // A person's access (a cluster admin running kubectl): its own port, not bound by the proxy's Role, its calls
  // kept apart from `calls` (kubectl sends no bearer token over plain http, so the port tells who is asking).
  const adminServer = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => handle(req, (info.remoteAddr as Deno.NetAddr).port, true),
  );
  const kubeconfigPath = await Deno.makeTempFile({ prefix: "fake-kube-", suffix: ".yaml" });
  const adminKubeconfigPath = await Deno.makeTempFile({ prefix: "fake-kube-admin-", suffix: ".yaml" });
  await Deno.writeTextFile(
    adminKubeconfigPath,
    kubeconfig({
      server: `http://127.0.0.1:${adminServer.addr.port}`,
      user: "admin",
      credentials: ["  user: {}"],
      context: "fake-admin",
      namespace,
    }),
  );
  await Deno.writeTextFile(
    kubeconfigPath,
    kubeconfig({
      server: url,
      user: "vllm-chill",
      credentials: ["  user:", `    token: ${TOKEN}`],
      context: "fake",
      namespace,
    }),
  );

  const faults: FakeKubeFaults = {
    failNext(match, status, count = 1) {
      failRules.push({ match, status, remaining: count });
    },
    latency(ms, match) {
      latencies.push({ ms, match });
    },
    dropWatches(resource) {
      for (const w of [...watches]) if (!resource || w.resource === resource) w.drop();
    },
    podNeverReady(on) {
      nodeFaults.podNeverReady = on;
    },
    crashLoop(on) {
      nodeFaults.crashLoop = on;
    },
    stuckTerminating(on) {
      nodeFaults.stuckTerminating = on;
    },
    clear() {
      failRules.length = 0;
      latencies.length = 0;
      nodeFaults.podNeverReady = false;
      nodeFaults.crashLoop = false;
      nodeFaults.stuckTerminating = false;
    },
  };

  const scoped = (resource: ResourceName, ns: string) => RESOURCES[resource].namespaced === false ? "" : ns;
  const facade: FakeKubeStore = {
    getObject: (resource, name, ns = namespace) => store.get(resource, scoped(resource, ns), name),
    listObjects: (resource, ns = namespace) => store.list(resource, scoped(resource, ns)),
    createObject(resource, obj, ns = namespace) {
      const info = RESOURCES[resource];
      const copy = structuredClone(obj);
      copy.apiVersion ??= info.group ? `${info.group}/${info.version}` : info.version;
      copy.kind ??= info.kind;
      ns = scoped(resource, ns);
      copy.metadata = { ...(copy.metadata ?? {}), namespace: ns };
      if (!ns) delete copy.metadata.namespace;
      validateObject(info, copy);
      if (store.get(resource, ns, copy.metadata.name)) {
        throw new ApiError(409, "AlreadyExists", `${resource} "${copy.metadata.name}" already exists`);
      }
      const status = copy.status;
      applyDefaults(resource, copy);
      if (status !== undefined && resource !== "pods") copy.status = status;
      if (resource === "deployments" || resource === "vllmmodels") copy.metadata.generation = 1;
      namespaces.add(ns);
      return store.insert(resource, copy);
    },
    updateObject(resource, obj, ns = namespace) {
      ns = scoped(resource, ns);
      const current = store.get(resource, ns, obj?.metadata?.name);
      if (!current) throw new ApiError(404, "NotFound", `${resource} "${obj?.metadata?.name}" not found`);
      const copy = structuredClone(obj);
      copy.metadata = { ...current.metadata, ...copy.metadata, uid: current.metadata.uid };
      if (ns) copy.metadata.namespace = ns;
      return store.replace(resource, copy);
    },
    deleteObject(resource, name, ns = namespace, gracePeriodSeconds) {
      handlers.deleteObject(RESOURCES[resource], scoped(resource, ns), name, gracePeriodSeconds);
    },
    compact: () => store.compact(),
    resourceVersion: () => String(store.resourceVersion),
  };

  return {
    url,
    kubeconfigPath,
    adminKubeconfigPath,
    adminCalls,
    token: TOKEN,
    kubeConfig() {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      return kc;
    },
    store: facade,
    calls,
    faults,
    kubelet: {
      gpusInUse: () => cluster.gpusInUse(),
      pods: () => cluster.pods(),
      hookErrors: cluster.hookErrors,
      gpuLog: cluster.gpuLog,
      peakGpusInUse: () => cluster.peakGpusInUse(),
      gpusPerNode: options.gpusPerNode ?? 1,
    },
    proxied,
    until(check, timeoutMs = 5000, what = "condition") {
      return new Promise<void>((resolve, reject) => {
        if (check()) return resolve();
        let unsubscribe = () => {};
        const timer = setTimeout(() => {
          unsubscribe();
          reject(new Error(`fake kube: timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        const recheck = () => {
          if (!check()) return;
          clearTimeout(timer);
          unsubscribe();
          resolve();
        };
        const unsubscribeStore = store.subscribe(recheck);
        callListeners.add(recheck);
        unsubscribe = () => {
          unsubscribeStore();
          callListeners.delete(recheck);
        };
      });
    },
    async close() {
      if (closing) return;
      closing = true;
      for (const s of [...sleeps]) {
        clearTimeout(s.id);
        s.resolve();
      }
      sleeps.clear();
      for (const w of [...watches]) w.close();
      cluster.close();
      await relay.close();
      await server.shutdown();
      await adminServer.shutdown();
      await Deno.remove(kubeconfigPath).catch(() => {});
      await Deno.remove(adminKubeconfigPath).catch(() => {});
    },
  };
}

/** The user the fake authenticates the kubeconfig's token as. */
export const FAKE_KUBE_USER: string = FAKE_USER;

/** A kubeconfig for one user of the fake cluster (the proxy's, or a person's). */
function kubeconfig(o: { server: string; user: string; credentials: string[]; context: string; namespace: string }) {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: fake",
    "  cluster:",
    `    server: ${o.server}`,
    // client-node refuses plain http unless TLS verification is skipped.
    "    insecure-skip-tls-verify: true",
    "users:",
    `- name: ${o.user}`,
    ...o.credentials,
    "contexts:",
    `- name: ${o.context}`,
    "  context:",
    "    cluster: fake",
    `    user: ${o.user}`,
    `    namespace: ${o.namespace}`,
    `current-context: ${o.context}`,
    "",
  ].join("\n");
}
