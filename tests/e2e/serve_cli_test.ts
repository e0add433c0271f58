/**
 * End to end: `deno run -A main.ts serve --config <file.json>` as a child
 * process with the process backend. It starts and answers; SIGTERM with a
 * stream in flight lets the stream complete within the grace bound and
 * exits 0 with no engine left; a bad config exits 1 with one clear line; an
 * unknown flag exits 2; a port that is taken exits 1.
 */
import assert from "node:assert/strict";
import { assertNoEngines, fakeEngineCommand, newMarker, spawnDeno, within } from "./helpers.ts";

const API_KEY = "cli-key-7c1f03b2aa";
const ADMIN_TOKEN = "cli-admin-91d0c4e7f2";

async function writeConfig(config: Record<string, unknown>): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "vllm-chill-e2e-", suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(config));
  return file;
}

Deno.test("serve CLI: starts, answers, and on SIGTERM lets a stream in flight finish, then exits 0", async () => {
  const marker = newMarker();
  const file = await writeConfig({
    backend: "process",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port: 0,
    drainTimeout: "8s",
    process: { stopGracePeriod: "2s" },
    models: { a: { modelName: "org/a", command: fakeEngineCommand(marker, { loadMs: 100, tokensPerSec: 12 }) } },
  });
  const cli = spawnDeno(["main.ts", "serve", "--config", file, "--log-format", "json", "--admin-token", ADMIN_TOKEN], {
    VLLM_CHILL_API_KEYS: API_KEY,
  });
  try {
    const listening = JSON.parse(await cli.waitForLine(/"msg":"listening"/, 20_000));
    const url = listening.url as string;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);

    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const refused = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: '{"model":"a"}' });
    assert.equal(refused.status, 401, "the key from VLLM_CHILL_API_KEYS is required");
    await refused.body?.cancel();

    const admin = await fetch(`${url}/admin/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(admin.status, 200, "the admin token from --admin-token is accepted");
    const adminText = await admin.text();
    assert.ok(!adminText.includes(ADMIN_TOKEN) && !adminText.includes(API_KEY));

    // A stream of ~1 s (12 tokens at 12/s); SIGTERM once its first token arrived.
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model: "a", messages: [{ role: "user", content: "hi" }], max_tokens: 12, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes('"content":"the"')) {
      const { value, done } = await within(reader.read(), 10_000, "the first token");
      if (done) break;
      text += value;
    }
    const signalled = performance.now();
    cli.child.kill("SIGTERM");
    while (true) {
      const { value, done } = await within(reader.read(), 10_000, "the rest of the stream");
      if (done) break;
      text += value;
    }
    assert.ok(text.endsWith("data: [DONE]\n\n"), "the stream in flight completed");
    const status = await within(cli.exited, 10_000, "the proxy to exit");
    assert.equal(status.code, 0, cli.stderr.join("\n"));
    assert.ok(performance.now() - signalled < 8000, "exited within the grace bound");
    await assertNoEngines(marker, 3000);
    const output = [...cli.stdout, ...cli.stderr].join("\n");
    assert.ok(!output.includes(API_KEY), "the API key never reaches the log");
    assert.ok(!output.includes(ADMIN_TOKEN), "the admin token never reaches the log");
    assert.ok(cli.stdout.some((line) => line.includes('"msg":"stopped"')));
  } finally {
    try {
      cli.child.kill("SIGKILL");
    } catch { /* exited */ }
    await cli.exited;
    await Deno.remove(file);
    await assertNoEngines(marker, 3000);
  }
});

Deno.test("serve CLI: SIGTERM during a cold start → the held request gets 503, the starting engine is stopped, exit 0", async () => {
  const marker = newMarker();
  const file = await writeConfig({
    backend: "process",
    enableModelSwitch: true,
    host: "127.0.0.1",
    port: 0,
    logFormat: "json",
    process: { stopGracePeriod: "2s" },
    models: { a: { modelName: "org/a", command: fakeEngineCommand(marker, { loadMs: 20_000 }) } },
  });
  const cli = spawnDeno(["main.ts", "serve", "--config", file]);
  try {
    const url = JSON.parse(await cli.waitForLine(/"msg":"listening"/, 20_000)).url as string;
    const held = fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "a", messages: [{ role: "user", content: "hi" }] }),
    });
    await cli.waitForLine(/"msg":"engine started"/, 10_000);
    cli.child.kill("SIGTERM");
    const res = await within(held, 10_000, "the held request's answer");
    assert.equal(res.status, 503);
    assert.ok(res.headers.get("retry-after"));
    await res.body?.cancel();
    assert.equal((await within(cli.exited, 10_000, "the proxy to exit")).code, 0);
    await assertNoEngines(marker, 3000);
  } finally {
    try {
      cli.child.kill("SIGKILL");
    } catch { /* exited */ }
    await cli.exited;
    await Deno.remove(file);
    await assertNoEngines(marker, 3000);
  }
});

Deno.test("serve CLI: a YAML config works the same (process backend, answers, exits 0 on SIGTERM)", async () => {
  const marker = newMarker();
  const command = fakeEngineCommand(marker, { loadMs: 100 });
  const file = await Deno.makeTempFile({ prefix: "vllm-chill-e2e-", suffix: ".yaml" });
  await Deno.writeTextFile(
    file,
    [
      "backend: process",
      "enableModelSwitch: true",
      "host: 127.0.0.1",
      "port: 0",
      "logFormat: json",
      "models:",
      "  yaml-model:",
      "    modelName: org/yaml-model",
      "    command:",
      ...command.map((arg) => `      - ${JSON.stringify(arg)}`),
      "",
    ].join("\n"),
  );
  const cli = spawnDeno(["main.ts", "serve", "--config", file]);
  try {
    const url = JSON.parse(await cli.waitForLine(/"msg":"listening"/, 20_000)).url as string;
    const res = await within(
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "yaml-model", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
      }),
      15_000,
      "the answer",
    );
    assert.equal(res.status, 200);
    assert.equal((await res.json()).model, "yaml-model");
    cli.child.kill("SIGTERM");
    assert.equal((await within(cli.exited, 10_000, "the proxy to exit")).code, 0);
    await assertNoEngines(marker, 3000);
  } finally {
    try {
      cli.child.kill("SIGKILL");
    } catch { /* exited */ }
    await cli.exited;
    await Deno.remove(file);
    await assertNoEngines(marker, 3000);
  }
});

Deno.test("serve CLI: a bad config exits 1 with one clear line", async () => {
  const file = await writeConfig({ backend: "process", idleTimeout: "soon", models: {} });
  try {
    const cli = spawnDeno(["main.ts", "serve", "--config", file]);
    const status = await within(cli.exited, 20_000, "serve to exit");
    assert.equal(status.code, 1);
    // A heading naming the file, then one line per bad field (with its path); no stack trace.
    const lines = cli.stderr.filter((line) => line.trim() !== "");
    assert.match(lines[0], /^serve: invalid .*\.json/);
    const fieldLines = lines.filter((line) => /idleTimeout/.test(line));
    assert.equal(fieldLines.length, 1, `one line for the bad field: ${lines.join("\n")}`);
    assert.match(fieldLines[0], /idleTimeout: expected a duration/);
    assert.ok(lines.length <= 2, `short: ${lines.join("\n")}`);
    assert.ok(!lines.some((line) => /^\s+at /.test(line)), "no stack trace");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("serve CLI: a config file that does not exist exits 1 with one clear line", async () => {
  const cli = spawnDeno(["main.ts", "serve", "--config", "/nonexistent/vllm-chill.json"]);
  const status = await within(cli.exited, 20_000, "serve to exit");
  assert.equal(status.code, 1);
  const lines = cli.stderr.filter((line) => line.trim() !== "");
  assert.equal(lines.length, 1, `one line: ${lines.join("\n")}`);
  assert.match(lines[0], /\/nonexistent\/vllm-chill\.json/);
});

Deno.test("serve CLI: an unknown flag exits 2 with the usage", async () => {
  const cli = spawnDeno(["main.ts", "serve", "--no-such-flag"]);
  const status = await within(cli.exited, 20_000, "serve to exit");
  assert.equal(status.code, 2);
  const stderr = cli.stderr.join("\n");
  assert.match(stderr, /no-such-flag/);
  assert.match(stderr, /Usage|usage/);
});

Deno.test("serve CLI: a port that is taken exits 1 with a clear line", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const file = await writeConfig({ backend: "process", host: "127.0.0.1", port, models: {} });
  try {
    const cli = spawnDeno(["main.ts", "serve", "--config", file]);
    const status = await within(cli.exited, 20_000, "serve to exit");
    assert.equal(status.code, 1);
    const stderr = cli.stderr.join("\n");
    assert.match(stderr, /cannot start/);
    assert.match(stderr, /in use|AddrInUse/i);
  } finally {
    taken.close();
    await Deno.remove(file);
  }
});
