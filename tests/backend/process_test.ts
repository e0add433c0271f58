import assert from "node:assert/strict";
import OpenAI from "openai";
import { buildCommand, createProcessBackend } from "../../lib/backend/process.ts";
import { type Backend, BackendError } from "../../lib/backend/types.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput, ModelSpecInput, NamedModel } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log.ts";

const FAKE_VLLM = new URL("../support/fake_vllm.ts", import.meta.url).pathname;
const DENO = Deno.execPath();

function fakeCommand(...extra: string[]): string[] {
  return [DENO, "run", "-A", FAKE_VLLM, "--port", "{port}", "--model", "{served}", "--load-ms", "200", ...extra];
}

function setup(models: Record<string, ModelSpecInput>, more: Partial<ChillConfigInput> = {}) {
  const config = parseConfig({ backend: "process", models, ...more });
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ format: "json", level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  const backend = createProcessBackend({ config, log });
  const model = (name: string): NamedModel => {
    const spec = config.models[name];
    return { ...spec, name, servedModelName: spec.servedModelName ?? name, source: "config" };
  };
  return { config, backend, lines, model };
}

function opts(ms = 20_000, signal = new AbortController().signal) {
  return { signal, deadline: Date.now() + ms };
}

async function sh(script: string): Promise<{ code: number; out: string }> {
  const res = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "null" }).output();
  return { code: res.code, out: new TextDecoder().decode(res.stdout) };
}

/** True while a process (or, with a negative id, any process of that group) runs; zombies count as gone. */
async function alive(pid: number): Promise<boolean> {
  const { out } = await sh("ps -eo pid=,pgid=,stat=");
  return out.split("\n").some((line) => {
    const [p, g, stat] = line.trim().split(/\s+/);
    return (pid > 0 ? Number(p) === pid : Number(g) === -pid) && !stat?.startsWith("Z");
  });
}

