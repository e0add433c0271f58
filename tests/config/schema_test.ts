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
  // An object field (requests, limits) is documented by one row per field of its own.
  const documented = (key: string) => keys.has(key) || [...keys].some((k) => k.startsWith(`${key}.`));
  for (const key of Object.keys(ModelSpecSchema.shape)) assert.ok(documented(`models.<name>.${key}`), key);
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

Deno.test("vLLM crash-loops are refused: auto tool choice without a parser, names the pinned vLLM does not know", () => {
  const issues = issuesOf({
    models: {
      a: { modelName: "x", enableAutoToolChoice: true },
      b: {
        modelName: "x",
        reasoningParser: "qwen4",
        toolCallParser: "hermes2",
        kvCacheDtype: "fp4",
        quantization: "q",
      },
      c: { modelName: "x", extraArgs: ["--seed", "1", "--reasoning_parser=qwen4", "--enable-auto-tool-choice"] },
    },
  });
  const byPath = new Map(issues.map((i) => [i.path, i.message]));
  assert.deepEqual([...byPath.keys()].sort(), [
    "models.a.enableAutoToolChoice",
    "models.b.kvCacheDtype",
    "models.b.quantization",
    "models.b.reasoningParser",
    "models.b.toolCallParser",
    "models.c.extraArgs[2]",
    "models.c.extraArgs[3]",
  ]);
  assert.match(byPath.get("models.a.enableAutoToolChoice")!, /needs toolCallParser: .*"hermes", .*"qwen3_coder"/);
  assert.match(
    byPath.get("models.b.reasoningParser")!,
    /^"qwen4" is not a reasoning parser of vLLM v0\.11\.0: must be one of "deepseek_r1", "glm45", .*"step3" \(for a newer vllm image or a plugin, set allowUnknownVllmValues: true\)$/,
  );
  assert.match(byPath.get("models.b.toolCallParser")!, /not a tool call parser .*"llama3_json"/);
  assert.match(
    byPath.get("models.b.kvCacheDtype")!,
    /must be one of "auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"/,
  );
  assert.match(byPath.get("models.b.quantization")!, /not a quantization method .*"awq", .*"petit_nvfp4"/);
  assert.match(byPath.get("models.c.extraArgs[2]")!, /"qwen4" is not a reasoning parser/);
  assert.match(byPath.get("models.c.extraArgs[3]")!, /needs toolCallParser/);
});

Deno.test("known names pass; allowUnknownVllmValues and --tool-parser-plugin let newer names through", () => {
  const config = parseConfig({
    models: {
      known: {
        modelName: "x",
        reasoningParser: "qwen3",
        enableAutoToolChoice: true,
        toolCallParser: "qwen3_coder",
        kvCacheDtype: "fp8_e5m2",
        quantization: "compressed-tensors",
      },
      newer: {
        modelName: "x",
        allowUnknownVllmValues: true,
        reasoningParser: "qwen4",
        kvCacheDtype: "fp4",
        quantization: "q9",
        image: "vllm/vllm-openai:v0.99.0",
      },
      plugin: {
        modelName: "x",
        enableAutoToolChoice: true,
        toolCallParser: "my_parser",
        extraArgs: ["--tool-parser-plugin", "/plugins/my_parser.py"],
      },
      viaArgs: { modelName: "x", extraArgs: ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"] },
    },
  });
  assert.equal(config.models.newer.reasoningParser, "qwen4");
  // The escape hatch does not cover a rule every vLLM release has.
  assert.deepEqual(
    issuesOf({ models: { a: { modelName: "x", allowUnknownVllmValues: true, enableAutoToolChoice: true } } })
      .map((i) => i.path),
    ["models.a.enableAutoToolChoice"],
  );
  // A plugin only frees the tool call parser.
  assert.deepEqual(
    issuesOf({
      models: { a: { modelName: "x", reasoningParser: "r", extraArgs: ["--tool-parser-plugin", "p.py"] } },
    }).map((i) => i.path),
    ["models.a.reasoningParser"],
  );
});

Deno.test("the config table shows what validation accepts for the checked fields", () => {
  const rows = new Map(configRows().map((r) => [r.key, r.description]));
  assert.match(rows.get("models.<name>.reasoningParser")!, /vLLM v0\.11\.0 knows deepseek_r1, glm45, .*step3/);
  assert.match(rows.get("models.<name>.toolCallParser")!, /hermes.*--tool-parser-plugin/);
  assert.match(rows.get("models.<name>.kvCacheDtype")!, /auto, bfloat16, fp8, fp8_e4m3, fp8_e5m2, fp8_inc/);
  assert.match(rows.get("models.<name>.enablePrefixCaching")!, /--no-enable-prefix-caching/);
  assert.match(rows.get("models.<name>.allowUnknownVllmValues")!, /newer than vllm\/vllm-openai:v0\.11\.0/);
});
