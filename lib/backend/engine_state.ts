/**
 * The process backend's records of its running engines: one small JSON file
 * per engine, `<stateDir>/engine-<proxy port>-<key>.json`, written atomically
 * when the engine is spawned (and again when it is put to sleep, woken, or
 * adopted) and removed once it has exited, so that a proxy restarted after a
 * crash (SIGKILL, OOM killer) finds every engine it left running, sleeping
 * ones included, and adopts them instead of starting second ones on the same
 * GPUs.
 *
 * A record written by vllm-chill before the pool (`engine-<proxy port>.json`,
 * version 1, one engine, no GPUs recorded) is still read, so that an engine
 * it left running is found and stopped.
 *
 * @module
 */
import { z } from "zod";

const Identity = z.strictObject({
  pid: z.int().positive(),
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22). */
  start: z.int().nonnegative().optional(),
  /** /proc/sys/kernel/random/boot_id when the record was written. */
  bootId: z.string().optional(),
});

/** The fields every version records about the engine process. */
const ProcessFields = {
  pid: z.int().positive(),
  pgid: z.int().positive(),
  /** Start time of the engine in clock ticks since boot (guards against pid reuse). */
  start: z.int().nonnegative().optional(),
  bootId: z.string().optional(),
  /** Port the engine listens on. */
  port: z.int().min(1).max(65535),
  /** Address the engine listens on (process.host). */
  host: z.string(),
  /** Key of the model in the config. */
  model: z.string().min(1),
  servedModelName: z.string().min(1),
  command: z.array(z.string()).min(1),
  startedAt: z.iso.datetime(),
  /** The proxy that owns the engine: while it lives, the engine is its own, not to adopt. */
  proxy: Identity,
};

/** The state file's shape (version 2: one file per engine). */
export const EngineRecordSchema = z.strictObject({
  version: z.literal(2),
  /** The engine's name: the model key, or "*" in scale-only mode. */
  key: z.string().min(1),
  ...ProcessFields,
  /** Its CUDA_VISIBLE_DEVICES, as a list ([] for a CPU model). */
  gpus: z.array(z.string()),
  /** Started with vLLM's sleep mode (`--enable-sleep-mode`, `VLLM_SERVER_DEV_MODE=1`). */
  sleepMode: z.boolean(),
  /** Set from the moment `POST /sleep?level=N` is sent until a wake has completed. */
  sleepLevel: z.literal([1, 2]).optional(),
});

/** The record of a vllm-chill before the pool (`engine-<proxy port>.json`). */
export const LegacyEngineRecordSchema = z.strictObject({ version: z.literal(1), ...ProcessFields });

/**
 * A recorded engine.
 *
 * @example
 * ```ts
 * import type { EngineRecord } from "./engine_state.ts";
 * const record: EngineRecord = {
 *   version: 2, key: "a", pid: 4242, pgid: 4242, port: 40123, host: "127.0.0.1", model: "a",
 *   servedModelName: "a", command: ["vllm", "serve", "org/a"], startedAt: new Date(0).toISOString(),
 *   proxy: { pid: 4200 }, gpus: ["0"], sleepMode: true, sleepLevel: 1,
 * };
 * ```
 */
export type EngineRecord = z.infer<typeof EngineRecordSchema>;

/**
 * A record of a vllm-chill before the pool.
 *
 * @example
 * ```ts
 * import type { LegacyEngineRecord } from "./engine_state.ts";
 * const record: LegacyEngineRecord = {
 *   version: 1, pid: 4242, pgid: 4242, port: 40123, host: "127.0.0.1", model: "a", servedModelName: "a",
 *   command: ["vllm", "serve", "org/a"], startedAt: new Date(0).toISOString(), proxy: { pid: 4200 },
 * };
 * ```
 */
export type LegacyEngineRecord = z.infer<typeof LegacyEngineRecordSchema>;

/**
 * The default directory of state files: `$XDG_RUNTIME_DIR/vllm-chill` when
 * set, else `$TMPDIR` (or /tmp) `/vllm-chill-<uid>`.
 *
 * @example
 * ```ts
 * import { defaultStateDir } from "./engine_state.ts";
 * defaultStateDir().includes("vllm-chill"); // true
 * ```
 */
export function defaultStateDir(env: (name: string) => string | undefined = (n) => Deno.env.get(n)): string {
  const runtime = env("XDG_RUNTIME_DIR");
  if (runtime) return `${runtime.replace(/\/+$/, "")}/vllm-chill`;
  const tmp = (env("TMPDIR") || "/tmp").replace(/\/+$/, "");
  return `${tmp}/vllm-chill-${Deno.uid() ?? "user"}`;
}

/**
 * Path of the state file of engine `key` of the proxy listening on
 * `proxyPort`. The key is kept as is when it is made of letters, digits, `.`,
 * `_` and `-`; other bytes are written `%XX` ("*" → "%2A", "/" → "%2F").
 *
 * @example
 * ```ts
 * import { stateFilePath } from "./engine_state.ts";
 * stateFilePath("/run/user/1000/vllm-chill", 8080, "qwen3-8b"); // "/run/user/1000/vllm-chill/engine-8080-qwen3-8b.json"
 * stateFilePath("/tmp/s", 8080, "*"); // "/tmp/s/engine-8080-%2A.json"
 * ```
 */
