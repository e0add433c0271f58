/**
 * The fake vLLM (fake_vllm.ts) as a model `command`: its CLI flags from
 * named options, the `{port}`, `{served}` and `{args}` placeholders where the
 * backend fills them in. Used by the tests, the bench and the screenshot
 * script, so each engine they run is spelled the same way.
 *
 * @module
 */

/**
 * Absolute path of the fake vLLM CLI.
 *
 * @example
 * ```ts
 * import { FAKE_VLLM } from "./fake_vllm_command.ts";
 * FAKE_VLLM.endsWith("fake_vllm.ts"); // true
 * ```
 */
export const FAKE_VLLM: string = new URL("./fake_vllm.ts", import.meta.url).pathname;

/**
 * Flags of the fake vLLM; each one left out is not passed (the fake's own default applies).
 *
 * @example
 * ```ts
 * import type { FakeVllmFlags } from "./fake_vllm_command.ts";
 * const flags: FakeVllmFlags = { model: "{served}", loadMs: 200, tokensPerSec: 20 };
 * ```
 */
export interface FakeVllmFlags {
  /** The fake's script as the command names it (default: its absolute path). */
  script?: string;
  /** Replaces the `--port {port}` pair (e.g. a fixed port, or none at all). */
  portArgs?: string[];
  /** `--model`: the name it serves (usually `{served}`). */
  model?: string;
  /** `--model-name`: a marker found later in the process list. */
  marker?: string;
  /** Milliseconds before /health answers 200. */
  loadMs?: number;
  /** Generation speed (the fake's default 0: every token at once). */
  tokensPerSec?: number;
  /** Crash after this many SSE chunks of a stream. */
  crashAfterChunks?: number;
  /** "exit" (the process dies) or "reset" (the connection is reset). */
  crashMode?: "exit" | "reset";
  /** Exit on its own after this many milliseconds. */
  exitAfterMs?: number;
  /** Delay between SIGTERM and the exit. */
  stopDelayMs?: number;
  /** Ignore SIGTERM (the backend must SIGKILL it). */
  ignoreSigterm?: boolean;
  /** Sleep and wake durations of the fake (ms). */
  sleepMs?: number;
  wakeMs?: number;
  /** `/wake_up` answers 500 like a CUDA out-of-memory. */
  failWake?: boolean;
  /**
   * Append `{args}`: the engine receives vLLM's own arguments (`--gpu-memory-utilization`, and
   * `--enable-sleep-mode` when the model may sleep), as a real vLLM would.
   */
  vllmArgs?: boolean;
  /** Append a line per request received to this file (see fake_vllm.ts). */
  arrivalsFile?: string;
}

/**
 * The command that runs the fake vLLM with `flags`, under the deno binary running this process.
 *
 * @example
 * ```ts
 * import { fakeVllmCommand } from "./fake_vllm_command.ts";
 * fakeVllmCommand({ model: "{served}", loadMs: 100 }).includes("{port}"); // true
 * ```
 */
export function fakeVllmCommand(flags: FakeVllmFlags = {}): string[] {
  const args = [Deno.execPath(), "run", "-A", flags.script ?? FAKE_VLLM, ...(flags.portArgs ?? ["--port", "{port}"])];
  if (flags.model !== undefined) args.push("--model", flags.model);
  if (flags.marker !== undefined) args.push("--model-name", flags.marker);
  if (flags.loadMs !== undefined) args.push("--load-ms", String(flags.loadMs));
  if (flags.tokensPerSec !== undefined) args.push("--tokens-per-sec", String(flags.tokensPerSec));
  if (flags.crashAfterChunks !== undefined) args.push("--crash-after-chunks", String(flags.crashAfterChunks));
  if (flags.crashMode !== undefined) args.push("--crash-mode", flags.crashMode);
  if (flags.exitAfterMs !== undefined) args.push("--exit-after-ms", String(flags.exitAfterMs));
  if (flags.stopDelayMs !== undefined) args.push("--stop-delay-ms", String(flags.stopDelayMs));
  if (flags.ignoreSigterm) args.push("--ignore-sigterm");
  if (flags.sleepMs !== undefined) args.push("--sleep-ms", String(flags.sleepMs));
  if (flags.wakeMs !== undefined) args.push("--wake-ms", String(flags.wakeMs));
  if (flags.failWake) args.push("--fail-wake");
  if (flags.vllmArgs) args.push("{args}");
  if (flags.arrivalsFile !== undefined) args.push("--arrivals-file", flags.arrivalsFile);
  return args;
}
