/**
 * Harness of the reliability suite on the Kubernetes backend: a fake API
 * server enforcing the generated least-privilege Role, a fake vLLM started
 * per pod (on one fixed port, serving the model the ConfigMap names when the
 * pod starts), and the proxy started in-process with `startServer` (or as a
 * child process pointed at the fake's kubeconfig). Plus raw-TCP helpers for
 * requests a fetch client would normalise, and secret greps.
 *
 * The process-backend harness (`startProxy`, `spawnDeno`, `captureLogs`, …)
 * lives in tests/e2e/helpers.ts and is reused, not copied.
 *
 * @module
 */
import assert from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfig, ChillConfigInput } from "../../lib/config/schema.ts";
import { renderRbac } from "../../lib/manifests/rbac.ts";
import { type RunningServer, startServer } from "../../lib/server.ts";
import { type CallRecord, type FakeKube, type FakeKubeOptions, startFakeKube } from "../support/fake_kube.ts";
import { type FakeVllm, type FakeVllmOptions, startFakeVllm } from "../support/fake_vllm.ts";
import { captureLogs, waitUntil, within } from "../e2e/helpers.ts";
import { pickFreePort } from "../../lib/backend/free_port.ts";

/**
 * Models of every Kubernetes scenario: key → Hugging Face id.
 *
 * @example
 * ```ts
 * import { KUBE_MODELS } from "./helpers.ts";
 * Object.keys(KUBE_MODELS); // ["model-a", "model-b", "model-c"]
 * ```
 */
export const KUBE_MODELS: Record<string, { modelName: string }> = {
  "model-a": { modelName: "org/model-a" },
  "model-b": { modelName: "org/model-b" },
  "model-c": { modelName: "org/model-c" },
};

/**
 * A free TCP port on 127.0.0.1, below the ephemeral range (see lib/backend/free_port.ts).
 *
 * @example
 * ```ts
 * import { freePort } from "./helpers.ts";
 * freePort() > 0; // true
 * ```
 */
export function freePort(): number {
  return pickFreePort("127.0.0.1");
}

/**
 * The config of a Kubernetes scenario: model switching on, three models,
 * forwarding to `targetUrl`, short timeouts; `overrides` win.
 *
 * @example
 * ```ts
 * import { kubeConfigFor } from "./helpers.ts";
 * kubeConfigFor("http://127.0.0.1:1").enableModelSwitch; // true
 * ```
 */
export function kubeConfigFor(targetUrl: string, overrides: Partial<ChillConfigInput> = {}): ChillConfig {
  return parseConfig({
    namespace: "ai-apps",
    backend: "kubernetes",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port: 0,
    idleTimeout: "1m",
    minLoadedTime: "0s",
    holdTimeout: "8s",
    startTimeout: "8s",
    drainTimeout: "3s",
    heartbeatInterval: "0s",
    models: KUBE_MODELS,
    ...overrides,
    target: { url: targetUrl, ...overrides.target },
  });
}

/**
 * The generated Role (what the fake enforces), as the fake's RoleLike.
 *
 * @example
 * ```ts
 * import { generatedRole, kubeConfigFor } from "./helpers.ts";
 * generatedRole(kubeConfigFor("http://127.0.0.1:1")).rules.length > 0; // true
 * ```
 */
export function generatedRole(config: ChillConfig): { metadata?: { name?: string }; rules: never[] } {
  return renderRbac(config)[1] as unknown as { metadata?: { name?: string }; rules: never[] };
}

/**
 * Options of {@link startCluster}.
 *
 * @example
 * ```ts
 * import type { ClusterOptions } from "./helpers.ts";
 * const options: ClusterOptions = { vllm: { tokensPerSec: 50 }, config: { holdTimeout: "2s" } };
 * ```
 */
export interface ClusterOptions {
  /** Options of the fake API server (the Role is always the generated one). */
  fake?: Omit<FakeKubeOptions, "role" | "onPodStart" | "onPodStop">;
  /** Options of every fake vLLM started for a pod (model and port are set by the harness). */
  vllm?: Omit<FakeVllmOptions, "model" | "port">;
  /** Config overrides (see {@link kubeConfigFor}). */
  config?: Partial<ChillConfigInput>;
  /** Served name when the ConfigMap names none (scale-only mode: a user-managed Deployment). */
  servedFallback?: string;
  /** Create a user-managed vLLM Deployment (replicas 0) before the proxy starts (scale-only mode). */
  userDeployment?: boolean;
}