export function stateFilePath(dir: string, proxyPort: number, key: string): string {
  return `${trimDir(dir)}/engine-${proxyPort}-${fileKey(key)}.json`;
}

/**
 * Path of the single state file a vllm-chill before the pool wrote.
 *
 * @example
 * ```ts
 * import { legacyStateFilePath } from "./engine_state.ts";
 * legacyStateFilePath("/tmp/s", 8080); // "/tmp/s/engine-8080.json"
 * ```
 */
export function legacyStateFilePath(dir: string, proxyPort: number): string {
  return `${trimDir(dir)}/engine-${proxyPort}.json`;
}

/**
 * Paths of every state file of the proxy on `proxyPort` in `dir` (the legacy
 * one included), sorted; [] when the directory does not exist.
 *
 * @example
 * ```ts
 * import { listStateFiles } from "./engine_state.ts";
 * listStateFiles("/nonexistent", 8080); // []
 * ```
 */
export function listStateFiles(dir: string, proxyPort: number): string[] {
  const prefix = `engine-${proxyPort}-`;
  const legacy = `engine-${proxyPort}.json`;
  const found: string[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (!entry.isFile || !entry.name.endsWith(".json")) continue;
      if (entry.name === legacy || entry.name.startsWith(prefix)) found.push(`${trimDir(dir)}/${entry.name}`);
    }
  } catch { /* no directory yet: nothing recorded */ }
  return found.sort();
}

/**
 * Writes `record` to `path` atomically (temporary file, then rename), creating
 * the directory (mode 0700) if needed. Synchronous: the record must exist
 * before anything else can happen to the proxy.
 *
 * @example
 * ```ts ignore
 * import { writeEngineRecord } from "./engine_state.ts";
 * writeEngineRecord("/tmp/vllm-chill-0/engine-8080-a.json", record);
 * ```
 */
export function writeEngineRecord(path: string, record: EngineRecord | LegacyEngineRecord): void {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    Deno.writeTextFileSync(tmp, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never written */ }
    throw e;
  }
}

/** What {@link readEngineRecord} found. */
export type ReadResult =
  | { kind: "none" }
  | { kind: "record"; record: EngineRecord }
  | { kind: "legacy"; record: LegacyEngineRecord }
  | { kind: "invalid"; reason: string };

/**
 * Reads the state file at `path`: none, a record (or a legacy one), or
 * invalid (with why).
 *
 * @example
 * ```ts
 * import { readEngineRecord } from "./engine_state.ts";
 * readEngineRecord("/nonexistent/engine-8080-a.json").kind; // "none"
 * ```
 */
export function readEngineRecord(path: string): ReadResult {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { kind: "none" };
    return { kind: "invalid", reason: e instanceof Error ? e.message : String(e) };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { kind: "invalid", reason: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  if ((json as { version?: unknown } | null)?.version === 1) {
    const legacy = LegacyEngineRecordSchema.safeParse(json);
    if (legacy.success) return { kind: "legacy", record: legacy.data };
    return { kind: "invalid", reason: firstIssue(legacy.error.issues) };
  }
  const parsed = EngineRecordSchema.safeParse(json);
  if (!parsed.success) return { kind: "invalid", reason: firstIssue(parsed.error.issues) };
  return { kind: "record", record: parsed.data };
}

/**
 * Removes the state file at `path`, but only when it records the engine with
 * `pid` (or any engine when `pid` is omitted): a newer record stays.
 *
 * @example
 * ```ts
 * import { removeEngineRecord } from "./engine_state.ts";
 * removeEngineRecord("/nonexistent/engine-8080-a.json"); // false
 * ```
 */
export function removeEngineRecord(path: string, pid?: number): boolean {
  if (pid !== undefined) {
    const found = readEngineRecord(path);
    if ((found.kind !== "record" && found.kind !== "legacy") || found.record.pid !== pid) return false;
  }
  try {
    Deno.removeSync(path);
    return true;
  } catch {
    return false;
  }
}

function trimDir(dir: string): string {
  return dir.replace(/\/+$/, "");
}

/** Longest encoded key kept whole in a file name (names stay far below the usual 255-byte limit). */
const MAX_FILE_KEY = 150;

function fileKey(key: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(key)) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9._-]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  if (out.length <= MAX_FILE_KEY) return out;
  // A very long key: a prefix plus a hash of the whole (the record itself holds the key).
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return `${out.slice(0, 100)}~${(h >>> 0).toString(16).padStart(8, "0")}`;
}

function firstIssue(issues: readonly { path: PropertyKey[]; message: string }[]): string {
  const issue = issues[0];
  return `${issue?.path.map(String).join(".") || "record"}: ${issue?.message}`;
}
