/**
 * Reading the request body once, bounded by `maxBodyBytes`, and finding the
 * `model` a request names: in a JSON body or in a multipart/form-data field
 * (audio). When the proxy must change the model (the client named a model
 * key or none), only the model's value is spliced into the original bytes;
 * everything else is re-sent byte for byte.
 *
 * @module
 */
import { Buffer } from "node:buffer";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Reads the whole body, at most `limit` bytes; returns `null` when it is
 * larger (Content-Length checked first; chunked bodies counted while read,
 * and the rest is not read).
 *
 * @example
 * ```ts
 * import { readBodyBounded } from "./model.ts";
 * const req = new Request("http://x/", { method: "POST", body: "12345" });
 * (await readBodyBounded(req, 4)) === null; // true
 * ```
 */
export async function readBodyBounded(req: Request, limit: number): Promise<Uint8Array | null> {
  if (!req.body) return new Uint8Array(0);
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const length = Number(declared);
    if (length > limit) {
      await req.body.cancel().catch(() => {});
      return null;
    }
    if (Number.isSafeInteger(length)) {
      const bytes = new Uint8Array(await req.arrayBuffer());
      return bytes.length > limit ? null : bytes;
    }
  }
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/**
 * What a JSON body says that matters to routing.
 *
 * @example
 * ```ts
 * import { type JsonFields, parseJsonFields } from "./model.ts";
 * const fields = parseJsonFields(new TextEncoder().encode('{"model":"a"}')) as JsonFields;
 * fields.stream; // undefined
 * ```
 */
export interface JsonFields {
  /** The body's `model` (any JSON value; undefined when absent). */
  model: unknown;
  /** The body's `stream`. */
  stream: unknown;
  /** The decoded text (kept for a splice). */
  text: string;
}

/**
 * Parses a JSON request body; returns an error message when it is not a
 * JSON object.
 *
 * @example
 * ```ts
 * import { parseJsonFields } from "./model.ts";
 * const fields = parseJsonFields(new TextEncoder().encode('{"model":"a","stream":true}'));
 * typeof fields === "string" ? fields : fields.model; // "a"
 * ```
 */
export function parseJsonFields(bytes: Uint8Array): JsonFields | string {
  const text = decoder.decode(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return `The request body is not valid JSON: ${(e as Error).message}`;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return "The request body must be a JSON object";
  }
  const object = value as Record<string, unknown>;
  return { model: object.model, stream: object.stream, text };
}

/**
 * Returns the JSON text with the top-level `model` set to `model`, changing
 * nothing else (no re-serialization: numbers, key order and spacing stay as
 * sent). `text` must be a valid JSON object.
 *
 * @example
 * ```ts
 * import { setJsonModel } from "./model.ts";
 * setJsonModel('{"model": "k", "seed": 12345678901234567890}', "served");
 * // '{"model": "served", "seed": 12345678901234567890}'
 * setJsonModel('{"n":1}', "served"); // '{"model":"served","n":1}'
 * ```
 */
export function setJsonModel(text: string, model: string): string {
  const value = JSON.stringify(model);
  let i = skipWs(text, 0);
  const open = i; // at "{"
  i = skipWs(text, i + 1);
  let span: [number, number] | null = null;
  let empty = true;
  while (i < text.length && text[i] !== "}") {
    empty = false;
    const keyEnd = skipString(text, i);
    const rawKey = text.slice(i, keyEnd);
    const key = rawKey.includes("\\") ? JSON.parse(rawKey) as string : rawKey.slice(1, -1);
    i = skipWs(text, keyEnd);
    i = skipWs(text, i + 1); // past ":"
    const valueEnd = skipValue(text, i);
    if (key === "model") span = [i, valueEnd];
    i = skipWs(text, valueEnd);
    if (text[i] === ",") i = skipWs(text, i + 1);
  }
  if (span) return text.slice(0, span[0]) + value + text.slice(span[1]);
  return `${text.slice(0, open + 1)}"model":${value}${empty ? "" : ","}${text.slice(open + 1)}`;
}

function skipWs(text: string, i: number): number {
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) break;
    i++;
  }
  return i;
}

function skipString(text: string, i: number): number {
  i++; // opening quote
  while (i < text.length) {
    const c = text[i];
    if (c === "\\") i += 2;
    else if (c === '"') return i + 1;
    else i++;
  }
  return i;
}

