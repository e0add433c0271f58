import { startFakeKube } from "../fake_kube.ts";
const kube = await startFakeKube({});
await Deno.writeTextFile("/tmp/fk/kubeconfig.path", kube.kubeconfigPath);
Deno.addSignalListener("SIGTERM", async () => {
  await Deno.writeTextFile("/tmp/fk/calls.json", JSON.stringify(kube.calls, null, 1));
  await kube.close();
  Deno.exit(0);
});
setInterval(() => Deno.writeTextFileSync("/tmp/fk/calls.json", JSON.stringify(kube.calls, null, 1)), 500);
