/**
 * The process backend as a pool: several engines at once, each on its own
 * GPUs, vLLM's sleep mode (sleep and wake at levels 1 and 2, as the engine
 * sees the calls), failures of sleep and wake, stopping one engine among
 * several. Engines are real child processes (tests/support/sleep_engine.ts)
 * that journal their arguments, environment and every sleep-mode call.
 */
import assert from "node:assert/strict";
import { engineArgs } from "../../lib/backend/engine_command.ts";
import { readEngineRecord, stateFilePath } from "../../lib/backend/engine_state.ts";
import { BackendError } from "../../lib/backend/types.ts";
import { assertNeverOversubscribed, createLedger, heldShares, readLedger } from "../support/gpu_ledger.ts";
import { type JournalEntry, readJournal } from "../support/sleep_engine.ts";
import {
  alive,
  assertNoOrphans,
  DENO,
  details,
  fakeCommand,
  lastExit,
  never,
  newMarker,
  opts,
  phases,
  pidOf,
  setup,
  SLEEP_ENGINE,
  sleepEngineCommand,
  tempPath,
  within,
} from "./process_helpers.ts";

type Start = Extract<JournalEntry, { event: "start" }>;

function started(journal: string): Start {
  const entry = readJournal(journal).find((e): e is Start => e.event === "start");
  assert.ok(entry, `the engine journaled its start in ${journal}`);
  return entry;
}

/** The sleep-mode calls the engine saw, as "METHOD /path?query[ body]", repeated /is_sleeping polls as one. */
function calls(journal: string): string[] {
  const out: string[] = [];
  for (const e of readJournal(journal)) {
    if (e.event !== "call") continue;
    const line = `${e.method} ${e.path}${e.query}${e.body ? ` ${e.body}` : ""}`;
    if (line === out.at(-1) && e.path === "/is_sleeping") continue;
    out.push(line);
  }
  return out;
}

async function isSleeping(url: string): Promise<boolean> {
  return (await (await fetch(`${url}/is_sleeping`)).json()).is_sleeping;
}

async function chat(url: string, model: string): Promise<Response> {
  return await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
  });
}

