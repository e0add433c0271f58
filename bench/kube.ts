/**
 * Cold start and switch with the Kubernetes backend against the fake API
 * server (bench/kube_cluster.ts, its own process). The engine's own time is
 * the cluster's: Deployment scaled to 1 → pod Ready (scheduling, container
 * start, model load, readiness probe), and for a switch also scaled to 0 →
 * pod gone. Everything else the client waited is orchestration overhead.
 *
 * @module
 */
import { type ColdSample, type ColdSummary, complete, summarise } from "./cold.ts";
import { rssMiB, sleep, spawnLogged } from "./procs.ts";
import { freePort, startProxy } from "./proxy.ts";
import { epochMs } from "./upstream.ts";

interface ClusterEvent {
  event: string;
  at: number;
  path?: string;
}

/**
 * Runs the Kubernetes-backend cold starts and switches.
 *
 * @example
 * ```ts ignore
 * import { runKubeColdAndSwitch } from "./kube.ts";
 * const r = await runKubeColdAndSwitch({ dir: "/tmp/b", coldStarts: 3, switches: 2, loadMs: 500 });
 * ```
 */
export async function runKubeColdAndSwitch(o: {
  dir: string;
  coldStarts: number;
  switches: number;
  loadMs: number;
}): Promise<{ coldStart: ColdSummary; switch: ColdSummary; idleMiB: number; notes: string[] }> {
  const enginePort = freePort();
  const cluster = spawnLogged(
    [
      Deno.execPath(),
      "run",
      "-A",
      new URL("./kube_cluster.ts", import.meta.url).pathname,
      String(enginePort),
      String(o.loadMs),
    ],
    `${o.dir}/kube_cluster.log`,
  );
  const events = async (): Promise<ClusterEvent[]> =>
    (await cluster.output()).split("\n").filter((l) => l.startsWith("{")).flatMap((l) => {
      try {
        return [JSON.parse(l) as ClusterEvent];
      } catch {
        return [];
      }
    });
  const waitEvent = async (from: number, name: string, timeoutMs = 10_000): Promise<ClusterEvent> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = (await events()).slice(from).find((x) => x.event === name);
      if (e) return e;
      if (Date.now() > deadline) throw new Error(`fake cluster: no ${name} event within ${timeoutMs} ms`);
      await sleep(10);
    }
  };
  try {
    const kubeconfig = (await waitEvent(0, "kubeconfig", 30_000)).path!;
    const proxy = await startProxy({
      dir: o.dir,
      name: "kube",
      switching: true,
      models: {},
      modelsConfig: { a: { modelName: "bench/a" }, b: { modelName: "bench/b" } },
      extra: {
        backend: "kubernetes",
        kubeconfig,
        namespace: "ai-apps",
        target: { url: `http://127.0.0.1:${enginePort}` },
      },
    });
    try {
      await proxy.child.waitFor(/vLLM resources ensured/, 30_000);
      await sleep(500);
      const idleMiB = rssMiB(proxy.child.pid);
      const coldSamples: ColdSample[] = [];
      for (let i = 0; i < o.coldStarts; i++) {
        const from = (await events()).length;
        const t0 = epochMs();
        const { status, at: t1 } = await complete(proxy.url, "a");
        if (status !== 200) throw new Error(`kube cold start: status ${status}`);
        const up = (await waitEvent(from, "scaleUp")).at;
        const ready = (await waitEvent(from, "podReady")).at;
        coldSamples.push({
          totalMs: t1 - t0,
          engineMs: ready - up,
          overheadMs: (t1 - t0) - (ready - up),
          readyToResponseMs: t1 - ready,
          requestToSpawnMs: up - t0,
        });
        const before = (await events()).length;
        await (await fetch(`${proxy.url}/admin/unload?wait=true`, {
          method: "POST",
          signal: AbortSignal.timeout(30_000),
        }))
          .arrayBuffer();
        await waitEvent(before, "podGone");
      }
      const first = await complete(proxy.url, "a");
      if (first.status !== 200) throw new Error(`kube switch warm-up: status ${first.status}`);
      const switchSamples: ColdSample[] = [];
      for (let i = 0; i < o.switches; i++) {
        const to = i % 2 === 0 ? "b" : "a";
        const from = (await events()).length;
        const t0 = epochMs();
        const { status, at: t1 } = await complete(proxy.url, to);
        if (status !== 200) throw new Error(`kube switch to ${to}: status ${status}`);
        const down = (await waitEvent(from, "scaleDown")).at;
        const gone = (await waitEvent(from, "podGone")).at;
        const up = (await waitEvent(from, "scaleUp")).at;
        const ready = (await waitEvent(from, "podReady")).at;
        const engineMs = (gone - down) + (ready - up);
        switchSamples.push({
          totalMs: t1 - t0,
          engineMs,
          overheadMs: (t1 - t0) - engineMs,
          readyToResponseMs: t1 - ready,
          requestToSpawnMs: up - t0,
          exitToSpawnMs: up - gone,
        });
      }
      return {
        coldStart: summarise(coldSamples),
        switch: summarise(switchSamples),
        idleMiB,
        notes: [
          "Kubernetes backend: fake API server with the default simulated kubelet timings " +
          "(schedule 5 ms, container start 20 ms, readiness probed every ~20 ms, termination 30 ms); " +
          "the engine's own time is Deployment scaled → pod Ready (and scaled to 0 → pod gone for a switch).",
        ],
      };
    } finally {
      await proxy.stop();
    }
  } finally {
    await cluster.stop(5000);
  }
}
