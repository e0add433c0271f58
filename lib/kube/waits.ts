/**
 * Waits on the vLLM Deployment's pods, driven by list + watch (never a
 * polling loop): until every pod is gone (deleted, not merely terminating —
 * the GPU is free), or until a pod is Ready. Each wait honours an
 * AbortSignal and a deadline and fails with a {@link BackendError}.
 *
 * @module
 */
import type { V1Pod } from "@kubernetes/client-node";
import { BackendError } from "../backend/types.ts";
import { anySignal, type KubeContext } from "./context.ts";
import { ForbiddenError, InvalidError, NotFoundError, toKubeError } from "./errors.ts";
import { runListWatch } from "./list_watch.ts";
import { listPods, podSelector, type PodState, podState } from "./pods.ts";
import { backoffDelay } from "./retry.ts";
import { delay } from "../delay.ts";

/** Options of the waits. */
export interface PodWaitOptions {
  /** Aborts the wait (BackendError kind "aborted"). */
  signal?: AbortSignal;
  /** Absolute time (ms since epoch) when the wait fails (kind "timeout"). */
  deadline: number;
  /** Called whenever the reason the wait is not over yet changes (e.g. "Unschedulable: …"). */
  onProgress?: (reason: string) => void;
  /**
   * `waitReady`: called on every change seen, with the kube scheduler's message while a pod (not terminating)
   * cannot be scheduled (e.g. "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. …"), else null.
   */
  onUnschedulable?: (message: string | null) => void;
}

/** The prefix `podState` gives the reason of a pod the scheduler could not place. */
const UNSCHEDULABLE = "Unschedulable: ";

type Verdict<T> = { done: T } | { fail: BackendError } | { waiting: string };

/**
 * Resolves once no pod of the Deployment exists. A missing Deployment counts
 * as gone.
 *
 * @example
 * ```ts ignore
 * await waitGone(ctx, { signal, deadline: Date.now() + 60_000 });
 * ```
 */
export async function waitGone(ctx: KubeContext, options: PodWaitOptions): Promise<void> {
  await waitOnPods<void>(ctx, "every pod to be gone", options, (pods) => {
    if (pods.length === 0) return { done: undefined };
    const states = pods.map(podState);
    return {
      waiting: states.map((s) => `${s.name} ${s.phase === "Terminating" ? "terminating" : s.phase}`).join(", "),
    };
  }, { done: undefined });
}

/**
 * Resolves with the name of the first pod that is Ready (and not
 * terminating). Fails fast with kind "crashloop" when a container is in
 * CrashLoopBackOff or restarted 3 times or more.
 *
 * @example
 * ```ts ignore
 * const pod = await waitReady(ctx, { signal, deadline: Date.now() + 900_000, onProgress: console.log });
 * ```
 */
export function waitReady(ctx: KubeContext, options: PodWaitOptions): Promise<string> {
  return waitOnPods<string>(ctx, "a pod to be Ready", options, (pods) => {
    const states = pods.map(podState);
    const ready = states.find((s) => s.phase === "Ready");
    if (ready) return { done: ready.name };
    const live = states.filter((s) => s.phase !== "Terminating");
    const crashing = live.find((s) => s.crashLoop);
    if (crashing) {
      return {
        fail: new BackendError("crashloop", `vLLM pod ${crashing.name} is crash-looping: ${crashing.reason}`),
      };
    }
    const failed = live.find((s) => s.phase === "Failed");
    if (failed) return { fail: new BackendError("failed", `vLLM pod ${failed.name} failed: ${failed.reason}`) };
    const unschedulable = live.find((s) => s.phase === "Pending" && s.reason?.startsWith(UNSCHEDULABLE));
    options.onUnschedulable?.(unschedulable ? unschedulable.reason!.slice(UNSCHEDULABLE.length) : null);
    return { waiting: describeWaiting(states) };
  });
}

/**
 * Watches a Ready pod while it serves and resolves with a reason once it
 * fails on its own: deleted, terminating, no longer Ready, crash-looping.
 * Resolves with null when `signal` aborts first (an expected stop).
 *
 * @example
 * ```ts ignore
 * const reason = await watchPodLost(ctx, "vllm-abc", signal);
 * if (reason) console.log("engine failed:", reason);
 * ```
 */
export async function watchPodLost(ctx: KubeContext, podName: string, signal: AbortSignal): Promise<string | null> {
  try {
    return await waitOnPods<string>(ctx, `pod ${podName} to fail`, { signal, deadline: Infinity }, (pods) => {
      const pod = pods.find((p) => p.metadata?.name === podName);
      if (!pod) return { done: `vLLM pod ${podName} disappeared` };
      const state = podState(pod);
      if (state.phase === "Terminating") return { done: `vLLM pod ${podName} is terminating` };
      if (state.crashLoop) return { done: `vLLM pod ${podName} is crash-looping: ${state.reason}` };
      if (state.phase !== "Ready") {
        return { done: `vLLM pod ${podName} is no longer Ready: ${state.reason ?? state.phase}` };
      }
      return { waiting: "serving" };
    }, { done: `vLLM deployment ${ctx.target.deployment} disappeared` });
  } catch (error) {
    if (signal.aborted || ctx.closed.aborted) return null;
    return `lost track of vLLM pod ${podName}: ${(error as Error).message}`;
  }
}

