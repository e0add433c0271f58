/**
 * `status` command: asks a running proxy (`--url`, GET /admin/status) or the
 * cluster (`--cluster`: replicas, the ConfigMap's active model, the pods) for
 * the state and prints it for a person (or as JSON with `--json`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../config/define.ts";
import { ConfigLoadError, loadConfig } from "../config/load.ts";
import { parseDuration } from "../config/units.ts";
import type { ModelState } from "../kube/per_model.ts";
import type { PodState } from "../kube/pods.ts";
import type { KubeState } from "../kube/state.ts";
import type { ScalerStatus } from "../scaler/types.ts";

const USAGE = `Usage: vllm-chill status [--url URL] [--admin-token TOKEN] [--json]
       vllm-chill status --cluster [--config FILE] [--namespace NS] [--deployment NAME]
                         [--configmap NAME] [--kubeconfig FILE] [--json]

Asks a running proxy for its state (GET <url>/admin/status), or with --cluster
reads it from Kubernetes: replicas, the active model the ConfigMap names, pods,
and the sleep level the proxy recorded while the engine sleeps. With layout
"per-model" (in the config file): every model's Deployment, replicas, pods and
sleep state.

Options:
  --url URL            proxy base URL (env VLLM_CHILL_URL, default http://127.0.0.1:8080)
  --admin-token TOKEN  Bearer token for /admin (env VLLM_CHILL_ADMIN_TOKEN)
  --cluster            read the state from the cluster instead of a proxy
  --config FILE        config file naming namespace and objects (env VLLM_CHILL_CONFIG)
  --namespace NS       namespace of the vLLM objects (env VLLM_CHILL_NAMESPACE)
  --deployment NAME    vLLM Deployment (env VLLM_CHILL_DEPLOYMENT)
  --configmap NAME     vLLM ConfigMap (env VLLM_CHILL_CONFIGMAP)
  --kubeconfig FILE    kubeconfig (env VLLM_CHILL_KUBECONFIG; else in-cluster, else ~/.kube/config)
  --timeout DURATION   give up after this long (default 15s)
  --json               print the raw JSON
  -h, --help           this help
`;

/**
 * Runs `status`; returns the process exit code (0 ok, 1 unreachable or refused, 2 usage).
 *
 * @example
 * ```ts ignore
 * import { runStatus } from "./status.ts";
 * Deno.exit(await runStatus(["--url", "http://127.0.0.1:8080"]));
 * ```
 */
