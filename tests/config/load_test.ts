import assert from "node:assert/strict";
import { ConfigError } from "../../lib/config/define.ts";
import { parseFlags, SERVE_FLAGS, UsageError } from "../../lib/config/flags.ts";
import { ConfigLoadError, loadConfig } from "../../lib/config/load.ts";

const MOD = new URL("../../mod.ts", import.meta.url).href;

async function withFile(name: string, content: string, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-load-" });
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, content);
  try {
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("precedence: flag > env > config file > default", async () => {
  await withFile("c.json", JSON.stringify({ idleTimeout: "10m", namespace: "from-file" }), async (file) => {
    const env = { VLLM_CHILL_IDLE_TIMEOUT: "2m" };
    const flags = parseFlags(SERVE_FLAGS, ["--idle-timeout", "1m"]).values;
    assert.equal((await loadConfig({ file, env, flags })).idleTimeout, 60_000);
    assert.equal((await loadConfig({ file, env, flags: {} })).idleTimeout, 120_000);
    assert.equal((await loadConfig({ file, env: {}, flags: {} })).idleTimeout, 600_000);
    assert.equal((await loadConfig({ env: {}, flags: {} })).idleTimeout, 300_000);
    // Keys not overridden keep the file's value.
    assert.equal((await loadConfig({ file, env, flags })).namespace, "from-file");
  });
});

Deno.test("nested flags map onto target.* and numbers are parsed", async () => {
  const flags = parseFlags(SERVE_FLAGS, [
    "--deployment=my-vllm",
    "--configmap",
    "my-cm",
    "--target-host",
    "my-svc",
    "--target-port",
    "8001",
    "--target-url",
    "http://127.0.0.1:8000",
    "--port",
    "9090",
  ]).values;
  const config = await loadConfig({ flags, env: { VLLM_CHILL_TARGET_PORT: "7000" } });
  assert.deepEqual(config.target, {
    deployment: "my-vllm",
    configMap: "my-cm",
    service: "my-svc",
    port: 8001,
    url: "http://127.0.0.1:8000",
  });
  assert.equal(config.port, 9090);
});

Deno.test("--enable-model-switch: bare, =false, =true and env", async () => {
  const load = async (args: string[], env: Record<string, string> = {}) =>
    (await loadConfig({ flags: parseFlags(SERVE_FLAGS, args).values, env })).enableModelSwitch;
  assert.equal(await load([]), false);
  assert.equal(await load(["--enable-model-switch"]), true);
  assert.equal(await load(["--enable-model-switch=true"]), true);
  assert.equal(await load(["--enable-model-switch=false"], { VLLM_CHILL_ENABLE_MODEL_SWITCH: "true" }), false);
  assert.equal(await load([], { VLLM_CHILL_ENABLE_MODEL_SWITCH: "true" }), true);
  assert.equal(await load([], { VLLM_CHILL_ENABLE_MODEL_SWITCH: "0" }), false);
  assert.throws(() => parseFlags(SERVE_FLAGS, ["--enable-model-switch=maybe"]), UsageError);
});

Deno.test("unknown flags are usage errors", () => {
  assert.throws(() => parseFlags(SERVE_FLAGS, ["--idle-timout", "5m"]), (e) => e instanceof UsageError);
  assert.throws(() => parseFlags(SERVE_FLAGS, ["--api-keys", "secret-key-1"]), UsageError, "api keys are env-only");
  assert.throws(() => parseFlags(SERVE_FLAGS, ["stray"]), UsageError);
});

Deno.test("a bad value names its path and where it came from", async () => {
  const error = await loadConfig({ env: { VLLM_CHILL_IDLE_TIMEOUT: "soon" } }).catch((e) => e);
  assert.ok(error instanceof ConfigError);
  assert.equal(error.issues[0].path, "idleTimeout");
  assert.match(error.message, /idleTimeout: expected a duration .*\(from VLLM_CHILL_IDLE_TIMEOUT\)/);
  const fromFlag = await loadConfig({ flags: { port: "http" }, env: {} }).catch((e) => e);
  assert.match(fromFlag.message, /port: .*\(from --port\)/);
});

Deno.test("Kubernetes service-link values (VLLM_CHILL_PORT=tcp://…) are ignored", async () => {
  const config = await loadConfig({ env: { VLLM_CHILL_PORT: "tcp://10.0.0.7:8080" } });
  assert.equal(config.port, 8080);
});

Deno.test("VLLM_CHILL_API_KEYS and VLLM_CHILL_ADMIN_TOKEN", async () => {
  const plain = await loadConfig({ env: { VLLM_CHILL_API_KEYS: "key-aaaaaaaa, key-bbbbbbbb" } });
  assert.deepEqual(plain.apiKeys, ["key-aaaaaaaa", "key-bbbbbbbb"]);
  const json = await loadConfig({
    env: { VLLM_CHILL_API_KEYS: '[{"key":"key-cccccccc","models":["a"]}]', VLLM_CHILL_ADMIN_TOKEN: "admin-token-1" },
  });
  assert.deepEqual(json.apiKeys, [{ key: "key-cccccccc", models: ["a"] }]);
  assert.equal(json.adminToken, "admin-token-1");
});

Deno.test("config file formats: .ts via defineVllmChill, .ts plain object, .yaml, .json", async () => {
  await withFile(
    "a.config.ts",
    `import { defineVllmChill } from "${MOD}";\nexport default defineVllmChill({ idleTimeout: "7m", models: { a: { modelName: "org/a" } } });\n`,
    async (file) => {
      const config = await loadConfig({ file, flags: { "idle-timeout": "8m" } });
      assert.equal(config.idleTimeout, 480_000, "flags layer on top of a defineVllmChill file");
      assert.equal(config.models.a.modelName, "org/a");
    },
  );
  await withFile("b.config.ts", `export default { port: 1234 };\n`, async (file) => {
    assert.equal((await loadConfig({ file })).port, 1234);
  });
  await withFile("c.yaml", "port: 4321\nmodels:\n  m:\n    modelName: org/m\n", async (file) => {
    assert.equal((await loadConfig({ file })).port, 4321);
  });
  await withFile("d.yml", "", async (file) => {
    assert.equal((await loadConfig({ file })).port, 8080, "an empty YAML file is the defaults");
  });
  await withFile("e.json", '{"backend":"process"}', async (file) => {
    assert.equal((await loadConfig({ flags: { config: file } })).backend, "process");
    assert.equal((await loadConfig({ env: { VLLM_CHILL_CONFIG: file } })).backend, "process");
  });
});

Deno.test("bad config files get one clear line", async () => {
  const oneLine = async (promise: Promise<unknown>, pattern: RegExp) => {
    const error = await promise.then(() => assert.fail("expected an error"), (e) => e);
    assert.ok(error instanceof ConfigLoadError, String(error));
    assert.equal(error.message.includes("\n"), false, error.message);
    assert.match(error.message, pattern);
  };
  await oneLine(loadConfig({ file: "/nonexistent/vllm-chill.config.ts" }), /not found/);
  await withFile("noexport.ts", "export const x = 1;\n", async (file) => {
    await oneLine(loadConfig({ file }), /has no default export/);
  });
  await withFile("syntax.ts", "export default { port: ;\n", async (file) => {
    await oneLine(loadConfig({ file }), /cannot load config file .*syntax\.ts/);
  });
  await withFile("bad.json", "{ port: 1", async (file) => {
    await oneLine(loadConfig({ file }), /cannot parse config file .*bad\.json/);
  });
  await withFile("bad.yaml", "port: [1\n  x: }", async (file) => {
    await oneLine(loadConfig({ file }), /cannot parse config file .*bad\.yaml/);
  });
  await withFile("list.json", "[1]", async (file) => {
    await oneLine(loadConfig({ file }), /must hold an object/);
  });
  await withFile("conf.toml", "port = 1", async (file) => {
    await oneLine(loadConfig({ file }), /unsupported extension/);
  });
});

Deno.test("a defineVllmChill file with a bad field reports the path", async () => {
  await withFile(
    "bad.config.ts",
    `import { defineVllmChill } from "${MOD}";\nexport default defineVllmChill({ models: { a: { modelName: "org/a", gpuMemoryUtilization: 1.5 } } });\n`,
    async (file) => {
      const error = await loadConfig({ file }).catch((e) => e);
      assert.equal(error.name, "ConfigError");
      assert.match(error.message, /models\.a\.gpuMemoryUtilization: must be ≤ 1/);
    },
  );
});

Deno.test("serve flags keep DESIGN.md's names, each with its VLLM_CHILL_ variable", () => {
  const names = SERVE_FLAGS.map((f) => f.name);
  for (
    const flag of [
      "config",
      "port",
      "namespace",
      "deployment",
      "configmap",
      "target-host",
      "target-port",
      "target-url",
      "idle-timeout",
      "enable-model-switch",
      "backend",
      "kubeconfig",
      "log-format",
    ]
  ) assert.ok(names.includes(flag), flag);
  assert.equal(new Set(names).size, names.length);
});
