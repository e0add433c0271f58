/**
 * Helpers of the process backend's tests: a backend on a config, launches,
 * engine commands (the fake vLLM, or the sleep-mode engine that journals
 * what it saw), processes found through /proc by a per-test marker, and
 * bounded waits.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createProcessBackend } from "../../lib/backend/process.ts";
import type { Backend, EngineLaunch } from "../../lib/backend/types.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfig, ChillConfigInput, ModelSpecInput, NamedModel } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log.ts";
import { fakeVllmCommand } from "../support/fake_vllm_command.ts";

export { FAKE_VLLM } from "../support/fake_vllm_command.ts";
import { liveProcesses } from "../support/processes.ts";
import { waitUntil } from "../support/wait.ts";

export { liveProcesses, newMarker } from "../support/processes.ts";
export { waitUntil, within } from "../support/wait.ts";

/**
 * The deno binary running the tests (engines are started with it).
 *
 * @example
 * ```ts
 * import { DENO } from "./process_helpers.ts";
 * DENO.length > 0; // true
 * ```
 */
export const DENO: string = Deno.execPath();

/**
 * Absolute path of the sleep-mode test engine.
 *
 * @example
 * ```ts
 * import { SLEEP_ENGINE } from "./process_helpers.ts";
 * SLEEP_ENGINE.endsWith("sleep_engine.ts"); // true
 * ```
 */
export const SLEEP_ENGINE: string = new URL("../support/sleep_engine.ts", import.meta.url).pathname;

/**
 * The fake vLLM as a model `command`, tagged with `marker` (found later in /proc).
 *
 * @example
 * ```ts
 * import { fakeCommand } from "./process_helpers.ts";
 * fakeCommand("m").includes("{port}"); // true
 * ```
 */
export function fakeCommand(marker: string, ...extra: string[]): string[] {
  return [...fakeVllmCommand({ model: "{served}", marker, loadMs: 200 }), ...extra];
}

/**
 * The sleep-mode engine as a model `command`: journals to `journal`, gets the
 * vLLM engine arguments through `{args}`, tagged with `marker`.
 *
 * @example
 * ```ts
 * import { sleepEngineCommand } from "./process_helpers.ts";
 * sleepEngineCommand("m", "/tmp/j").includes("{args}"); // true
 * ```
 */
export function sleepEngineCommand(marker: string, journal: string, ...extra: string[]): string[] {
  return [
    DENO,
    "run",
    "-A",
    SLEEP_ENGINE,
    "--journal",
    journal,
    "--port",
    "{port}",
    "--tag",
    marker,
    ...extra,
    "{args}",
  ];
}

/** A backend under test with its config, captured log lines and launches. */
export interface TestBackend {
  config: ChillConfig;
  backend: Backend;
  /** Every log line, parsed. */
  lines: Record<string, unknown>[];
  /** The launch of model `key` on `gpus` (default ["0"]), with sleep mode when the model may sleep. */
  launch(key: string, gpus?: string[]): EngineLaunch;
}

/**
 * A process backend on a config of `models` (and more settings).
 *
 * @example
 * ```ts ignore
 * import { setup } from "./process_helpers.ts";
 * const { backend, launch } = setup({ a: { modelName: "org/a", command: ["…"] } });
 * ```
 */
export function setup(models: Record<string, ModelSpecInput>, more: Partial<ChillConfigInput> = {}): TestBackend {
  // Port 0 unless a test names one (with its own stateDir): nothing is recorded in the user's default state dir.
  const config = parseConfig({ backend: "process", port: 0, models, ...more });
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ format: "json", level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  const backend = createProcessBackend({ config, log });
  const launch = (key: string, gpus = ["0"]): EngineLaunch => {
    const spec = config.models[key];
    const model: NamedModel = { ...spec, name: key, servedModelName: spec.servedModelName ?? key, source: "config" };
    return { key, model, gpus, sleepMode: (spec.sleepAfter ?? config.sleepAfter) !== undefined };
  };
  return { config, backend, lines, launch };
}

/**
 * Wait options: a deadline `ms` from now and a signal.
 *
 * @example
 * ```ts
 * import { opts } from "./process_helpers.ts";
 * opts(1000).deadline > Date.now(); // true
 * ```
 */
export function opts(ms = 20_000, signal = new AbortController().signal): { signal: AbortSignal; deadline: number } {
  return { signal, deadline: Date.now() + ms };
}

