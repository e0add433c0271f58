/**
 * Loading Kubernetes credentials and building the client-node API objects
 * every verb in `lib/kube` shares (the {@link KubeContext}).
 *
 * @module
 */
import {
  AppsV1Api,
  AuthorizationV1Api,
  type Configuration,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
} from "@kubernetes/client-node";
import { type Logger, silentLogger } from "../log.ts";
import { forceHttp1 } from "./http1.ts";
import { DEFAULT_WATCH_TIMEOUT_MS } from "./list_watch.ts";

/** Names of the objects the proxy drives (as in `config.target`). */
export interface KubeTarget {
  /** vLLM Deployment name. */
  deployment: string;
  /** ConfigMap holding the active model's configuration. */
  configMap: string;
  /** Service in front of vLLM. */
  service: string;
}

/** Options of `createKubeClient`. */
export interface KubeClientOptions {
  /** Kubeconfig path (`--kubeconfig`); else KUBECONFIG, in-cluster, ~/.kube/config. */
  kubeconfig?: string;
  /** Namespace of every object. */
  namespace: string;
  /** Object names; defaults vllm / vllm-config / vllm-svc. */
  target?: Partial<KubeTarget>;
  /** Logger (default: silent). */
  log?: Logger;
  /**
   * Longest a single watch request lives before it is resumed from the last
   * resourceVersion (default 300000, 5 min; the server-side `timeoutSeconds`
   * is a little below). A reset connection is noticed at once (watches run
   * on Deno's fetch); this only bounds a connection that died silently.
   */
  watchTimeoutMs?: number;
}

/** Everything the verbs need: API objects, namespace, names, logger. */
export interface KubeContext {
  /** The loaded credentials. */
  readonly kubeConfig: KubeConfig;
  /** Where the credentials came from ("in-cluster" or a file path). */
  readonly source: string;
  /** Namespace of every object. */
  readonly namespace: string;
  /** Object names. */
  readonly target: KubeTarget;
  /** Logger. */
  readonly log: Logger;
  /** core/v1. */
  readonly core: CoreV1Api;
  /** apps/v1. */
  readonly apps: AppsV1Api;
  /** Custom resources (VLLMModel). */
  readonly custom: CustomObjectsApi;
  /** authorization.k8s.io/v1 (SelfSubjectAccessReview). */
  readonly authz: AuthorizationV1Api;
  /** Aborted by `close()`: every watch and wait of this client stops. */
  readonly closed: AbortSignal;
  /** Longest a single watch request lives (ms). */
  readonly watchTimeoutMs: number;
}

const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/**
 * Loads credentials: the given kubeconfig path, else KUBECONFIG, else the
 * in-cluster service account, else ~/.kube/config. Throws one error that
 * lists everything tried when none works.
 *
 * @example
 * ```ts
 * import { loadKubeConfig } from "./context.ts";
 * try {
 *   loadKubeConfig("/nonexistent/kubeconfig", () => undefined);
 * } catch (e) {
 *   console.log((e as Error).message); // "no usable Kubernetes credentials: ..."
 * }
 * ```
 */
