import assert from "node:assert/strict";
import { ConfigError, defineVllmChill, parseConfig } from "../../mod.ts";
import { configRows, renderConfigTable } from "../../lib/config/docs.ts";
import { ChillConfigSchema, ModelSpecSchema } from "../../lib/config/schema.ts";

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseConfig(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.issues;
  }
  return assert.fail("expected a ConfigError");
}

Deno.test("defaults are complete, typed and frozen", () => {
  const config = defineVllmChill({});
  assert.equal(config.namespace, "ai-apps");
  assert.equal(config.port, 8080);
  assert.equal(config.idleTimeout, 300_000);
  assert.equal(config.maxBodyBytes, 32 * 1024 * 1024);
  assert.deepEqual(config.target, { deployment: "vllm", configMap: "vllm-config", service: "vllm-svc", port: 80 });
  assert.match(config.vllm.image, /^vllm\/vllm-openai:v\d+\.\d+\.\d+$/, "the image is pinned to a release");
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.target));
});

Deno.test("bad models are refused with the path of every bad field", () => {
  const issues = issuesOf({
    models: {
      qwen: { modelName: "Qwen/Qwen3-8B", gpuMemoryUtilization: 1.5, maxModelLen: 0, dtype: "fp64", maxNumSeq: 4 },
    },
    idleTimeout: "soon",
  });
  const byPath = new Map(issues.map((i) => [i.path, i.message]));
  assert.match(byPath.get("models.qwen.gpuMemoryUtilization")!, /≤ 1/);
  assert.match(byPath.get("models.qwen.maxModelLen")!, /> 0/);
  assert.match(byPath.get("models.qwen.dtype")!, /"auto", "half", "float16", "bfloat16", "float", "float32"/);
  assert.match(byPath.get("models.qwen")!, /unknown field "maxNumSeq"/);
  assert.match(byPath.get("idleTimeout")!, /duration/);
});

Deno.test("negative lengths, missing modelName and typos at the top level are refused", () => {
  assert.deepEqual(issuesOf({ models: { a: { modelName: "x", maxNumSeqs: -1 } } }).map((i) => i.path), [
    "models.a.maxNumSeqs",
  ]);
  assert.match(issuesOf({ models: { a: {} } })[0].message, /required/);
  assert.match(issuesOf({ idleTimout: "5m" })[0].message, /unknown field "idleTimout"/);
  assert.match(issuesOf({ apiKeys: ["short"] })[0].path, /apiKeys\[0\]/);
});

Deno.test("served names must be unique; extraArgs and env are checked", () => {
  const dup = issuesOf({ models: { a: { modelName: "x" }, b: { modelName: "y", servedModelName: "a" } } });
  assert.equal(dup[0].path, "models.b.servedModelName");
  const args = issuesOf({ models: { a: { modelName: "x", extraArgs: ["--port", "9000", "-tp", "2"] } } });
  assert.deepEqual(args.map((i) => i.path), ["models.a.extraArgs[0]", "models.a.extraArgs[2]"]);
  assert.match(args[0].message, /--port is set by vllm-chill/);
  const reserved = issuesOf({ models: { a: { modelName: "x", env: { MODEL_NAME: "y" } } } });
  assert.deepEqual(reserved.map((i) => i.path), ["models.a.env.MODEL_NAME"]);
  const badName = issuesOf({ models: { a: { modelName: "x", env: { "bad-name": "z" } } } });
  assert.deepEqual(badName.map((i) => i.path), ['models.a.env["bad-name"]']);
});

Deno.test("the error message lists one line per bad field", () => {
  const error = (() => {
    try {
      defineVllmChill({ port: 70000, backend: "docker" as never });
    } catch (e) {
      return e as ConfigError;
    }
  })()!;
  assert.equal(error.message.split("\n").length, 3);
  assert.match(error.message, /port: must be ≤ 65535/);
  assert.match(error.message, /backend: must be one of "kubernetes", "process"/);
});

Deno.test("the config table documents every key of the schema", () => {
  const keys = new Set(configRows().map((r) => r.key));
  for (const key of Object.keys(ChillConfigSchema.shape)) {
    if (["target", "vllm", "process", "models"].includes(key)) continue;
    assert.ok(keys.has(key), key);
  }
  for (const key of Object.keys(ModelSpecSchema.shape)) assert.ok(keys.has(`models.<name>.${key}`), key);
  for (const key of Object.keys(ChillConfigSchema.shape.target.unwrap().shape)) assert.ok(keys.has(`target.${key}`));
  assert.match(
    renderConfigTable(),
    /\| `idleTimeout` \| duration \| `"5m"` \| `--idle-timeout` `VLLM_CHILL_IDLE_TIMEOUT`/,
  );
});

Deno.test("HF_TOKEN in vllm.env together with vllm.hfTokenSecret is refused (the plain value would win)", () => {
  const result = ChillConfigSchema.safeParse({
    vllm: { hfTokenSecret: { name: "hf" }, env: { HF_TOKEN: "hf_plain" } },
  });
  assert.equal(result.success, false);
  assert.deepEqual(result.error!.issues.map((i) => i.path.join(".")), ["vllm.env.HF_TOKEN"]);
  assert.ok(ChillConfigSchema.safeParse({ vllm: { env: { HF_TOKEN: "hf_plain" } } }).success);
});
