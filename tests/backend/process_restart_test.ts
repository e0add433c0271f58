/**
 * Restart safety of the process backend: a proxy killed with SIGKILL leaves
 * its engine running; the next proxy on the same port finds it through the
 * state file and adopts it instead of starting a second engine. Also the
 * guards: a stale record (dead pid, pid reused by another command, a record
 * of a proxy that still runs) is never adopted and nothing is killed.
 */
import assert from "node:assert/strict";
import { createProcessBackend, freePort } from "../../lib/backend/process.ts";
import {
  bootId,
  type EngineRecord,
  procStat,
  readEngineRecord,
  stateFilePath,
  writeEngineRecord,
} from "../../lib/backend/engine_state.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { startServer } from "../../lib/server.ts";
import {
  captureLogs,
  DENO,
  FAKE_VLLM,
  fakeEngineCommand,
  newMarker,
  postChat,
  processesWith,
  spawnDeno,
  waitUntil,
  within,
} from "../e2e/helpers.ts";

const never = () => new AbortController().signal;

/** Kills (SIGKILL, whole group) every process still carrying `marker`: no test may leave one behind. */
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

/** True when GET <url>/health answers 200. */
async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`);
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** A pid that surely belongs to no process any more (a child that already exited and was reaped). */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
  await child.status;
  return child.pid;
}

function settings(port: number, stateDir: string, marker: string, more: Partial<ChillConfigInput> = {}, loadMs = 100) {
  return {
    backend: "process",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port,
    idleTimeout: "1m",
    minLoadedTime: "0s",
    drainTimeout: "5s",
    heartbeatInterval: "0s",
    process: { stopGracePeriod: "2s", stateDir },
    models: { a: { modelName: "org/a", command: fakeEngineCommand(marker, { loadMs }) } },
    ...more,
  } satisfies ChillConfigInput;
}

Deno.test("restart: a proxy killed with SIGKILL leaves its engine; the next proxy adopts it, serves, unloads it", async () => {
  const marker = newMarker();
  const stateDir = await Deno.makeTempDir({ prefix: "vllm-chill-state-" });
  const file = await Deno.makeTempFile({ prefix: "vllm-chill-restart-", suffix: ".json" });
  const port = await freePort("127.0.0.1");
  const config = settings(port, stateDir, marker);
  await Deno.writeTextFile(file, JSON.stringify(config));
  const stateFile = stateFilePath(stateDir, port);
  const cli = spawnDeno(["main.ts", "serve", "--config", file, "--log-format", "json"]);
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await cli.waitForLine(/"msg":"listening"/, 20_000);
    const url = `http://127.0.0.1:${port}`;
    const loaded = await within(fetch(`${url}/admin/models/a/load?wait=true`, { method: "POST" }), 15_000, "load");
    assert.equal(loaded.status, 200, await loaded.text());
    const before = await (await fetch(`${url}/admin/status`)).json();
    const pid = before.backend.pid as number;
    assert.equal(typeof pid, "number");
    const recorded = readEngineRecord(stateFile);
    assert.equal(recorded.kind, "record", "the running engine is recorded");
    assert.equal(recorded.kind === "record" && recorded.record.pid, pid);

    // The crash: no close(), no unload handler.
    cli.child.kill("SIGKILL");
    assert.equal((await within(cli.exited, 10_000, "the proxy to die")).signal, "SIGKILL");
    assert.deepEqual((await processesWith(marker)).map((p) => p.pid), [pid], "the engine outlived its proxy");

    const logs = captureLogs();
    server = await startServer(parseConfig(config), { log: logs.log, shutdownGraceMs: 2000 });
    await waitUntil(() => server!.scaler.ready(), 5000, "the new proxy to read the backend's state");
    const status = await (await fetch(`${server.url}/admin/status`)).json();
    assert.equal(status.state, "ready");
    assert.equal(status.activeModel, "a");
    assert.equal(status.backend.pid, pid, "the very same engine");
    assert.equal(status.backend.adopted, true);

    const res = await postChat(server.url, "a");
    assert.equal(res.status, 200);
    assert.match((await res.json()).choices[0].message.content, /^the quick/);
    assert.deepEqual((await processesWith(marker)).map((p) => p.pid), [pid], "no second engine was started");
    assert.equal(logs.messages("engine started").length, 0);

    const unloaded = await within(fetch(`${server.url}/admin/unload?wait=true`, { method: "POST" }), 10_000, "unload");
    assert.equal(unloaded.status, 200, await unloaded.text());
    assert.deepEqual(await processesWith(marker), [], "unload stopped the adopted engine");
    assert.equal(readEngineRecord(stateFile).kind, "none", "and forgot it");
    assert.equal((await (await fetch(`${server.url}/admin/status`)).json()).state, "idle");
  } finally {
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
  }
});

