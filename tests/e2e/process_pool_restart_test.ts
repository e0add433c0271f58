/**
 * Restart safety of the pool, end to end: a proxy (`main.ts serve`, a real
 * process) runs two engines, one of them asleep, and is killed with SIGKILL;
 * the next proxy on the same port reads every engine back — the sleeper
 * through vLLM's `GET /is_sleeping`, not `/health` — adopts both (same pids,
 * no new start), and serves by waking the sleeper. The engines' GPU-memory
 * ledger proves no oversubscription across the crash.
 *
 * @module
 */
import assert from "node:assert/strict";
import { freePort } from "../../lib/backend/process.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { type RunningServer, startServer } from "../../lib/server.ts";
import { assertNeverOversubscribed, createLedger } from "../support/gpu_ledger.ts";
import {
  captureLogs,
  fakeEngineCommand,
  newMarker,
  postChat,
  processesWith,
  spawnDeno,
  type SpawnedCli,
  waitUntil,
  within,
} from "./helpers.ts";

async function killAll(marker: string): Promise<void> {
  for (const proc of await processesWith(marker)) {
    try {
      Deno.kill(-proc.pid, "SIGKILL");
    } catch {
      try {
        Deno.kill(proc.pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
  await waitUntil(async () => (await processesWith(marker)).length === 0, 5000, `no process with ${marker}`);
}

/** A proxy (`main.ts serve`, a real process) with two 0.6 models on one GPU, both requested once: a sleeps, b serves. */
interface PoolProxy {
  marker: string;
  stateDir: string;
  port: number;
  /** The proxy's config, for the next proxy on the same port and state directory. */
  config: ChillConfigInput;
  cli: SpawnedCli;
  /** The engines' GPU-memory ledger, when asked for. */
  ledger?: string;
  /** Ends both proxies and every engine; removes the files. */
  cleanup(server: RunningServer | undefined): Promise<void>;
}

async function startPoolProxy(
  engines: { sleepMs: number; wakeMs: number; ledger?: boolean },
  more: Partial<ChillConfigInput> = {},
): Promise<PoolProxy> {
  const { ledger: withLedger, ...timing } = engines;
  const marker = newMarker();
  const stateDir = await Deno.makeTempDir({ prefix: "vllm-chill-state-" });
  const file = await Deno.makeTempFile({ prefix: "vllm-chill-restart-", suffix: ".json" });
  const port = await freePort("127.0.0.1");
  let ledger: string | undefined;
  if (withLedger) {
    ledger = await Deno.makeTempFile({ prefix: "vllm-chill-ledger-", suffix: ".json" });
    createLedger(ledger);
  }
  const engine = (name: string) => ({
    modelName: `org/${name}`,
    gpuMemoryUtilization: 0.6,
    command: fakeEngineCommand(marker, { loadMs: 100, vllmArgs: true, ...timing }),
  });
  const config: ChillConfigInput = {
    backend: "process",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port,
    idleTimeout: "10m",
    sleepAfter: "10m",
    heartbeatInterval: "0s",
    process: { stopGracePeriod: "2s", stateDir },
    ...(ledger ? { vllm: { env: { FAKE_GPU_LEDGER: ledger } } } : {}),
    ...more,
    models: { a: engine("a"), b: engine("b") },
  };
  await Deno.writeTextFile(file, JSON.stringify(config));
  const cli = spawnDeno(["main.ts", "serve", "--config", file, "--log-format", "json"]);
  const cleanup = async (server: RunningServer | undefined) => {
    if (server) {
      await server.shutdown();
      await server.finished;
    }
    try {
      cli.child.kill("SIGKILL");
    } catch { /* already dead */ }
    await cli.exited;
    await killAll(marker);
    await Deno.remove(stateDir, { recursive: true });
    await Deno.remove(file);
    if (ledger) await Deno.remove(ledger);
  };
  try {
    await cli.waitForLine(/"msg":"listening"/, 20_000);
    for (const model of ["a", "b"]) {
      const res = await within(postChat(`http://127.0.0.1:${port}`, model), 15_000, `a request for ${model}`);
      assert.equal(res.status, 200, await res.text());
    }
  } catch (error) {
    await cleanup(undefined);
    throw error;
  }
  return { marker, stateDir, port, config, cli, ledger, cleanup };
}

Deno.test("pool e2e restart: after SIGKILL of the proxy, the next one adopts a sleeping and a ready engine and wakes the sleeper", async () => {
  const proxy = await startPoolProxy({ sleepMs: 30, wakeMs: 60, ledger: true }, { minLoadedTime: "0s" });
  const { marker, config, cli, ledger } = proxy;
  let server: RunningServer | undefined;
  try {
    const url = `http://127.0.0.1:${proxy.port}`;
    const before = await (await fetch(`${url}/admin/status`)).json();
    assert.equal(before.models.a.status, "sleeping");
    assert.equal(before.models.b.status, "ready");
    const pids = { a: before.backend.engines.a.pid, b: before.backend.engines.b.pid };

    // The crash: no close(), no unload handler; both engines outlive their proxy.
    cli.child.kill("SIGKILL");
    assert.equal((await within(cli.exited, 10_000, "the proxy to die")).signal, "SIGKILL");
    assert.deepEqual((await processesWith(marker)).map((p) => p.pid).sort(), [pids.a, pids.b].sort());

    const logs = captureLogs();
    server = await startServer(parseConfig(config), { log: logs.log, shutdownGraceMs: 2000 });
    await waitUntil(() => server!.scaler.ready(), 10_000, "the new proxy to read the engines back");
    const status = await (await fetch(`${server.url}/admin/status`)).json();
    assert.equal(status.models.a.status, "sleeping", "read back through /is_sleeping, not /health");
    assert.equal(status.models.b.status, "ready");
    assert.equal(status.backend.engines.a.pid, pids.a);
    assert.equal(status.backend.engines.b.pid, pids.b);
    assert.deepEqual(status.gpus["0"].awakeShare, 0.6);

    const res = await postChat(server.url, "a");
    assert.equal(res.status, 200);
    assert.equal((await res.json()).model, "a");
    assert.equal(logs.messages("engine started").length, 0, "no engine was started: a woke up");
    assert.deepEqual((await processesWith(marker)).map((p) => p.pid).sort(), [pids.a, pids.b].sort());
    const after = await (await fetch(`${server.url}/admin/status`)).json();
    assert.equal(after.models.a.status, "ready");
    assert.equal(after.models.b.status, "sleeping");

    const unloaded = await within(fetch(`${server.url}/admin/unload?wait=true`, { method: "POST" }), 10_000, "unload");
    assert.equal(unloaded.status, 200, await unloaded.text());
    assert.deepEqual(await processesWith(marker), [], "unload stopped both adopted engines, the sleeper too");
    assertNeverOversubscribed(ledger!, { allowRefusals: false });
  } finally {
    await proxy.cleanup(server);
  }
});

Deno.test("pool e2e restart: adopted engines are stopped after idleTimeout like any other, the sleeper too", async () => {
  const proxy = await startPoolProxy({ sleepMs: 20, wakeMs: 20 });
  const { marker, stateDir, config, cli } = proxy;
  let server: RunningServer | undefined;
  try {
    cli.child.kill("SIGKILL");
    await within(cli.exited, 10_000, "the proxy to die");
    assert.equal((await processesWith(marker)).length, 2);

    const logs = captureLogs();
    server = await startServer(parseConfig({ ...config, idleTimeout: "1s" }), { log: logs.log, shutdownGraceMs: 2000 });
    await waitUntil(async () => (await processesWith(marker)).length === 0, 10_000, "both adopted engines to stop");
    await waitUntil(
      () => ["a", "b"].every((m) => server!.scaler.status().models[m].status === "cold"),
      5000,
      "the scaler to hear both stops",
    );
    assert.equal(logs.messages("engine started").length, 0);
    assert.deepEqual([...Deno.readDirSync(stateDir)].map((e) => e.name), [], "and forgotten");
  } finally {
    await proxy.cleanup(server);
  }
});
