/**
 * The Kubernetes side of the benchmark, in its own process: the fake API
 * server (tests/support/fake_kube.ts) whose simulated kubelet starts a bench
 * engine (bench/upstream.ts, in this process, on a fixed port the proxy
 * forwards to) when the vLLM pod's containers start, and stops it when the
 * pod terminates. Prints JSON lines with epoch-ms timestamps the bench reads:
 * `{"event":"kubeconfig","path":…}`, `scaleUp`, `scaleDown` (Deployment
 * replicas written), `podStart`, `healthy`, `podReady`, `podStop`, `podGone`.
 *
 * ```sh
 * deno run -A bench/kube_cluster.ts <engine port> <load ms>
 * ```
 *
 * @module
 */
import { startFakeKube } from "../tests/support/fake_kube.ts";
import { epochMs, startUpstream, type Upstream } from "./upstream.ts";

if (import.meta.main) {
  const enginePort = Number(Deno.args[0]);
  const loadMs = Number(Deno.args[1] ?? 500);
  const emit = (event: string, fields: Record<string, unknown> = {}) =>
    console.log(JSON.stringify({ event, at: epochMs(), ...fields }));
  let engine: Upstream | null = null;
  const kube = await startFakeKube({
    namespace: "ai-apps",
    gpusPerNode: 1,
    onPodStart: async (pod) => {
      emit("podStart", { pod: pod.metadata.name });
      engine = await startUpstream({
        port: enginePort,
        model: "bench",
        loadMs,
        onReady: (at) => console.log(JSON.stringify({ event: "healthy", at })),
      });
    },
    onPodStop: async (pod) => {
      emit("podStop", { pod: pod.metadata.name });
      const e = engine;
      engine = null;
      await e?.close();
    },
    readiness: () => engine !== null && !Number.isNaN(engine.readyAt),
  });
  // Record transitions on every stored change (until() re-checks on each one; it never resolves).
  let replicas = 0;
  let readyPod: string | null = null;
  let pods = 0;
  kube.until(() => {
    const d = kube.store.getObject("deployments", "vllm", "ai-apps");
    const r = d?.spec?.replicas ?? 0;
    if (r !== replicas) emit(r > replicas ? "scaleUp" : "scaleDown", { replicas: r });
    replicas = r;
    const list = kube.store.listObjects("pods", "ai-apps");
    const ready = list.find((p) =>
      !p.metadata.deletionTimestamp &&
      (p.status?.conditions ?? []).some((c: { type: string; status: string }) =>
        c.type === "Ready" && c.status === "True"
      )
    );
    const name = ready?.metadata.name ?? null;
    if (name && name !== readyPod) emit("podReady", { pod: name });
    readyPod = name;
    if (list.length === 0 && pods > 0) emit("podGone");
    pods = list.length;
    return false;
  }, 24 * 3600_000).catch(() => {});
  emit("kubeconfig", { path: kube.kubeconfigPath });
  const stop = async () => {
    await engine?.close();
    await kube.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