/** An engine started by the test itself (so it is not the backend's child), recorded as a dead proxy would have. */
async function orphanEngine(stateDir: string, proxyPort: number, marker: string, loadMs = 100) {
  const port = await freePort("127.0.0.1");
  const command = fakeEngineCommand(marker, { loadMs }).map((a) =>
    a.replace("{port}", String(port)).replace("{served}", "a")
  );
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  const record: EngineRecord = {
    version: 1,
    pid: child.pid,
    pgid: child.pid,
    start: procStat(child.pid)!.start,
    bootId: bootId(),
    port,
    host: "127.0.0.1",
    model: "a",
    servedModelName: "a",
    command,
    startedAt: new Date().toISOString(),
    proxy: { pid: await deadPid() },
  };
  writeEngineRecord(stateFilePath(stateDir, proxyPort), record);
  return { child, record, url: `http://127.0.0.1:${port}` };
}

function backendFor(
  stateDir: string,
  marker: string,
  proxyPort = 18_123,
  more: Partial<ChillConfigInput> = {},
  loadMs = 100,
) {
  const logs = captureLogs();
  const config = parseConfig(settings(proxyPort, stateDir, marker, { logFormat: "json", ...more }, loadMs));
  return {
    backend: createProcessBackend({ config, log: logs.log }),
    logs,
    stateFile: stateFilePath(stateDir, proxyPort),
  };
}

async function withStateDir(fn: (dir: string, marker: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-state-" });
  const marker = newMarker();
  try {
    await fn(dir, marker);
  } finally {
    await killAll(marker);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("restart: an adopted engine still loading is observed starting, then waitReady resolves", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker, 18_123, {}, 1500);
    const orphan = await orphanEngine(dir, 18_123, marker, 1500);
    try {
      const observed = await backend.observe(never());
      assert.deepEqual(observed, { replicas: 1, activeModel: "a", phase: "starting", pid: orphan.child.pid });
      await backend.waitReady(null, { signal: never(), deadline: Date.now() + 10_000 });
      assert.equal((await backend.observe(never())).phase, "ready");
      assert.equal(backend.upstream(), orphan.url);
    } finally {
      await backend.close();
      await within(orphan.child.status, 5000, "the adopted engine to exit on close");
    }
  });
});

Deno.test("restart: an adopted engine that dies on its own is reported through onFailure and forgotten", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, stateFile } = backendFor(dir, marker);
    const orphan = await orphanEngine(dir, 18_123, marker);
    try {
      await waitUntil(() => healthy(orphan.url), 10_000, "the engine to be healthy");
      const failed = Promise.withResolvers<string>();
      backend.onFailure(failed.resolve);
      assert.equal((await backend.observe(never())).phase, "ready");
      Deno.kill(-orphan.child.pid, "SIGKILL");
      await orphan.child.status;
      const reason = await within(failed.promise, 5000, "onFailure");
      assert.match(reason, /engine for model a \(pid \d+\) exited \(adopted/);
      assert.equal((await backend.observe(never())).phase, "absent");
      assert.equal(readEngineRecord(stateFile).kind, "none");
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: stop() of an adopted engine ignoring SIGTERM kills its group after the grace period", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, stateFile } = backendFor(dir, marker, 18_123, {
      process: { stopGracePeriod: "300ms", stateDir: dir },
    });
    const orphan = await orphanEngine(dir, 18_123, marker);
    try {
      // Re-record it with --ignore-sigterm: the backend must fall back to SIGKILL.
      Deno.kill(-orphan.child.pid, "SIGKILL");
      await orphan.child.status;
      const stubborn = fakeEngineCommand(marker, {
        ignoreSigterm: true,
        portArgs: ["--port", String(orphan.record.port)],
      })
        .map((a) => a.replace("{served}", "a"));
      const child = new Deno.Command(stubborn[0], {
        args: stubborn.slice(1),
        stdin: "null",
        stdout: "null",
        stderr: "null",
        detached: true,
      }).spawn();
      writeEngineRecord(stateFile, {
        ...orphan.record,
        pid: child.pid,
        pgid: child.pid,
        start: procStat(child.pid)!.start,
        command: stubborn,
      });
      // Its SIGTERM handler is installed once it listens.
      await waitUntil(() => healthy(orphan.url), 10_000, "the stubborn engine to listen");
      const observed = await backend.observe(never());
      // Its command is not what the config would run now, so the backend asks for it to be stopped.
      assert.equal(observed.phase, "terminating");
      assert.equal(observed.pid, child.pid);
      const t0 = Date.now();
      await backend.stop({ signal: never(), deadline: Date.now() + 10_000, reason: "test" });
      assert.ok(Date.now() - t0 >= 250, "SIGTERM first, SIGKILL after the grace period");
      assert.equal(procStat(child.pid), null, "gone once stop resolves");
      assert.equal((await child.status).signal, "SIGKILL");
      assert.equal(readEngineRecord(stateFile).kind, "none");
      assert.equal((await backend.observe(never())).phase, "absent");
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: a record whose pid is dead is ignored and removed", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, stateFile } = backendFor(dir, marker);
    try {
      const pid = await deadPid();
      writeEngineRecord(stateFile, {
        version: 1,
        pid,
        pgid: pid,
        port: 1234,
        host: "127.0.0.1",
        model: "a",
        servedModelName: "a",
        command: ["vllm", "serve", "org/a"],
        startedAt: new Date().toISOString(),
        proxy: { pid: await deadPid() },
      });
      assert.deepEqual(await backend.observe(never()), { replicas: 0, activeModel: null, phase: "absent" });
      assert.equal(readEngineRecord(stateFile).kind, "none", "the stale record is removed");
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: a record whose pid now runs another command is not adopted, and that process is not killed", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, stateFile } = backendFor(dir, marker);
    // A live process that is not an engine (what a reused pid looks like).
    const bystander = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
    try {
      for (const start of [undefined, procStat(bystander.pid)!.start]) {
        writeEngineRecord(stateFile, {
          version: 1,
          pid: bystander.pid,
          pgid: bystander.pid,
          ...(start === undefined ? {} : { start }),
          port: 1234,
          host: "127.0.0.1",
          model: "a",
          servedModelName: "a",
          command: [DENO, "run", "-A", FAKE_VLLM, "--port", "1234", "--model", "a"],
          startedAt: new Date().toISOString(),
          proxy: { pid: await deadPid() },
        });
        assert.equal((await backend.observe(never())).phase, "absent");
        assert.equal(readEngineRecord(stateFile).kind, "none");
        assert.notEqual(procStat(bystander.pid), null, "the bystander still runs");
      }
      // Same command, but a different start time: the pid was reused by a newer process.
      writeEngineRecord(stateFile, {
        version: 1,
        pid: Deno.pid,
        pgid: Deno.pid,
        start: procStat(Deno.pid)!.start + 1,
        port: 1234,
        host: "127.0.0.1",
        model: "a",
        servedModelName: "a",
        command: Deno.readTextFileSync(`/proc/${Deno.pid}/cmdline`).replace(/\0$/, "").split("\0"),
        startedAt: new Date().toISOString(),
        proxy: { pid: await deadPid() },
      });
      assert.equal((await backend.observe(never())).phase, "absent");
      assert.equal(readEngineRecord(stateFile).kind, "none");
    } finally {
      await backend.close();
      bystander.kill("SIGKILL");
      await bystander.status;
    }
  });
});

