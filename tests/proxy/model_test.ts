import assert from "node:assert/strict";
import { findMultipartModel, setMultipartModel } from "../../lib/proxy/model.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

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

Deno.test("findMultipartModel: an unquoted name=model is read too; name=models and filename=model are not", () => {
  const body = (disposition: string) =>
    enc.encode(`--XyZ\r\nContent-Disposition: ${disposition}\r\n\r\nwhisper\r\n--XyZ--\r\n`);
  const modelOf = (disposition: string) => {
    const found = findMultipartModel(body(disposition), CT);
    assert.ok(typeof found !== "string", found as string);
    return found.model;
  };
  assert.equal(modelOf("form-data; name=model"), "whisper");
  assert.equal(modelOf("form-data; name = model ; x=y"), "whisper");
  assert.equal(modelOf('form-data; NAME="model"'), "whisper");
  assert.equal(modelOf("form-data; name=models"), undefined);
  assert.equal(modelOf("form-data; name=file; filename=model"), undefined);
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