Deno.test("pool: engines on different GPUs at once, each with its own CUDA_VISIBLE_DEVICES; env precedence", async () => {
  const marker = newMarker();
  const journals = { a: await tempPath("a"), b: await tempPath("b"), cpu: await tempPath("cpu") };
  const { backend, launch, lines } = setup({
    a: {
      modelName: "org/a",
      sleepAfter: "1m",
      env: { TEST_LAYER: "model", VLLM_SERVER_DEV_MODE: "0" },
      command: sleepEngineCommand(marker, journals.a),
    },
    b: { modelName: "org/b", command: sleepEngineCommand(marker, journals.b) },
    cpu: { modelName: "org/cpu", gpus: 0, command: sleepEngineCommand(marker, journals.cpu) },
  }, {
    process: { gpus: ["0", "1"] },
    vllm: { env: { TEST_LAYER: "vllm", TEST_ONLY_VLLM: "yes", CUDA_VISIBLE_DEVICES: "7" } },
  });
  try {
    await Promise.all([
      backend.start(launch("a", ["0"]), opts()),
      backend.start(launch("b", ["1"]), opts()),
      backend.start(launch("cpu", []), opts()),
    ]);
    const { engines } = await backend.observe(never());
    assert.deepEqual(engines.sort((x, y) => String(x.key).localeCompare(String(y.key))), [
      { key: "a", phase: "ready", gpus: ["0"] },
      { key: "b", phase: "ready", gpus: ["1"] },
      { key: "cpu", phase: "ready", gpus: [] },
    ]);
    const env = (key: keyof typeof journals) => started(journals[key]).env;
    assert.deepEqual(env("a"), {
      CUDA_VISIBLE_DEVICES: "0",
      VLLM_SERVER_DEV_MODE: "1",
      TEST_LAYER: "model",
      TEST_ONLY_VLLM: "yes",
    });
    assert.deepEqual(env("b"), {
      CUDA_VISIBLE_DEVICES: "1",
      VLLM_SERVER_DEV_MODE: null,
      TEST_LAYER: "vllm",
      TEST_ONLY_VLLM: "yes",
    });
    assert.equal(env("cpu").CUDA_VISIBLE_DEVICES, "", "a CPU model sees no GPU");
    assert.ok(lines.some((l) => l.msg === "an env variable vllm-chill sets itself is overridden" && l.model === "a"));
    // Three processes, three ports, each serving its own model.
    const urls = ["a", "b", "cpu"].map((k) => backend.upstream(k));
    assert.equal(new Set(urls).size, 3);
    for (const key of ["a", "b", "cpu"]) {
      const res = await chat(backend.upstream(key), key);
      assert.equal(res.status, 200);
      assert.equal((await res.json()).model, key);
    }
    assert.deepEqual(details(backend, "b")?.gpus, ["1"]);
  } finally {
    await backend.close();
    for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: {args} gives a wrapper exactly what `vllm serve` gets, as the engines see their argv", async () => {
  const marker = newMarker();
  const journals = { wrapped: await tempPath(`wrapped-${marker}`), serve: await tempPath(`serve-${marker}`) };
  // A `vllm` executable on the engine's PATH that runs the journaling engine with whatever `vllm` is given.
  const bin = await Deno.makeTempDir({ prefix: `vllm-chill-bin-${marker}-` });
  await Deno.writeTextFile(
    `${bin}/vllm`,
    `#!/bin/sh\nexec "${DENO}" run -A "${SLEEP_ENGINE}" --journal "${journals.serve}" "$@"\n`,
    { mode: 0o755 },
  );
  const spec = {
    modelName: "org/m",
    servedModelName: "m",
    maxModelLen: 2048,
    enablePrefixCaching: true,
    extraArgs: ["--seed", "7"],
    sleepAfter: "5m",
  };
  const wrapped = setup({ m: { ...spec, command: sleepEngineCommand(marker, journals.wrapped) } });
  const served = setup({ m: spec }, { vllm: { env: { PATH: `${bin}:${Deno.env.get("PATH") ?? ""}` } } });
  try {
    await wrapped.backend.start(wrapped.launch("m"), opts());
    await served.backend.start(served.launch("m"), opts());
    const expected = [
      "--served-model-name",
      "m",
      "--max-model-len",
      "2048",
      "--gpu-memory-utilization",
      "0.9",
      "--enable-prefix-caching",
      "--seed",
      "7",
      "--enable-sleep-mode",
    ];
    const model = { ...wrapped.config.models.m, name: "m", servedModelName: "m", source: "config" as const };
    assert.deepEqual(engineArgs(model, true), expected);
    const port = (url: string) => new URL(url).port;
    assert.deepEqual(started(journals.wrapped).argv, [
      "--journal",
      journals.wrapped,
      "--port",
      port(wrapped.backend.upstream("m")),
      "--tag",
      marker,
      ...expected,
    ]);
    assert.deepEqual(started(journals.serve).argv, [
      "--journal",
      journals.serve,
      "serve",
      "org/m",
      "--host",
      "127.0.0.1",
      "--port",
      port(served.backend.upstream("m")),
      ...expected,
    ]);
    assert.equal(started(journals.serve).env.VLLM_SERVER_DEV_MODE, "1");
  } finally {
    await wrapped.backend.close();
    await served.backend.close();
    await Deno.remove(bin, { recursive: true });
    for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: sleep and wake at level 1 — the calls the engine sees; sleep waits for /is_sleeping", async () => {
  const marker = newMarker();
  const journal = await tempPath("l1");
  const stateDir = await Deno.makeTempDir({ prefix: "vllm-chill-state-" });
  const { backend, launch, lines } = setup(
    {
      a: {
        modelName: "org/a",
        sleepAfter: "1m",
        command: sleepEngineCommand(marker, journal, "--sleep-lag-ms", "300"),
      },
    },
    { port: 18_371, process: { stateDir } },
  );
  try {
    await backend.start(launch("a"), opts());
    const url = backend.upstream("a");
    await backend.sleep("a", 1, opts());
    assert.equal(await isSleeping(url), true, "sleep resolved only once /is_sleeping said true");
    const polls = readJournal(journal).filter((e) => e.event === "call" && e.path === "/is_sleeping").length;
    assert.ok(polls >= 2, `polled /is_sleeping (${polls} times) while the engine fell asleep`);
    assert.deepEqual(await backend.observe(never()), {
      engines: [{ key: "a", phase: "sleeping", gpus: ["0"], sleepLevel: 1 }],
    });
    const recorded = readEngineRecord(stateFilePath(stateDir, 18_371, "a"));
    assert.equal(recorded.kind === "record" && recorded.record.sleepLevel, 1, "the level is recorded");
    assert.equal(details(backend, "a")?.sleepLevel, 1);

    await backend.wake("a", 1, opts());
    assert.deepEqual(calls(journal), [
      "POST /sleep?level=1",
      "GET /is_sleeping",
      "POST /wake_up",
      "POST /reset_prefix_cache",
      "GET /is_sleeping",
    ]);
    assert.deepEqual(await phases(backend), { a: "ready" });
    const after = readEngineRecord(stateFilePath(stateDir, 18_371, "a"));
    assert.equal(after.kind === "record" && after.record.sleepLevel, undefined, "awake: no level recorded");
    assert.equal((await chat(url, "a")).status, 200, "the engine serves again (and did not die)");
    assert.ok(lines.some((l) => l.msg === "engine asleep" && l.sleepLevel === 1 && l.level === "info"));
    assert.ok(lines.some((l) => l.msg === "engine awake"));
    await backend.wake("a", 1, opts()); // awake already: nothing to do
    assert.equal(calls(journal).length, 5);
  } finally {
    await backend.close();
    await Deno.remove(journal).catch(() => {});
    await Deno.remove(stateDir, { recursive: true });
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: level 2 — wake reloads the weights between the two wake_up calls, then resets the prefix cache", async () => {
  const marker = newMarker();
  const journal = await tempPath("l2");
  const { backend, launch } = setup({
    a: { modelName: "org/a", sleepAfter: "1m", sleepLevel: 2, command: sleepEngineCommand(marker, journal) },
  });
  try {
    await backend.start(launch("a"), opts());
    await backend.sleep("a", 2, opts());
    assert.deepEqual((await backend.observe(never())).engines[0].sleepLevel, 2);
    await backend.wake("a", 2, opts());
    const level2 = [
      "POST /sleep?level=2",
      "GET /is_sleeping",
      "POST /wake_up?tags=weights",
      'POST /collective_rpc {"method":"reload_weights"}',
      "POST /wake_up?tags=kv_cache",
      "POST /reset_prefix_cache",
      "GET /is_sleeping",
    ];
    assert.deepEqual(calls(journal), level2);
    const answer = async () => (await (await chat(backend.upstream("a"), "a")).json()).choices[0].message.content;
    assert.equal(await answer(), "the quick", "reloaded weights: a sane answer, not <corrupted weights>");

    // Asked to wake at level 1 an engine that slept at level 2: woken as deep as it slept.
    await backend.sleep("a", 2, opts());
    await backend.wake("a", 1, opts());
    assert.deepEqual(calls(journal).slice(level2.length), level2);
    assert.equal(await answer(), "the quick");
  } finally {
    await backend.close();
    await Deno.remove(journal).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: a failed wake (500) → BackendError without the engine's answer, which goes to the log and describe()", async () => {
  const marker = newMarker();
  const journal = await tempPath("fail");
  const { backend, launch, lines } = setup({
    a: {
      modelName: "org/a",
      sleepAfter: "1m",
      command: sleepEngineCommand(marker, journal, "--fail-wake"),
    },
  });
  try {
    await backend.start(launch("a"), opts());
    await backend.sleep("a", 1, opts());
    const error = await backend.wake("a", 1, opts()).then(() => null, (e) => e);
    assert.ok(error instanceof BackendError, String(error));
    assert.equal(error.kind, "failed");
    assert.equal(error.message, "POST /wake_up of model a answered 500 Internal Server Error");
    assert.deepEqual(calls(journal).slice(-1), ["POST /wake_up"], "nothing is called after the failure");
    const described = details(backend, "a");
    assert.equal(described?.lastError?.status, 500);
    assert.equal(described?.lastError?.answer, "Internal Server Error");
    assert.ok(lines.some((l) => l.msg === "engine answered an error" && l.status === 500));
    // The engine's own account (CUDA out of memory) is in its output: the log and describe(), not the error.
    assert.ok(described?.output.some((l) => l.includes("CUDA Error: out of memory")), "the output is kept");
    assert.ok(!error.message.includes("out of memory"));
    // Never reported ready: the scheduler stops it and cold-starts.
    assert.deepEqual(await phases(backend), { a: "sleeping" });
    await backend.stop("a", { ...opts(), reason: "failed wake" });
    assert.deepEqual(await phases(backend), {});
  } finally {
    await backend.close();
    await Deno.remove(journal).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: an engine without the sleep endpoints (404), or started without sleep mode, is refused clearly", async () => {
  const marker = newMarker();
  // An engine that never sees VLLM_SERVER_DEV_MODE (a wrapper dropping it): vLLM serves no sleep route then.
  const { backend, launch } = setup({
    a: { modelName: "org/a", command: ["env", "-u", "VLLM_SERVER_DEV_MODE", ...fakeCommand(marker)] },
  });
  try {
    await backend.start({ ...launch("a"), sleepMode: true }, opts());
    await assert.rejects(
      backend.sleep("a", 1, opts()),
      (e: unknown) =>
        e instanceof BackendError && e.kind === "failed" &&
        e.message === "POST /sleep?level=1 of model a answered 404 Not Found (vLLM serves it only with " +
            "VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode)",
    );
    await backend.stop("a", { ...opts(), reason: "test" });
    await backend.start(launch("a"), opts());
    await assert.rejects(backend.sleep("a", 1, opts()), /was started without sleep mode/);
    await assert.rejects(
      backend.sleep("nope", 1, opts()),
      (e: unknown) => e instanceof BackendError && e.kind === "unavailable",
    );
    await assert.rejects(
      backend.wake("nope", 1, opts()),
      (e: unknown) => e instanceof BackendError && e.kind === "unavailable",
    );
    assert.deepEqual(await phases(backend), { a: "ready" });
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: an engine dying during a wake rejects the wake (exited), not onFailure; dying asleep → onFailure", async () => {
  const marker = newMarker();
  const journals = { a: await tempPath("die-a"), b: await tempPath("die-b") };
  const { backend, launch } = setup({
    a: {
      modelName: "org/a",
      sleepAfter: "1m",
      command: sleepEngineCommand(marker, journals.a, "--exit-on", "/wake_up"),
    },
    b: { modelName: "org/b", sleepAfter: "1m", command: sleepEngineCommand(marker, journals.b) },
  }, { process: { gpus: ["0", "1"] } });
  const failures: [string, string][] = [];
  backend.onFailure((key, reason) => failures.push([key, reason]));
  try {
    await Promise.all([backend.start(launch("a", ["0"]), opts()), backend.start(launch("b", ["1"]), opts())]);
    await Promise.all([backend.sleep("a", 1, opts()), backend.sleep("b", 1, opts())]);
    const error = await backend.wake("a", 1, opts()).then(() => null, (e) => e);
    assert.ok(error instanceof BackendError, String(error));
    assert.equal(error.kind, "exited");
    assert.match(error.message, /^engine for model a \(pid \d+\) exited with code 1 while waking$/);

    const pidB = pidOf(backend, "b");
    const failed = new Promise<void>((resolve) => backend.onFailure(() => resolve()));
    Deno.kill(pidB, "SIGKILL");
    await within(failed, 10_000, "onFailure of the sleeper");
    assert.deepEqual(failures, [["b", `engine for model b (pid ${pidB}) was killed by SIGKILL`]]);
    assert.deepEqual(await phases(backend), {});
  } finally {
    await backend.close();
    for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: stopping one engine leaves the others serving; close() stops them all, sleepers included", async () => {
  const marker = newMarker();
  const journals = { a: await tempPath("s-a"), b: await tempPath("s-b"), c: await tempPath("s-c") };
  const { backend, launch } = setup({
    a: { modelName: "org/a", command: sleepEngineCommand(marker, journals.a) },
    b: { modelName: "org/b", command: sleepEngineCommand(marker, journals.b) },
    c: { modelName: "org/c", sleepAfter: "1m", command: sleepEngineCommand(marker, journals.c) },
  }, { process: { gpus: ["0", "1"] } });
  try {
    await Promise.all([
      backend.start(launch("a", ["0"]), opts()),
      backend.start(launch("b", ["1"]), opts()),
      backend.start(launch("c", ["1"]), opts()),
    ]);
    await backend.sleep("c", 1, opts());
    const pids = { a: pidOf(backend, "a"), b: pidOf(backend, "b"), c: pidOf(backend, "c") };
    await backend.stop("a", { ...opts(), reason: "evicted" });
    assert.equal(alive(pids.a), false);
    assert.equal(alive(-pids.a), false);
    assert.equal(alive(pids.b), true);
    assert.deepEqual(await phases(backend), { b: "ready", c: "sleeping" });
    assert.equal((await chat(backend.upstream("b"), "b")).status, 200, "b still serves");

    await backend.close();
    for (const pid of Object.values(pids)) assert.equal(alive(-pid), false, `group ${pid} is gone`);
    assert.deepEqual(await phases(backend), {});
  } finally {
    await backend.close();
    for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("pool: shares on one GPU as the engines account them — a third engine does not fit until one sleeps", async () => {
  const marker = newMarker();
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-ledger-" });
  const ledger = `${dir}/ledger.json`;
  createLedger(ledger);
  const journals = { a: await tempPath("la"), b: await tempPath("lb"), c: await tempPath("lc") };
  const model = (key: keyof typeof journals) => ({
    modelName: `org/${key}`,
    gpuMemoryUtilization: 0.45,
    sleepAfter: "1m",
    command: sleepEngineCommand(marker, journals[key]),
  });
  const { backend, launch } = setup({ a: model("a"), b: model("b"), c: model("c") }, {
    vllm: { env: { FAKE_GPU_LEDGER: ledger } },
  });
  try {
    await Promise.all([backend.start(launch("a"), opts()), backend.start(launch("b"), opts())]);
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.9 }, "each engine holds its share of GPU 0");
    const error = await backend.start(launch("c"), opts()).then(() => null, (e) => e);
    assert.ok(error instanceof BackendError, String(error));
    assert.equal(error.message, "engine for model c exited with code 1 during start (not enough free GPU memory)");
    assert.ok(lastExit(backend, "c")?.output.some((l) => l.includes("Free memory on device")), "vLLM's own words");

    await backend.sleep("a", 1, opts());
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.45 }, "asleep, a holds no GPU memory");
    await backend.start(launch("c"), opts());
    // Waking a now would oversubscribe GPU 0: the engine refuses (CUDA out of memory), and stays asleep.
    await assert.rejects(backend.wake("a", 1, opts()), /POST \/wake_up of model a answered 500/);
    assert.deepEqual(await phases(backend), { a: "sleeping", b: "ready", c: "ready" });
    await backend.stop("c", { ...opts(), reason: "make room" });
    await backend.wake("a", 1, opts());
    assert.deepEqual(heldShares(readLedger(ledger)), { "0": 0.9 });
    assertNeverOversubscribed(ledger);
  } finally {
    await backend.close();
    for (const journal of Object.values(journals)) await Deno.remove(journal).catch(() => {});
    await Deno.remove(dir, { recursive: true });
    await assertNoOrphans(marker);
  }
});
