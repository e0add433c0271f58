/**
 * The process backend, one engine at a time: start, readiness, failures at
 * start and while serving, stops (grace period, force, deadline), ports,
 * scale-only mode. Engines are real child processes (the fake vLLM).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { BackendError } from "../../lib/backend/types.ts";
import {
  alive,
  assertNoOrphans,
  details,
  fakeCommand,
  lastExit,
  never,
  newMarker,
  opts,
  phases,
  pidOf,
  setup,
  waitUntil,
  within,
} from "./process_helpers.ts";

async function sh(script: string): Promise<{ code: number; out: string }> {
  const res = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "null" }).output();
  return { code: res.code, out: new TextDecoder().decode(res.stdout) };
}

Deno.test("process backend: start → ready → forward a chat completion → stop → process gone", async () => {
  const marker = newMarker();
  const { backend, lines, launch } = setup({
    a: { modelName: "org/a", servedModelName: "served-a", command: fakeCommand(marker) },
  });
  try {
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    await backend.start(launch("a"), opts());
    const pid = pidOf(backend, "a");
    assert.deepEqual(await backend.observe(never()), { engines: [{ key: "a", phase: "ready", gpus: ["0"] }] });
    assert.match(backend.upstream("a"), /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(details(backend, "a")?.port, Number(new URL(backend.upstream("a")).port));

    const openai = new OpenAI({ baseURL: `${backend.upstream("a")}/v1`, apiKey: "x", maxRetries: 0 });
    const chat = await openai.chat.completions.create({
      model: "served-a",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    });
    assert.equal(chat.model, "served-a");
    assert.equal(chat.choices[0].message.content, "the quick");

    await backend.stop("a", { ...opts(), reason: "test" });
    assert.equal(alive(pid), false, "the engine process is gone once stop resolves");
    assert.equal(alive(-pid), false, "its process group is gone too");
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    const engineLines = lines.filter((l) => l.model === "a" && l.stream === "stdout");
    assert.ok(engineLines.some((l) => String(l.msg).startsWith("listening on http://127.0.0.1:")), "stdout is logged");
    await backend.stop("a", { ...opts(), reason: "again" }); // no engine: resolves at once
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: an engine exiting during start → short BackendError; its output in the log and describe()", async () => {
  const marker = newMarker();
  const { backend, lines, launch } = setup({
    a: {
      modelName: "org/a",
      command: [
        "sh",
        "-c",
        "sleep 60 & echo loading; echo 'torch.OutOfMemoryError: CUDA out of memory' >&2; exit 3",
        marker,
      ],
    },
  });
  try {
    const error = await backend.start(launch("a"), opts()).then(() => null, (e) => e);
    assert.ok(error instanceof BackendError, String(error));
    assert.equal(error.kind, "exited");
    // vllm-chill's own diagnosis, never the engine's lines.
    assert.equal(error.message, "engine for model a exited with code 3 during start (not enough free GPU memory)");
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    const last = lastExit(backend, "a");
    assert.equal(last?.code, 3);
    assert.ok(last?.output.some((l) => l.includes("CUDA out of memory")), "the output is in describe()");
    assert.ok(!last?.reason.includes("CUDA"), "the reason itself is short");
    const failed = lines.find((l) => l.msg === "engine start failed");
    assert.ok((failed?.output as string[]).some((l) => l.includes("CUDA out of memory")), "and in the log");
    assert.equal(alive(-last!.pid), false, "a worker left behind by the dead engine is killed too");
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: fake vLLM exiting before it is loaded → exited", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({
    a: {
      modelName: "org/a",
      command: fakeCommand(marker, "--load-ms", "60000", "--exit-after-ms", "50", "--exit-code", "9"),
    },
  });
  try {
    await assert.rejects(
      backend.start(launch("a"), opts()),
      (e: unknown) => e instanceof BackendError && e.kind === "exited" && /code 9/.test(e.message),
    );
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: an engine exiting while serving → onFailure(key, short reason)", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({
    a: { modelName: "org/a", command: fakeCommand(marker, "--crash-after-chunks", "1") },
  });
  try {
    const { promise: failed, resolve } = Promise.withResolvers<[string, string]>();
    backend.onFailure((key, reason) => resolve([key, reason]));
    await backend.start(launch("a"), opts());
    const pid = pidOf(backend, "a");
    const res = await fetch(`${backend.upstream("a")}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "x", max_tokens: 10, stream: true }),
    });
    await res.text().catch(() => "");
    const [key, reason] = await within(failed, 10_000, "onFailure");
    assert.equal(key, "a");
    assert.equal(reason, `engine for model a (pid ${pid}) exited with code 1`);
    assert.ok(lastExit(backend, "a")?.output.some((l) => l.includes("died mid-stream")), "the output is kept");
    assert.equal(alive(pid), false);
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    // The last address stays known: a request in flight gets a connection error (502), not an exception.
    assert.match(backend.upstream("a"), /^http:\/\/127\.0\.0\.1:\d+$/);
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: SIGTERM ignored → SIGKILL after the grace period; force kills at once", async () => {
  const marker = newMarker();
  const { backend, lines, launch } = setup(
    { a: { modelName: "org/a", command: fakeCommand(marker, "--ignore-sigterm") } },
    { process: { stopGracePeriod: "400ms" } },
  );
  try {
    await backend.start(launch("a"), opts());
    let pid = pidOf(backend, "a");
    let t0 = Date.now();
    await backend.stop("a", { ...opts(), reason: "test" });
    const graceful = Date.now() - t0;
    assert.ok(graceful >= 380, `waited the grace period (${graceful} ms)`);
    assert.equal(alive(pid), false);
    assert.ok(lines.some((l) => String(l.msg).includes("still running after SIGTERM")));
    assert.ok(lines.some((l) => l.stream === "stderr" && String(l.msg).includes("ignoring SIGTERM")));

    await backend.start(launch("a"), opts());
    pid = pidOf(backend, "a");
    t0 = Date.now();
    await backend.stop("a", { ...opts(), reason: "switch", force: true });
    assert.ok(Date.now() - t0 < 380, "force does not wait for the grace period");
    assert.equal(alive(pid), false);
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: a command that does not exist → clear error, nothing left", async () => {
  const { backend, launch } = setup({ a: { modelName: "org/a", command: ["no-such-engine-xyz", "--port", "{port}"] } });
  try {
    await assert.rejects(
      backend.start(launch("a"), opts()),
      (e: unknown) => e instanceof BackendError && e.message === "command not found: no-such-engine-xyz (model a)",
    );
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    assert.deepEqual(backend.describe().engines, {});
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: placeholders {port}, {model}, {served} reach the engine", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({
    a: {
      modelName: "org/a",
      command: [
        ...fakeCommand(marker).slice(0, 4),
        "--port={port}",
        "--model",
        "{served}",
        "--model-name",
        "{model}",
      ],
    },
  });
  try {
    await backend.start(launch("a"), opts());
    const list = await (await fetch(`${backend.upstream("a")}/v1/models`)).json();
    assert.equal(list.data[0].id, "a");
    assert.equal(list.data[0].root, "org/a");
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: the model's env reaches the engine; describe() never shows env values", async () => {
  const marker = newMarker();
  const { backend, lines, launch } = setup({
    a: {
      modelName: "org/a",
      env: { FAKE_SECRET_PROBE: "s3cr3t-value" },
      command: ["sh", "-c", `echo "probe=$FAKE_SECRET_PROBE"; exec "$0" "$@"`, ...fakeCommand(marker)],
    },
  });
  try {
    await backend.start(launch("a"), opts());
    assert.ok(lines.some((l) => l.model === "a" && l.msg === "probe=s3cr3t-value"));
    const described = JSON.stringify(backend.describe());
    assert.ok(described.includes("probe="), "describe() shows the output");
    assert.ok(!described.replace("probe=s3cr3t-value", "").includes("s3cr3t-value"), "but no env value");
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: workers the engine forks are stopped with it", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({
    a: { modelName: "org/a", command: ["sh", "-c", `sleep 60 & exec "$0" "$@"`, ...fakeCommand(marker)] },
  });
  try {
    await backend.start(launch("a"), opts());
    const pid = pidOf(backend, "a");
    const group = await sh(`ps -o pid= -g ${pid}`);
    assert.ok(group.out.trim().split(/\s+/).length >= 2, "engine + a forked worker");
    await backend.stop("a", { ...opts(), reason: "test" });
    assert.equal(alive(-pid), false, "nothing of the engine's group survives");
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: a start past its deadline → timeout, and the engine is killed", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({ a: { modelName: "org/a", command: fakeCommand(marker, "--load-ms", "60000") } });
  try {
    const start = backend.start(launch("a"), opts(700));
    await assert.rejects(start, (e: unknown) => e instanceof BackendError && e.kind === "timeout");
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    assert.ok(lastExit(backend, "a"), "the engine has exited");
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: abort during start → aborted, engine gone; close() during start too", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({ a: { modelName: "org/a", command: fakeCommand(marker, "--load-ms", "60000") } });
  try {
    const controller = new AbortController();
    const start = backend.start(launch("a"), opts(20_000, controller.signal));
    await waitUntil(async () => (await phases(backend)).a === "starting", 10_000, "starting");
    const first = pidOf(backend, "a");
    controller.abort(new Error("shutting down"));
    await assert.rejects(start, (e: unknown) => e instanceof BackendError && e.kind === "aborted");
    assert.equal(alive(first), false);

    const again = backend.start(launch("a"), opts());
    await waitUntil(async () => (await phases(backend)).a === "starting", 10_000, "starting again");
    const pid = pidOf(backend, "a");
    await backend.close();
    await assert.rejects(again, BackendError);
    assert.equal(alive(pid), false);
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: waitReady follows an engine that is starting", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({ a: { modelName: "org/a", command: fakeCommand(marker) } });
  try {
    await assert.rejects(backend.waitReady(launch("a"), opts()), (e: unknown) => e instanceof BackendError);
    const start = backend.start(launch("a"), opts());
    await waitUntil(async () => (await phases(backend)).a === "starting", 10_000, "starting");
    await backend.waitReady(launch("a"), opts());
    assert.deepEqual(await phases(backend), { a: "ready" });
    await start;
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: a taken port (EADDRINUSE at start) is retried once on another port", async () => {
  const marker = newMarker();
  const flag = await Deno.makeTempFile();
  await Deno.remove(flag);
  const { backend, launch } = setup({
    a: {
      modelName: "org/a",
      command: [
        "sh",
        "-c",
        `if [ ! -e "${flag}" ]; then touch "${flag}"; echo "OSError: [Errno 98] Address already in use" >&2; exit 1; fi; exec "$0" "$@"`,
        ...fakeCommand(marker),
      ],
    },
  });
  try {
    await backend.start(launch("a"), opts());
    assert.deepEqual(await phases(backend), { a: "ready" });
  } finally {
    await backend.close();
    await Deno.remove(flag).catch(() => {});
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: a port taken twice → exited, saying so in vllm-chill's words", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({
    a: {
      modelName: "org/a",
      command: ["sh", "-c", 'echo "OSError: [Errno 98] Address already in use" >&2; exit 1', marker],
    },
  });
  try {
    await assert.rejects(
      backend.start(launch("a"), opts()),
      (e: unknown) =>
        e instanceof BackendError &&
        /^engine for model a exited with code 1 during start \(its port \d+ was taken\)$/.test(e.message),
    );
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test('process backend: scale-only (engine "*", no model) runs the only model, else is refused clearly', async () => {
  const marker = newMarker();
  const scaleOnly = { key: "*", model: null, gpus: ["0"], sleepMode: false };
  const one = setup({ solo: { modelName: "org/solo", command: fakeCommand(marker) } });
  try {
    await one.backend.start(scaleOnly, opts());
    assert.deepEqual(await phases(one.backend), { "*": "ready" });
    assert.equal(details(one.backend, "*")?.model, "solo");
    const list = await (await fetch(`${one.backend.upstream("*")}/v1/models`)).json();
    assert.equal(list.data[0].id, "solo");
  } finally {
    await one.backend.close();
  }
  const two = setup({ a: { modelName: "org/a", command: fakeCommand(marker) }, b: { modelName: "org/b" } });
  try {
    await assert.rejects(
      two.backend.start(scaleOnly, opts()),
      (e: unknown) => e instanceof BackendError && /needs a model/.test(e.message),
    );
  } finally {
    await two.backend.close();
  }
  // defaultModel picks among several; "b" has no command, so the default `vllm serve` is tried (absent here).
  const byDefault = setup(
    { a: { modelName: "org/a", command: fakeCommand(marker) }, b: { modelName: "org/b" } },
    { defaultModel: "b", vllm: { env: { PATH: "/nonexistent" } } },
  );
  try {
    await assert.rejects(
      byDefault.backend.start(scaleOnly, opts()),
      (e: unknown) => e instanceof BackendError && /command not found: vllm \(model b\)/.test(e.message),
    );
  } finally {
    await byDefault.backend.close();
  }
  await assertNoOrphans(marker);
});

Deno.test("process backend: a second start of the same key is refused; close() leaves no child", async () => {
  const marker = newMarker();
  const { backend, launch } = setup({ a: { modelName: "org/a", command: fakeCommand(marker) } });
  try {
    await backend.start(launch("a"), opts());
    const pid = pidOf(backend, "a");
    await assert.rejects(backend.start(launch("a"), opts()), /already running/);
    await backend.close();
    assert.equal(alive(pid), false);
    assert.deepEqual(await backend.observe(never()), { engines: [] });
    await assert.rejects(backend.start(launch("a"), opts()), /closed/);
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});

Deno.test("process backend: stop's deadline (or signal) cuts the grace period short", async () => {
  const marker = newMarker();
  const { backend, launch } = setup(
    { a: { modelName: "org/a", command: fakeCommand(marker, "--ignore-sigterm", "--load-ms", "0") } },
    { process: { stopGracePeriod: "30s" } },
  );
  try {
    await backend.start(launch("a"), opts());
    let pid = pidOf(backend, "a");
    let t0 = Date.now();
    await backend.stop("a", { signal: never(), deadline: Date.now() + 300, reason: "deadline" });
    assert.ok(Date.now() - t0 < 5000, "killed at the deadline, not after 30 s");
    assert.equal(alive(pid), false);

    await backend.start(launch("a"), opts());
    pid = pidOf(backend, "a");
    const controller = new AbortController();
    t0 = Date.now();
    const stopping = backend.stop("a", {
      signal: controller.signal,
      deadline: Date.now() + 60_000,
      reason: "shutdown",
    });
    controller.abort();
    await stopping;
    assert.ok(Date.now() - t0 < 5000, "killed on abort, not after 30 s");
    assert.equal(alive(pid), false);
  } finally {
    await backend.close();
    await assertNoOrphans(marker);
  }
});