function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return skipString(text, i);
  if (c === "{" || c === "[") {
    let depth = 0;
    while (i < text.length) {
      const d = text[i];
      if (d === '"') {
        i = skipString(text, i);
        continue;
      }
      if (d === "{" || d === "[") depth++;
      else if (d === "}" || d === "]") {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  while (i < text.length && !",}] \n\r\t".includes(text[i])) i++;
  return i;
}

/**
 * Where the `model` field of a multipart body is, or where a new one may go.
 *
 * @example
 * ```ts
 * import type { MultipartModel } from "./model.ts";
 * const found: MultipartModel = { model: undefined, start: 0, end: 0, boundary: "b" };
 * ```
 */
export interface MultipartModel {
  /** The field's value; undefined when there is no `model` field. */
  model: string | undefined;
  /** Byte offsets of the value (absent: the position of the first delimiter). */
  start: number;
  end: number;
  /** The boundary, for inserting a field. */
  boundary: string;
}

const BOUNDARY = /boundary=(?:"([^"]+)"|([^;\s]+))/i;
const MODEL_FIELD = /;\s*name="model"\s*(;|$)/im;
const CRLF2 = Buffer.from("\r\n\r\n");

/**
 * Finds the `model` field of a multipart/form-data body without parsing the
 * files; returns an error message when the body is not valid multipart.
 *
 * @example
 * ```ts
 * import { findMultipartModel } from "./model.ts";
 * const body = '--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--b--\r\n';
 * const found = findMultipartModel(new TextEncoder().encode(body), "multipart/form-data; boundary=b");
 * typeof found === "string" ? found : found.model; // "whisper"
 * ```
 */
export function findMultipartModel(bytes: Uint8Array, contentType: string): MultipartModel | string {
  const match = BOUNDARY.exec(contentType);
  if (!match) return "The multipart/form-data Content-Type has no boundary";
  const boundary = match[1] ?? match[2];
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const delimiter = Buffer.from(`--${boundary}`);
  const first = buf.indexOf(delimiter);
  if (first < 0) return "The multipart/form-data body has no part with the declared boundary";
  const next = Buffer.from(`\r\n--${boundary}`);
  let found: MultipartModel = { model: undefined, start: first, end: first, boundary };
  let at = first + delimiter.length;
  while (at < buf.length) {
    if (buf[at] === 45 && buf[at + 1] === 45) return found; // "--": closing delimiter
    const headersEnd = buf.indexOf(CRLF2, at);
    if (headersEnd < 0) break;
    const valueStart = headersEnd + 4;
    const valueEnd = buf.indexOf(next, valueStart);
    if (valueEnd < 0) break;
    const headers = decoder.decode(bytes.subarray(at, headersEnd));
    if (MODEL_FIELD.test(headers)) {
      found = {
        model: decoder.decode(bytes.subarray(valueStart, valueEnd)),
        start: valueStart,
        end: valueEnd,
        boundary,
      };
    }
    at = valueEnd + next.length;
  }
  return "The multipart/form-data body is truncated (no closing boundary)";
}

/**
 * Returns the multipart body with the `model` field set to `model` (value
 * replaced in place, or a field inserted first).
 *
 * @example
 * ```ts
 * import { findMultipartModel, setMultipartModel } from "./model.ts";
 * const bytes = new TextEncoder().encode('--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nk\r\n--b--\r\n');
 * const found = findMultipartModel(bytes, "multipart/form-data; boundary=b");
 * if (typeof found !== "string") new TextDecoder().decode(setMultipartModel(bytes, found, "served")).includes("served"); // true
 * ```
 */
export function setMultipartModel(bytes: Uint8Array, found: MultipartModel, model: string): Uint8Array<ArrayBuffer> {
  const insert = found.model === undefined
    ? encoder.encode(`--${found.boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${model}\r\n`)
    : encoder.encode(model);
  const out = new Uint8Array(bytes.length - (found.end - found.start) + insert.length);
  out.set(bytes.subarray(0, found.start), 0);
  out.set(insert, found.start);
  out.set(bytes.subarray(found.end), found.start + insert.length);
  return out;
}

/**
 * Encodes text as UTF-8 (shared encoder).
 *
 * @example
 * ```ts
 * import { encodeText } from "./model.ts";
 * encodeText("hi").length; // 2
 * ```
 */
export function encodeText(text: string): Uint8Array {
  return encoder.encode(text);
}
