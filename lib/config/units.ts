/**
 * Parsing of the human units used in config files: durations ("500ms", "30s",
 * "5m", "1h", "1h30m") and byte sizes ("512", "64Ki", "32Mi", "1Gi", "10MB").
 *
 * @module
 */

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
/** The accepted shape of a duration string, anchored. */
export const DURATION_PATTERN = "^(\\d+(\\.\\d+)?(ms|s|m|h))+$";
const DURATION_RE = new RegExp(DURATION_PATTERN);
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration string into milliseconds; returns `undefined` when the
 * string is not a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./units.ts";
 * parseDuration("1m30s"); // 90000
 * parseDuration("500ms"); // 500
 * ```
 */
export function parseDuration(text: string): number | undefined {
  if (!DURATION_RE.test(text)) return undefined;
  let total = 0;
  for (const [, value, unit] of text.matchAll(DURATION_PART)) {
    total += Number(value) * UNIT_MS[unit];
  }
  return Math.round(total);
}

/**
 * Formats milliseconds as a short duration string ("1.5s", "2m", "250ms").
 *
 * @example
 * ```ts
 * import { formatDuration } from "./units.ts";
 * formatDuration(90_000); // "1m30s"
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s ? `${s}s` : ""}` || "0s";
}

/** The accepted shape of a byte size, anchored. */
export const SIZE_PATTERN = "^\\d+(\\.\\d+)?(Ki|Mi|Gi|Ti|k|K|M|G|T|KB|MB|GB|TB|B)?$";
const SIZE_RE = new RegExp(SIZE_PATTERN);
const SIZE_UNIT: Record<string, number> = {
  "": 1,
  B: 1,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  k: 1000,
  K: 1000,
  KB: 1000,
  M: 1000 ** 2,
  MB: 1000 ** 2,
  G: 1000 ** 3,
  GB: 1000 ** 3,
  T: 1000 ** 4,
  TB: 1000 ** 4,
};

/**
 * Parses a byte size ("32Mi", "1Gi", "500k", "1024") into bytes; returns
 * `undefined` when the string is not a size.
 *
 * @example
 * ```ts
 * import { parseSize } from "./units.ts";
 * parseSize("32Mi"); // 33554432
 * ```
 */
export function parseSize(text: string): number | undefined {
  const match = SIZE_RE.exec(text);
  if (!match) return undefined;
  const unit = text.slice(text.search(/[A-Za-z]|$/));
  return Math.round(parseFloat(text) * SIZE_UNIT[unit]);
}
