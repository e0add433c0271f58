/**
 * Reading what routing needs from a JSON request body without building the
 * document: one pass over the bytes that validates the whole body as JSON
 * (RFC 8259, as `JSON.parse` accepts it, leading UTF-8 BOM included) and
 * records the top-level `model` and `stream` members, skipping every nested
 * value and string. Memory: the body's bytes plus a stack of one byte per
 * nesting level; `JSON.parse` of a 30 MB body of small objects costs about
 * ten times the body. Duplicate keys resolve as in `JSON.parse`: the last
 * one wins (the one the engine reads too).
 *
 * @module
 */

/**
 * The `model` of a body whose `model` is neither a string nor null.
 *
 * @example
 * ```ts
 * import { NOT_A_STRING, scanJsonObject } from "./json_scan.ts";
 * const scan = scanJsonObject(new TextEncoder().encode('{"model":42}'));
 * typeof scan !== "string" && scan.model === NOT_A_STRING; // true
 * ```
 */
export const NOT_A_STRING: unique symbol = Symbol("not a string");

/**
 * What a JSON object body says that matters to routing.
 *
 * @example
 * ```ts
 * import type { JsonScan } from "./json_scan.ts";
 * const scan: JsonScan = { model: "a", stream: false, modelSpan: [9, 12], open: 1, empty: false };
 * ```
 */
export interface JsonScan {
  /** The top-level `model`: its value when a string, null for `null`, {@link NOT_A_STRING} otherwise, undefined when absent. */
  model: string | null | undefined | typeof NOT_A_STRING;
  /** Whether the top-level `stream` is `true`. */
  stream: boolean;
  /** Byte offsets [start, end) of the (last) top-level `model` value, or null. */
  modelSpan: [number, number] | null;
  /** Byte offset just past the top-level `{`. */
  open: number;
  /** Whether the object has no member. */
  empty: boolean;
}

const OBJECT = 1, ARRAY = 2;
const QUOTE = 34, BACKSLASH = 92, COMMA = 44, COLON = 58;
const OPEN_BRACE = 123, CLOSE_BRACE = 125, OPEN_BRACKET = 91, CLOSE_BRACKET = 93;
const MEMBER_OTHER = 0, MEMBER_MODEL = 1, MEMBER_STREAM = 2;
const MODEL = [109, 111, 100, 101, 108]; // "model"
const STREAM = [115, 116, 114, 101, 97, 109]; // "stream"
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Thrown inside the scan; turned into the error message. */
class Invalid {
  constructor(readonly reason: string, readonly at: number) {}
}

