import assert from "node:assert/strict";
import fc from "fast-check";
import { parse } from "yaml";
import { ModelSpecSchema } from "../../lib/config/schema.ts";
import {
  engineConfig,
  engineConfigYaml,
  type EngineModel,
  extraArgsToConfig,
  findVllmFlag,
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
    assert.equal(def.unwrap()._zod.def.type === "boolean", kind === "boolean", field);
  }
});

// Changed from "booleans emit their flag only when true": vLLM v0.11.0 turns prefix caching on by default, so a
// false that emits nothing could not turn it off. Every bool is a BooleanOptionalAction (arg_utils.py:206-208).
Deno.test("booleans: true → --flag, false → --no-flag (CLI) and no-flag: true (config file), absent → nothing", () => {
  const model: EngineModel = {
    modelName: "org/m",
    enablePrefixCaching: false,
    trustRemoteCode: false,
    enableChunkedPrefill: true,
    disableCustomAllReduce: false,
    enableAutoToolChoice: false,
  };
  assert.deepEqual(vllmArgs(model), [
    "--enable-chunked-prefill",
    "--no-enable-prefix-caching",
    "--no-disable-custom-all-reduce",
    "--no-enable-auto-tool-choice",
    "--no-trust-remote-code",
  ]);
  const config = engineConfig(model, { port: 8000 });
  assert.equal(config["no-enable-prefix-caching"], true);
  assert.equal(config["enable-prefix-caching"], undefined, "a false key would be dropped by vLLM's reader");
  assert.equal(config["enable-chunked-prefill"], true);
  assert.deepEqual(vllmArgs({ modelName: "org/m" }), []);
  // What vLLM makes of the file is the CLI form.
  assert.deepEqual(vllmArgvFromConfigFile(engineConfigYaml(model, { port: 8000 })).slice(6), vllmArgs(model));
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

/**
 * What vLLM v0.11.0 puts on its command line for a `--config` file: PyYAML `safe_load` (YAML 1.1;
 * vllm/utils/__init__.py:2098), then per key: a true boolean → `--key`, a false one → nothing, a list →
 * `--key item…`, anything else → `--key str(value)` (vllm/utils/__init__.py:2110-2121).
 */
function vllmArgvFromConfigFile(text: string): string[] {
  const config = parse(text, { version: "1.1" }) as Record<string, unknown>;
  const argv: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === "boolean") {
      if (value) argv.push(`--${key}`);
    } else if (Array.isArray(value)) {
      if (value.length > 0) argv.push(`--${key}`, ...value.map(pythonStr));
    } else argv.push(`--${key}`, pythonStr(value));
  }
  return argv;
}

function pythonStr(value: unknown): string {
  if (value === null) return "None";
  if (typeof value === "string" || typeof value === "number") return String(value);
  return assert.fail(`vLLM would get ${JSON.stringify(value)} as ${typeof value}`);
}

/** The CLI form, as the config file must give it: model, served name, host, port, then the flags. */
function expectedArgv(model: EngineModel): string[] {
  const flags = vllmArgs({ ...model, servedModelName: undefined }).flatMap((arg) => {
    const eq = arg.indexOf("=");
    return arg.startsWith("--") && eq > 2 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg];
  });
  return [
    "--model",
    model.modelName,
    ...(model.servedModelName !== undefined ? ["--served-model-name", model.servedModelName] : []),
    "--host",
    "0.0.0.0",
    "--port",
    "8000",
    ...flags,
  ];
}

// Strings YAML 1.1 reads as something else when plain (booleans, null, numbers, sexagesimals, merge keys…).
const YAML11_TRAPS = [
  "on",
  "off",
  "On",
  "OFF",
  "yes",
  "no",
  "Yes",
  "NO",
  "y",
  "n",
  "Y",
  "N",
  "true",
  "False",
  "null",
  "Null",
  "~",
  "",
  "1",
  "0",
  "-1",
  "+1",
  "0.5",
  ".5",
  "1e3",
  "1.0e+3",
  "0x1F",
  "0o17",
  "017",
  "1_000",
  "12:30",
  "1:20:30",
  ".inf",
  "-.Inf",
  ".nan",
  "2001-12-14",
  "<<",
  "=",
  "-",
  "?",
  ":",
  "#c",
  "a #b",
  "a: b",
  "- x",
  "[x]",
  "{a: 1}",
  "*a",
  "&a",
  "!x",
  "!!str",
  "%x",
  "@x",
  "`x",
  "'q'",
  '"dq"',
  "back\\slash",
  " lead",
  "trail ",
  "tab\tin",
  "line\nbreak",
  "cr\r\nlf",
  "nel\u0085x",
  "ls\u2028x",
  "ps\u2029x",
  "bom\ufeffx",
  "del\u007fx",
  "nul\u0000x",
  "bell\u0007",
  "\u00e9t\u00e9",
  "\u{1f600}",
  "lone\ud83d",
  "--dashes",
  "-x",
];