export async function runStatus(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        url: { type: "string" },
        "admin-token": { type: "string" },
        json: { type: "boolean", default: false },
        cluster: { type: "boolean", default: false },
        config: { type: "string" },
        namespace: { type: "string" },
        deployment: { type: "string" },
        configmap: { type: "string" },
        kubeconfig: { type: "string" },
        timeout: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`status: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const timeoutMs = parseDuration(values.timeout ?? "15s");
  if (timeoutMs === undefined) {
    console.error(`status: --timeout takes a duration such as "5s", got ${JSON.stringify(values.timeout)}\n\n${USAGE}`);
    return 2;
  }
  if (values.cluster) return await clusterStatus(values, timeoutMs);
  const url = (values.url ?? Deno.env.get("VLLM_CHILL_URL") ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const token = values["admin-token"] ?? Deno.env.get("VLLM_CHILL_ADMIN_TOKEN");
  let response: Response;
  try {
    response = await fetch(`${url}/admin/status`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    console.error(`status: cannot reach ${url}: ${(error as Error).message}`);
    return 1;
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = JSON.parse(text).error?.message ?? text;
    } catch { /* not JSON */ }
    console.error(`status: ${url}/admin/status answered ${response.status}: ${message}`);
    return 1;
  }
  if (values.json) {
    console.log(text);
    return 0;
  }
  console.log(formatStatus(JSON.parse(text)));
  return 0;
}

/**
 * Formats an /admin/status body for a terminal.
 *
 * @example
 * ```ts
 * import { formatStatus } from "./status.ts";
 * formatStatus({ state: "idle", activeModel: null, held: {}, inflight: {} }).startsWith("state"); // true
 * ```
 */
export function formatStatus(status: Partial<ScalerStatus> & Record<string, unknown>): string {
  const counts = (record: Record<string, number> | undefined) =>
    Object.entries(record ?? {}).map(([m, n]) => `${m}=${n}`).join(", ") || "none";
  const lines = [
    `state         ${status.state ?? "unknown"}`,
    `active model  ${status.activeModel ?? "none"}${status.nextModel ? ` → switching to ${status.nextModel}` : ""}`,
    `held          ${counts(status.held)}`,
    `in flight     ${counts(status.inflight)}`,
    `last activity ${status.lastActivity ?? "never"}`,
  ];
  if (status.lastColdStartMs != null) lines.push(`last cold start ${(status.lastColdStartMs / 1000).toFixed(1)}s`);
  if (status.lastSwitchMs != null) lines.push(`last switch   ${(status.lastSwitchMs / 1000).toFixed(1)}s`);
  if (status.lastError) {
    lines.push(`last error    ${status.lastError.at} ${status.lastError.model ?? ""}: ${status.lastError.reason}`);
  }
  const backend = status.backend as Record<string, unknown> | undefined;
  // Per-model layout: each model's Deployment, replicas, pods and sleep state, beside the scheduler's view.
  const perModel = backend?.layout === "per-model"
    ? backend.models as Record<
      string,
      { deployment: string; replicas: number; pods: { phase: string }[]; sleeping: boolean }
    >
    : undefined;
  const models = Object.entries(status.models ?? {});
  if (models.length) {
    lines.push("models");
    const width = Math.max(...models.map(([name]) => name.length));
    for (const [name, m] of models) {
      const kube = perModel?.[name];
      const parts = [
        `  ${name.padEnd(width)}  ${m.status.padEnd(8)}`,
        m.gpus.length ? `gpus ${m.gpus.join(",")} (share ${m.share})` : "",
        kube
          ? `${kube.deployment} replicas ${kube.replicas} pods ${kube.pods.map((p) => p.phase).join(",") || "none"}` +
            (kube.sleeping ? " (asleep)" : "")
          : "",
        m.inflight ? `in flight ${m.inflight}` : "",
        m.held ? `held ${m.held}` : "",
        m.lastWakeMs != null ? `last wake ${(m.lastWakeMs / 1000).toFixed(1)}s` : "",
        m.lastUsed ? `last used ${m.lastUsed}` : "",
        m.error ? `error: ${m.error}` : "",
      ];
      lines.push(parts.filter(Boolean).join("  "));
    }
  }
  const gpus = Object.entries(status.gpus ?? {});
  if (gpus.length) {
    lines.push("gpus");
    for (const [id, g] of gpus) {
      lines.push(`  ${id}  awake ${g.awakeShare.toFixed(2)}  ${g.models.join(", ") || "(no engine)"}`);
    }
  }
  if (backend && Object.keys(backend).length) {
    const shown = perModel ? Object.entries(backend).filter(([k]) => k !== "models") : Object.entries(backend);
    lines.push(`backend       ${shown.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")}`);
  }
  return lines.join("\n");
}

