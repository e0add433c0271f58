import assert from "node:assert/strict";
import { ModelSpecSchema } from "../../lib/config/schema.ts";
import {
  engineConfig,
  extraArgsToConfig,
  NON_FLAG_FIELDS,
  VLLM_FLAGS,
  vllmArgs,
  vllmServeArgs,
} from "../../lib/models/vllm_args.ts";
import { ModelRegistry } from "../../lib/models/mod.ts";

Deno.test("every ModelSpec field is either a vLLM flag or a known non-flag field", () => {
  const covered = new Set<string>([...VLLM_FLAGS.map((f) => f.field), ...NON_FLAG_FIELDS]);
  assert.deepEqual([...covered].sort(), Object.keys(ModelSpecSchema.shape).sort());
  for (const { field, kind } of VLLM_FLAGS) {
    const def =
      (ModelSpecSchema.shape as unknown as Record<string, { unwrap(): { _zod: { def: { type: string } } } }>)[field];
    assert.equal(def.unwrap()._zod.def.type === "boolean", kind === "switch", field);
  }
});

Deno.test("booleans emit their flag only when true", () => {
  const args = vllmArgs({
    modelName: "org/m",
    enablePrefixCaching: false,
    trustRemoteCode: false,
    enableChunkedPrefill: true,
    disableCustomAllReduce: false,
    enableAutoToolChoice: false,
  });
  assert.deepEqual(args, ["--enable-chunked-prefill"]);
  assert.equal(
    engineConfig({ modelName: "org/m", trustRemoteCode: false }, { port: 8000 })["trust-remote-code"],
    undefined,
  );
});

Deno.test("CLI form: values, switches, then extraArgs verbatim", () => {
  const model = ModelSpecSchema.parse({
    modelName: "Qwen/Qwen3-8B",
    servedModelName: "qwen3-8b",
    maxModelLen: 32768,
    gpuMemoryUtilization: 0.9,
    dtype: "bfloat16",
    enablePrefixCaching: true,
    reasoningParser: "qwen3",
    extraArgs: ["--seed", "7"],
    idleTimeout: "1m",
    env: { A: "b" },
  });
  assert.deepEqual(vllmArgs(model), [
    "--served-model-name",
    "qwen3-8b",
    "--max-model-len",
    "32768",
    "--gpu-memory-utilization",
    "0.9",
    "--dtype",
    "bfloat16",
    "--enable-prefix-caching",
    "--reasoning-parser",
    "qwen3",
    "--seed",
    "7",
  ]);
  assert.deepEqual(vllmServeArgs(model, { host: "127.0.0.1", port: 8001 }).slice(0, 6), [
    "serve",
    "Qwen/Qwen3-8B",
    "--host",
    "127.0.0.1",
    "--port",
    "8001",
  ]);
});

Deno.test("extraArgs → --config YAML entries", () => {
  assert.deepEqual(extraArgsToConfig(["--seed", "7", "--enforce-eager", "--swap-space=4", "--x", "a", "b"]), {
    seed: "7",
    "enforce-eager": true,
    "swap-space": "4",
    x: ["a", "b"],
  });
  assert.deepEqual(extraArgsToConfig(["--offset", "-1"]), { offset: "-1" });
  assert.throws(() => extraArgsToConfig(["7"]), /does not follow a --flag/);
});

Deno.test("engine config: model, served name, host, port, flags, extraArgs win", () => {
  assert.deepEqual(
    engineConfig({ modelName: "org/m", servedModelName: "m", maxModelLen: 4096, extraArgs: ["--max-model-len=8192"] }, {
      port: 8000,
    }),
    { model: "org/m", "served-model-name": "m", host: "0.0.0.0", port: 8000, "max-model-len": "8192" },
  );
});

Deno.test("models resolved from the registry carry their served name into the args", () => {
  const registry = new ModelRegistry({ a: { modelName: "org/a" } });
  assert.deepEqual(vllmArgs(registry.resolve("a")!), ["--served-model-name", "a"]);
});