function isWs(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

function skipWs(b: Uint8Array, i: number): number {
  while (i < b.length && isWs(b[i])) i++;
  return i;
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** Past the string that starts at `i` (a quote); records whether it has escapes in `escaped[0]`. */
function skipString(b: Uint8Array, i: number, escaped: boolean[]): number {
  const n = b.length;
  let j = i + 1;
  escaped[0] = false;
  while (j < n) {
    const c = b[j];
    if (c === QUOTE) return j + 1;
    if (c === BACKSLASH) {
      escaped[0] = true;
      const e = b[j + 1];
      if (e === 117) { // \uXXXX
        if (!(isHex(b[j + 2]) && isHex(b[j + 3]) && isHex(b[j + 4]) && isHex(b[j + 5]))) {
          throw new Invalid("bad \\u escape in a string", j);
        }
        j += 6;
        continue;
      }
      // " \ / b f n r t
      if (e === 34 || e === 92 || e === 47 || e === 98 || e === 102 || e === 110 || e === 114 || e === 116) {
        j += 2;
        continue;
      }
      throw new Invalid("bad escape in a string", j);
    }
    if (c < 32) throw new Invalid("control character in a string", j);
    j++;
  }
  throw new Invalid("unterminated string", i);
}

function skipDigits(b: Uint8Array, i: number): number {
  while (i < b.length && b[i] >= 48 && b[i] <= 57) i++;
  return i;
}

function skipNumber(b: Uint8Array, i: number): number {
  const start = i;
  if (b[i] === 45) i++; // -
  if (b[i] === 48) i++; // a leading 0 stands alone
  else if (b[i] >= 49 && b[i] <= 57) i = skipDigits(b, i + 1);
  else throw new Invalid("bad number", start);
  if (b[i] === 46) { // .
    const after = skipDigits(b, i + 1);
    if (after === i + 1) throw new Invalid("bad number", start);
    i = after;
  }
  if (b[i] === 101 || b[i] === 69) { // e E
    i++;
    if (b[i] === 43 || b[i] === 45) i++;
    const after = skipDigits(b, i);
    if (after === i) throw new Invalid("bad number", start);
    i = after;
  }
  return i;
}

function skipLiteral(b: Uint8Array, i: number, word: readonly number[]): number {
  for (let k = 0; k < word.length; k++) {
    if (b[i + k] !== word[k]) throw new Invalid("unexpected token", i);
  }
  return i + word.length;
}

const TRUE = [116, 114, 117, 101], FALSE = [102, 97, 108, 115, 101], NULL = [110, 117, 108, 108];

/** Which routing member a key (its bytes with quotes, [start, end)) names. */
function memberOf(b: Uint8Array, start: number, end: number, escaped: boolean): number {
  if (escaped) {
    const key = JSON.parse(decoder.decode(b.subarray(start, end)));
    return key === "model" ? MEMBER_MODEL : key === "stream" ? MEMBER_STREAM : MEMBER_OTHER;
  }
  const length = end - start - 2;
  const word = length === 5 ? MODEL : length === 6 ? STREAM : null;
  if (!word) return MEMBER_OTHER;
  for (let k = 0; k < length; k++) if (b[start + 1 + k] !== word[k]) return MEMBER_OTHER;
  return length === 5 ? MEMBER_MODEL : MEMBER_STREAM;
}

/**
 * Validates `bytes` as JSON and reads the top-level `model` and `stream`;
 * returns an error message when the body is not JSON, or not an object.
 *
 * @example
 * ```ts
 * import { scanJsonObject } from "./json_scan.ts";
 * const scan = scanJsonObject(new TextEncoder().encode('{"messages":[{"model":"inner"}],"model":"a","stream":true}'));
 * typeof scan === "string" ? scan : [scan.model, scan.stream]; // ["a", true]
 * scanJsonObject(new TextEncoder().encode('{"model":')); // "The request body is not valid JSON: …"
 * ```
 */
export function scanJsonObject(bytes: Uint8Array): JsonScan | string {
  try {
    return scan(bytes);
  } catch (error) {
    if (error instanceof Invalid) {
      return `The request body is not valid JSON: ${error.reason} at byte ${error.at}`;
    }
    if (error instanceof NotAnObject) return "The request body must be a JSON object";
    throw error;
  }
}

class NotAnObject {}

function scan(b: Uint8Array): JsonScan {
  const n = b.length;
  let i = n >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0; // a UTF-8 BOM, as TextDecoder drops it
  i = skipWs(b, i);
  const isObject = b[i] === OPEN_BRACE;
  const result: JsonScan = { model: undefined, stream: false, modelSpan: null, open: i + 1, empty: true };
  let stack = new Uint8Array(64);
  let depth = 0;
  let member = MEMBER_OTHER;
  let memberStart = 0;
  const escaped = [false];

  // `expectKey`: at a member of an object (after "{" or ","); else at a value.
  let expectKey = false;
  for (;;) {
    if (expectKey) {
      i = skipWs(b, i);
      if (b[i] !== QUOTE) throw new Invalid(i >= n ? "unexpected end" : "expected a key", i);
      const keyStart = i;
      i = skipString(b, i, escaped);
      if (depth === 1) {
        member = memberOf(b, keyStart, i, escaped[0]);
        result.empty = false;
      }
      i = skipWs(b, i);
      if (b[i] !== COLON) throw new Invalid(i >= n ? "unexpected end" : "expected ':'", i);
      i = skipWs(b, i + 1);
      if (depth === 1) memberStart = i;
      expectKey = false;
    }

    // A value at i.
    i = skipWs(b, i);
    if (i >= n) throw new Invalid("unexpected end", i);
    const c = b[i];
    let kind = 0; // 1 string, 2 true, 3 null, 4 other
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth === stack.length) {
        const grown = new Uint8Array(stack.length * 2);
        grown.set(stack);
        stack = grown;
      }
      stack[depth++] = c === OPEN_BRACE ? OBJECT : ARRAY;
      i = skipWs(b, i + 1);
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
      if (b[i] !== close) {
        expectKey = c === OPEN_BRACE;
        continue;
      }
      depth--;
      i++;
      kind = 4;
    } else if (c === QUOTE) {
      i = skipString(b, i, escaped);
      kind = 1;
    } else if (c === 116) {
      i = skipLiteral(b, i, TRUE);
      kind = 2;
    } else if (c === 102) {
      i = skipLiteral(b, i, FALSE);
      kind = 4;
    } else if (c === 110) {
      i = skipLiteral(b, i, NULL);
      kind = 3;
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      i = skipNumber(b, i);
      kind = 4;
    } else {
      throw new Invalid("unexpected token", i);
    }

    // After a value (scalar, or a container just closed), close what ends here.
    for (;;) {
      if (depth === 1 && stack[0] === OBJECT && kind !== 0) {
        if (member === MEMBER_MODEL) {
          result.modelSpan = [memberStart, i];
          result.model = kind === 1 ? decodeString(b, memberStart, i, escaped[0]) : kind === 3 ? null : NOT_A_STRING;
        } else if (member === MEMBER_STREAM) {
          result.stream = kind === 2;
        }
      }
      kind = 0;
      i = skipWs(b, i);
      if (depth === 0) {
        if (i < n) throw new Invalid("unexpected data after the JSON value", i);
        if (!isObject) throw new NotAnObject();
        return result;
      }
      const top = stack[depth - 1];
      if (b[i] === COMMA) {
        i++;
        expectKey = top === OBJECT;
        break;
      }
      if ((top === OBJECT && b[i] === CLOSE_BRACE) || (top === ARRAY && b[i] === CLOSE_BRACKET)) {
        depth--;
        i++;
        kind = 4; // the container just closed is a value of its parent
        continue;
      }
      throw new Invalid(i >= n ? "unexpected end" : "expected ',' or a closing bracket", i);
    }
  }
}