/**
 * A fake cluster whose pods run a fake vLLM.
 *
 * @example
 * ```ts ignore
 * import { startCluster } from "./helpers.ts";
 * const cluster = await startCluster();
 * cluster.scalePatches().length; // 0
 * await cluster.close();
 * ```
 */
export interface FakeCluster {
  /** The fake API server. */
  fake: FakeKube;
  /** The config the proxy runs with (target.url = the fake vLLM's fixed port). */
  config: ChillConfig;
  /** The fixed URL every pod's fake vLLM listens on. */
  targetUrl: string;
  /** Served model names, one per pod start, in order. */
  started: string[];
  /** The fake vLLM of the running pod, if any. */
  vllm(): FakeVllm | undefined;
  /** The served model name of the running pod's fake vLLM, if any. */
  serving(): string | undefined;
  /** `PATCH deployments/scale` calls answered 2xx with their index in `fake.calls`. */
  scalePatches(): CallRecord[];
  /** The scale patches among them that asked for one replica or more. */
  scaleUps(): CallRecord[];
  /** The ConfigMap's active model key (`VLLM_CHILL_MODEL`). */
  configuredModel(): string | undefined;
  /** The Deployment's desired replicas. */
  replicas(): number | undefined;
  /** Closes the fake vLLM and the fake API server. */
  close(): Promise<void>;
}

/**
 * Starts a fake API server (generated Role enforced, one GPU) whose pods
 * each run a fake vLLM serving the ConfigMap's `SERVED_MODEL_NAME`.
 *
 * @example
 * ```ts ignore
 * import { startCluster } from "./helpers.ts";
 * const cluster = await startCluster();
 * await cluster.close();
 * ```
 */
export async function startCluster(options: ClusterOptions = {}): Promise<FakeCluster> {
  const port = freePort();
  const targetUrl = `http://127.0.0.1:${port}`;
  const config = kubeConfigFor(targetUrl, options.config);
  const started: string[] = [];
  interface Engine {
    pod: string;
    served: string;
    /** The fake vLLM (on its own port) and the relay from the fixed port to it. */
    up: Promise<{ vllm: FakeVllm; relay: TcpForwarder }>;
    vllm?: FakeVllm;
  }
  let current: Engine | undefined;
  let closing: Promise<void> = Promise.resolve();
  // The pod hooks read the ConfigMap through the fake they belong to (set right below).
  const self: { fake?: FakeKube } = {};

  // A stopped pod's container dies: its connections are cut (relay closed) before the engine goes.
  const stopCurrent = () => {
    const running = current;
    current = undefined;
    if (running) {
      closing = closing.then(() =>
        running.up.then(async ({ vllm, relay }) => {
          await relay.close();
          await vllm.close();
        }, () => {})
      );
    }
    return closing;
  };

  const kube = self.fake = await startFakeKube({
    namespace: config.namespace,
    gpusPerNode: 1,
    timing: { scheduleMs: 5, startMs: 15, readyMs: 15, terminateMs: 20 },
    ...options.fake,
    role: generatedRole(config),
    onPodStart: async (pod) => {
      await stopCurrent();
      const cm = self.fake!.store.getObject("configmaps", config.target.configMap, config.namespace);
      const served = cm?.data?.SERVED_MODEL_NAME ?? options.servedFallback ?? "none";
      started.push(served);
      const up = startFakeVllm({ ...options.vllm, model: served, port: 0 }).then((vllm) => ({
        vllm,
        relay: forwardTcp(port, vllm.port),
      }));
      const entry: Engine = { pod: pod.metadata.name, served, up };
      current = entry;
      entry.vllm = (await up).vllm;
    },
    onPodStop: async (pod) => {
      if (current?.pod === pod.metadata.name) await stopCurrent();
    },
  });
  if (options.userDeployment) {
    kube.store.createObject("deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: config.target.deployment },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: "vllm" } },
        template: {
          metadata: { labels: { app: "vllm" } },
          spec: { containers: [{ name: "vllm", image: "vllm/vllm-openai:v0.11.0" }] },
        },
      },
    }, config.namespace);
  }
  return {
    fake: kube,
    config,
    targetUrl,
    started,
    vllm: () => current?.vllm,
    serving: () => current?.served,
    scalePatches: () => kube.calls.filter((c) => c.verb === "patch" && c.subresource === "scale" && c.status < 300),
    scaleUps: () =>
      kube.calls.filter((c) => c.verb === "patch" && c.subresource === "scale" && c.status < 300 && c.replicas! > 0),
    configuredModel: () =>
      kube.store.getObject("configmaps", config.target.configMap, config.namespace)?.data?.VLLM_CHILL_MODEL,
    replicas: () => kube.store.getObject("deployments", config.target.deployment, config.namespace)?.spec?.replicas,
    close: async () => {
      await kube.close();
      await stopCurrent();
    },
  };
}

