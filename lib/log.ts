/**
 * Structured logging: one line per event, JSON (for log pipelines) or text
 * (for people). Never pass secrets in fields; `redact` masks known ones.
 *
 * @module
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** Fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A structured logger. */
export interface Logger {
  /** Logs `msg` with `fields` at `level`. */
  log(level: LogLevel, msg: string, fields?: LogFields): void;
  /** Shorthand for `log("debug", ...)`. */
  debug(msg: string, fields?: LogFields): void;
  /** Shorthand for `log("info", ...)`. */
  info(msg: string, fields?: LogFields): void;
  /** Shorthand for `log("warn", ...)`. */
  warn(msg: string, fields?: LogFields): void;
  /** Shorthand for `log("error", ...)`. */
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** "json" (default) or "text". */
  format?: "json" | "text";
  /** Lowest level written (default "info", or VLLM_CHILL_LOG_LEVEL). */
  level?: LogLevel;
  /** Where lines go (default: stderr for warn/error, stdout otherwise). */
  write?: (line: string, level: LogLevel) => void;
  /** Strings that must never appear in a line (API keys, tokens); replaced by "[redacted]". */
  secrets?: string[];
}

const encoder = new TextEncoder();

/** Lines for stdout not written yet; written together at the end of the current task (or on exit). */
let pending = "";
let flushQueued = false;
/** Written at once past this many characters, whatever the task is doing. */
const PENDING_LIMIT = 64 * 1024;

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  try {
    while (bytes.byteLength > 0) {
      const n = stream.writeSync(bytes);
      if (n <= 0) break;
      bytes = bytes.subarray(n);
    }
  } catch {
    // A closed stdout must never take the proxy down.
  }
}

/**
 * Writes the stdout lines buffered by the default writer. They are written on
 * their own once the current task's microtasks have run, and when the process
 * exits normally (the `unload` event, also fired by `Deno.exit`); call this
 * before writing to stdout by other means.
 *
 * @example
 * ```ts
 * import { flushLog } from "./log.ts";
 * flushLog();
 * ```
 */
export function flushLog(): void {
  flushQueued = false;
  if (pending === "") return;
  const text = pending;
  pending = "";
  writeAll(Deno.stdout, text);
}

try {
  globalThis.addEventListener("unload", flushLog);
} catch {
  // No event target (not Deno): lines are still flushed on the microtask.
}

function defaultWrite(line: string, level: LogLevel): void {
  if (LEVELS[level] >= LEVELS.warn) {
    // Keep the order of lines between the two streams.
    flushLog();
    writeAll(Deno.stderr, line + "\n");
    return;
  }
  // Many requests end in one task of the event loop: one write for all their lines.
  pending += line + "\n";
  if (pending.length > PENDING_LIMIT) flushLog();
  else if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushLog);
  }
}

/**
 * Creates a logger.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const lines: string[] = [];
 * const log = createLogger({ format: "json", write: (l) => lines.push(l) });
 * log.info("state", { from: "idle", to: "starting" });
 * JSON.parse(lines[0]).to; // "starting"
 * ```
 */
export function createLogger(options: LoggerOptions = {}, base: LogFields = {}): Logger {
  const format = options.format ?? "json";
  const envLevel = safeEnv("VLLM_CHILL_LOG_LEVEL") as LogLevel | undefined;
  const min = LEVELS[options.level ?? (envLevel && envLevel in LEVELS ? envLevel : "info")];
  const write = options.write ?? defaultWrite;
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 4);
  // JSON lines whose fields are primitives and name no key of their own are built from `base` serialized once.
  const baseJson = format === "json" && allPrimitive(base) ? JSON.stringify(base).slice(1, -1) : null;
  const log = (level: LogLevel, msg: string, fields: LogFields = {}) => {
    if (LEVELS[level] < min) return;
    const time = new Date().toISOString();
    let line = baseJson !== null ? fastJson(time, level, msg, baseJson, base, fields) : null;
    if (line === null) {
      const record = { time, level, msg, ...base, ...fields };
      line = format === "json" ? safeJson(record) : formatText(record);
    }
    for (const secret of secrets) {
      if (line.includes(secret)) line = line.replaceAll(secret, "[redacted]");
    }
    write(line, level);
  };
  return {
    log,
    debug: (msg, fields) => log("debug", msg, fields),
    info: (msg, fields) => log("info", msg, fields),
    warn: (msg, fields) => log("warn", msg, fields),
    error: (msg, fields) => log("error", msg, fields),
    with: (fields) => createLogger(options, { ...base, ...fields }),
  };
}

/**
 * A logger that writes nothing (tests, library use).
 *
 * @example
 * ```ts
 * import { silentLogger } from "./log.ts";
 * silentLogger.info("ignored");
 * ```
 */
export const silentLogger: Logger = createLogger({ write: () => {} });

function safeJson(record: LogFields): string {
  // Fast path (every request line): only primitive values, where the replacer would change nothing.
  if (allPrimitive(record)) {
    try {
      return JSON.stringify(record);
    } catch { /* fall through */ }
  }
  try {
    return JSON.stringify(record, (_k, v) => v instanceof Error ? v.message : typeof v === "bigint" ? String(v) : v);
  } catch {
    return JSON.stringify({ time: record.time, level: record.level, msg: record.msg, note: "unserializable fields" });
  }
}

/** The JSON line `{time, level, msg, ...base, ...fields}`, or null when `fields` needs the general path. */
function fastJson(
  time: string,
  level: LogLevel,
  msg: string,
  baseJson: string,
  base: LogFields,
  fields: LogFields,
): string | null {
  let empty = true;
  for (const key in fields) {
    const v = fields[key];
    if (v !== null && typeof v === "object" || typeof v === "bigint" || typeof v === "function") return null;
    if (key === "time" || key === "level" || key === "msg" || key in base) return null;
    if (v !== undefined) empty = false;
  }
  let line = `{"time":"${time}","level":"${level}","msg":${JSON.stringify(msg)}`;
  if (baseJson !== "") line += "," + baseJson;
  if (!empty) line += "," + JSON.stringify(fields).slice(1);
  else line += "}";
  return line;
}

function allPrimitive(record: LogFields): boolean {
  for (const key in record) {
    const v = record[key];
    if (v !== null && typeof v === "object" || typeof v === "bigint" || typeof v === "function") return false;
  }
  return true;
}

function formatText(record: LogFields): string {
  const { time, level, msg, ...rest } = record;
  const fields = Object.entries(rest)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) =>
      `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v instanceof Error ? v.message : v)}`
    )
    .join(" ");
  return `${time} ${String(level).toUpperCase().padEnd(5)} ${msg}${fields ? " " + fields : ""}`;
}

function safeEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