function pidOf(backend: Backend): number {
  const pid = backend.describe().pid;
  assert.equal(typeof pid, "number");
  return pid as number;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

Deno.test("process backend: start → ready → forward a chat completion → stop → process gone", async () => {
  const { backend, lines, model } = setup({
    a: { modelName: "org/a", servedModelName: "served-a", command: fakeCommand() },
  });
  try {
    assert.deepEqual(await backend.observe(new AbortController().signal), {
      replicas: 0,
      activeModel: null,
      phase: "absent",
    });
    await backend.start(model("a"), opts());
    const pid = pidOf(backend);
    const observed = await backend.observe(new AbortController().signal);
    assert.deepEqual(observed, { replicas: 1, activeModel: "a", phase: "ready", pid });
    assert.match(backend.upstream(), /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(backend.describe().port, Number(new URL(backend.upstream()).port));

    const openai = new OpenAI({ baseURL: `${backend.upstream()}/v1`, apiKey: "x", maxRetries: 0 });
    const chat = await openai.chat.completions.create({
      model: "served-a",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    });
    assert.equal(chat.model, "served-a");
    assert.equal(chat.choices[0].message.content, "the quick");

    await backend.stop({ ...opts(), reason: "test" });
    assert.equal(await alive(pid), false, "the engine process is gone once stop resolves");
    assert.equal(await alive(-pid), false, "its process group is gone too");
    assert.equal((await backend.observe(new AbortController().signal)).phase, "absent");
    const engineLines = lines.filter((l) => l.model === "a" && l.stream === "stdout");
    assert.ok(engineLines.some((l) => String(l.msg).startsWith("listening on http://127.0.0.1:")), "stdout is logged");
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: an engine exiting during start → BackendError exited with code and stderr", async () => {
  const { backend, model } = setup({
    a: {
      modelName: "org/a",
      command: ["sh", "-c", "sleep 60 & echo loading; echo 'torch.OutOfMemoryError: CUDA out of memory' >&2; exit 3"],
    },
  });
  try {
    const error = await backend.start(model("a"), opts()).then(() => null, (e) => e);
    assert.ok(error instanceof BackendError, String(error));
    assert.equal(error.kind, "exited");
    assert.match(error.message, /exited with code 3/);
    assert.match(error.message, /CUDA out of memory/);
    assert.equal((await backend.observe(new AbortController().signal)).phase, "absent");
    const last = backend.describe().lastExit as { code: number; reason: string };
    assert.equal(last.code, 3);
    const pid = Number(/pid (\d+)/.exec(last.reason)?.[1]);
    assert.ok(pid > 0);
    assert.equal(await alive(-pid), false, "a worker left behind by the dead engine is killed too");
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: fake vLLM exiting before it is loaded → exited", async () => {
  const { backend, model } = setup({
    a: { modelName: "org/a", command: fakeCommand("--load-ms", "60000", "--exit-after-ms", "50", "--exit-code", "9") },
  });
  try {
    await assert.rejects(
      backend.start(model("a"), opts()),
      (e: unknown) => e instanceof BackendError && e.kind === "exited" && /code 9/.test(e.message),
    );
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: an engine exiting while serving → onFailure with the reason", async () => {
  const { backend, model } = setup({ a: { modelName: "org/a", command: fakeCommand("--crash-after-chunks", "1") } });
  try {
    const { promise: failed, resolve } = Promise.withResolvers<string>();
    backend.onFailure(resolve);
    await backend.start(model("a"), opts());
    const pid = pidOf(backend);
    const res = await fetch(`${backend.upstream()}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "x", max_tokens: 10, stream: true }),
    });
    await res.text().catch(() => "");
    const reason = await within(failed, 10_000, "onFailure");
    assert.match(reason, /model a/);
    assert.match(reason, /exited with code 1/);
    assert.match(reason, /died mid-stream/);
    assert.equal(await alive(pid), false);
    assert.equal((await backend.observe(new AbortController().signal)).phase, "absent");
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: SIGTERM ignored → SIGKILL after the grace period; force kills at once", async () => {
  const { backend, lines, model } = setup(
    { a: { modelName: "org/a", command: fakeCommand("--ignore-sigterm") } },
    { process: { stopGracePeriod: "400ms" } },
  );
  try {
    await backend.start(model("a"), opts());
    let pid = pidOf(backend);
    let t0 = Date.now();
    await backend.stop({ ...opts(), reason: "test" });
    const graceful = Date.now() - t0;
    assert.ok(graceful >= 380, `waited the grace period (${graceful} ms)`);
    assert.ok(graceful < 5000);
    assert.equal(await alive(pid), false);
    assert.ok(lines.some((l) => String(l.msg).includes("still running after SIGTERM")));
    assert.ok(lines.some((l) => l.stream === "stderr" && String(l.msg).includes("ignoring SIGTERM")));

    await backend.start(model("a"), opts());
    pid = pidOf(backend);
    t0 = Date.now();
    await backend.stop({ ...opts(), reason: "switch", force: true });
    assert.ok(Date.now() - t0 < 380, "force does not wait for the grace period");
    assert.equal(await alive(pid), false);
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: a command that does not exist → clear error, nothing left", async () => {
  const { backend, model } = setup({ a: { modelName: "org/a", command: ["no-such-engine-xyz", "--port", "{port}"] } });
  try {
    await assert.rejects(
      backend.start(model("a"), opts()),
      (e: unknown) => e instanceof BackendError && /command not found: no-such-engine-xyz/.test(e.message),
    );
    assert.equal((await backend.observe(new AbortController().signal)).phase, "absent");
    assert.equal(backend.describe().pid, null);
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: placeholders {port}, {model}, {served} are filled in", async () => {
  const model: NamedModel = {
    modelName: "org/a",
    name: "a",
    servedModelName: "srv",
    source: "config",
    command: ["engine", "--port={port}", "--model", "{served}", "--path", "/m/{model}", "{port}"],
  };
  assert.deepEqual(buildCommand(model, "127.0.0.1", 8123), [
    "engine",
    "--port=8123",
    "--model",
    "srv",
    "--path",
    "/m/org/a",
    "8123",
  ]);
  const vllm = buildCommand({ ...model, command: undefined, maxModelLen: 4096 }, "127.0.0.1", 9000);
  assert.deepEqual(vllm.slice(0, 7), ["vllm", "serve", "org/a", "--host", "127.0.0.1", "--port", "9000"]);
  assert.ok(vllm.join(" ").includes("--served-model-name srv"));
  assert.ok(vllm.join(" ").includes("--max-model-len 4096"));

  const { backend, model: named } = setup({
    a: {
      modelName: "org/a",
      command: [DENO, "run", "-A", FAKE_VLLM, "--port={port}", "--model", "{served}", "--model-name", "{model}"],
    },
  });
  try {
    await backend.start(named("a"), opts());
    const list = await (await fetch(`${backend.upstream()}/v1/models`)).json();
    assert.equal(list.data[0].id, "a");
    assert.equal(list.data[0].root, "org/a");
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: the model's env reaches the engine; describe() never shows env values", async () => {
  const { backend, lines, model } = setup({
    a: {
      modelName: "org/a",
      env: { FAKE_SECRET_PROBE: "s3cr3t-value" },
      command: ["sh", "-c", `echo "probe=$FAKE_SECRET_PROBE"; exec "$0" "$@"`, ...fakeCommand()],
    },
  });
  try {
    await backend.start(model("a"), opts());
    assert.ok(lines.some((l) => l.model === "a" && l.msg === "probe=s3cr3t-value"));
    assert.ok(!JSON.stringify(backend.describe()).includes("s3cr3t-value"));
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: workers the engine forks are stopped with it", async () => {
  const { backend, model } = setup({
    a: { modelName: "org/a", command: ["sh", "-c", `sleep 60 & exec "$0" "$@"`, ...fakeCommand()] },
  });
  let pid = 0;
  try {
    await backend.start(model("a"), opts());
    pid = pidOf(backend);
    const group = await sh(`ps -o pid= -g ${pid}`);
    assert.ok(group.out.trim().split(/\s+/).length >= 2, "engine + a forked worker");
    await backend.stop({ ...opts(), reason: "test" });
    assert.equal(await alive(-pid), false, "nothing of the engine's group survives");
  } finally {
    await backend.close();
    if (pid) await sh(`kill -9 -${pid} 2>/dev/null`);
  }
});

Deno.test("process backend: a start past its deadline → timeout, and the engine is killed", async () => {
  const { backend, model } = setup({ a: { modelName: "org/a", command: fakeCommand("--load-ms", "60000") } });
  try {
    const start = backend.start(model("a"), opts(700));
    await assert.rejects(start, (e: unknown) => e instanceof BackendError && e.kind === "timeout");
    assert.equal((await backend.observe(new AbortController().signal)).phase, "absent");
    const exit = backend.describe().lastExit as { signal: string | null } | null;
    assert.ok(exit, "the engine has exited");
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: abort during start → aborted, engine gone; close() during start too", async () => {
  const { backend, model } = setup({ a: { modelName: "org/a", command: fakeCommand("--load-ms", "60000") } });
  try {
    const controller = new AbortController();
    const start = backend.start(model("a"), opts(20_000, controller.signal));
    const starting = await waitPhase(backend, "starting");
    controller.abort(new Error("shutting down"));
    await assert.rejects(start, (e: unknown) => e instanceof BackendError && e.kind === "aborted");
    assert.equal(await alive(starting), false);

    const again = backend.start(model("a"), opts());
    const pid = await waitPhase(backend, "starting");
    await backend.close();
    await assert.rejects(again, BackendError);
    assert.equal(await alive(pid), false);
  } finally {
    await backend.close();
  }
});

async function waitPhase(backend: Backend, phase: string): Promise<number> {
  for (let i = 0; i < 400; i++) {
    const o = await backend.observe(new AbortController().signal);
    if (o.phase === phase && o.pid) return o.pid;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`backend never reached ${phase}`);
}

Deno.test("process backend: waitReady follows an engine that is starting", async () => {
  const { backend, model } = setup({ a: { modelName: "org/a", command: fakeCommand() } });
  try {
    await assert.rejects(backend.waitReady(model("a"), opts()), (e: unknown) => e instanceof BackendError);
    const start = backend.start(model("a"), opts());
    await waitPhase(backend, "starting");
    await backend.waitReady(model("a"), opts());
    assert.equal((await backend.observe(new AbortController().signal)).phase, "ready");
    await start;
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: a taken port (EADDRINUSE at start) is retried once on another port", async () => {
  const marker = await Deno.makeTempFile();
  await Deno.remove(marker);
  const { backend, model } = setup({
    a: {
      modelName: "org/a",
      command: [
        "sh",
        "-c",
        `if [ ! -e "${marker}" ]; then touch "${marker}"; echo "OSError: [Errno 98] Address already in use" >&2; exit 1; fi; exec "$0" "$@"`,
        ...fakeCommand(),
      ],
    },
  });
  try {
    await backend.start(model("a"), opts());
    assert.equal((await backend.observe(new AbortController().signal)).phase, "ready");
  } finally {
    await backend.close();
    await Deno.remove(marker).catch(() => {});
  }
});

Deno.test("process backend: scale-only (null model) uses the only model, else is refused clearly", async () => {
  const one = setup({ solo: { modelName: "org/solo", command: fakeCommand() } });
  try {
    await one.backend.start(null, opts());
    assert.equal((await one.backend.observe(new AbortController().signal)).activeModel, "solo");
  } finally {
    await one.backend.close();
  }
  const two = setup({ a: { modelName: "org/a", command: fakeCommand() }, b: { modelName: "org/b" } });
  try {
    await assert.rejects(
      two.backend.start(null, opts()),
      (e: unknown) => e instanceof BackendError && /needs a model/.test(e.message),
    );
  } finally {
    await two.backend.close();
  }
  // defaultModel picks among several; "b" has no command, so the default `vllm serve` is tried (absent here).
  const byDefault = setup(
    { a: { modelName: "org/a", command: fakeCommand() }, b: { modelName: "org/b" } },
    { defaultModel: "b" },
  );
  try {
    await assert.rejects(
      byDefault.backend.start(null, opts()),
      (e: unknown) => e instanceof BackendError && /command not found: vllm \(model b\)/.test(e.message),
    );
  } finally {
    await byDefault.backend.close();
  }
});

Deno.test("process backend: one engine at a time; close() leaves no child", async () => {
  const { backend, model } = setup({
    a: { modelName: "org/a", command: fakeCommand() },
    b: { modelName: "org/b", command: fakeCommand() },
  });
  let pid = 0;
  try {
    await backend.start(model("a"), opts());
    pid = pidOf(backend);
    await assert.rejects(backend.start(model("b"), opts()), /already running/);
    await backend.close();
    assert.equal(await alive(pid), false);
    assert.equal((await backend.observe(new AbortController().signal)).phase, "absent");
  } finally {
    await backend.close();
  }
});

Deno.test("process backend: stop's deadline (or signal) cuts the grace period short", async () => {
  const { backend, model } = setup(
    { a: { modelName: "org/a", command: fakeCommand("--ignore-sigterm", "--load-ms", "0") } },
    { process: { stopGracePeriod: "30s" } },
  );
  try {
    await backend.start(model("a"), opts());
    let pid = pidOf(backend);
    let t0 = Date.now();
    await backend.stop({ signal: new AbortController().signal, deadline: Date.now() + 300, reason: "deadline" });
    assert.ok(Date.now() - t0 < 5000, "killed at the deadline, not after 30 s");
    assert.equal(await alive(pid), false);

    await backend.start(model("a"), opts());
    pid = pidOf(backend);
    const controller = new AbortController();
    t0 = Date.now();
    const stopping = backend.stop({ signal: controller.signal, deadline: Date.now() + 60_000, reason: "shutdown" });
    controller.abort();
    await stopping;
    assert.ok(Date.now() - t0 < 5000, "killed on abort, not after 30 s");
    assert.equal(await alive(pid), false);
  } finally {
    await backend.close();
  }
});
