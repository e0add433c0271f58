/**
 * Restart safety of the process backend: a proxy killed with SIGKILL leaves
 * its engines running (sleeping ones too); the next proxy on the same port
 * finds them through their state files and adopts them instead of starting
 * second ones. Also the guards: a stale record (dead pid, pid reused by
 * another command, a record of a proxy that still runs) is never adopted and
 * nothing is killed; an engine the config no longer describes is reported
 * terminating and stopped.
 */
import assert from "node:assert/strict";
import { buildCommand } from "../../lib/backend/engine_command.ts";
import { freePort } from "../../lib/backend/process.ts";
import {
  type EngineRecord,
  legacyStateFilePath,
  listStateFiles,
  readEngineRecord,
  stateFilePath,
  writeEngineRecord,
} from "../../lib/backend/engine_state.ts";
import { bootId, procStat } from "../../lib/backend/proc.ts";
import { BackendError } from "../../lib/backend/types.ts";
import type { ChillConfigInput, ModelSpecInput } from "../../lib/config/schema.ts";
import { readJournal } from "../support/sleep_engine.ts";
import type { ChildPlan } from "./process_proxy_child.ts";
import {
  alive,
  assertNoOrphans,
  DENO,
  details,
  FAKE_VLLM,
  fakeCommand,
  lastExit,
  never,
  newMarker,
  opts,
  phases,
  processesWith,
  setup,
  sleepEngineCommand,
  tempPath,
  waitUntil,
  within,
} from "./process_helpers.ts";

const CHILD = new URL("./process_proxy_child.ts", import.meta.url).pathname;

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

