/**
 * `status` command: asks a running proxy (`--url`, GET /admin/status) for its
 * state and prints it for a person (or as JSON with `--json`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { ScalerStatus } from "../scaler/types.ts";

const USAGE = `Usage: vllm-chill status [--url URL] [--admin-token TOKEN] [--json]

Asks a running proxy for its state (GET <url>/admin/status).

Options:
  --url URL            proxy base URL (env VLLM_CHILL_URL, default http://127.0.0.1:8080)
  --admin-token TOKEN  Bearer token for /admin (env VLLM_CHILL_ADMIN_TOKEN)
  --json               print the raw JSON
  -h, --help           this help
`;

/**
 * Runs `status`; returns the process exit code (0 ok, 1 unreachable or refused, 2 usage).
 *
 * @example
 * ```ts ignore
 * import { runStatus } from "./status.ts";
 * Deno.exit(await runStatus(["--url", "http://127.0.0.1:8080"]));
 * ```
 */
export async function runStatus(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        url: { type: "string" },
        "admin-token": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`status: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const url = (values.url ?? Deno.env.get("VLLM_CHILL_URL") ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const token = values["admin-token"] ?? Deno.env.get("VLLM_CHILL_ADMIN_TOKEN");
  let response: Response;
  try {
    response = await fetch(`${url}/admin/status`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    console.error(`status: cannot reach ${url}: ${(error as Error).message}`);
    return 1;
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = JSON.parse(text).error?.message ?? text;
    } catch { /* not JSON */ }
    console.error(`status: ${url}/admin/status answered ${response.status}: ${message}`);
    return 1;
  }
  if (values.json) {
    console.log(text);
    return 0;
  }
  console.log(formatStatus(JSON.parse(text)));
  return 0;
}

/**
 * Formats an /admin/status body for a terminal.
 *
 * @example
 * ```ts
 * import { formatStatus } from "./status.ts";
 * formatStatus({ state: "idle", activeModel: null, held: {}, inflight: {} }).startsWith("state"); // true
 * ```
 */
export function formatStatus(status: Partial<ScalerStatus> & Record<string, unknown>): string {
  const counts = (record: Record<string, number> | undefined) =>
    Object.entries(record ?? {}).map(([m, n]) => `${m}=${n}`).join(", ") || "none";
  const lines = [
    `state         ${status.state ?? "unknown"}`,
    `active model  ${status.activeModel ?? "none"}${status.nextModel ? ` → switching to ${status.nextModel}` : ""}`,
    `held          ${counts(status.held)}`,
    `in flight     ${counts(status.inflight)}`,
    `last activity ${status.lastActivity ?? "never"}`,
  ];
  if (status.lastColdStartMs != null) lines.push(`last cold start ${(status.lastColdStartMs / 1000).toFixed(1)}s`);
  if (status.lastSwitchMs != null) lines.push(`last switch   ${(status.lastSwitchMs / 1000).toFixed(1)}s`);
  if (status.lastError) {
    lines.push(`last error    ${status.lastError.at} ${status.lastError.model ?? ""}: ${status.lastError.reason}`);
  }
  const backend = status.backend as Record<string, unknown> | undefined;
  if (backend && Object.keys(backend).length) {
    lines.push(`backend       ${Object.entries(backend).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")}`);
  }
  return lines.join("\n");
}
