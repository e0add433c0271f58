/**
 * `manifests [--config F] [--only crd,rbac,vllm,proxy]`: prints the
 * Kubernetes objects as multi-document YAML for `kubectl apply -f -`.
 *
 * @module
 */
import { envName, type FlagSpec, parseFlags, UsageError } from "../config/flags.ts";
import { loadConfig } from "../config/load.ts";
import { PROXY_SECRET } from "../manifests/labels.ts";
import { MANIFEST_PARTS, type ManifestPart, renderManifests, toYaml } from "../manifests/render.ts";
import { type CliIo, processIo, reportConfigError } from "./io.ts";

/** Flags of `manifests`. */
export const MANIFESTS_FLAGS: readonly FlagSpec[] = [
  { name: "config", type: "string", arg: "FILE", description: "config file (.ts/.js, .json, .yaml)" },
  { name: "only", type: "string", arg: "PARTS", description: `comma-separated subset of ${MANIFEST_PARTS.join(",")}` },
];

/** `manifests --help`. */
export const MANIFESTS_USAGE = `Usage: vllm-chill manifests [--config FILE] [--only crd,rbac,vllm,proxy]

Prints the VLLMModel CRD, the proxy's RBAC, the vLLM ConfigMap/Service/Deployment
and the proxy's ConfigMap/Deployment/Service as YAML for 'kubectl apply -f -'.
apiKeys and adminToken are never printed: put them in the Secret ${PROXY_SECRET}
(keys api-keys, admin-token).

Flags:
  --config FILE   config file (.ts/.js default export, .json, .yaml) [${envName("config")}]
  --only PARTS    comma-separated subset of ${MANIFEST_PARTS.join(",")}
  -h, --help      show this help`;

/**
 * Parses `--only crd,rbac`; throws a UsageError naming an unknown part.
 *
 * @example
 * ```ts
 * import { parseOnly } from "./manifests.ts";
 * parseOnly("crd, rbac"); // ["crd", "rbac"]
 * ```
 */
export function parseOnly(text: string): ManifestPart[] {
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  for (const part of parts) {
    if (!(MANIFEST_PARTS as readonly string[]).includes(part)) {
      throw new UsageError(`--only: unknown part "${part}" (allowed: ${MANIFEST_PARTS.join(", ")})`);
    }
  }
  return parts as ManifestPart[];
}

/**
 * Runs `manifests`. Returns 0, 1 (bad config) or throws a UsageError (exit 2).
 *
 * @example
 * ```ts
 * import { runManifests } from "./manifests.ts";
 * let yaml = "";
 * await runManifests(["--only", "crd"], { stdout: (t) => yaml += t, stderr() {}, env: {} }); // 0
 * ```
 */
export async function runManifests(args: string[], io: CliIo = processIo()): Promise<number> {
  const { values } = parseFlags(MANIFESTS_FLAGS, args);
  if (values.help) {
    io.stdout(MANIFESTS_USAGE);
    return 0;
  }
  const only = typeof values.only === "string" ? parseOnly(values.only) : undefined;
  const file = typeof values.config === "string" ? values.config : io.env[envName("config")] || undefined;
  let config;
  try {
    config = await loadConfig({ file, env: {} });
  } catch (error) {
    return reportConfigError(error, io);
  }
  if (config.apiKeys.length > 0 || config.adminToken !== undefined) {
    io.stderr(
      `note: apiKeys/adminToken are not rendered; store them in Secret ${PROXY_SECRET} (keys api-keys, admin-token)`,
    );
  }
  io.stdout(toYaml(renderManifests(config, { only })).trimEnd());
  return 0;
}
