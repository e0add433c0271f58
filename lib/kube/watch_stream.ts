/**
 * One watch request on Deno's own `fetch`, which (unlike the undici-based
 * `Watch` of client-node under Deno) notices a connection reset mid-stream
 * at once and can be aborted, so a broken watch is replaced immediately and
 * leaves no socket behind. Credentials come from the KubeConfig: headers
 * (bearer token, token file, exec/auth-provider, basic auth, impersonation)
 * through client-node, TLS material (cluster CA, client certificate) through
 * `Deno.createHttpClient`, closed with the watch.
 *
 * @module
 */
import { HttpMethod, type KubeConfig, RequestContext, Watch } from "@kubernetes/client-node";
import { toKubeError, UnavailableError } from "./errors.ts";

/** One decoded watch event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (a metav1 Status). */
export interface WatchEvent {
  /** Event type as sent by the API server. */
  type: string;
  /** The object (a Status for ERROR). */
  object: unknown;
}

/** What {@link streamWatch} needs. */
export interface WatchRequest {
  /** Watch path, e.g. `/api/v1/namespaces/ai-apps/pods`. */
  path: string;
  /** Query parameters besides `watch=true` (resourceVersion, timeoutSeconds, labelSelector…). */
  query: Record<string, string | undefined>;
  /** Called for every event, in order. A throw ends the watch with that error. */
  onEvent(event: WatchEvent): void;
}

/**
 * The watch URL: the current cluster's server + `path` + `?watch=true` and
 * the query (undefined values left out).
 *
 * @example
 * ```ts
 * import { watchUrl } from "./watch_stream.ts";
 * const url = watchUrl("https://10.0.0.1:6443/", "/api/v1/namespaces/a/pods", { labelSelector: "app=vllm" });
 * url.href; // "https://10.0.0.1:6443/api/v1/namespaces/a/pods?watch=true&labelSelector=app%3Dvllm"
 * ```
 */
export function watchUrl(server: string, path: string, query: Record<string, string | undefined>): URL {
  const url = new URL(server.replace(/\/+$/, "") + path);
  url.searchParams.set("watch", "true");
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
  return url;
}

/**
 * The TLS options of `Deno.createHttpClient` for the KubeConfig's current
 * cluster and user: cluster CA (`caData` base64 or `caFile`) and client
 * certificate (`certData`/`keyData` base64 or `certFile`/`keyFile`), plus the
 * cluster's `proxyUrl`. Null when Deno's fetch cannot honour the cluster's
 * TLS settings (`insecure-skip-tls-verify` or `tls-server-name` on https).
 *
 * @example
 * ```ts
 * import { KubeConfig } from "@kubernetes/client-node";
 * import { httpClientOptions } from "./watch_stream.ts";
 * const kc = new KubeConfig();
 * kc.loadFromOptions({
 *   clusters: [{ name: "c", server: "https://k8s:6443", caData: btoa("-----BEGIN CERTIFICATE-----\n") }],
 *   users: [{ name: "u", token: "t" }],
 *   contexts: [{ name: "x", cluster: "c", user: "u" }],
 *   currentContext: "x",
 * });
 * httpClientOptions(kc)?.caCerts?.length; // 1
 * ```
 */
export function httpClientOptions(kubeConfig: KubeConfig): Deno.CreateHttpClientOptions | null {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const user = kubeConfig.getCurrentUser();
  const https = cluster.server.startsWith("https:");
  if (https && (cluster.skipTLSVerify || cluster.tlsServerName)) return null;
  const options: Deno.CreateHttpClientOptions = {};
  const ca = pem(cluster.caFile, cluster.caData);
  if (ca) options.caCerts = [ca];
  const cert = pem(user?.certFile, user?.certData);
  const key = pem(user?.keyFile, user?.keyData);
  if (cert && key) Object.assign(options, { cert, key });
  if (cluster.proxyUrl) options.proxy = { url: cluster.proxyUrl };
  return options;
}

/**
 * Runs one watch request until the server ends it (resolves), or it fails
 * (rejects with a typed KubeError: the server's Status for a non-200
 * answer, an {@link UnavailableError} with status 0 for a connection that
 * broke), or `signal` aborts (rejects with the signal's reason after the
 * request, body and HTTP client are released). Events are delivered in
 * order through `request.onEvent`; a line split across chunks is joined.
 *
 * @example
 * ```ts ignore
 * import { streamWatch } from "./watch_stream.ts";
 * await streamWatch(kubeConfig, {
 *   path: "/api/v1/namespaces/ai-apps/pods",
 *   query: { resourceVersion: "42", allowWatchBookmarks: "true", timeoutSeconds: "290" },
 *   onEvent: (e) => console.log(e.type),
 * }, signal);
 * ```
 */