function describeWaiting(states: PodState[]): string {
  if (states.length === 0) return "no pod yet";
  const live = states.filter((s) => s.phase !== "Terminating");
  const shown = live.length > 0 ? live : states;
  return shown.map((s) => `${s.name} ${s.phase}${s.reason ? ` (${s.reason})` : ""}`).join(", ");
}

function waitOnPods<T>(
  ctx: KubeContext,
  what: string,
  options: PodWaitOptions,
  judge: (pods: V1Pod[]) => Verdict<T>,
  ifNoDeployment?: { done: T },
): Promise<T> {
  const started = Date.now();
  const stop = new AbortController();
  const signal = anySignal([options.signal, ctx.closed, stop.signal]);
  const pods = new Map<string, V1Pod>();
  let lastReason = "";
  let lastError: unknown;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      ctx.closed.removeEventListener("abort", onAbort);
      stop.abort();
      fn();
    };
    const evaluate = () => {
      const verdict = judge([...pods.values()]);
      if ("done" in verdict) settle(() => resolve(verdict.done));
      else if ("fail" in verdict) settle(() => reject(verdict.fail));
      else if (verdict.waiting !== lastReason) {
        lastReason = verdict.waiting;
        options.onProgress?.(verdict.waiting);
      }
    };
    const onTimeout = () => {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const state = lastReason ? `; last state: ${lastReason}` : "";
      const error = lastError ? `; last API error: ${toKubeError(lastError).message}` : "";
      settle(() =>
        reject(
          new BackendError(
            "timeout",
            `timed out after ${seconds}s waiting for ${what} (deployment ${ctx.namespace}/${ctx.target.deployment})${state}${error}`,
          ),
        )
      );
    };
    const onAbort = () =>
      settle(() => reject(new BackendError("aborted", `wait for ${what} aborted`, { cause: options.signal?.reason })));
    const timer = Number.isFinite(options.deadline)
      ? setTimeout(onTimeout, Math.min(2 ** 31 - 1, Math.max(0, options.deadline - Date.now())))
      : undefined;
    if (options.signal?.aborted || ctx.closed.aborted) return onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    ctx.closed.addEventListener("abort", onAbort, { once: true });

    const fatal = (error: unknown) => {
      const e = toKubeError(error);
      const kind = e instanceof ForbiddenError ? "forbidden" : "failed";
      settle(() => reject(new BackendError(kind, `waiting for ${what}: ${e.message}`, { cause: e })));
    };
    const loop = async () => {
      let selector: string | undefined;
      for (let attempt = 0; selector === undefined && !signal.aborted; attempt++) {
        try {
          selector = await podSelector(ctx, { signal, deadline: options.deadline });
        } catch (error) {
          if (signal.aborted) return;
          if (error instanceof NotFoundError && ifNoDeployment) return settle(() => resolve(ifNoDeployment.done));
          if (isFatal(error)) return fatal(error);
          lastError = error;
          await delay(backoffDelay(attempt, 50, 1000), signal);
        }
      }
      if (selector === undefined) return;
      const path = `/api/v1/namespaces/${encodeURIComponent(ctx.namespace)}/pods`;
      await runListWatch<V1Pod>(ctx.kubeConfig, {
        path,
        query: { labelSelector: selector },
        list: (s) => listPods(ctx, selector!, { signal: s, deadline: options.deadline }),
        onList: (items) => {
          pods.clear();
          for (const pod of items) pods.set(pod.metadata?.name ?? "", pod);
          evaluate();
        },
        onEvent: (type, pod) => {
          const name = pod.metadata?.name ?? "";
          if (type === "DELETED") pods.delete(name);
          else pods.set(name, pod);
          evaluate();
        },
        onListError: (error, attempt) => {
          if (isFatal(error)) throw error;
          lastError = error;
          return backoffDelay(attempt, 50, 1000);
        },
        timeoutMs: ctx.watchTimeoutMs,
        onRelist: (why) => ctx.log.debug("pod watch re-listing", { why }),
      }, signal);
    };
    loop().catch((error) => {
      if (!signal.aborted) fatal(error);
    });
  });
}

function isFatal(error: unknown): boolean {
  const e = toKubeError(error);
  return e instanceof ForbiddenError || e instanceof InvalidError || e instanceof NotFoundError;
}