/**
 * A proxy started in-process against a fake cluster.
 *
 * @example
 * ```ts ignore
 * import { startCluster, startKubeProxy } from "./helpers.ts";
 * const proxy = await startKubeProxy(await startCluster());
 * proxy.logs.lines.length > 0; // true
 * ```
 */
export interface KubeProxy {
  /** The running server. */
  server: RunningServer;
  /** Base URL of the proxy. */
  url: string;
  /** Captured log lines (unredacted: a secret that reaches the logger shows up here). */
  logs: ReturnType<typeof captureLogs>;
  /** Shuts the proxy down (idempotent). */
  close(): Promise<void>;
}

/**
 * Starts the proxy in-process on the cluster's fake kubeconfig.
 *
 * @example
 * ```ts ignore
 * import { startCluster, startKubeProxy } from "./helpers.ts";
 * const cluster = await startCluster();
 * const proxy = await startKubeProxy(cluster);
 * await proxy.close();
 * await cluster.close();
 * ```
 */
export async function startKubeProxy(
  cluster: FakeCluster,
  options: { config?: ChillConfig; waitReady?: boolean; kubeConfig?: KubeConfig } = {},
): Promise<KubeProxy> {
  const logs = captureLogs();
  const server = await startServer(options.config ?? cluster.config, {
    log: logs.log,
    kubeConfig: options.kubeConfig ?? cluster.fake.kubeConfig(),
    shutdownGraceMs: 2000,
  });
  let closed: Promise<void> | undefined;
  const proxy: KubeProxy = {
    server,
    url: server.url,
    logs,
    close: () =>
      closed ??= (async () => {
        await server.shutdown();
        await server.finished;
      })(),
  };
  if (options.waitReady !== false) {
    try {
      await waitUntil(() => server.scaler.ready(), 8000, "the scaler to read the cluster back");
    } catch (error) {
      await proxy.close();
      throw error;
    }
  }
  return proxy;
}

/**
 * Runs `fn` with a fresh cluster and proxy, closing both (in that order: proxy, cluster) afterwards.
 *
 * @example
 * ```ts ignore
 * import { withKubeProxy } from "./helpers.ts";
 * await withKubeProxy({}, async ({ proxy }) => {
 *   (await fetch(`${proxy.url}/healthz`)).status; // 200
 * });
 * ```
 */
export async function withKubeProxy(
  options: ClusterOptions,
  fn: (env: { cluster: FakeCluster; proxy: KubeProxy }) => Promise<void>,
): Promise<void> {
  const cluster = await startCluster(options);
  try {
    const proxy = await startKubeProxy(cluster);
    try {
      await fn({ cluster, proxy });
    } finally {
      await proxy.close();
    }
    assert.deepEqual(cluster.fake.kubelet.hookErrors, [], "pod hooks failed");
    assertRoleSufficed(cluster);
  } finally {
    await cluster.close();
  }
}

/**
 * A KubeConfig for the fake's user pointing at another server URL (e.g. a port nothing listens on yet).
 *
 * @example
 * ```ts ignore
 * import { kubeConfigAt } from "./helpers.ts";
 * const kc = kubeConfigAt("http://127.0.0.1:1", cluster.fake.token);
 * ```
 */
