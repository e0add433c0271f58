/**
 * Finding the `model` a multipart/form-data request names (audio), and
 * setting it: only the field's value is spliced into the original bytes;
 * everything else is re-sent byte for byte. JSON bodies: `json_scan.ts`.
 *
 * @module
 */
import { Buffer } from "node:buffer";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

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
/** `name="model"` or `name=model` (RFC 7578 §4.2: a quoted string or a token), in a Content-Disposition. */
const MODEL_FIELD = /;\s*name\s*=\s*(?:"model"|model)\s*(;|$)/im;
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