Deno.test("restart: the record of an engine whose proxy still runs is neither adopted nor removed", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, stateFile } = backendFor(dir, marker);
    const orphan = await orphanEngine(dir, 18_123, marker);
    try {
      // Recorded by a proxy that is alive (this test process): another proxy's engine, not ours to take.
      writeEngineRecord(stateFile, {
        ...orphan.record,
        proxy: { pid: Deno.pid, start: procStat(Deno.pid)!.start, bootId: bootId() },
      });
      assert.equal((await backend.observe(never())).phase, "absent");
      assert.equal(readEngineRecord(stateFile).kind, "record", "left for its owner");
      assert.notEqual(procStat(orphan.child.pid), null, "and its engine left running");
    } finally {
      await backend.close();
      Deno.kill(-orphan.child.pid, "SIGKILL");
      await orphan.child.status;
    }
  });
});

Deno.test("restart: an unreadable state file is ignored and removed; port 0 records nothing", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, stateFile } = backendFor(dir, marker);
    try {
      await Deno.writeTextFile(stateFile, "{not json");
      assert.equal((await backend.observe(never())).phase, "absent");
      assert.equal(readEngineRecord(stateFile).kind, "none");
    } finally {
      await backend.close();
    }
    const ephemeral = backendFor(dir, marker, 0);
    try {
      assert.equal(ephemeral.backend.describe().stateFile, null);
    } finally {
      await ephemeral.backend.close();
    }
  });
});

Deno.test("restart: an adopted engine is stopped after idleTimeout like any other", async () => {
  await withStateDir(async (dir, marker) => {
    const proxyPort = await freePort("127.0.0.1");
    const orphan = await orphanEngine(dir, proxyPort, marker);
    await waitUntil(() => healthy(orphan.url), 10_000, "the engine to be healthy");
    const logs = captureLogs();
    const config = parseConfig(settings(proxyPort, dir, marker, { idleTimeout: "1s" }));
    const server = await startServer(config, { log: logs.log, shutdownGraceMs: 2000 });
    try {
      await waitUntil(() => server.scaler.status().state === "ready", 5000, "the adopted engine to be ready");
      assert.equal(server.backend.describe().pid, orphan.child.pid);
      await waitUntil(() => server.scaler.status().state === "idle", 10_000, "the idle stop");
      // The fake vLLM exits 0 on SIGTERM: a graceful stop.
      assert.equal((await within(orphan.child.status, 5000, "the engine to exit")).code, 0);
      assert.equal(logs.messages("engine started").length, 0);
      assert.equal(readEngineRecord(stateFilePath(dir, proxyPort)).kind, "none");
    } finally {
      await server.shutdown();
      await server.finished;
      try {
        Deno.kill(-orphan.child.pid, "SIGKILL");
      } catch { /* stopped already */ }
      await orphan.child.status;
    }
  });
});