/** The string value whose bytes (quotes included) are [start, end). */
function decodeString(b: Uint8Array, start: number, end: number, escaped: boolean): string {
  // Escapes are rare in a model name: JSON.parse of that string alone decodes them exactly as the whole body would.
  return escaped ? JSON.parse(decoder.decode(b.subarray(start, end))) : decoder.decode(b.subarray(start + 1, end - 1));
}

/**
 * Returns the body with the top-level `model` set to `model`, every other
 * byte unchanged (no re-serialization): the value replaced in place, or a
 * member inserted first.
 *
 * @example
 * ```ts
 * import { scanJsonObject, setJsonModel } from "./json_scan.ts";
 * const bytes = new TextEncoder().encode('{"model": "k", "seed": 12345678901234567890}');
 * const scan = scanJsonObject(bytes);
 * if (typeof scan !== "string") new TextDecoder().decode(setJsonModel(bytes, scan, "served"));
 * // '{"model": "served", "seed": 12345678901234567890}'
 * ```
 */
export function setJsonModel(bytes: Uint8Array, scan: JsonScan, model: string): Uint8Array<ArrayBuffer> {
  const value = encoder.encode(JSON.stringify(model));
  if (scan.modelSpan) return splice(bytes, scan.modelSpan[0], scan.modelSpan[1], value);
  const member = encoder.encode(`"model":${JSON.stringify(model)}${scan.empty ? "" : ","}`);
  return splice(bytes, scan.open, scan.open, member);
}

function splice(bytes: Uint8Array, start: number, end: number, insert: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length - (end - start) + insert.length);
  out.set(bytes.subarray(0, start), 0);
  out.set(insert, start);
  out.set(bytes.subarray(end), start + insert.length);
  return out;
}