/**
 * A signal that never aborts.
 *
 * @example
 * ```ts
 * import { never } from "./process_helpers.ts";
 * never().aborted; // false
 * ```
 */
export function never(): AbortSignal {
  return new AbortController().signal;
}

/** Per-engine details of describe(). */
export interface EngineDetails {
  model: string;
  pid: number;
  port: number;
  upstream: string;
  gpus: string[];
  phase: string;
  sleepLevel?: number;
  sleepMode: boolean;
  adopted: boolean;
  command: string[];
  output: string[];
  reason?: string;
  lastError?: { message: string; call?: string; status?: number; answer?: string };
}

/** An exit as describe() tells it. */
export interface ExitDetails {
  model: string;
  pid: number;
  code: number | null;
  signal: string | null;
  reason: string;
  output: string[];
}

/**
 * describe()'s details of engine `key`, or undefined.
 *
 * @example
 * ```ts ignore
 * import { details } from "./process_helpers.ts";
 * details(backend, "a")?.pid;
 * ```
 */
export function details(backend: Backend, key: string): EngineDetails | undefined {
  return (backend.describe().engines as Record<string, EngineDetails>)[key];
}

/**
 * describe()'s last exit of engine `key`, or undefined.
 *
 * @example
 * ```ts ignore
 * import { lastExit } from "./process_helpers.ts";
 * lastExit(backend, "a")?.code;
 * ```
 */
export function lastExit(backend: Backend, key: string): ExitDetails | undefined {
  return (backend.describe().lastExit as Record<string, ExitDetails>)[key];
}

/**
 * The pid of engine `key` (fails the test when there is none).
 *
 * @example
 * ```ts ignore
 * import { pidOf } from "./process_helpers.ts";
 * pidOf(backend, "a");
 * ```
 */
export function pidOf(backend: Backend, key: string): number {
  const pid = details(backend, key)?.pid;
  assert.equal(typeof pid, "number", `engine ${key} has a pid`);
  return pid as number;
}

/**
 * Phases by key, as observe() reports them.
 *
 * @example
 * ```ts ignore
 * import { phases } from "./process_helpers.ts";
 * await phases(backend); // { a: "ready" }
 * ```
 */
export async function phases(backend: Backend): Promise<Record<string, string>> {
  const { engines } = await backend.observe(never());
  return Object.fromEntries(engines.map((e) => [String(e.key), e.phase]));
}

/**
 * Live processes whose command line contains `marker`.
 *
 * @example
 * ```ts
 * import { processesWith } from "./process_helpers.ts";
 * processesWith("marker-none").length; // 0
 * ```
 */
export function processesWith(marker: string): { pid: number; pgid: number; cmdline: string }[] {
  return liveProcesses().filter((p) => p.cmdline.includes(marker) && p.pid !== Deno.pid);
}

/**
 * True while process `pid` lives (not a zombie); with a negative id: while any member of group `-pid` lives.
 *
 * @example
 * ```ts
 * import { alive } from "./process_helpers.ts";
 * alive(Deno.pid); // true
 * ```
 */
export function alive(pid: number): boolean {
  return liveProcesses().some((p) => pid > 0 ? p.pid === pid : p.pgid === -pid);
}

/**
 * Kills (SIGKILL, whole group) every process still carrying `marker`, then
 * fails the test if any had survived: no test may leave one behind.
 *
 * @example
 * ```ts ignore
 * import { assertNoOrphans } from "./process_helpers.ts";
 * await assertNoOrphans("marker-x");
 * ```
 */
export async function assertNoOrphans(marker: string, timeoutMs = 3000): Promise<void> {
  const left = await waitUntil(
    () => {
      const found = processesWith(marker);
      return found.length === 0 ? [] as typeof found : null;
    },
    timeoutMs,
    "no engine left",
  ).catch(() => processesWith(marker));
  for (const proc of left) {
    try {
      Deno.kill(-proc.pgid, "SIGKILL");
    } catch {
      try {
        Deno.kill(proc.pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
  assert.deepEqual(left.map((p) => p.cmdline), [], "engine processes survived");
}

/**
 * A temporary file path (the file does not exist yet), removed by the caller.
 *
 * @example
 * ```ts ignore
 * import { tempPath } from "./process_helpers.ts";
 * const journal = await tempPath("journal");
 * ```
 */
export async function tempPath(prefix: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: `vllm-chill-${prefix}-` });
  await Deno.remove(path);
  return path;
}
