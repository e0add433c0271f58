/**
 * Writes the kustomize layout (`manifests/base`, `manifests/overlays/example`)
 * rendered from a config (default: examples/vllm-chill.config.ts). With
 * `--check`, writes nothing and exits 1 when a file on disk differs.
 *
 * ```sh
 * deno run -A scripts/render_kustomize.ts [--config examples/vllm-chill.config.ts] [--check]
 * ```
 *
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadConfig } from "../lib/config/load.ts";
import { renderKustomize } from "../lib/manifests/kustomize.ts";

/** The config the checked-in layout is rendered from, relative to the repository root. */
export const KUSTOMIZE_SOURCE = "examples/vllm-chill.config.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Renders the layout of the config at `source` (relative to the repository root).
 *
 * @example
 * ```ts ignore
 * import { renderRepoKustomize } from "./render_kustomize.ts";
 * const files = await renderRepoKustomize();
 * [...files.keys()].includes("manifests/base/kustomization.yaml"); // true
 * ```
 */
export async function renderRepoKustomize(source = KUSTOMIZE_SOURCE): Promise<Map<string, string>> {
  const config = await loadConfig({ file: join(ROOT, source), env: {} });
  return renderKustomize(config, { source });
}

/**
 * Paths (relative to the repository root) whose content on disk differs from `files`.
 *
 * @example
 * ```ts ignore
 * import { driftedFiles, renderRepoKustomize } from "./render_kustomize.ts";
 * await driftedFiles(await renderRepoKustomize()); // [] when up to date
 * ```
 */
export async function driftedFiles(files: Map<string, string>): Promise<string[]> {
  const drifted: string[] = [];
  for (const [path, text] of files) {
    const onDisk = await Deno.readTextFile(join(ROOT, path)).catch(() => null);
    if (onDisk !== text) drifted.push(path);
  }
  return drifted;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { config: { type: "string" }, check: { type: "boolean", default: false } },
  });
  const source = values.config ? relative(ROOT, resolve(values.config)) : KUSTOMIZE_SOURCE;
  const files = await renderRepoKustomize(source);
  if (values.check) {
    const drifted = await driftedFiles(files);
    for (const path of drifted) console.error(`out of date: ${path} (run deno task manifests)`);
    Deno.exit(drifted.length ? 1 : 0);
  }
  for (const [path, text] of files) {
    await Deno.mkdir(dirname(join(ROOT, path)), { recursive: true });
    await Deno.writeTextFile(join(ROOT, path), text);
  }
  console.log(`wrote ${files.size} files under manifests/ from ${source}`);
}
