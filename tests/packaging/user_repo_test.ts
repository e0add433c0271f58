import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const REPO = join(ROOT, "examples/user-repo");

async function run(args: string[], cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** An import map with the repository's dependencies and the published specifiers pointed at this checkout. */
async function localImportMap(dir: string): Promise<string> {
  const rootJson = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const path = join(dir, "import_map.json");
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      imports: {
        ...rootJson.imports,
        "vllm-chill": new URL("mod.ts", `file://${ROOT}`).href,
        "vllm-chill/cli": new URL("main.ts", `file://${ROOT}`).href,
      },
    }),
  );
  return path;
}

/** The task's command line with the import-map override inserted after `deno run`. */
function taskArgs(task: string, importMap: string): string[] {
  const words = task.split(" ");
  assert.deepEqual(words.slice(0, 2), ["deno", "run"], task);
  const pipe = words.findIndex((w) => w === "|" || w === ">");
  return ["run", "--no-lock", "--import-map", importMap, ...words.slice(2, pipe < 0 ? undefined : pipe)];
}

Deno.test("user-repo: the local variant validates with the real CLI", async () => {
  const result = await run(
    ["run", "-A", "main.ts", "validate", "--config", `${REPO}/vllm-chill.local.config.ts`],
    ROOT,
  );
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^OK: .*3 models \(qwen3-8b, qwen-coder, bge-m3\)/m);
});

Deno.test("user-repo: `deno task validate` and `render` work with vllm-chill mapped to this checkout", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const importMap = await localImportMap(dir);
    const { tasks } = JSON.parse(await Deno.readTextFile(join(REPO, "deno.json")));
    const validate = await run(taskArgs(tasks.validate, importMap), REPO);
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, /^OK: config vllm-chill\.config\.ts: 3 models/m);
    const render = await run(taskArgs(tasks.render, importMap), REPO);
    assert.equal(render.code, 0, render.stderr);
    const kinds = render.stdout.split(/^---$/m).map((doc) => parse(doc)?.kind).filter(Boolean);
    assert.ok(kinds.includes("CustomResourceDefinition") && kinds.includes("Deployment"), kinds.join(","));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("user-repo: a bad value fails validation with its path (the CI check can fail)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = await Deno.readTextFile(join(REPO, "vllm-chill.local.config.ts"));
    const bad = text.replace('from "../../mod.ts"', `from "${new URL("mod.ts", `file://${ROOT}`).href}"`)
      .replace("gpuMemoryUtilization: 0.9,", "gpuMemoryUtilization: 1.5,");
    assert.notEqual(bad, text);
    await Deno.writeTextFile(join(dir, "bad.config.ts"), bad);
    const result = await run(["run", "-A", "main.ts", "validate", "--config", join(dir, "bad.config.ts")], ROOT);
    assert.equal(result.code, 1);
    assert.match(result.stderr + result.stdout, /gpuMemoryUtilization/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("user-repo: the two config files differ only by the library specifier", async () => {
  const published = await Deno.readTextFile(join(REPO, "vllm-chill.config.ts"));
  const local = await Deno.readTextFile(join(REPO, "vllm-chill.local.config.ts"));
  assert.match(published, /^import \{ defineVllmChill \} from "vllm-chill";$/m);
  assert.match(local, /^import \{ defineVllmChill \} from "\.\.\/\.\.\/mod\.ts";$/m);
  const body = (text: string) => text.slice(text.indexOf("export default"));
  assert.equal(body(local), body(published));
});

Deno.test("user-repo: deno.json maps the published name; tasks and CI are complete", async () => {
  const json = JSON.parse(await Deno.readTextFile(join(REPO, "deno.json")));
  const rootName = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).name;
  assert.match(json.imports["vllm-chill"], new RegExp(`^jsr:${rootName}@\\^\\d+\\.\\d+$`));
  assert.equal(json.imports["vllm-chill/cli"], `${json.imports["vllm-chill"]}/cli`);
  for (const task of ["validate", "render", "apply"]) assert.equal(typeof json.tasks[task], "string", task);
  assert.match(json.tasks.apply, /\| kubectl apply -f -$/);
  const workflow = parse(await Deno.readTextFile(join(REPO, ".github/workflows/validate.yml")));
  const steps: { run?: string }[] = workflow.jobs.validate.steps;
  assert.ok(steps.some((s) => s.run === "deno task validate"));
});
