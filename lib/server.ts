/**
 * Assembles a running proxy from a validated config: registry, backend
 * (Kubernetes or process), scaler, HTTP handler and the guarded listener. Used by the
 * `serve` command, the demo, and end-to-end tests and benchmarks (in-process).
 *
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { type ChillConfig, maySleep, perModelNameProblem } from "./config/schema.ts";
import { createLogger, type Logger, tapLogger } from "./log.ts";
import { createMetrics, type Metrics } from "./metrics.ts";
import { ModelRegistry } from "./models/registry.ts";
import type { Backend } from "./backend/types.ts";
import { createProcessBackend } from "./backend/process.ts";
import type { KubeClient } from "./kube/mod.ts";
import { delay } from "./delay.ts";
import { type Clock, createScaler, type Scaler } from "./scaler/mod.ts";
import { type ConnectionLimits, createHandler, serveGuarded } from "./proxy/mod.ts";
import { Dashboard, type EventHubTuning } from "./dashboard/mod.ts";

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Logger (default: from config.logFormat, secrets redacted). */
  log?: Logger;
  /** Clock for the scaler (tests). */
  clock?: Clock;
  /** A ready KubeConfig instead of loading one (tests against the fake API server). */
  kubeConfig?: KubeConfig;
  /** A backend instead of the one `config.backend` names (tests). */
  backend?: Backend;
  /** How long shutdown lets in-flight requests finish (default: config.drainTimeout). */
  shutdownGraceMs?: number;
  /** Connection limits instead of the defaults (tests use small timeouts). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Limits of the dashboard's event stream (tests, benchmarks). */
  dashboard?: Partial<EventHubTuning>;
}

/** A running proxy. */
export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8080 (loopback host when listening on 0.0.0.0). */
  readonly url: string;
  /** Port actually bound (useful with port 0). */
  readonly port: number;
  /** The scaler (status, tests). */
  readonly scaler: Scaler;
  /** The metrics registry. */
  readonly metrics: Metrics;
  /** Known models. */
  readonly registry: ModelRegistry;
  /** The engine backend. */
  readonly backend: Backend;
  /** GET /ui and GET /admin/events. */
  readonly dashboard: Dashboard;
  /** Stops accepting, refuses held requests, lets in-flight ones finish (bounded), releases everything. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/** The strings that must never reach a log line or a response. */
export function secretsOf(config: Readonly<ChillConfig>): string[] {
  const keys = config.apiKeys.map((k) => typeof k === "string" ? k : k.key);
  return [...keys, ...(config.adminToken ? [config.adminToken] : [])];
}

/**
 * Starts the proxy. Returns once the port is bound; the backend's state is
 * read back in the background (requests are held meanwhile, /readyz is 503
 * until it is known).
 *
 * @example
 * ```ts ignore
 * import { parseConfig } from "./config/mod.ts";
 * import { startServer } from "./server.ts";
 * const server = await startServer(parseConfig({ backend: "process", port: 0, models: {} }));
 * await server.shutdown();
 * ```
 */
