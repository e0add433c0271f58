/**
 * The JSON scanner against JSON.parse: on every body, valid or not, it
 * agrees on validity, on "an object or not", on the top-level `model` (last
 * duplicate wins, escapes decoded) and on `stream === true`; and splicing
 * the model changes only its value.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { NOT_A_STRING, scanJsonObject, setJsonModel } from "../../lib/proxy/json_scan.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const SEED = Number(Deno.env.get("RELIABILITY_SEED") ?? 20261122);

/** What JSON.parse says about `bytes`, in the scanner's terms. */
function reference(bytes: Uint8Array): { error: "json" | "object" } | { model: unknown; stream: boolean } {
  let value: unknown;
  try {
    value = JSON.parse(dec.decode(bytes));
  } catch {
    return { error: "json" };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { error: "object" };
  const object = value as Record<string, unknown>;
  const model = !("model" in object)
    ? undefined
    : typeof object.model === "string" || object.model === null
    ? object.model
    : NOT_A_STRING;
  return { model, stream: object.stream === true };
}

function assertAgrees(bytes: Uint8Array): void {
  const expected = reference(bytes);
  const got = scanJsonObject(bytes);
  const shown = dec.decode(bytes).slice(0, 300);
  if ("error" in expected) {
    assert.equal(typeof got, "string", `JSON.parse refused ${JSON.stringify(shown)} but the scanner accepted it`);
    assert.match(got as string, expected.error === "json" ? /not valid JSON/ : /must be a JSON object/, shown);
    return;
  }
  assert.notEqual(typeof got, "string", `JSON.parse accepted ${JSON.stringify(shown)}: ${got}`);
  const scan = got as Exclude<typeof got, string>;
  assert.equal(scan.model, expected.model, shown);
  assert.equal(scan.stream, expected.stream, shown);
}

/** Keys that collide with the members the scanner reads, raw or escaped. */
const key = fc.oneof(
  fc.constantFrom("model", "stream", "mod\\u0065l", "\\u0073tream", "Model", "models", "mode", ""),
  fc.string({ maxLength: 6 }).map((s) => JSON.stringify(s).slice(1, -1)),
  fc.string({ unit: "binary", maxLength: 4 }).map((s) => JSON.stringify(s).slice(1, -1)),
);
const ws = fc.constantFrom("", " ", "\n", "\t", "\r\n  ");
/** JSON text of a value: JSON.stringify of anything, with unicode, nesting and odd numbers. */
const valueText = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
  fc.constantFrom("true", "false", "null", "-0", "1e5", "-1.5E-3", "0.0", '"\\ud800"', '"\\u00e9\\n\\/"', "[]", "{}"),
  fc.string({ unit: "binary", maxLength: 8 }).map((s) => JSON.stringify(s)),
  // Raw (unescaped) text between quotes: control characters, stray quotes and backslashes, bad escapes.
  fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 4 })
    .map((s) => `"${s}"`),
);
/** A JSON object as text, with duplicate keys and arbitrary spacing, built by hand (JSON.stringify cannot). */
const objectText = fc.array(fc.tuple(key, valueText, ws, ws), { maxLength: 6 }).chain((members) =>
  ws.map((space) => `${space}{${members.map(([k, v, a, b]) => `${a}"${k}"${b}:${a}${v}${b}`).join(",")}}${space}`)
);

Deno.test("json scan: agrees with JSON.parse on valid objects (duplicates, escapes, unicode, spacing)", () => {
  fc.assert(fc.property(objectText, (text) => assertAgrees(enc.encode(text))), { numRuns: 3000, seed: SEED });
});

Deno.test("json scan: agrees with JSON.parse on any JSON text and on broken bodies", () => {
  const mutate = fc.tuple(objectText, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("cut", "set", "ins"))
    .map(([text, at, byte, how]) => {
      const bytes = enc.encode(text);
      const i = bytes.length === 0 ? 0 : at % bytes.length;
      if (how === "cut") return bytes.subarray(0, i);
      if (how === "set") {
        const out = bytes.slice();
        if (out.length) out[i] = byte;
        return out;
      }
      return new Uint8Array([...bytes.subarray(0, i), byte, ...bytes.subarray(i)]);
    });
  fc.assert(
    fc.property(fc.oneof(mutate, valueText.map((t) => enc.encode(t)), fc.uint8Array({ maxLength: 20 })), assertAgrees),
    { numRuns: 5000, seed: SEED },
  );
});

Deno.test("json scan: fixed cases — BOM, depth, trailing data, numbers, control characters", () => {
  const cases = [
    '\ufeff{"model":"a"}',
    '{"a":' + "[".repeat(5000) + "]".repeat(5000) + ',"model":"deep"}',
    '{"model":"a"} x',
    '{"model":"a"}{}',
    '{"model":01}',
    '{"model":1.}',
    '{"model":.5}',
    '{"model":-}',
    '{"model":1e}',
    '{"model":"a\tb"}',
    '{"model":"a\\qb"}',
    '{"model":"\\u12G4"}',
    '{"model":tru}',
    '{"model":"a",}',
    '{,"model":"a"}',
    '{"model" "a"}',
    "[1,2,]",
    "",
    "   ",
    '"model"',
    '{"model":"a","stream":true,"stream":false}',
    '{"stream":false,"stream":true}',
    '{"stream":"true"}',
    '{"model":["a"]}',
    '{"model":{"model":"x"}}',
    '{"x":{"model":"inner","stream":true}}',
  ];
  for (const text of cases) assertAgrees(enc.encode(text));
});

Deno.test("json scan: setJsonModel splices only the value, keeps every other byte", () => {
  const set = (text: string, model: string) => {
    const bytes = enc.encode(text);
    const scan = scanJsonObject(bytes);
    assert.ok(typeof scan !== "string", scan as string);
    return dec.decode(setJsonModel(bytes, scan, model));
  };
  const text =
    '{ "messages": [{"role":"user","content":"model \\"x\\" {"}],\n "model" : "k", "seed": 12345678901234567890 }';
  assert.equal(set(text, "served/name"), text.replace('"k"', '"served/name"'));
  assert.equal(set("{}", "s"), '{"model":"s"}');
  assert.equal(set(' {"a":{"model":"inner"}}', "s"), ' {"model":"s","a":{"model":"inner"}}');
  // duplicate keys: JSON.parse keeps the last one, so the splice does too
  assert.equal(JSON.parse(set('{"model":"a","model":"b"}', "s")).model, "s");
  assert.equal(set('{"mo\\u0064el":"k"}', "s"), '{"mo\\u0064el":"s"}');
  assert.equal(set('{"model":null,"x":[1,2]}', "s"), '{"model":"s","x":[1,2]}');
  assert.equal(set('{"model":"é"}', "ü"), '{"model":"ü"}');
});

Deno.test("json scan: setJsonModel then JSON.parse gives the model, every other member unchanged (fast-check)", () => {
  fc.assert(
    fc.property(objectText, fc.string({ maxLength: 10 }), (text, model) => {
      const bytes = enc.encode(text);
      const scan = scanJsonObject(bytes);
      if (typeof scan === "string") return;
      const after = JSON.parse(dec.decode(setJsonModel(bytes, scan, model)));
      const before = JSON.parse(text);
      assert.equal(after.model, model);
      delete after.model;
      delete before.model;
      assert.deepEqual(after, before);
    }),
    { numRuns: 1000, seed: SEED },
  );
});
