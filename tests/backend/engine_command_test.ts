import assert from "node:assert/strict";
import { buildCommand, engineArgs, engineEnv } from "../../lib/backend/engine_command.ts";
import type { NamedModel } from "../../lib/config/schema.ts";

const base: NamedModel = { modelName: "org/a", name: "a", servedModelName: "srv", source: "config" };
const listen = { host: "127.0.0.1", port: 8123 };

Deno.test("engine command: {port}, {model}, {served} are filled in anywhere in an element", () => {
  const model = {
    ...base,
    command: ["engine", "--port={port}", "--model", "{served}", "--path", "/m/{model}", "{port}"],
  };
  assert.deepEqual(buildCommand(model, { ...listen, sleepMode: false }), [
    "engine",
    "--port=8123",
    "--model",
    "srv",
    "--path",
    "/m/org/a",
    "8123",
  ]);
});

Deno.test("engine command: {args} expands to exactly the vLLM engine arguments, share and sleep mode included", () => {
  const model: NamedModel = {
    ...base,
    maxModelLen: 4096,
    enablePrefixCaching: true,
    extraArgs: ["--seed", "7"],
    command: ["wrap", "--listen", "{port}", "{args}", "--after"],
  };
  const args = [
    "--served-model-name",
    "srv",
    "--max-model-len",
    "4096",
    "--gpu-memory-utilization",
    "0.9",
    "--enable-prefix-caching",
    "--seed",
    "7",
    "--enable-sleep-mode",
  ];
  assert.deepEqual(engineArgs(model, true), args);
  assert.deepEqual(buildCommand(model, { ...listen, sleepMode: true }), [
    "wrap",
    "--listen",
    "8123",
    ...args,
    "--after",
  ]);
  // The default command gets the very same list after `--port`.
  assert.deepEqual(buildCommand({ ...model, command: undefined }, { ...listen, sleepMode: true }), [
    "vllm",
    "serve",
    "org/a",
    "--host",
    "127.0.0.1",
    "--port",
    "8123",
    ...args,
  ]);
  // Without sleep mode: no --enable-sleep-mode.
  assert.deepEqual(engineArgs(model, false), args.slice(0, -1));
});

Deno.test("engine command: a model's own gpuMemoryUtilization is its share, given once", () => {
  const args = engineArgs({ ...base, gpuMemoryUtilization: 0.45 }, false);
  assert.deepEqual(args, ["--served-model-name", "srv", "--gpu-memory-utilization", "0.45"]);
  // extraArgs still win (they come last, and argparse keeps the last value); --enable-sleep-mode is not repeated.
  const extra = engineArgs({ ...base, extraArgs: ["--gpu-memory-utilization", "0.3", "--enable-sleep-mode"] }, true);
  assert.deepEqual(extra, [
    "--served-model-name",
    "srv",
    "--gpu-memory-utilization",
    "0.9",
    "--gpu-memory-utilization",
    "0.3",
    "--enable-sleep-mode",
  ]);
});

Deno.test("engine command: {args} counts only as a whole element", () => {
  const model = { ...base, command: ["wrap", "x{args}", "{args}"] };
  assert.deepEqual(buildCommand(model, { ...listen, sleepMode: false }), [
    "wrap",
    "x{args}",
    "--served-model-name",
    "srv",
    "--gpu-memory-utilization",
    "0.9",
  ]);
});

Deno.test("engine env: vllm.env < model env < CUDA_VISIBLE_DEVICES and VLLM_SERVER_DEV_MODE", () => {
  assert.deepEqual(
    engineEnv(
      { A: "vllm", B: "vllm", CUDA_VISIBLE_DEVICES: "9" },
      { B: "model", VLLM_SERVER_DEV_MODE: "0" },
      { gpus: ["2", "3"], sleepMode: true },
    ),
    { A: "vllm", B: "model", CUDA_VISIBLE_DEVICES: "2,3", VLLM_SERVER_DEV_MODE: "1" },
  );
  // A CPU model sees no GPU; without sleep mode the dev mode is left as configured.
  assert.deepEqual(engineEnv(undefined, { VLLM_SERVER_DEV_MODE: "0" }, { gpus: [], sleepMode: false }), {
    VLLM_SERVER_DEV_MODE: "0",
    CUDA_VISIBLE_DEVICES: "",
  });
});
