/**
 * `deno task compile`: builds the vllm-chill binary for this machine with
 * `deno compile`.
 *
 * `deno compile` needs the `denort` runtime of the same Deno version. It
 * downloads it unless `DENORT_BIN` names a local copy; on a machine that
 * cannot reach the download server this script exits 1 with one line saying
 * so and how to set `DENORT_BIN`. `DENO_BIN` overrides the deno executable
 * used (default: the one running this script).
 *
 * ```sh
 * deno run -A scripts/compile.ts [--output dist/vllm-chill] [--target x86_64-unknown-linux-gnu] [--entry main.ts]
 * DENORT_BIN=/opt/denort deno run -A scripts/compile.ts
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

/** What to compile and where. */
export interface CompileOptions {
  /** Entry module (default "main.ts"). */
  entry?: string;
  /** Output path of the binary (default "dist/vllm-chill"). */
  output?: string;
  /** Rust target triple; absent = this machine. */
  target?: string;
}

/**
 * The `deno compile` arguments for `options`.
 *
 * @example
 * ```ts
 * import { buildCompileArgs } from "./compile.ts";
 * buildCompileArgs({ output: "out/vllm-chill" });
 * // ["compile", "-A", "--output", "out/vllm-chill", "main.ts"]
 * ```
 */
export function buildCompileArgs(options: CompileOptions = {}): string[] {
  const args = ["compile", "-A", "--output", options.output ?? "dist/vllm-chill"];
  if (options.target) args.push("--target", options.target);
  args.push(options.entry ?? "main.ts");
  return args;
}

/**
 * Turns a failed `deno compile`'s stderr into one clear line when the cause is
 * the runtime (denort) download or a bad `DENORT_BIN`; `null` for any other
 * failure (then the original output is the best explanation).
 *
 * @example
 * ```ts
 * import { explainCompileFailure } from "./compile.ts";
 * explainCompileFailure("error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x.zip)", undefined);
 * // "compile: deno could not download its runtime (denort) …"
 * ```
 */
export function explainCompileFailure(stderr: string, denortBin: string | undefined): string | null {
  // deno colours its errors; match on the plain text.
  // deno-lint-ignore no-control-regex
  const text = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  if (/Could not find denort/i.test(text)) {
    return `compile: DENORT_BIN=${
      denortBin ?? ""
    } is not a usable denort binary; point it at the denort executable of ` +
      `Deno ${Deno.version.deno} for this platform (unzipped from denort-<target>.zip)`;
  }
  if (/dl\.deno\.land|denort-|Setting up base binary|error sending request/i.test(text)) {
    return `compile: deno could not download its runtime (denort ${Deno.version.deno}) — this machine cannot reach ` +
      `dl.deno.land; copy denort-<target>.zip from a machine that can, unzip it and run again with ` +
      `DENORT_BIN=/path/to/denort deno task compile`;
  }
  return null;
}

/** Where {@link runCompile} writes and what it runs. */
export interface RunCompileIo {
  /** deno executable (default: DENO_BIN, else this process's deno). */
  denoBin?: string;
  /** Environment passed to deno compile (default: this process's, DENORT_BIN included). */
  env?: Record<string, string>;
  /** Receives each output line meant for the user. */
  print?: (line: string) => void;
}

/**
 * Runs `deno compile` and returns the exit code: 0 built, 1 failed (with one
 * explanatory line when the runtime download was the cause).
 *
 * @example
 * ```ts ignore
 * import { runCompile } from "./compile.ts";
 * const code = await runCompile({ output: "dist/vllm-chill" });
 * ```
 */
export async function runCompile(options: CompileOptions = {}, io: RunCompileIo = {}): Promise<number> {
  const env = io.env ?? Deno.env.toObject();
  const denoBin = io.denoBin ?? env.DENO_BIN ?? Deno.execPath();
  const print = io.print ?? ((line: string) => console.error(line));
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(denoBin, {
      args: buildCompileArgs(options),
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    print(`compile: cannot run ${denoBin}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
  const stderr = new TextDecoder().decode(output.stderr);
  if (output.success) {
    print(`compile: built ${options.output ?? "dist/vllm-chill"}`);
    return 0;
  }
  const explained = explainCompileFailure(stderr, env.DENORT_BIN);
  if (explained) print(explained);
  else print(stderr.trimEnd() || `compile: deno compile exited with code ${output.code}`);
  return 1;
}

if (import.meta.main) {
  let options: CompileOptions;
  try {
    options = parseArgs({
      args: Deno.args,
      options: { output: { type: "string" }, target: { type: "string" }, entry: { type: "string" } },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`compile: ${error instanceof Error ? error.message : String(error)}`);
    console.error("usage: deno task compile [--output dist/vllm-chill] [--target <triple>] [--entry main.ts]");
    Deno.exit(2);
  }
  Deno.exit(await runCompile(options));
}