export function kubeConfigAt(server: string, token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server, skipTLSVerify: true }],
    users: [{ name: "vllm-chill", token }],
    contexts: [{ name: "fake", cluster: "fake", user: "vllm-chill", namespace: "ai-apps" }],
    currentContext: "fake",
  });
  return kc;
}

/**
 * A TCP forwarder from a local port to another (an API server that "comes back").
 *
 * @example
 * ```ts ignore
 * import { forwardTcp } from "./helpers.ts";
 * const forwarder = forwardTcp(8443, 39211);
 * await forwarder.close();
 * ```
 */
export interface TcpForwarder {
  /** Stops listening and closes every forwarded connection. */
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1:`port` and forwards every connection to 127.0.0.1:`to`.
 *
 * @example
 * ```ts ignore
 * import { forwardTcp } from "./helpers.ts";
 * const forwarder = forwardTcp(8443, 39211);
 * await forwarder.close();
 * ```
 */
export function forwardTcp(port: number, to: number): TcpForwarder {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  const accepting = (async () => {
    for await (const inbound of listener) {
      conns.add(inbound);
      pipes.push((async () => {
        let outbound: Deno.Conn | undefined;
        try {
          outbound = await Deno.connect({ hostname: "127.0.0.1", port: to });
          conns.add(outbound);
          await Promise.allSettled([
            inbound.readable.pipeTo(outbound.writable),
            outbound.readable.pipeTo(inbound.writable),
          ]);
        } catch { /* either side closed */ }
        for (const c of [inbound, outbound]) {
          if (!c) continue;
          conns.delete(c);
          try {
            c.close();
          } catch { /* already closed by pipeTo */ }
        }
      })());
    }
  })();
  return {
    close: async () => {
      listener.close();
      await accepting.catch(() => {});
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.allSettled(pipes);
    },
  };
}

/**
 * Asserts the generated Role allowed every call the proxy made (no 403 from the fake's RBAC).
 *
 * @example
 * ```ts ignore
 * import { assertRoleSufficed } from "./helpers.ts";
 * assertRoleSufficed(cluster);
 * ```
 */
export function assertRoleSufficed(cluster: FakeCluster): void {
  const denied = cluster.fake.calls.filter((c) => c.status === 403);
  assert.deepEqual(denied.map((c) => `${c.verb} ${c.resource}/${c.subresource ?? ""}`), [], "RBAC denied a call");
}

/**
 * POSTs a non-streaming chat completion and returns status and parsed body (always read).
 *
 * @example
 * ```ts ignore
 * import { chat } from "./helpers.ts";
 * const { status, body } = await chat("http://127.0.0.1:8080", "model-a");
 * ```
 */
export async function chat(
  url: string,
  model: unknown,
  options: { headers?: Record<string, string>; timeoutMs?: number; extra?: Record<string, unknown> } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 3, ...options.extra }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 20_000),
  });
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text);
  } catch {
    body = { raw: text };
  }
  return { status: res.status, body, headers: res.headers, ms: performance.now() - t0 };
}

/**
 * A metric's value summed over the series whose labels include `labels`.
 *
 * @example
 * ```ts
 * import { metricValue } from "./helpers.ts";
 * metricValue('vllm_chill_x_total{code="200"} 3\n', "vllm_chill_x_total", { code: "200" }); // 3
 * ```
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const match = line.match(/^([a-z_]+)(\{([^}]*)\})?\s+(\S+)$/);
    if (!match || match[1] !== name) continue;
    const have = new Map<string, string>();
    for (const pair of (match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(pair[1], pair[2]);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(match[4]);
  }
  return sum;
}

/**
 * The proxy's /metrics text.
 *
 * @example
 * ```ts ignore
 * import { scrape } from "./helpers.ts";
 * const text = await scrape("http://127.0.0.1:8080");
 * ```
 */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  return await res.text();
}

/**
 * The parsed head and body of a raw HTTP/1.1 response.
 *
 * @example
 * ```ts ignore
 * import { rawRequest } from "./helpers.ts";
 * const res = await rawRequest(8080, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
 * res.status; // 200
 * ```
 */
export interface RawResponse {
  /** Status code (0 when the server closed without answering). */
  status: number;
  /** Status line and header lines, as received. */
  head: string;
  /** Header lines, lowercased names. */
  headers: Map<string, string>;
  /** The body (de-chunked when chunked). */
  body: string;
}

