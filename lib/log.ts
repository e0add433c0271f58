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
const NO_FIELDS: LogFields = Object.freeze({});
/** The keys every line starts with. */
const LINE_KEYS = new Set(["time", "level", "msg"]);
const INDEX_KEY = /^(?:0|[1-9]\d*)$/;

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
/** Reused for every write that fits (at most 3 bytes per UTF-16 unit): no allocation per line. */
const lineBuffer = new Uint8Array(64 * 1024);

/**
 * Info and debug lines written in the same turn of the event loop, written together at its end: one write for
 * all the requests a turn finished instead of one each, and none before the answer is handed over. Warn and error
 * lines are written at once (after what is pending, to keep the order). A line is lost only if the process dies
 * of an uncaught exception within that turn; `unload` (a normal exit, Deno.exit) writes what is pending.
 */
let pending = "";
let flushScheduled = false;

function defaultWrite(line: string, level: LogLevel): void {
  if (LEVELS[level] >= LEVELS.warn) {
    flushPending();
    writeAll(Deno.stderr, line + "\n");
    return;
  }
  pending += line + "\n";
  if (!flushScheduled) {
    flushScheduled = true;
    setTimeout(flushPending, 0);
  }
}

function flushPending(): void {
  flushScheduled = false;
  if (pending === "") return;
  const text = pending;
  pending = "";
  writeAll(Deno.stdout, text);
}

function writeAll(out: { writeSync(bytes: Uint8Array): number }, text: string): void {
  let bytes: Uint8Array;
  if (text.length * 3 <= lineBuffer.length) {
    bytes = lineBuffer.subarray(0, encoder.encodeInto(text, lineBuffer).written);
  } else bytes = encoder.encode(text);
  try {
    for (let at = 0; at < bytes.length;) at += out.writeSync(bytes.subarray(at));
  } catch {
    // A closed stdout must never take the proxy down.
  }
}

try {
  globalThis.addEventListener("unload", flushPending);
} catch { /* not a runtime with unload */ }

let clockMs = NaN;
let clockIso = "";

/** `new Date().toISOString()`, built once per millisecond. */
function isoNow(): string {
  const now = Date.now();
  if (now !== clockMs) {
    clockMs = now;
    clockIso = new Date(now).toISOString();
  }
  return clockIso;
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
  const secrets = secretForms(options.secrets);
  // JSON lines are built as text: the base fields serialised once, the line's fields with one JSON.stringify.
  const baseKeys = new Set([...LINE_KEYS, ...Object.keys(base)]);
  const baseJson = format === "json" && plainFields(base, LINE_KEYS) ? members(base) : null;
  const log = (level: LogLevel, msg: string, fields: LogFields = NO_FIELDS) => {
    if (LEVELS[level] < min) return;
    let line: string;
    if (baseJson !== null && plainFields(fields, baseKeys)) {
      line = `{"time":"${isoNow()}","level":"${level}","msg":${JSON.stringify(msg)}${baseJson}${members(fields)}}`;
    } else {
      const time = isoNow();
      const record = ownKeys({ time, level, msg, ...base, ...fields }, level, msg, time);
      line = format === "json" ? safeJson(record) : formatText(record);
    }
    write(redact(line, secrets), level);
  };
  return loggerOf(log, (fields) => createLogger(options, { ...base, ...fields }));
}

/** A {@link Logger} whose shorthands call `log`. */
function loggerOf(log: Logger["log"], withFields: Logger["with"]): Logger {
  return {
    log,
    debug: (msg, fields) => log("debug", msg, fields),
    info: (msg, fields) => log("info", msg, fields),
    warn: (msg, fields) => log("warn", msg, fields),
    error: (msg, fields) => log("error", msg, fields),
    with: withFields,
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

/**
 * Where {@link tapLogger} sends copies of log lines (the dashboard's live log tail).
 *
 * @example
 * ```ts
 * import type { LogSink } from "./log.ts";
 * const lines: string[] = [];
 * const sink: LogSink = { accepts: () => true, write: (json) => lines.push(json) };
 * ```
 */
export interface LogSink {
  /**
   * Whether the sink takes the next line: false while nobody reads the copies, or while it has no room (it counts
   * what it refused). Nothing is built for a refused line.
   */
  accepts(level: LogLevel): boolean;
  /** One line as JSON (`time`, `level`, `msg`, fields), secrets already redacted. */
  write(json: string, level: LogLevel): void;
}

/**
 * A logger that writes through `logger` and also sends every line at info and
 * above (whatever `logger`'s own level) to `sink` as redacted JSON, built
 * only when `sink.accepts` it.
 *
 * @example
 * ```ts
 * import { silentLogger, tapLogger } from "./log.ts";
 * const lines: string[] = [];
 * const log = tapLogger(silentLogger, { accepts: () => true, write: (json) => lines.push(json) }, ["s3cret-token"]);
 * log.with({ component: "scaler" }).info("token s3cret-token used");
 * JSON.parse(lines[0]).msg; // "token [redacted] used"
 * ```
 */
export function tapLogger(logger: Logger, sink: LogSink, secrets: string[] = [], base: LogFields = {}): Logger {
  const forms = secretForms(secrets);
  const log = (level: LogLevel, msg: string, fields: LogFields = {}) => {
    logger.log(level, msg, fields);
    if (LEVELS[level] < LEVELS.info || !sink.accepts(level)) return;
    const time = isoNow();
    sink.write(redact(safeJson(ownKeys({ time, level, msg, ...base, ...fields }, level, msg, time)), forms), level);
  };
  return loggerOf(log, (fields) => tapLogger(logger.with(fields), sink, secrets, { ...base, ...fields }));
}

/** The secrets worth masking, as written and as they appear inside a JSON string (quotes, backslashes escaped). */
function secretForms(secrets: string[] = []): string[] {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret.length < 4) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
  }
  return [...forms];
}

function redact(line: string, secrets: string[]): string {
  for (const secret of secrets) {
    if (line.includes(secret)) line = line.replaceAll(secret, "[redacted]");
  }
  return line;
}

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

/** `fields` as JSON members (`,"a":1,"b":"x"`), or "" when it has none to write. */
function members(fields: LogFields): string {
  const json = JSON.stringify(fields);
  return json.length > 2 ? `,${json.slice(1, -1)}` : "";
}

/**
 * Whether `fields` can be appended to the line as they are: primitive values (where `safeJson`'s replacer changes
 * nothing), no key that the line already has, no integer-like key (an object lists those first).
 */
function plainFields(fields: LogFields, taken: Set<string>): boolean {
  for (const key in fields) {
    const v = fields[key];
    if (v !== null && typeof v === "object" || typeof v === "bigint" || typeof v === "function") return false;
    if (taken.has(key) || INDEX_KEY.test(key)) return false;
  }
  return true;
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

/** A field named like the line's own keys (`level`, `msg`, `time`) never disguises the line: theirs win, in place. */
function ownKeys<T extends { time: string; level: LogLevel; msg: string }>(
  record: T,
  level: LogLevel,
  msg: string,
  time: string,
): T {
  if (record.level !== level || record.msg !== msg || record.time !== time) {
    record.level = level;
    record.msg = msg;
    record.time = time;
  }
  return record;
}
