import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../lib/config/define.ts";
import { renderProxy } from "../../lib/manifests/mod.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string) => Deno.readTextFile(`${ROOT}${path}`);

/** Dockerfile instructions with continuation lines joined. */
function instructions(dockerfile: string): [string, string][] {
  return dockerfile.replace(/\\\n/g, " ").split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const [word, ...rest] = line.split(/\s+/);
      return [word.toUpperCase(), rest.join(" ")] as [string, string];
    });
}

Deno.test("Dockerfile: multi-stage deno compile onto a non-root distroless image", async () => {
  const steps = instructions(await read("Dockerfile"));
  const from = steps.filter(([word]) => word === "FROM").map(([, arg]) => arg);
  assert.equal(from.length, 2);
  assert.match(from[0], /^denoland\/deno:\$\{DENO_VERSION\} AS builder$/);
  assert.equal(from[1], "gcr.io/distroless/cc-debian12:nonroot");
  const version = steps.find(([word, arg]) => word === "ARG" && arg.startsWith("DENO_VERSION="))?.[1];
  assert.equal(version, `DENO_VERSION=${Deno.version.deno}`, "the builder uses the Deno version of the project");
  const runs = steps.filter(([word]) => word === "RUN").map(([, arg]) => arg).join("\n");
  assert.match(runs, /deno install --frozen/);
  assert.match(runs, /deno compile -A --frozen --output \/out\/vllm-chill main\.ts/);
  const final = steps.slice(steps.findIndex(([word, arg]) => word === "FROM" && arg === from[1]));
  const copies = final.filter(([word]) => word === "COPY").map(([, arg]) => arg);
  assert.deepEqual(copies, ["--from=builder /out/vllm-chill /vllm-chill"], "only the binary reaches the image");
  const get = (word: string) => final.find(([w]) => w === word)?.[1];
  assert.equal(get("USER"), "65532:65532");
  assert.equal(get("EXPOSE"), "8080");
  assert.deepEqual(JSON.parse(get("ENTRYPOINT")!), ["/vllm-chill"]);
  const proxy = renderProxy(parseConfig({}))[1].spec!.template.spec!.containers[0];
  assert.deepEqual(JSON.parse(get("CMD")!), proxy.args, "the image's default command is what the Deployment runs");
  assert.equal(proxy.securityContext?.readOnlyRootFilesystem, true);
});

Deno.test(".dockerignore keeps every module main.ts needs in the build context", async () => {
  const ignored = (await read(".dockerignore")).split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: { specifier: string }[] };
  const local = info.modules.map((m) => m.specifier).filter((s) => s.startsWith("file://"))
    .map((s) => fileURLToPath(s).slice(ROOT.length));
  assert.ok(local.includes("main.ts") && local.includes("deno.json"));
  const matches = (path: string, pattern: string) =>
    pattern.startsWith("*.") ? path.endsWith(pattern.slice(1)) && !path.includes("/") : path === pattern ||
      path.startsWith(`${pattern}/`);
  for (const path of [...local, "deno.lock"]) {
    const hit = ignored.find((pattern) => matches(path, pattern));
    assert.equal(hit, undefined, `${path} is excluded from the image build by .dockerignore (${hit})`);
  }
});