export async function startServer(config: Readonly<ChillConfig>, options: ServerOptions = {}): Promise<RunningServer> {
  const secrets = secretsOf(config);
  const baseLog = options.log ?? createLogger({ format: config.logFormat, secrets });
  const dashboard = new Dashboard({ adminToken: config.adminToken, log: baseLog, tuning: options.dashboard });
  // Every line also goes to the open dashboards' log tail (built only while one is open).
  const log = tapLogger(baseLog, dashboard.logSink, secrets);
  const metrics = createMetrics();
  const registry = new ModelRegistry(config.models);
  const closer = new AbortController();
  let kube: KubeClient | undefined;
  let backend: Backend;

  if (options.backend) {
    backend = options.backend;
  } else if (config.backend === "process") {
    backend = createProcessBackend({ config, log: log.with({ component: "engine" }) });
  } else {
    // Loaded only for this backend: client-node alone adds ~80 MiB of RSS to a process-backend proxy.
    const [{ createKubeClient }, { createKubernetesBackend }, { createPerModelBackend }] = await Promise.all([
      import("./kube/mod.ts"),
      import("./backend/kubernetes.ts"),
      import("./backend/kubernetes_per_model.ts"),
    ]);
    kube = createKubeClient({
      kubeconfig: config.kubeconfig,
      namespace: config.namespace,
      target: {
        deployment: config.target.deployment,
        configMap: config.target.configMap,
        service: config.target.service,
      },
      log: log.with({ component: "kube" }),
      kubeConfig: options.kubeConfig,
    });
    const backendOptions = { config, client: kube, registry, log: log.with({ component: "backend" }) };
    backend = config.layout === "per-model"
      ? createPerModelBackend(backendOptions)
      : createKubernetesBackend(backendOptions);
  }

  const scaler = createScaler({
    backend,
    registry,
    config,
    clock: options.clock,
    log: log.with({ component: "scaler" }),
    metrics,
    scaleOnly: !config.enableModelSwitch,
  });

  const handler = createHandler({
    config,
    gate: scaler,
    registry,
    metrics,
    log,
    ready: () => scaler.ready(),
  });

  const server = serveGuarded({
    hostname: config.host,
    port: config.port,
    handler: dashboard.wrap(handler, (listener) => scaler.onChange(listener)),
    log,
    metrics,
    limits: options.connectionLimits,
    onError: (error) => {
      log.error("unhandled error in the request handler", { error });
      return new Response(
        JSON.stringify({ error: { message: "internal error", type: "server_error", param: null, code: "internal" } }),
        { status: 500, headers: { "content-type": "application/json" } },
      );
    },
  });
  const addr = server.addr;
  const host = addr.hostname === "0.0.0.0" || addr.hostname === "::" ? "127.0.0.1" : addr.hostname;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}`;
  log.info("listening", {
    url,
    backend: backend.kind,
    enableModelSwitch: config.enableModelSwitch,
    models: registry.list().map((m) => m.name),
  });

  const modelsListed = kube ? startKubernetesSide(kube, config, registry, log, closer.signal) : Promise.resolve();
  // The engines are judged once the VLLMModel list is in (bounded): before, a running engine of a model declared
  // by a VLLMModel would look unknown, and be stopped. Requests are held meanwhile; /readyz says 503.
  void Promise.race([modelsListed, delay(MODELS_LIST_WAIT_MS, closer.signal)]).then(() =>
    scaler.start().catch((error) => log.error("scaler failed to start", { error }))
  );

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      const grace = options.shutdownGraceMs ?? config.drainTimeout;
      log.info("shutting down", { graceMs: grace });
      dashboard.close();
      const drained = server.shutdown();
      await scaler.shutdown();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), grace));
      const outcome = await Promise.race([drained.then(() => "drained" as const), timedOut]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        log.warn("shutdown grace period over; closing remaining connections", {
          graceMs: grace,
        });
        server.close();
      }
      closer.abort();
      handler.close();
      await backend.close();
      kube?.close();
      log.info("stopped");
    })();

  return {
    url,
    port: addr.port,
    scaler,
    metrics,
    registry,
    backend,
    dashboard,
    shutdown,
    finished: server.finished,
  };
}

/**
 * The Kubernetes-side start-up work, level-triggered and retried in the
 * background so that an API server that is down at start does not stop the
 * proxy: RBAC self-check, the VLLMModel watch, and (model switching) the
 * vLLM resources with the first model as the initial configuration.
 */
function startKubernetesSide(
  kube: KubeClient,
  config: Readonly<ChillConfig>,
  registry: ModelRegistry,
  log: Logger,
  signal: AbortSignal,
): Promise<unknown> {
  kube.rbacSelfCheck({ signal, deadline: Date.now() + 30_000 }).then((report) => {
    if (report.missing.length) log.error("RBAC self-check: missing permissions", { message: report.message });
    else log.info("RBAC self-check passed");
  }).catch((error) => log.warn("RBAC self-check could not run", { error }));

  if (!config.enableModelSwitch) return Promise.resolve();
  const watch = kube.watchModels(registry, signal);
  if (config.layout === "per-model") {
    keepModelObjects(kube, config, registry, log, signal, watch.synced);
    return watch.synced;
  }
  (async () => {
    // Wait (bounded) for the first VLLMModel list so "the first model" includes them.
    await Promise.race([watch.synced, delay(MODELS_LIST_WAIT_MS, signal)]);
    let retryInMs = 500;
    while (!signal.aborted) {
      try {
        const deadline = Date.now() + 30_000;
        // Level-triggered: after a restart the ConfigMap may already name the model a running (or starting) pod
        // serves; re-pointing it to the first model would make the next pod restart load another model.
        const configured = (await kube.readState({ signal, deadline })).activeModel;
        const model = (configured ? registry.resolve(configured) : undefined) ?? registry.first() ?? null;
        const result = await kube.ensureVllmResources(config, model, { signal, deadline });
        log.info("vLLM resources ensured", { ...result });
        return;
      } catch (error) {
        if (signal.aborted) return;
        log.warn("could not ensure vLLM resources yet; retrying", { error, retryInMs });
        await delay(retryInMs, signal);
        retryInMs = Math.min(retryInMs * 2, 30_000);
      }
    }
  })();
  return watch.synced;
}

/** Longest the engines, and the first ensure of the vLLM objects, wait for the first VLLMModel list. */
const MODELS_LIST_WAIT_MS = 5_000;

/** Longest one ensure of a model's objects may take. */
const ENSURE_TIMEOUT_MS = 30_000;

/**
 * Per-model layout: ensures every known model's objects (ConfigMap created or updated, Service and Deployment
 * created when missing) once the VLLMModel list is in (bounded wait), and again whenever a model appears or
 * changes. A failed ensure is retried with backoff; a model whose key cannot name objects is skipped, said once.
 * Objects of a model that disappears are left in place (its engine is unloaded: scaled to 0, never deleted).
 */
function keepModelObjects(
  kube: KubeClient,
  config: Readonly<ChillConfig>,
  registry: ModelRegistry,
  log: Logger,
  signal: AbortSignal,
  synced: Promise<boolean>,
): void {
  const ensured = new Map<string, string>();
  const refused = new Set<string>();
  let running = false;
  let again = false;
  let retryInMs = 500;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const pass = async () => {
    if (signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    let failed = false;
    try {
      do {
        again = false;
        for (const model of registry.list()) {
          if (signal.aborted) return;
          const sleepMode = maySleep(model, config.sleepAfter);
          const fingerprint = JSON.stringify([model, sleepMode]);
          if (ensured.get(model.name) === fingerprint) continue;
          const problem = perModelNameProblem(model.name, config.target);
          if (problem) {
            if (!refused.has(model.name)) log.warn("model skipped: it cannot have its own objects", { problem });
            refused.add(model.name);
            continue;
          }
          try {
            const result = await kube.model(model.name).ensure(config, model, {
              signal,
              deadline: Date.now() + ENSURE_TIMEOUT_MS,
              sleepMode,
            });
            ensured.set(model.name, fingerprint);
            log.info("vLLM objects ensured", { model: model.name, ...result });
          } catch (error) {
            if (signal.aborted) return;
            failed = true;
            log.warn("could not ensure a model's vLLM objects yet; retrying", { model: model.name, error, retryInMs });
          }
        }
      } while (again && !signal.aborted);
    } finally {
      running = false;
    }
    if (failed && !signal.aborted) {
      clearTimeout(retry);
      retry = setTimeout(() => void pass(), retryInMs);
      retryInMs = Math.min(retryInMs * 2, 30_000);
    } else retryInMs = 500;
  };
  const unsubscribe = registry.onChange(() => void pass());
  signal.addEventListener("abort", () => {
    unsubscribe();
    clearTimeout(retry);
  }, { once: true });
  // Wait (bounded) for the first VLLMModel list so that its models are ensured in the first pass.
  void Promise.race([synced, delay(MODELS_LIST_WAIT_MS, signal)]).then(() => pass());
}
