/**
 * What the two Kubernetes backends (shared and per-model layout) share:
 * waiting for vLLM's /health through the upstream URL, turning Kubernetes
 * errors into BackendErrors, and throttling "the pod is unschedulable"
 * reports to the scheduler.
 *
 * @module
 */
import { delay } from "../delay.ts";
import { ForbiddenError, KubeError, UnavailableError } from "../kube/errors.ts";
import type { PodWaitOptions } from "../kube/waits.ts";
import { BackendError } from "./types.ts";

const HEALTH_FIRST_DELAY_MS = 20;
const HEALTH_MAX_DELAY_MS = 500;
const HEALTH_REQUEST_TIMEOUT_MS = 2000;

/**
 * How often a start whose pod stays unschedulable tells the scheduler again (ms): longer than the kube
 * scheduler's longest retry backoff (podMaxBackoffSeconds, 10 s by default), so that an engine evicted for it
 * has been given its chance before another one is.
 *
 * @example
 * ```ts
 * import { DEFAULT_PENDING_REPORT_MS } from "./kube_common.ts";
 * DEFAULT_PENDING_REPORT_MS; // 15000
 * ```
 */
export const DEFAULT_PENDING_REPORT_MS = 15_000;

/**
 * Probes `${upstream}/health` until it answers 200: 20 ms, doubling to
 * 500 ms between probes, bounded by the deadline and the signal.
 *
 * @example
 * ```ts ignore
 * await waitHealthy(fetch, "http://vllm-svc-a.ai-apps.svc:80", signal, Date.now() + 60_000);
 * ```
 */
export async function waitHealthy(doFetch: typeof fetch, upstream: string, signal: AbortSignal, deadline: number) {
  let backoff = HEALTH_FIRST_DELAY_MS;
  let lastProblem = "no answer yet";
  for (;;) {
    if (signal.aborted) throw new BackendError("aborted", "waiting for vLLM /health aborted");
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new BackendError(
        "timeout",
        `the vLLM pod is Ready but ${upstream}/health did not answer 200 in time: ${lastProblem}`,
      );
    }
    try {
      const response = await doFetch(`${upstream}/health`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(Math.min(remaining, HEALTH_REQUEST_TIMEOUT_MS))]),
      });
      await response.body?.cancel();
      if (response.status === 200) return;
      lastProblem = `HTTP ${response.status}`;
    } catch (error) {
      if (signal.aborted) throw new BackendError("aborted", "waiting for vLLM /health aborted");
      lastProblem = (error as Error).message;
    }
    await delay(Math.min(backoff, Math.max(0, deadline - Date.now())), signal);
    backoff = Math.min(HEALTH_MAX_DELAY_MS, backoff * 2);
  }
}

/**
 * A BackendError for a failed Kubernetes step: aborted, forbidden, unavailable or failed, naming `what`.
 *
 * @example
 * ```ts
 * import { toBackendError } from "./kube_common.ts";
 * toBackendError(new Error("boom"), "starting model a").message; // "starting model a: boom"
 * ```
 */
export function toBackendError(error: unknown, what: string, signal?: AbortSignal): BackendError {
  if (error instanceof BackendError) return error;
  if (signal?.aborted) return new BackendError("aborted", `${what}: aborted`, { cause: error });
  if (error instanceof ForbiddenError) {
    return new BackendError("forbidden", `${what}: ${error.message}`, { cause: error });
  }
  if (error instanceof UnavailableError) {
    return new BackendError("unavailable", `${what}: Kubernetes API unavailable: ${error.message}`, { cause: error });
  }
  if (error instanceof KubeError) return new BackendError("failed", `${what}: ${error.message}`, { cause: error });
  if (error instanceof DOMException && error.name === "AbortError") {
    return new BackendError("aborted", `${what}: aborted`, { cause: error });
  }
  return new BackendError("failed", `${what}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
}

/**
 * Turns the waits' "this pod is unschedulable" observations into reports to the scheduler: at once when it is
 * first seen or its message changes, then again every `everyMs` while it stays unschedulable. `stop()` ends it.
 *
 * @example
 * ```ts
 * import { pendingReporter } from "./kube_common.ts";
 * const seen: string[] = [];
 * const reporter = pendingReporter((reason) => seen.push(reason), 60_000);
 * reporter.observe("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");
 * reporter.observe(null);
 * reporter.stop();
 * seen.length; // 1
 * ```
 */
export function pendingReporter(
  report: ((reason: string) => void) | undefined,
  everyMs: number,
): { observe(message: string | null): void; last(): string | null; stop(): void } {
  let current: string | null = null;
  let lastSeen: string | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const send = () => {
    timer = undefined;
    if (current === null) return;
    try {
      report?.(current);
    } catch {
      // A listener's failure is not the start's.
    }
    timer = setTimeout(send, everyMs);
  };
  return {
    observe(message) {
      if (message !== null) lastSeen = message;
      if (message === current) return;
      current = message;
      clearTimeout(timer);
      timer = undefined;
      if (message !== null) send();
    },
    last: () => lastSeen,
    stop() {
      current = null;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/**
 * Waits for the engine's pod to be Ready through `waitReady` (a cluster-wide or a model's own), reporting an
 * unschedulable pod to the scheduler as it goes (`onPending`, at once and every `everyMs`); a wait that times out
 * on such a pod says so in the scheduler's words — what a person can act on (free a GPU, add a node). Resolves to
 * the Ready pod's name.
 *
 * @example
 * ```ts ignore
 * import { waitPodReady } from "./kube_common.ts";
 * const pod = await waitPodReady((o) => client.waitReady(o), { signal, deadline, onPending }, 15_000, log.info);
 * ```
 */
export async function waitPodReady(
  waitReady: (options: PodWaitOptions) => Promise<string>,
  options: { signal: AbortSignal; deadline: number; onPending?: (reason: string) => void },
  everyMs: number,
  onProgress: (reason: string) => void,
): Promise<string> {
  const pending = pendingReporter(options.onPending, everyMs);
  try {
    return await waitReady({
      signal: options.signal,
      deadline: options.deadline,
      onProgress,
      onUnschedulable: (message) => pending.observe(message),
    });
  } catch (error) {
    const unschedulable = pending.last();
    if (error instanceof BackendError && error.kind === "timeout" && unschedulable !== null) {
      throw new BackendError("unschedulable", `its pod could not be scheduled: ${unschedulable}`, { cause: error });
    }
    throw error;
  } finally {
    pending.stop();
  }
}
