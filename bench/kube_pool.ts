/**
 * The pool on Kubernetes against the fake API server (per-model layout): how
 * long a request waits when its model is cold (a new pod: scheduling,
 * container start, the engine's load, readiness, /health through the
 * Service) against when it sleeps (a wake through the Service: POST
 * /wake_up, /reset_prefix_cache, /is_sleeping), with the engine's own load
 * and wake times given. Run alone; prints one line per figure.
 *
 * ```sh
 * deno run -A bench/kube_pool.ts [--rounds 10] [--load-ms 500] [--wake-ms 50]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startKubeE2e } from "../tests/e2e/kube_helpers.ts";

/** Figures of one run, in milliseconds. */
export interface KubePoolFigures {
  rounds: number;
  loadMs: number;
  wakeMs: number;
  /** Request latency when the model had no pod. */
  newPod: { p50: number; p95: number };
  /** Request latency when the model's pod slept (level 1). */
  wake: { p50: number; p95: number };
  /** Pods the kubelet created in all (one per cold round, none for wakes). */
  podsCreated: number;
}

/**
 * Measures `rounds` cold starts (new pod) and `rounds` wakes of one model.
 *
 * @example
 * ```ts ignore
 * import { runKubePool } from "./kube_pool.ts";
 * const figures = await runKubePool({ rounds: 5, loadMs: 500, wakeMs: 50 });
 * ```
 */
export async function runKubePool(o: { rounds: number; loadMs: number; wakeMs: number }): Promise<KubePoolFigures> {
  const env = await startKubeE2e({
    config: {
      layout: "per-model",
      maxGpus: 1,
      sleepAfter: "100ms",
      idleTimeout: "2h",
      models: { a: { modelName: "org/a" } },
    },
    fake: { gpusPerNode: 1 },
    engine: { loadMs: o.loadMs, wakeMs: o.wakeMs },
  });
  const timed = async () => {
    const t0 = performance.now();
    const res = await fetch(`${env.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "a", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
    });
    await res.body?.cancel();
    if (res.status !== 200) throw new Error(`request answered ${res.status}`);
    return performance.now() - t0;
  };
  const statusIs = async (want: string) => {
    for (let i = 0; i < 500; i++) {
      const models = await (await fetch(`${env.url}/v1/models`)).json() as { data: { id: string; status: string }[] };
      // "sleeping" holds from the moment /sleep is sent: the engine itself confirms it.
      const engine = env.liveEngine("a");
      const done = models.data.find((m) => m.id === "a")?.status === want &&
        (want !== "sleeping" || engine?.stats().isSleeping === true);
      if (done) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`model a never became ${want}`);
  };
  const unload = async () => {
    const res = await fetch(`${env.url}/admin/unload`, { method: "POST" });
    await res.body?.cancel();
    if (res.status >= 300) throw new Error(`unload answered ${res.status}`);
    await statusIs("cold");
  };
  const newPod: number[] = [];
  const wake: number[] = [];
  try {
    for (let i = 0; i < o.rounds; i++) {
      newPod.push(await timed());
      await statusIs("sleeping"); // after sleepAfter (100 ms) idle
      wake.push(await timed());
      await unload();
    }
    return {
      rounds: o.rounds,
      loadMs: o.loadMs,
      wakeMs: o.wakeMs,
      newPod: { p50: quantile(newPod, 0.5), p95: quantile(newPod, 0.95) },
      wake: { p50: quantile(wake, 0.5), p95: quantile(wake, 0.95) },
      podsCreated: env.engines.length,
    };
  } finally {
    await env.close();
  }
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "10" },
      "load-ms": { type: "string", default: "500" },
      "wake-ms": { type: "string", default: "50" },
    },
  });
  const figures = await runKubePool({
    rounds: Number(values.rounds),
    loadMs: Number(values["load-ms"]),
    wakeMs: Number(values["wake-ms"]),
  });
  const f = (n: number) => n.toFixed(0);
  console.log(`rounds ${figures.rounds}, engine load ${figures.loadMs} ms, engine wake ${figures.wakeMs} ms`);
  console.log(`new pod: p50 ${f(figures.newPod.p50)} ms, p95 ${f(figures.newPod.p95)} ms`);
  console.log(`wake:    p50 ${f(figures.wake.p50)} ms, p95 ${f(figures.wake.p95)} ms`);
  console.log(`pods created: ${figures.podsCreated} (one per cold round; a wake creates none)`);
}