/**
 * Sends raw bytes over TCP (so nothing normalises the path or the headers)
 * and reads one response; `trickle` sends the body in pieces with a pause.
 * Bounded by `timeoutMs`.
 *
 * @example
 * ```ts ignore
 * import { rawRequest } from "./helpers.ts";
 * const res = await rawRequest(8080, "GET /v1/../admin/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
 * ```
 */
export async function rawRequest(
  port: number,
  head: string,
  options: { body?: Uint8Array[]; pauseMs?: number; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const encoder = new TextEncoder();
  const timer = setTimeout(() => conn.close(), options.timeoutMs ?? 10_000);
  const chunks: Uint8Array[] = [];
  try {
    await writeAll(conn, encoder.encode(head));
    for (const piece of options.body ?? []) {
      try {
        await writeAll(conn, piece);
      } catch {
        break; // the server answered and closed early (e.g. 413): read what it said
      }
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    }
    const buf = new Uint8Array(64 * 1024);
    for (let i = 0; i < 10_000; i++) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        break;
      }
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      if (complete(concat(chunks))) break;
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  return parseRaw(new TextDecoder().decode(concat(chunks)));
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** Whether a full response (Content-Length or chunked) has arrived. */
function complete(bytes: Uint8Array): boolean {
  const text = new TextDecoder().decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = text.slice(0, end).toLowerCase();
  const length = head.match(/\r\ncontent-length:\s*(\d+)/);
  if (length) return new TextEncoder().encode(text.slice(end + 4)).length >= Number(length[1]);
  if (head.includes("transfer-encoding: chunked")) return text.endsWith("0\r\n\r\n");
  return false;
}

function parseRaw(text: string): RawResponse {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, head: text, headers: new Map(), body: "" };
  const head = text.slice(0, end);
  const lines = head.split("\r\n");
  const status = Number(lines[0].split(" ")[1] ?? 0);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = text.slice(end + 4);
  if (headers.get("transfer-encoding") === "chunked") {
    let out = "";
    let rest = body;
    for (let i = 0; i < 10_000; i++) {
      const nl = rest.indexOf("\r\n");
      if (nl < 0) break;
      const size = parseInt(rest.slice(0, nl), 16);
      if (!size) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  }
  return { status, head, headers, body };
}

/**
 * Asserts none of `secrets` occurs in `text` (also not URL- or JSON-escaped); `where` names the place.
 *
 * @example
 * ```ts
 * import { assertNoSecrets } from "./helpers.ts";
 * assertNoSecrets("all clear", ["s3cret-value"], "a log");
 * ```
 */
export function assertNoSecrets(text: string, secrets: string[], where: string): void {
  for (const secret of secrets) {
    for (const form of new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)])) {
      assert.ok(!text.includes(form), `a secret (${secret.slice(0, 3)}…) leaked into ${where}`);
    }
  }
}

/**
 * Whether the proxy asked anything to wake: no scale patch, no ConfigMap write, no pod started.
 *
 * @example
 * ```ts ignore
 * import { assertNothingWoken } from "./helpers.ts";
 * assertNothingWoken(cluster, 0, "a malformed body");
 * ```
 */
export function assertNothingWoken(cluster: FakeCluster, callsBefore: number, what: string): void {
  const writes = cluster.fake.calls.slice(callsBefore).filter((c) =>
    c.verb === "patch" || c.verb === "update" || c.verb === "create" || c.verb === "delete"
  ).filter((c) => c.resource !== "selfsubjectaccessreviews");
  assert.deepEqual(
    writes.map((c) => `${c.verb} ${c.resource}/${c.subresource ?? ""} ${c.name ?? ""}`),
    [],
    `${what} woke something`,
  );
  assert.equal(cluster.fake.kubelet.pods().length, 0, `${what} started a pod`);
}

/**
 * Re-exported from tests/e2e/helpers.ts (one implementation for both suites).
 *
 * @example
 * ```ts
 * import { within } from "./helpers.ts";
 * await within(Promise.resolve(1), 100, "one");
 * ```
 */
export { captureLogs, waitUntil, within };