export function loadKubeConfig(
  kubeconfig?: string,
  env: (name: string) => string | undefined = envGet,
): { kubeConfig: KubeConfig; source: string } {
  const tried: string[] = [];
  const fromFile = (path: string, label: string) => {
    if (!fileExists(path)) {
      tried.push(`${label} ${path} does not exist`);
      return undefined;
    }
    const kc = new KubeConfig();
    try {
      kc.loadFromFile(path);
    } catch (error) {
      throw new Error(`cannot read kubeconfig ${path}: ${(error as Error).message}`, { cause: error });
    }
    if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${path} has no current context with a cluster`);
    return { kubeConfig: kc, source: path };
  };
  if (kubeconfig) {
    const loaded = fromFile(kubeconfig, "--kubeconfig");
    if (loaded) return loaded;
  }
  const fromEnv = env("KUBECONFIG");
  if (fromEnv) {
    const first = fromEnv.split(":").find((p) => p);
    if (first) {
      const loaded = fromFile(first, "KUBECONFIG");
      if (loaded) return loaded;
    }
  } else tried.push("KUBECONFIG is not set");
  if (env("KUBERNETES_SERVICE_HOST") && fileExists(SERVICE_ACCOUNT_TOKEN)) {
    const kc = new KubeConfig();
    kc.loadFromCluster();
    return { kubeConfig: kc, source: "in-cluster" };
  }
  tried.push(`not in a cluster (KUBERNETES_SERVICE_HOST unset or no ${SERVICE_ACCOUNT_TOKEN})`);
  const home = env("HOME") ?? env("USERPROFILE");
  if (home) {
    const loaded = fromFile(`${home}/.kube/config`, "default kubeconfig");
    if (loaded) return loaded;
  } else tried.push("HOME is not set (no ~/.kube/config)");
  throw new Error(`no usable Kubernetes credentials: ${tried.join("; ")}`);
}

/**
 * Builds a {@link KubeContext} from options, or from an already-loaded
 * KubeConfig (tests).
 *
 * @example
 * ```ts
 * import { KubeConfig } from "@kubernetes/client-node";
 * import { createKubeContext } from "./context.ts";
 * const kc = new KubeConfig();
 * kc.loadFromOptions({
 *   clusters: [{ name: "c", server: "http://127.0.0.1:1", skipTLSVerify: true }],
 *   users: [{ name: "u" }],
 *   contexts: [{ name: "x", cluster: "c", user: "u" }],
 *   currentContext: "x",
 * });
 * const ctx = createKubeContext({ namespace: "ai-apps" }, new AbortController().signal, kc);
 * ctx.target.deployment; // "vllm"
 * ```
 */
export function createKubeContext(
  options: KubeClientOptions,
  closed: AbortSignal,
  kubeConfig?: KubeConfig,
): KubeContext {
  const loaded = kubeConfig ? { kubeConfig, source: "given" } : loadKubeConfig(options.kubeconfig);
  const kc = forceHttp1(loaded.kubeConfig);
  return {
    kubeConfig: kc,
    source: loaded.source,
    namespace: options.namespace,
    target: {
      deployment: options.target?.deployment ?? "vllm",
      configMap: options.target?.configMap ?? "vllm-config",
      service: options.target?.service ?? "vllm-svc",
    },
    log: options.log ?? silentLogger,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    authz: kc.makeApiClient(AuthorizationV1Api),
    closed,
    watchTimeoutMs: options.watchTimeoutMs ?? DEFAULT_WATCH_TIMEOUT_MS,
  };
}

/**
 * Per-call client-node options: an AbortSignal on the request and, for
 * PATCH, the content type (client-node 2.x otherwise sends json-patch).
 * The generated object API runs "observable" middleware, hence `Observable`.
 *
 * @example
 * ```ts
 * import { callOptions } from "./context.ts";
 * const options = callOptions({ signal: AbortSignal.timeout(1000), patch: "merge" });
 * options.middleware?.length; // 1
 * ```
 */
export function callOptions(
  options: { signal?: AbortSignal; patch?: "merge" } = {},
): Partial<Configuration> & { middlewareMergeStrategy: "append" } {
  return {
    middleware: [{
      pre: (request: RequestContext) => {
        if (options.signal) request.setSignal(options.signal);
        if (options.patch === "merge") request.setHeaderParam("Content-Type", PatchStrategy.MergePatch);
        return new Observable(Promise.resolve(request));
      },
      post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
    }],
    middlewareMergeStrategy: "append",
  };
}

/**
 * One signal that aborts when any of `signals` does (undefined entries skipped).
 *
 * @example
 * ```ts
 * import { anySignal } from "./context.ts";
 * const a = new AbortController();
 * const s = anySignal([a.signal, undefined]);
 * a.abort();
 * s.aborted; // true
 * ```
 */
export function anySignal(signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}
