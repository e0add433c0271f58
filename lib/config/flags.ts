/**
 * Command-line flags as one table: each flag names the config path it sets
 * and the `VLLM_CHILL_<FLAG>` environment variable that also sets it. The
 * `serve` command, config loading, `--help` and the README are all derived
 * from it.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** One command-line flag. */
export interface FlagSpec {
  /** Long name without dashes, e.g. "idle-timeout". */
  name: string;
  /** How parseArgs reads it. */
  type: "string" | "boolean";
  /** Config path it sets (absent for flags that are not config keys, e.g. --config). */
  path?: readonly string[];
  /** How the text value becomes a config value. */
  value?: "string" | "integer" | "boolean" | "keys";
  /** Placeholder in --help, e.g. "DURATION". */
  arg?: string;
  /** One-line help. */
  description: string;
  /** Only read from the environment (secrets must not appear in `ps`). */
  envOnly?: boolean;
  /** Never printed or logged. */
  secret?: boolean;
  /** One-letter alias. */
  short?: string;
}

/**
 * The environment variable that also sets a flag: `VLLM_CHILL_` + upper snake name.
 *
 * @example
 * ```ts
 * import { envName } from "./flags.ts";
 * envName("idle-timeout"); // "VLLM_CHILL_IDLE_TIMEOUT"
 * ```
 */
export function envName(flag: string): string {
  return `VLLM_CHILL_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/**
 * Flags of `serve` (DESIGN.md's contract); precedence flag > env > config file > default.
 *
 * @example
 * ```ts
 * import { SERVE_FLAGS } from "./flags.ts";
 * SERVE_FLAGS.find((f) => f.name === "target-host")?.path; // ["target", "service"]
 * ```
 */
export const SERVE_FLAGS: readonly FlagSpec[] = [
  { name: "config", type: "string", arg: "FILE", description: "config file (.ts/.js default export, .json, .yaml)" },
  { name: "port", type: "string", path: ["port"], value: "integer", arg: "PORT", description: "port to listen on" },
  { name: "host", type: "string", path: ["host"], arg: "ADDR", description: "address to listen on" },
  { name: "namespace", type: "string", path: ["namespace"], arg: "NS", description: "namespace of the vLLM objects" },
  { name: "deployment", type: "string", path: ["target", "deployment"], arg: "NAME", description: "vLLM Deployment" },
  { name: "configmap", type: "string", path: ["target", "configMap"], arg: "NAME", description: "vLLM ConfigMap" },
  {
    name: "target-host",
    type: "string",
    path: ["target", "service"],
    arg: "NAME",
    description: "vLLM Service (forwarded to at http://<target-host>:<target-port>)",
  },
  {
    name: "target-port",
    type: "string",
    path: ["target", "port"],
    value: "integer",
    arg: "PORT",
    description: "vLLM Service port",
  },
  {
    name: "target-url",
    type: "string",
    path: ["target", "url"],
    arg: "URL",
    description: "forward here instead (e.g. http://127.0.0.1:8000 via a port-forward)",
  },
  {
    name: "idle-timeout",
    type: "string",
    path: ["idleTimeout"],
    arg: "DURATION",
    description: "scale to zero after this long idle",
  },
  {
    name: "hold-timeout",
    type: "string",
    path: ["holdTimeout"],
    arg: "DURATION",
    description: "longest a request waits for a cold model",
  },
  {
    name: "start-timeout",
    type: "string",
    path: ["startTimeout"],
    arg: "DURATION",
    description: "longest a model may take to become ready",
  },
  {
    name: "drain-timeout",
    type: "string",
    path: ["drainTimeout"],
    arg: "DURATION",
    description: "longest in-flight requests may take before a stop",
  },
  {
    name: "enable-model-switch",
    type: "boolean",
    path: ["enableModelSwitch"],
    value: "boolean",
    description: "switch models by the request's model (--enable-model-switch=false accepted)",
  },
  {
    name: "backend",
    type: "string",
    path: ["backend"],
    arg: "KIND",
    description: "kubernetes | process",
  },
  {
    name: "kubeconfig",
    type: "string",
    path: ["kubeconfig"],
    arg: "FILE",
    description: "kubeconfig (else in-cluster, else ~/.kube/config)",
  },
  { name: "log-format", type: "string", path: ["logFormat"], arg: "FORMAT", description: "json | text" },
  {
    name: "admin-token",
    type: "string",
    path: ["adminToken"],
    arg: "TOKEN",
    secret: true,
    description: "bearer token for /admin/* (prefer the env variable)",
  },
  {
    name: "api-keys",
    type: "string",
    path: ["apiKeys"],
    value: "keys",
    envOnly: true,
    secret: true,
    description: 'API keys: comma-separated, or a JSON array like [{"key":"…","models":["a"]}]',
  },
];

/** Bad command-line usage: the CLI prints the usage and exits 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Values parsed from the command line, keyed by flag name. */
export type FlagValues = Record<string, string | boolean | undefined>;

/**
 * Parses `args` against a flag table (plus `--help`/`-h`). Unknown flags and
 * missing values throw a {@link UsageError}. A boolean flag also accepts
 * `--flag=true|false` and `--no-flag`.
 *
 * @example
 * ```ts
 * import { parseFlags, SERVE_FLAGS } from "./flags.ts";
 * const { values } = parseFlags(SERVE_FLAGS, ["--port", "9000", "--enable-model-switch=false"]);
 * values["port"]; // "9000"
 * values["enable-model-switch"]; // false
 * ```
 */
export function parseFlags(
  table: readonly FlagSpec[],
  args: readonly string[],
  options: { positionals?: boolean } = {},
): { values: FlagValues; positionals: string[] } {
  const booleans = new Set(table.filter((f) => f.type === "boolean").map((f) => f.name));
  const normalized = args.map((arg) => {
    const match = /^--([^=]+)=(.*)$/.exec(arg);
    if (!match || !booleans.has(match[1])) return arg;
    const value = match[2].toLowerCase();
    if (["true", "1", "yes"].includes(value)) return `--${match[1]}`;
    if (["false", "0", "no"].includes(value)) return `--no-${match[1]}`;
    throw new UsageError(`--${match[1]} takes true or false, got ${JSON.stringify(match[2])}`);
  });
  const spec: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const flag of table) {
    if (flag.envOnly) continue;
    spec[flag.name] = flag.short ? { type: flag.type, short: flag.short } : { type: flag.type };
  }
  try {
    const parsed = parseArgs(
      {
        args: normalized,
        options: spec,
        strict: true,
        allowPositionals: options.positionals ?? false,
        allowNegative: true,
      } as Parameters<typeof parseArgs>[0],
    );
    return { values: { ...parsed.values } as FlagValues, positionals: parsed.positionals };
  } catch (error) {
    throw new UsageError(cleanParseError(error));
  }
}

function cleanParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // node's messages add advice about "--" that does not apply here.
  return message.split(/\. To specify| To specify/)[0].replace(/\s+$/, "");
}

/**
 * Renders a flag table as `--help` lines.
 *
 * @example
 * ```ts
 * import { formatFlags, SERVE_FLAGS } from "./flags.ts";
 * formatFlags(SERVE_FLAGS).includes("--idle-timeout DURATION"); // true
 * ```
 */
export function formatFlags(table: readonly FlagSpec[]): string {
  const rows = table.map((flag) => {
    const left = flag.envOnly ? `(env only)` : `--${flag.name}${flag.arg ? ` ${flag.arg}` : ""}`;
    return [left, `${flag.description} [${envName(flag.name)}]`];
  });
  rows.push(["-h, --help", "show this help"]);
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join("\n");
}
