import assert from "node:assert/strict";
import {
  findMultipartModel,
  parseJsonFields,
  readBodyBounded,
  setJsonModel,
  setMultipartModel,
} from "../../lib/proxy/model.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function chunked(parts: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < parts.length) c.enqueue(enc.encode(parts[i++]));
      else c.close();
    },
  });
}

Deno.test("readBodyBounded: Content-Length over the limit is refused without reading", async () => {
  const req = new Request("http://x/", { method: "POST", body: "123456789", headers: { "content-length": "9" } });
  assert.equal(await readBodyBounded(req, 8), null);
});

Deno.test("readBodyBounded: a chunked body is counted while read", async () => {
  const small = new Request("http://x/", { method: "POST", body: chunked(["ab", "cd"]) });
  assert.deepEqual(dec.decode((await readBodyBounded(small, 4))!), "abcd");
  const big = new Request("http://x/", { method: "POST", body: chunked(["abc", "def", "ghi"]) });
  assert.equal(await readBodyBounded(big, 5), null);
});

Deno.test("parseJsonFields: model, stream, errors", () => {
  const ok = parseJsonFields(enc.encode('{"model":"a","stream":true}'));
  assert.ok(typeof ok !== "string");
  assert.equal(ok.model, "a");
  assert.equal(ok.stream, true);
  assert.match(parseJsonFields(enc.encode('{"model":')) as string, /not valid JSON/);
  assert.match(parseJsonFields(enc.encode("[1]")) as string, /JSON object/);
  assert.match(parseJsonFields(enc.encode("null")) as string, /JSON object/);
});

Deno.test("setJsonModel: splices only the value, keeps every other byte", () => {
  const text =
    '{ "messages": [{"role":"user","content":"model \\"x\\" {"}],\n "model" : "k", "seed": 12345678901234567890 }';
  const out = setJsonModel(text, "served/name");
  assert.equal(out, text.replace('"k"', '"served/name"'));
  assert.equal(setJsonModel("{}", "s"), '{"model":"s"}');
  assert.equal(setJsonModel(' {"a":{"model":"inner"}}', "s"), ' {"model":"s","a":{"model":"inner"}}');
  // duplicate keys: JSON.parse keeps the last one, so the splice does too
  assert.equal(JSON.parse(setJsonModel('{"model":"a","model":"b"}', "s")).model, "s");
  // escaped key
  assert.equal(setJsonModel('{"mo\\u0064el":"k"}', "s"), '{"mo\\u0064el":"s"}');
  assert.equal(setJsonModel('{"model":null,"x":[1,2]}', "s"), '{"model":"s","x":[1,2]}');
});

const CT = "multipart/form-data; boundary=XyZ";
function form(model?: string): Uint8Array {
  let s = "";
  if (model !== undefined) s += `--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\n${model}\r\n`;
  s += `--XyZ\r\nContent-Disposition: form-data; name="file"; filename="model"\r\nContent-Type: audio/wav\r\n\r\n`;
  s += `RIFF\x00\x01binary\r\n--XyZ--\r\n`;
  return enc.encode(s);
}

Deno.test("findMultipartModel: finds the field, not a file named model", () => {
  const found = findMultipartModel(form("whisper"), CT);
  assert.ok(typeof found !== "string");
  assert.equal(found.model, "whisper");
  const none = findMultipartModel(form(), CT);
  assert.ok(typeof none !== "string");
  assert.equal(none.model, undefined);
  assert.match(findMultipartModel(form("w"), "multipart/form-data") as string, /no boundary/);
  assert.match(findMultipartModel(enc.encode("garbage"), CT) as string, /no part/);
  assert.match(
    findMultipartModel(enc.encode('--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nxx'), CT) as string,
    /truncated/,
  );
});

Deno.test("setMultipartModel: replaces or inserts the field", async () => {
  const found = findMultipartModel(form("k"), CT);
  assert.ok(typeof found !== "string");
  const replaced = setMultipartModel(form("k"), found, "served");
  assert.equal(dec.decode(replaced), dec.decode(form("served")));
  const none = findMultipartModel(form(), CT);
  assert.ok(typeof none !== "string");
  const inserted = setMultipartModel(form(), none, "served");
  const data = await new Request("http://x/", { method: "POST", body: inserted, headers: { "content-type": CT } })
    .formData();
  assert.equal(data.get("model"), "served");
  assert.ok(data.get("file") instanceof File);
});
