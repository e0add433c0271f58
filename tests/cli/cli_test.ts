import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import type { CliIo } from "../../lib/cli/io.ts";
import { VERSION } from "../../lib/cli/version.ts";
import { main } from "../../main.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const EXAMPLE = `${ROOT}examples/vllm-chill.config.ts`;

async function run(args: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (t) => out.push(t), stderr: (t) => err.push(t), env };
  const code = await main(args, io);
  return { code, stdout: out.join("\n"), stderr: err.join("\n") };
}

async function tempFile(
  name: string,
  content: string,
): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-cli-" });
  await Deno.writeTextFile(`${dir}/${name}`, content);
  return { path: `${dir}/${name}`, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("no command, unknown command and unknown flags print the usage and exit 2", async () => {
  const none = await run([]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Usage: vllm-chill <command>/);
  const unknown = await run(["deploy"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "deploy"[\s\S]*Usage:/);
  for (const args of [["manifests", "--bogus"], ["validate", "--onl", "x"], ["version", "extra"]]) {
    const result = await run(args);
    assert.equal(result.code, 2, args.join(" "));
    assert.match(result.stderr, /^error: .*\n\nUsage: vllm-chill/);
    assert.equal(result.stdout, "");
  }
  const badPart = await run(["manifests", "--only", "crd,pods"]);
  assert.equal(badPart.code, 2);
  assert.match(badPart.stderr, /unknown part "pods"/);
});

Deno.test("--help on each command and at top level exits 0", async () => {
  for (const args of [["--help"], ["-h"], ["manifests", "--help"], ["validate", "-h"], ["version", "--help"]]) {
    const result = await run(args);
    assert.equal(result.code, 0, args.join(" "));
    assert.match(result.stdout, /^Usage: vllm-chill/);
  }
  const serve = await run(["serve", "--help"]);
  assert.equal(serve.code, 0);
  for (const flag of ["--config", "--port", "--namespace", "--deployment", "--configmap", "--target-host"]) {
    assert.ok(serve.stdout.includes(flag), flag);
  }
  for (const flag of ["--target-port", "--target-url", "--idle-timeout", "--enable-model-switch", "--backend"]) {
    assert.ok(serve.stdout.includes(flag), flag);
  }
  assert.ok(serve.stdout.includes("--kubeconfig") && serve.stdout.includes("--log-format"));
  assert.ok(serve.stdout.includes("VLLM_CHILL_IDLE_TIMEOUT"));
});

Deno.test("version prints deno.json's version", async () => {
  const result = await run(["version"]);
  assert.equal(result.code, 0);
  assert.match(result.stdout, new RegExp(`^vllm-chill ${VERSION.replaceAll(".", "\\.")} \\(deno `));
});

Deno.test("manifests prints multi-document YAML, --only and --config honoured", async () => {
  const all = await run(["manifests", "--config", EXAMPLE]);
  assert.equal(all.code, 0, all.stderr);
  const docs = parseAllDocuments(all.stdout).map((d) => d.toJS());
  assert.equal(docs.length, 10);
  assert.ok(docs.some((d) => d.kind === "ConfigMap" && d.data?.VLLM_CHILL_MODEL === "qwen3-8b"));
  const crdOnly = await run(["manifests", "--only", "crd"]);
  assert.deepEqual(parseAllDocuments(crdOnly.stdout).map((d) => d.toJS().kind), ["CustomResourceDefinition"]);
  const fromEnv = await run(["manifests", "--only", "vllm"], { VLLM_CHILL_CONFIG: EXAMPLE });
  assert.match(fromEnv.stdout, /qwen3-8b/);
});

Deno.test("manifests warns that secrets are not rendered", async () => {
  await using file = await tempFile("c.json", JSON.stringify({ adminToken: "admin-secret-1" }));
  const result = await run(["manifests", "--config", file.path, "--only", "proxy"]);
  assert.equal(result.code, 0);
  assert.match(result.stderr, /vllm-chill-secrets/);
  assert.equal(result.stdout.includes("admin-secret-1"), false);
});

Deno.test("validate: OK summary, exit 0", async () => {
  const result = await run(["validate", "--config", EXAMPLE]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^OK: config .*: 3 models \(qwen3-8b, qwen3-coder, bge-m3\)/);
  assert.equal(result.stdout.split("\n").length, 1);
  await using models = await tempFile(
    "models.yaml",
    [
      "apiVersion: vllm.efortin.github.io/v1alpha1\nkind: VLLMModel\nmetadata: {name: a}\nspec: {modelName: org/a}",
      "apiVersion: vllm.efortin.github.io/v1alpha1\nkind: VLLMModel\nmetadata: {name: b}\nspec: {modelName: org/b}",
    ].join("\n---\n"),
  );
  const withModels = await run(["validate", "--config", EXAMPLE, models.path]);
  assert.equal(withModels.code, 0, withModels.stderr);
  assert.match(withModels.stdout, /2 VLLMModel objects \(a, b\)$/);
});

Deno.test("validate: errors show paths, exit 1", async () => {
  await using config = await tempFile(
    "bad.json",
    JSON.stringify({ idleTimeout: "later", models: { q: { modelName: "x", gpuMemoryUtilization: 1.5 } } }),
  );
  const bad = await run(["validate", "--config", config.path]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /idleTimeout: expected a duration/);
  assert.match(bad.stderr, /models\.q\.gpuMemoryUtilization: must be ≤ 1/);
  await using model = await tempFile(
    "m.yaml",
    "apiVersion: vllm.efortin.github.io/v1alpha1\nkind: VLLMModel\nmetadata: {name: q}\nspec: {modelName: x, gpuMemoryUtilization: 1.5, tensorParallelSize: two, color: red}\n",
  );
  const badModel = await run(["validate", model.path]);
  assert.equal(badModel.code, 1);
  assert.match(badModel.stderr, /m\.yaml: VLLMModel "q": spec\.gpuMemoryUtilization: must be ≤ 1/);
  assert.match(badModel.stderr, /spec\.tensorParallelSize: expected number, got a string/);
  assert.match(badModel.stderr, /VLLMModel "q": spec: unknown field "color"/);
  const missing = await run(["validate", "/nonexistent/m.yaml"]);
  assert.equal(missing.code, 1);
});

Deno.test("bad config files (missing, no export, syntax error) exit 1 with one line", async () => {
  await using noExport = await tempFile("n.ts", "export const notDefault = {};\n");
  await using syntax = await tempFile("s.ts", "export default {{ port: \n");
  for (
    const [file, pattern] of [
      ["/nonexistent/vllm-chill.config.ts", /not found/],
      [noExport.path, /no default export/],
      [syntax.path, /cannot load config file/],
    ] as const
  ) {
    for (const command of ["validate", "manifests"]) {
      const result = await run([command, "--config", file]);
      assert.equal(result.code, 1, `${command} ${file}`);
      assert.equal(result.stderr.split("\n").length, 1, result.stderr);
      assert.match(result.stderr, pattern);
    }
  }
});

Deno.test("the real CLI process: exit codes and streams", async () => {
  const exec = async (args: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}main.ts`, ...args],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    return {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
    };
  };
  const [unknownFlag, crd] = await Promise.all([exec(["manifests", "--nope"]), exec(["manifests", "--only", "crd"])]);
  assert.equal(unknownFlag.code, 2);
  assert.match(unknownFlag.stderr, /Unknown option '--nope'[\s\S]*Usage: vllm-chill manifests/);
  assert.equal(crd.code, 0);
  assert.match(crd.stdout, /^---\napiVersion: apiextensions\.k8s\.io\/v1\nkind: CustomResourceDefinition/);
});

Deno.test("validate: values vLLM v0.11.0 would exit on are shown with their path, config and VLLMModel files alike", async () => {
  await using config = await tempFile(
    "c.yaml",
    "models:\n  a:\n    modelName: org/a\n    kvCacheDtype: fp4\n    enableAutoToolChoice: true\n" +
      "  b:\n    modelName: org/b\n    kvCacheDtype: fp4\n    allowUnknownVllmValues: true\n",
  );
  const bad = await run(["validate", "--config", config.path]);
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /models\.a\.kvCacheDtype: "fp4" is not a KV cache dtype of vLLM v0\.11\.0: must be one of "auto", /,
  );
  assert.match(bad.stderr, /models\.a\.enableAutoToolChoice: needs toolCallParser/);
  assert.doesNotMatch(bad.stderr, /models\.b/);
  await using model = await tempFile(
    "m.yaml",
    "apiVersion: vllm.efortin.github.io/v1alpha1\nkind: VLLMModel\nmetadata: {name: q}\n" +
      "spec: {modelName: x, quantization: awq4, extraArgs: [--tool-call-parser, hermez]}\n",
  );
  const badModel = await run(["validate", model.path]);
  assert.equal(badModel.code, 1);
  assert.match(
    badModel.stderr,
    /VLLMModel "q": spec\.quantization: "awq4" is not a quantization method of vLLM v0\.11\.0/,
  );
  assert.match(badModel.stderr, /VLLMModel "q": spec\.extraArgs\[0\]: "hermez" is not a tool call parser/);
});