async function withStateDir(fn: (dir: string, marker: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-state-" });
  const marker = newMarker();
  try {
    await fn(dir, marker);
  } finally {
    await assertNoOrphans(marker);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("restart: a proxy killed with SIGKILL leaves two engines (one asleep); the next adopts both", async () => {
  await withStateDir(async (stateDir, marker) => {
    const journals = { a: await tempPath("ra"), b: await tempPath("rb") };
    const port = await freePort("127.0.0.1");
    const models: Record<string, ModelSpecInput> = {
      a: { modelName: "org/a", command: sleepEngineCommand(marker, journals.a) },
      b: { modelName: "org/b", sleepAfter: "1m", command: sleepEngineCommand(marker, journals.b) },
    };
    const config: ChillConfigInput = { backend: "process", port, process: { gpus: ["0", "1"], stateDir }, models };
    const plan: ChildPlan = {
      config,
      start: [{ key: "a", gpus: ["0"] }, { key: "b", gpus: ["1"] }],
      sleep: [{ key: "b", level: 1 }],
    };
    const child = new Deno.Command(DENO, {
      args: ["run", "-A", CHILD, JSON.stringify(plan)],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const { backend, lines } = setup(models, { port, process: { gpus: ["0", "1"], stateDir } });
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!out.includes("\n")) {
        const { value, done } = await within(reader.read(), 30_000, "the stand-in proxy to be ready");
        if (done) break;
        out += value;
      }
      reader.releaseLock();
      const pids = JSON.parse(/^READY (.*)$/m.exec(out)![1]) as Record<string, number>;
      assert.deepEqual(listStateFiles(stateDir, port).map((p) => p.slice(stateDir.length + 1)), [
        `engine-${port}-a.json`,
        `engine-${port}-b.json`,
      ]);
      const recordB = readEngineRecord(stateFilePath(stateDir, port, "b"));
      assert.equal(recordB.kind, "record");
      assert.deepEqual(
        recordB.kind === "record" && [recordB.record.pid, recordB.record.gpus, recordB.record.sleepMode],
        [pids.b, ["1"], true],
      );
      assert.equal(recordB.kind === "record" && recordB.record.sleepLevel, 1, "the sleep level is recorded");

      // The crash: no close(), no unload handler.
      child.kill("SIGKILL");
      assert.equal((await within(child.status, 10_000, "the proxy to die")).signal, "SIGKILL");
      await child.stdout.cancel().catch(() => {});
      assert.equal(alive(pids.a) && alive(pids.b), true, "both engines outlived their proxy");

      const { engines } = await backend.observe(never());
      assert.deepEqual(engines.sort((x, y) => String(x.key).localeCompare(String(y.key))), [
        { key: "a", phase: "ready", gpus: ["0"] },
        { key: "b", phase: "sleeping", gpus: ["1"], sleepLevel: 1 },
      ]);
      assert.equal(details(backend, "a")?.pid, pids.a, "the very same engines");
      assert.equal(details(backend, "b")?.pid, pids.b);
      assert.equal(details(backend, "b")?.adopted, true);
      assert.equal(lines.filter((l) => l.msg === "engine started").length, 0, "no second engine");
      const owned = readEngineRecord(stateFilePath(stateDir, port, "b"));
      assert.equal(owned.kind === "record" && owned.record.proxy.pid, Deno.pid, "the records are the new proxy's now");
      const probes = readJournal(journals.b).filter((e) => e.event === "call").map((e) => e.event === "call" && e.path);
      assert.equal(probes.at(-1), "/is_sleeping", "the sleeper was read back with /is_sleeping");

      await backend.wake("b", 1, opts());
      const res = await fetch(`${backend.upstream("b")}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "b", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
      });
      assert.equal(res.status, 200, "the adopted sleeper woke and serves");
      await res.body?.cancel();

      await backend.stop("b", { ...opts(), reason: "test" });
      assert.equal(alive(pids.b), false);
      assert.equal(alive(pids.a), true, "the other adopted engine still runs");
      assert.equal(readEngineRecord(stateFilePath(stateDir, port, "b")).kind, "none", "a stopped engine is forgotten");
      await backend.close();
      assert.equal(alive(-pids.a), false, "close() stops adopted engines too");
      assert.deepEqual(listStateFiles(stateDir, port), []);
    } finally {
      await backend.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch { /* already dead */ }
      await child.status;
      for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
    }
  });
});

function settings(stateDir: string, marker: string, extra: string[] = []): Partial<ChillConfigInput> & {
  models: Record<string, ModelSpecInput>;
} {
  return {
    port: 18_123,
    process: { stopGracePeriod: "2s", stateDir },
    models: { a: { modelName: "org/a", command: fakeCommand(marker, ...extra) } },
  };
}

function backendFor(stateDir: string, marker: string, more: Partial<ChillConfigInput> = {}, extra: string[] = []) {
  const { models, ...rest } = settings(stateDir, marker, extra);
  return setup(models, { ...rest, ...more });
}

/** An engine started by the test itself (so not the backend's child), recorded as a dead proxy would have. */
async function orphanEngine(
  stateDir: string,
  marker: string,
  extra: string[] = [],
  record: Partial<EngineRecord> = {},
) {
  const port = await freePort("127.0.0.1");
  const key = record.key ?? "a";
  const command = fakeCommand(marker, ...extra).map((a) => a.replace("{port}", String(port)).replace("{served}", key));
  return recordedOrphan(stateDir, command, port, record);
}

/** Runs `command` (listening on `port`) detached from the test, and records it as a dead proxy would have. */
async function recordedOrphan(
  stateDir: string,
  command: string[],
  port: number,
  record: Partial<EngineRecord> = {},
  env: Record<string, string> = {},
) {
  const key = record.key ?? "a";
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  const entry: EngineRecord = {
    version: 2,
    key,
    pid: child.pid,
    pgid: child.pid,
    start: procStat(child.pid)!.start,
    bootId: bootId(),
    port,
    host: "127.0.0.1",
    model: key,
    servedModelName: key,
    command,
    startedAt: new Date().toISOString(),
    proxy: { pid: await deadPid() },
    gpus: ["0"],
    sleepMode: false,
    ...record,
  };
  writeEngineRecord(stateFilePath(stateDir, 18_123, entry.key), entry);
  return { child, record: entry, url: `http://127.0.0.1:${port}` };
}

Deno.test("restart: an adopted engine still loading is observed starting, then waitReady resolves", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, launch } = backendFor(dir, marker, {}, ["--load-ms", "1500"]);
    const orphan = await orphanEngine(dir, marker, ["--load-ms", "1500"]);
    try {
      assert.deepEqual(await backend.observe(never()), { engines: [{ key: "a", phase: "starting", gpus: ["0"] }] });
      await backend.waitReady(launch("a"), opts(10_000));
      assert.deepEqual(await phases(backend), { a: "ready" });
      assert.equal(backend.upstream("a"), orphan.url);
    } finally {
      await backend.close();
      await within(orphan.child.status, 5000, "the adopted engine to exit on close");
    }
  });
});

Deno.test("restart: an adopted engine that dies on its own is reported through onFailure and forgotten", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker);
    const orphan = await orphanEngine(dir, marker);
    try {
      await waitUntil(() => healthy(orphan.url), 10_000, "the engine to be healthy");
      const failed = Promise.withResolvers<[string, string]>();
      backend.onFailure((key, reason) => failed.resolve([key, reason]));
      assert.deepEqual(await phases(backend), { a: "ready" });
      Deno.kill(-orphan.child.pid, "SIGKILL");
      await orphan.child.status;
      const [key, reason] = await within(failed.promise, 5000, "onFailure");
      assert.equal(key, "a");
      assert.match(reason, /engine for model a \(pid \d+\) exited \(adopted/);
      assert.deepEqual(await phases(backend), {});
      assert.equal(readEngineRecord(stateFilePath(dir, 18_123, "a")).kind, "none");
      assert.match(String(lastExit(backend, "a")?.reason), /adopted/);
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: an engine the config no longer describes is reported terminating; stop() kills it after the grace period", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker, { process: { stopGracePeriod: "300ms", stateDir: dir } });
    // Recorded with --ignore-sigterm, which the config's command lacks: the backend must fall back to SIGKILL.
    const orphan = await orphanEngine(dir, marker, ["--ignore-sigterm"]);
    try {
      // Its SIGTERM handler is installed once it listens.
      await waitUntil(() => healthy(orphan.url), 10_000, "the stubborn engine to listen");
      assert.deepEqual(await backend.observe(never()), {
        engines: [{
          key: "a",
          phase: "terminating",
          gpus: ["0"],
          reason: "the config no longer describes this engine: its command or vLLM flags changed",
        }],
      });
      const t0 = Date.now();
      await backend.stop("a", { signal: never(), deadline: Date.now() + 10_000, reason: "test" });
      assert.ok(Date.now() - t0 >= 250, "SIGTERM first, SIGKILL after the grace period");
      assert.equal(procStat(orphan.child.pid), null, "gone once stop resolves");
      assert.equal((await orphan.child.status).signal, "SIGKILL");
      assert.equal(readEngineRecord(stateFilePath(dir, 18_123, "a")).kind, "none");
      assert.deepEqual(await phases(backend), {});
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: outdated placements and removed models are terminating too, each with its reason", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = setup({
      a: { modelName: "org/a", sleepAfter: "1m", command: fakeCommand(marker) },
      b: { modelName: "org/b", gpus: 2, command: fakeCommand(marker) },
      d: { modelName: "org/d", command: fakeCommand(marker) },
      e: { modelName: "org/e", command: fakeCommand(marker, "--max-model-len", "2048") },
    }, { port: 18_123, process: { gpus: ["0", "1"], stateDir: dir } });
    const orphans = [
      await orphanEngine(dir, marker, [], { sleepMode: false }), // a may sleep now
      await orphanEngine(dir, marker, [], { key: "b", gpus: ["0"] }), // b needs 2 GPUs now
      await orphanEngine(dir, marker, [], { key: "c", gpus: ["1"] }), // c is gone from the config
      await orphanEngine(dir, marker, [], { key: "d", gpus: ["7"] }), // GPU 7 is not in process.gpus
      await orphanEngine(dir, marker, [], { key: "e", gpus: ["1"] }), // e's command changed
    ];
    try {
      const { engines } = await backend.observe(never());
      const reasons = Object.fromEntries(engines.map((e) => [e.key, [e.phase, e.reason]]));
      const why = (text: string) => ["terminating", `the config no longer describes this engine: ${text}`];
      assert.deepEqual(reasons, {
        a: why("it runs without sleep mode but the model may now sleep"),
        b: why("the model's GPU count changed"),
        c: why("model c is no longer in the config"),
        d: why("it runs on GPUs process.gpus no longer lists"),
        e: why("its command or vLLM flags changed"),
      });
      for (const key of ["a", "b", "c", "d", "e"]) await backend.stop(key, { ...opts(), reason: "outdated" });
      for (const orphan of orphans) assert.equal(procStat(orphan.child.pid), null);
      assert.deepEqual(listStateFiles(dir, 18_123), []);
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: a record of a vllm-chill before the pool is read; its engine is adopted to be stopped", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker);
    const orphan = await orphanEngine(dir, marker);
    const { version: _v, key: _k, gpus: _g, sleepMode: _s, sleepLevel: _l, ...rest } = orphan.record;
    await Deno.remove(stateFilePath(dir, 18_123, "a"));
    writeEngineRecord(legacyStateFilePath(dir, 18_123), { version: 1, ...rest });
    try {
      const { engines } = await backend.observe(never());
      assert.equal(engines.length, 1);
      assert.equal(engines[0].phase, "terminating");
      assert.match(String(engines[0].reason), /before the pool/);
      assert.equal(readEngineRecord(legacyStateFilePath(dir, 18_123)).kind, "none", "the old file is replaced");
      assert.equal(readEngineRecord(stateFilePath(dir, 18_123, "a")).kind, "record");
      await backend.stop("a", { ...opts(), reason: "outdated" });
      assert.equal(procStat(orphan.child.pid), null);
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: start() never orphans an engine a previous proxy left for the same key", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, launch, lines } = backendFor(dir, marker);
    const orphan = await orphanEngine(dir, marker);
    try {
      await waitUntil(() => healthy(orphan.url), 10_000, "the engine to be healthy");
      await assert.rejects(
        backend.start(launch("a"), opts()),
        (e: unknown) => e instanceof BackendError && /left by a previous proxy is running/.test(e.message),
      );
      assert.equal(lines.filter((l) => l.msg === "engine started").length, 0);
      assert.deepEqual(await phases(backend), { a: "ready" }, "found, and reported by observe()");
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: a record whose pid is dead is ignored and removed", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker);
    try {
      const pid = await deadPid();
      writeEngineRecord(stateFilePath(dir, 18_123, "a"), {
        version: 2,
        key: "a",
        pid,
        pgid: pid,
        port: 1234,
        host: "127.0.0.1",
        model: "a",
        servedModelName: "a",
        command: ["vllm", "serve", "org/a"],
        startedAt: new Date().toISOString(),
        proxy: { pid: await deadPid() },
        gpus: ["0"],
        sleepMode: false,
      });
      assert.deepEqual(await backend.observe(never()), { engines: [] });
      assert.equal(readEngineRecord(stateFilePath(dir, 18_123, "a")).kind, "none", "the stale record is removed");
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: a record whose pid now runs another command is not adopted, and that process is not killed", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker);
    const file = stateFilePath(dir, 18_123, "a");
    // A live process that is not an engine (what a reused pid looks like).
    const bystander = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
    const base = {
      version: 2 as const,
      key: "a",
      port: 1234,
      host: "127.0.0.1",
      model: "a",
      servedModelName: "a",
      startedAt: new Date().toISOString(),
      gpus: ["0"],
      sleepMode: false,
    };
    try {
      for (const start of [undefined, procStat(bystander.pid)!.start]) {
        writeEngineRecord(file, {
          ...base,
          pid: bystander.pid,
          pgid: bystander.pid,
          ...(start === undefined ? {} : { start }),
          command: [DENO, "run", "-A", FAKE_VLLM, "--port", "1234", "--model", "a"],
          proxy: { pid: await deadPid() },
        });
        assert.deepEqual(await backend.observe(never()), { engines: [] });
        assert.equal(readEngineRecord(file).kind, "none");
        assert.notEqual(procStat(bystander.pid), null, "the bystander still runs");
      }
      // Same command, but a different start time: the pid was reused by a newer process.
      writeEngineRecord(file, {
        ...base,
        pid: Deno.pid,
        pgid: Deno.pid,
        start: procStat(Deno.pid)!.start + 1,
        command: Deno.readTextFileSync(`/proc/${Deno.pid}/cmdline`).replace(/\0$/, "").split("\0"),
        proxy: { pid: await deadPid() },
      });
      assert.deepEqual(await backend.observe(never()), { engines: [] });
      assert.equal(readEngineRecord(file).kind, "none");
    } finally {
      await backend.close();
      bystander.kill("SIGKILL");
      await bystander.status;
    }
  });
});

Deno.test("restart: the record of an engine whose proxy still runs is neither adopted nor removed", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend, lines } = backendFor(dir, marker);
    // Recorded by a proxy that is alive (this test process's parent): another proxy's engine, not ours to take.
    const parent = Number(Deno.readTextFileSync(`/proc/${Deno.pid}/stat`).split(") ")[1].split(" ")[1]);
    const orphan = await orphanEngine(dir, marker, [], {
      proxy: { pid: parent, start: procStat(parent)!.start, bootId: bootId() },
    });
    try {
      assert.deepEqual(await backend.observe(never()), { engines: [] });
      assert.deepEqual(await backend.observe(never()), { engines: [] });
      assert.equal(readEngineRecord(stateFilePath(dir, 18_123, "a")).kind, "record", "left for its owner");
      assert.notEqual(procStat(orphan.child.pid), null, "and its engine left running");
      assert.equal(
        lines.filter((l) => l.msg === "the recorded engine belongs to a running proxy; not adopting it").length,
        1,
      );
    } finally {
      await backend.close();
      Deno.kill(-orphan.child.pid, "SIGKILL");
      await orphan.child.status;
    }
  });
});

Deno.test("restart: an unreadable state file is ignored and removed; port 0 records nothing", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = backendFor(dir, marker);
    try {
      await Deno.writeTextFile(stateFilePath(dir, 18_123, "a"), "{not json");
      assert.deepEqual(await backend.observe(never()), { engines: [] });
      assert.deepEqual(listStateFiles(dir, 18_123), []);
    } finally {
      await backend.close();
    }
    const ephemeral = backendFor(dir, marker, { port: 0 });
    try {
      assert.equal(ephemeral.backend.describe().stateDir, null);
      await ephemeral.backend.start(ephemeral.launch("a"), opts());
      assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing recorded");
    } finally {
      await ephemeral.backend.close();
    }
    assert.deepEqual(processesWith(marker), []);
  });
});