export async function streamWatch(kubeConfig: KubeConfig, request: WatchRequest, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const clientOptions = httpClientOptions(kubeConfig);
  if (clientOptions === null) return await streamWatchClientNode(kubeConfig, request, signal);
  const url = watchUrl(cluster.server, request.path, request.query);
  const headers = await authHeaders(kubeConfig, url);
  signal.throwIfAborted();
  const client = Deno.createHttpClient(clientOptions);
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers, signal, client });
    } catch (error) {
      signal.throwIfAborted();
      throw new UnavailableError(0, "NetworkError", `watch request failed: ${describe(error)}`, { cause: error });
    }
    if (response.status !== 200 || !response.body) {
      const body = await response.text().catch(() => "");
      throw toKubeError({ code: response.status, body });
    }
    await readEvents(response.body, request.onEvent, signal);
  } finally {
    client.close();
  }
}

/** Reads newline-delimited JSON events until the stream ends; a read error is a broken connection. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: WatchEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  // Aborting the fetch errors the body; cancelling the reader too makes sure the read ends now.
  const onAbort = () => reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  let pending = "";
  try {
    while (true) {
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await reader.read();
      } catch (error) {
        signal.throwIfAborted();
        throw new UnavailableError(0, "NetworkError", `watch connection broke: ${describe(error)}`, { cause: error });
      }
      signal.throwIfAborted();
      if (chunk.done) break;
      pending += chunk.value;
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line) onEvent(parseEvent(line));
      }
    }
    // The server ends every event with a newline: text left over means the connection was cut mid-event.
    if (pending.trim()) {
      throw new UnavailableError(0, "NetworkError", "watch connection ended in the middle of an event");
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function parseEvent(line: string): WatchEvent {
  let event: { type?: unknown; object?: unknown };
  try {
    event = JSON.parse(line);
  } catch (error) {
    throw new UnavailableError(0, "NetworkError", `malformed watch event: ${line.slice(0, 200)}`, { cause: error });
  }
  if (typeof event?.type !== "string") {
    throw new UnavailableError(0, "NetworkError", `watch event without a type: ${line.slice(0, 200)}`);
  }
  return { type: event.type, object: event.object };
}

/** Every header client-node would send (bearer token, token file, exec/auth-provider, basic auth, impersonation). */
async function authHeaders(kubeConfig: KubeConfig, url: URL): Promise<Headers> {
  const context = new RequestContext(url.href, HttpMethod.GET);
  await kubeConfig.applySecurityAuthentication(context);
  const headers = new Headers({ accept: "application/json" });
  for (const [name, value] of Object.entries(context.getHeaders())) headers.set(name, String(value));
  return headers;
}

/**
 * The fallback for an https cluster whose TLS settings Deno's fetch cannot
 * honour: client-node's Watch, with the same contract (a reset connection
 * may then go unnoticed until the caller's timeout).
 */
function streamWatchClientNode(kubeConfig: KubeConfig, request: WatchRequest, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let controller: AbortController | undefined;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      controller?.abort();
      if (signal.aborted) reject(signal.reason);
      else if (error) reject(toKubeError(error));
      else resolve();
    };
    const onAbort = () => finish();
    signal.addEventListener("abort", onAbort, { once: true });
    const query = Object.fromEntries(Object.entries(request.query).filter(([, v]) => v !== undefined));
    new Watch(kubeConfig).watch(request.path, query, (type, object) => {
      if (settled) return;
      try {
        request.onEvent({ type, object });
      } catch (error) {
        finish(error);
      }
    }, (error) => finish(error ?? undefined)).then(
      (c) => {
        controller = c;
        if (settled) c.abort();
      },
      (error) => finish(error ?? new Error("watch failed")),
    );
  });
}

/** An error's message with its causes' (Deno's fetch says "fetch failed" and puts the reason in `cause`). */
function describe(error: unknown): string {
  const parts: string[] = [];
  for (
    let e = error as { message?: unknown; cause?: unknown } | undefined;
    e && parts.length < 4;
    e = e.cause as typeof e
  ) {
    parts.push(String(e.message ?? e));
  }
  return parts.join(": ");
}

function pem(file: string | undefined, data: string | undefined): string | undefined {
  if (file) return Deno.readTextFileSync(file);
  if (data) return new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
  return undefined;
}
