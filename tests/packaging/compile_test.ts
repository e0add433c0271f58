import assert from "node:assert/strict";
import { buildCompileArgs, explainCompileFailure, runCompile } from "../../scripts/compile.ts";

const SCRIPT = new URL("../../scripts/compile.ts", import.meta.url).pathname;

const DOWNLOAD_FAILURE = [
  "Compile main.ts to dist/vllm-chill",
  "Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip",
  "error: Writing deno compile executable to temporary file 'dist/vllm-chill.tmp-1'",
  "",
  "Caused by:",
  "    0: Setting up base binary.",
  "    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip)",
].join("\n");

/** A fake deno that records its arguments and DENORT_BIN, then fails like an offline `deno compile`. */
async function fakeDeno(dir: string, stderr: string, code: number): Promise<string> {
  const errFile = `${dir}/stderr.txt`;
  await Deno.writeTextFile(errFile, stderr);
  const bin = `${dir}/fake-deno`;
  await Deno.writeTextFile(
    bin,
    `#!/bin/sh\nprintf '%s\\n' "$@" > "${dir}/args.txt"\nprintf '%s' "$DENORT_BIN" > "${dir}/denort.txt"\n` +
      `cat "${errFile}" >&2\nexit ${code}\n`,
  );
  await Deno.chmod(bin, 0o755);
  return bin;
}

async function runScript(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr), stdout: new TextDecoder().decode(out.stdout) };
}

Deno.test("buildCompileArgs: local target by default, --target and entry when given", () => {
  assert.deepEqual(buildCompileArgs(), ["compile", "-A", "--output", "dist/vllm-chill", "main.ts"]);
  assert.deepEqual(
    buildCompileArgs({ output: "o", target: "aarch64-unknown-linux-gnu", entry: "x.ts" }),
    ["compile", "-A", "--output", "o", "--target", "aarch64-unknown-linux-gnu", "x.ts"],
  );
});

Deno.test("explainCompileFailure: download failure, bad DENORT_BIN, anything else", () => {
  const download = explainCompileFailure(DOWNLOAD_FAILURE, undefined);
  assert.ok(download);
  assert.match(download, /could not download its runtime/);
  assert.match(download, /DENORT_BIN=/);
  assert.ok(!download.includes("\n"));
  const colored = explainCompileFailure("\x1b[31merror\x1b[0m: Could not find denort at '/x'", "/x");
  assert.match(colored ?? "", /DENORT_BIN=\/x is not a usable denort binary/);
  assert.equal(explainCompileFailure("error: TS2304 Cannot find name 'foo'", undefined), null);
});

Deno.test("deno task compile: offline download failure → exit 1 and exactly one line naming DENORT_BIN", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bin = await fakeDeno(dir, DOWNLOAD_FAILURE, 1);
    const result = await runScript(["--output", `${dir}/out`], { DENO_BIN: bin });
    assert.equal(result.code, 1);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /could not download its runtime.*DENORT_BIN=/);
    const args = (await Deno.readTextFile(`${dir}/args.txt`)).trimEnd().split("\n");
    assert.deepEqual(args, ["compile", "-A", "--output", `${dir}/out`, "main.ts"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runCompile: DENORT_BIN is passed through to deno compile; other failures keep deno's output", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bin = await fakeDeno(dir, "error: TS2304 [ERROR]: Cannot find name 'nope'.", 1);
    const lines: string[] = [];
    const code = await runCompile({ output: `${dir}/out` }, {
      denoBin: bin,
      env: { DENORT_BIN: "/opt/denort", PATH: Deno.env.get("PATH") ?? "" },
      print: (line) => lines.push(line),
    });
    assert.equal(code, 1);
    assert.equal(await Deno.readTextFile(`${dir}/denort.txt`), "/opt/denort");
    assert.deepEqual(lines, ["error: TS2304 [ERROR]: Cannot find name 'nope'."]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runCompile: success reports the output path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bin = await fakeDeno(dir, "Compile main.ts", 0);
    const lines: string[] = [];
    const code = await runCompile({ output: `${dir}/out` }, { denoBin: bin, env: {}, print: (l) => lines.push(l) });
    assert.equal(code, 0);
    assert.deepEqual(lines, [`compile: built ${dir}/out`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("real deno compile with a missing DENORT_BIN → exit 1 and one clear line (no download attempted)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/hello.ts`, 'console.log("hi");\n');
    const result = await runScript(["--entry", `${dir}/hello.ts`, "--output", `${dir}/hello`], {
      DENORT_BIN: `${dir}/no-such-denort`,
    });
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /DENORT_BIN=.*no-such-denort is not a usable denort binary/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unknown flag → exit 2 with usage", async () => {
  const result = await runScript(["--bogus"], {});
  assert.equal(result.code, 2);
  assert.match(result.stderr, /usage: deno task compile/);
});