Deno.test("restart: the state file of each engine is named by its key; odd keys are encoded", async () => {
  await withStateDir(async (dir, marker) => {
    const { backend } = setup({ "org/m v2": { modelName: "org/m", command: fakeCommand(marker) } }, {
      port: 18_123,
      process: { stateDir: dir },
    });
    try {
      await backend.start({ key: "*", model: null, gpus: ["0"], sleepMode: false }, opts());
      assert.deepEqual(listStateFiles(dir, 18_123), [`${dir}/engine-18123-%2A.json`]);
      const found = readEngineRecord(stateFilePath(dir, 18_123, "*"));
      assert.equal(found.kind === "record" && found.record.key, "*");
      assert.equal(found.kind === "record" && found.record.model, "org/m v2");
      assert.equal(stateFilePath(dir, 1, "org/m v2"), `${dir}/engine-1-org%2Fm%20v2.json`);
    } finally {
      await backend.close();
    }
  });
});

Deno.test("restart: a wake cut short by the crash (recorded asleep, awake per /is_sleeping) → ready, prefix cache reset", async () => {
  await withStateDir(async (dir, marker) => {
    const journal = await tempPath("cut");
    const spec = { modelName: "org/a", sleepAfter: "1m", command: sleepEngineCommand(marker, journal) };
    const { backend, config } = setup({ a: spec }, { port: 18_123, process: { stateDir: dir } });
    const port = await freePort("127.0.0.1");
    const model = { ...config.models.a, name: "a", servedModelName: "a", source: "config" as const };
    const command = buildCommand(model, { host: "127.0.0.1", port, sleepMode: true });
    const env = { VLLM_SERVER_DEV_MODE: "1", CUDA_VISIBLE_DEVICES: "0" };
    const { child } = await recordedOrphan(dir, command, port, { sleepMode: true, sleepLevel: 2 }, env);
    try {
      await waitUntil(() => healthy(`http://127.0.0.1:${port}`), 10_000, "the engine to listen");
      assert.deepEqual(await backend.observe(never()), { engines: [{ key: "a", phase: "ready", gpus: ["0"] }] });
      const seen = readJournal(journal).flatMap((e) => e.event === "call" ? [`${e.method} ${e.path}`] : []);
      assert.deepEqual(seen, ["GET /is_sleeping", "POST /reset_prefix_cache"]);
      const found = readEngineRecord(stateFilePath(dir, 18_123, "a"));
      assert.equal(found.kind === "record" && found.record.sleepLevel, undefined, "awake: no level recorded");
    } finally {
      await backend.close();
      await child.status;
      await Deno.remove(journal).catch(() => {});
    }
  });
});