Deno.test("config file: every string reaches vLLM exactly as written, YAML 1.1 traps included", () => {
  for (const text of YAML11_TRAPS) {
    const model: EngineModel = {
      modelName: text || "org/m",
      servedModelName: text || "served",
      chatTemplate: text || "t",
      reasoningParser: text || "qwen3",
      // A value starting with "--" is a flag on any command line, so extraArgs cannot hold one as a value.
      extraArgs: text.startsWith("--")
        ? []
        : ["--seed", text, "--list", text, "x", ...(/^[a-z]+$/i.test(text) ? [`--${text}`] : [])],
    };
    const yaml = engineConfigYaml(model, { port: 8000 });
    assert.match(yaml, /^[\x20-\x7e\n]*$/, "the file is printable ASCII whatever the pod's locale");
    assert.deepEqual(vllmArgvFromConfigFile(yaml), expectedArgv(model), JSON.stringify(text));
  }
});

Deno.test('config file: a served name `on` stays the string "on" (plain YAML 1.1 would make it a boolean)', () => {
  const yaml = engineConfigYaml({ modelName: "org/m", servedModelName: "on" }, { port: 8000 });
  assert.match(yaml, /^served-model-name: "on"$/m);
  assert.deepEqual(vllmArgvFromConfigFile(yaml).slice(2, 4), ["--served-model-name", "on"]);
  // What it was before: an unquoted `on` reaches vLLM as a bare --served-model-name (argparse exits).
  assert.deepEqual(vllmArgvFromConfigFile("served-model-name: on\n"), ["--served-model-name"]);
  assert.deepEqual(vllmArgvFromConfigFile("served-model-name: off\n"), [], "off is dropped: requests would 404");
});

Deno.test("config file: arbitrary strings and numbers round-trip through YAML 1.1 (property)", () => {
  const text = fc.oneof(fc.constantFrom(...YAML11_TRAPS), fc.string({ unit: "binary", maxLength: 24 }));
  const flagValue = text.filter((t) => !t.startsWith("--"));
  fc.assert(
    fc.property(
      text.filter((t) => t.length > 0),
      fc.option(text.filter((t) => t.length > 0), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 1 << 30 }), { nil: undefined }),
      fc.option(fc.double({ min: 0.1, max: 1, noNaN: true }), { nil: undefined }),
      fc.option(fc.boolean(), { nil: undefined }),
      fc.array(flagValue, { maxLength: 3 }),
      (modelName, servedModelName, maxModelLen, gpuMemoryUtilization, enablePrefixCaching, values) => {
        const model: EngineModel = {
          modelName,
          servedModelName,
          maxModelLen,
          gpuMemoryUtilization,
          enablePrefixCaching,
          extraArgs: values.length > 0 ? ["--extra", ...values] : [],
        };
        assert.deepEqual(vllmArgvFromConfigFile(engineConfigYaml(model, { port: 8000 })), expectedArgv(model));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("findVllmFlag reads a flag as vLLM's parser does: last wins, --no-, =, underscores", () => {
  assert.deepEqual(findVllmFlag(["--quantization", "awq"], "quantization"), { value: "awq", index: 0 });
  assert.deepEqual(findVllmFlag(["--kv_cache_dtype=fp8", "--kv-cache-dtype", "auto"], "kv-cache-dtype"), {
    value: "auto",
    index: 1,
  });
  assert.deepEqual(findVllmFlag(["--enable-auto-tool-choice", "--seed", "1"], "enable-auto-tool-choice"), {
    value: true,
    index: 0,
  });
  assert.deepEqual(findVllmFlag(["--x", "--no-enable-auto-tool-choice"], "enable-auto-tool-choice"), {
    value: false,
    index: 1,
  });
  assert.equal(findVllmFlag(["--tool-call-parser-x", "a"], "tool-call-parser"), undefined);
});

Deno.test("models resolved from the registry carry their served name into the args", () => {
  const registry = new ModelRegistry({ a: { modelName: "org/a" } });
  assert.deepEqual(vllmArgs(registry.resolve("a")!), ["--served-model-name", "a"]);
});