async function clusterStatus(values: Record<string, string | boolean | undefined>, timeoutMs: number): Promise<number> {
  const flags: Record<string, string | undefined> = {};
  for (const name of ["config", "namespace", "deployment", "configmap", "kubeconfig"]) {
    if (typeof values[name] === "string") flags[name] = values[name] as string;
  }
  let config;
  try {
    config = await loadConfig({ flags, env: Deno.env.toObject() });
  } catch (error) {
    if (error instanceof ConfigError || error instanceof ConfigLoadError) {
      console.error(`status: ${error.message}`);
      return 1;
    }
    throw error;
  }
  const { createKubeClient } = await import("../kube/mod.ts");
  let state: ClusterState;
  try {
    const kube = createKubeClient({
      kubeconfig: config.kubeconfig,
      namespace: config.namespace,
      target: {
        deployment: config.target.deployment,
        configMap: config.target.configMap,
        service: config.target.service,
      },
    });
    try {
      const options = { signal: AbortSignal.timeout(timeoutMs), deadline: Date.now() + timeoutMs };
      if (config.layout === "per-model") {
        state = { layout: "per-model", models: await kube.readModelStates(Object.keys(config.models), options) };
      } else {
        const shared = await kube.readState(options);
        const sleepLevel = shared.replicas > 0 ? await kube.readSleepLevel(options) : null;
        state = { ...shared, sleepLevel };
      }
    } finally {
      kube.close();
    }
  } catch (error) {
    console.error(`status: cannot read the cluster: ${(error as Error).message}`);
    return 1;
  }
  if (values.json) {
    console.log(JSON.stringify(state, null, 2));
    return 0;
  }
  console.log(
    "models" in state
      ? formatModelsStatus(state.models, config.namespace)
      : formatClusterStatus(state, `${config.namespace}/${config.target.deployment}`),
  );
  return 0;
}

/** What `status --cluster` reads: the shared Deployment's state, or every model's (per-model layout). */
type ClusterState = (KubeState & { sleepLevel: 1 | 2 | null }) | { layout: "per-model"; models: ModelState[] };

/**
 * Formats every model's state (per-model layout) for a terminal: one block per model with its Deployment,
 * replicas, engine phase, sleep state (as the proxy recorded it) and pods.
 *
 * @example
 * ```ts
 * import { formatModelsStatus } from "./status.ts";
 * const text = formatModelsStatus([{
 *   key: "a", names: { deployment: "vllm-a", configMap: "vllm-config-a", service: "vllm-svc-a" },
 *   deploymentExists: true, replicas: 1, pods: [], phase: "pending", sleepLevel: null,
 * }], "ai-apps");
 * text.includes("vllm-a"); // true
 * ```
 */
export function formatModelsStatus(models: readonly ModelState[], namespace: string): string {
  const lines = [`layout        per-model (namespace ${namespace})`];
  for (const model of [...models].sort((a, b) => a.key.localeCompare(b.key))) {
    const sleep = model.phase !== "ready" ? "-" : model.sleepLevel ? `asleep (level ${model.sleepLevel})` : "awake";
    lines.push(
      "",
      `model         ${model.key}`,
      `deployment    ${model.names.deployment}${model.deploymentExists ? "" : " (missing)"}`,
      `replicas      ${model.replicas}`,
      `engine        ${model.phase}${model.reason ? ` (${model.reason})` : ""}`,
      `sleep         ${sleep}`,
    );
    lines.push(...model.pods.map(podLine));
  }
  return lines.join("\n");
}

/**
 * Formats the state read from the cluster for a terminal.
 *
 * @example
 * ```ts
 * import { formatClusterStatus } from "./status.ts";
 * const text = formatClusterStatus(
 *   { replicas: 0, deploymentExists: true, activeModel: "qwen3-8b", pods: [], phase: "absent" },
 *   "ai-apps/vllm",
 * );
 * text.includes("qwen3-8b"); // true
 * ```
 */
export function formatClusterStatus(state: KubeState & { sleepLevel?: 1 | 2 | null }, where: string): string {
  const lines = [
    `deployment    ${where}${state.deploymentExists ? "" : " (missing)"}`,
    `replicas      ${state.replicas}`,
    `engine        ${state.phase}${state.reason ? ` (${state.reason})` : ""}`,
    `active model  ${state.activeModel ?? "none"}`,
  ];
  if (state.phase === "ready") {
    lines.push(`sleep         ${state.sleepLevel ? `asleep (level ${state.sleepLevel})` : "awake"}`);
  }
  lines.push(...state.pods.map(podLine));
  return lines.join("\n");
}

function podLine(pod: PodState): string {
  return `pod           ${pod.name} ${pod.phase}${pod.reason ? ` (${pod.reason})` : ""}` +
    (pod.restarts ? ` restarts=${pod.restarts}` : "");
}