Deno.test("restart: a proxy that exits without close() takes its engines with it (unload), sleepers included", async () => {
  await withStateDir(async (stateDir, marker) => {
    const journals = { a: await tempPath("ua"), b: await tempPath("ub") };
    const port = await freePort("127.0.0.1");
    const plan: ChildPlan = {
      config: {
        backend: "process",
        port,
        process: { gpus: ["0", "1"], stateDir },
        models: {
          a: { modelName: "org/a", command: sleepEngineCommand(marker, journals.a) },
          b: { modelName: "org/b", sleepAfter: "1m", command: sleepEngineCommand(marker, journals.b) },
        },
      },
      start: [{ key: "a", gpus: ["0"] }, { key: "b", gpus: ["1"] }],
      sleep: [{ key: "b", level: 2 }],
      exit: true,
    };
    const out = await within(
      new Deno.Command(DENO, { args: ["run", "-A", CHILD, JSON.stringify(plan)], stdout: "piped", stderr: "null" })
        .output(),
      30_000,
      "the stand-in proxy to run and exit",
    );
    assert.equal(out.code, 0);
    const pids = JSON.parse(/^READY (.*)$/m.exec(new TextDecoder().decode(out.stdout))![1]) as Record<string, number>;
    assert.deepEqual(Object.keys(pids).sort(), ["a", "b"]);
    await waitUntil(() => !alive(-pids.a) && !alive(-pids.b), 5000, "both engine groups to be gone");
    assert.deepEqual(listStateFiles(stateDir, port), [], "and forgotten");
    for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
  });
});
