/**
 * `validate [--config F] [vllmmodel.yaml …]`: checks a config and
 * VLLMModel YAML files; one OK line (exit 0) or every problem with the path
 * of the bad field (exit 1).
 *
 * @module
 */
import { parseAllDocuments } from "yaml";
import { envName, type FlagSpec, parseFlags } from "../config/flags.ts";
import { loadConfig } from "../config/load.ts";
import { validateVllmModelObject } from "../manifests/crd.ts";
import { type CliIo, processIo, reportConfigError } from "./io.ts";

/** Flags of `validate`. */
export const VALIDATE_FLAGS: readonly FlagSpec[] = [
  { name: "config", type: "string", arg: "FILE", description: "config file (.ts/.js, .json, .yaml)" },
];

/** `validate --help`. */
export const VALIDATE_USAGE = `Usage: vllm-chill validate [--config FILE] [vllmmodel.yaml ...]

Checks a config file (defaults only when none is given) and VLLMModel YAML
files (several documents per file allowed). Prints one OK line and exits 0,
or prints each problem with the path of the bad field and exits 1.

Flags:
  --config FILE   config file (.ts/.js default export, .json, .yaml) [${envName("config")}]
  -h, --help      show this help`;

/**
 * Checks the VLLMModel objects of one YAML file; returns their names and the problems found.
 *
 * @example
 * ```ts
 * import { checkVllmModelYaml } from "./validate.ts";
 * checkVllmModelYaml("m.yaml", "apiVersion: vllm.efortin.github.io/v1alpha1\nkind: VLLMModel\nmetadata: {name: a}\nspec: {modelName: org/a, maxModelLen: 0}\n").errors;
 * // ['m.yaml: VLLMModel "a": spec.maxModelLen: must be > 0']
 * ```
 */
export function checkVllmModelYaml(file: string, text: string): { names: string[]; errors: string[] } {
  const names: string[] = [];
  const errors: string[] = [];
  parseAllDocuments(text).forEach((doc, index) => {
    if ("errors" in doc && doc.errors.length > 0) {
      errors.push(`${file}: document ${index + 1}: ${doc.errors[0].message.split("\n")[0]}`);
      return;
    }
    const object = doc.toJS();
    if (object === null || object === undefined) return;
    const name = typeof object?.metadata?.name === "string" ? object.metadata.name : `document ${index + 1}`;
    const issues = validateVllmModelObject(object);
    for (const issue of issues) {
      errors.push(`${file}: VLLMModel "${name}": ${issue.path || "(root)"}: ${issue.message}`);
    }
    if (issues.length === 0) names.push(name);
  });
  return { names, errors };
}

/**
 * Runs `validate`. Returns 0 (valid), 1 (problems) or throws a UsageError (exit 2).
 *
 * @example
 * ```ts
 * import { runValidate } from "./validate.ts";
 * await runValidate([], { stdout() {}, stderr() {}, env: {} }); // 0
 * ```
 */
export async function runValidate(args: string[], io: CliIo = processIo()): Promise<number> {
  const { values, positionals } = parseFlags(VALIDATE_FLAGS, args, { positionals: true });
  if (values.help) {
    io.stdout(VALIDATE_USAGE);
    return 0;
  }
  const file = typeof values.config === "string" ? values.config : io.env[envName("config")] || undefined;
  let summary: string;
  try {
    const config = await loadConfig({ file, env: {} });
    const models = Object.keys(config.models);
    summary = `config ${file ?? "(defaults)"}: ${models.length} model${models.length === 1 ? "" : "s"}` +
      `${models.length ? ` (${models.join(", ")})` : ""}, backend ${config.backend}, ` +
      `model switching ${config.enableModelSwitch ? "on" : "off"}`;
  } catch (error) {
    return reportConfigError(error, io);
  }
  const names: string[] = [];
  const errors: string[] = [];
  for (const path of positionals) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      errors.push(`${path}: file not found or unreadable`);
      continue;
    }
    const result = checkVllmModelYaml(path, text);
    names.push(...result.names);
    errors.push(...result.errors);
  }
  if (errors.length > 0) {
    io.stderr(`error: invalid VLLMModel files:\n${errors.map((e) => `  - ${e}`).join("\n")}`);
    return 1;
  }
  if (positionals.length > 0) {
    summary += `; ${names.length} VLLMModel object${names.length === 1 ? "" : "s"} (${names.join(", ")})`;
  }
  io.stdout(`OK: ${summary}`);
  return 0;
}
