import assert from "node:assert/strict";
import { bearerToken, createAdminCheck, createKeyChecker, timingSafeEqual } from "../../lib/proxy/auth.ts";

Deno.test("bearerToken parses the header", () => {
  assert.equal(bearerToken("Bearer abc"), "abc");
  assert.equal(bearerToken("bearer  abc "), "abc");
  assert.equal(bearerToken("Basic abc"), null);
  assert.equal(bearerToken("Bearer "), null);
  assert.equal(bearerToken(null), null);
});

Deno.test("timingSafeEqual", () => {
  assert.equal(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])), true);
  assert.equal(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4])), false);
  assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3])), false);
});

Deno.test("createKeyChecker: plain and limited keys", async () => {
  const keys = createKeyChecker(["plain-key-1", { key: "team-a-key", models: ["qwen"], name: "team-a" }]);
  assert.equal(keys.enabled, true);
  assert.deepEqual(await keys.check("plain-key-1"), { name: "key#0", models: null });
  const a = await keys.check("team-a-key");
  assert.equal(a?.name, "team-a");
  assert.ok(a?.models?.has("qwen"));
  assert.equal(await keys.check("team-a-ke"), null);
  assert.equal(await keys.check(null), null);
  assert.equal(createKeyChecker([]).enabled, false);
});

Deno.test("createAdminCheck: missing, wrong, ok, open", async () => {
  const check = createAdminCheck("admin-secret");
  assert.equal(await check(null), "missing");
  assert.equal(await check("Basic x"), "missing");
  assert.equal(await check("Bearer nope"), "wrong");
  assert.equal(await check("Bearer admin-secret"), "ok");
  assert.equal(await createAdminCheck(undefined)(null), "ok");
});
