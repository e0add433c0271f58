import assert from "node:assert/strict";
import { postChat, startProxy } from "./helpers.ts";

Deno.test("smoke", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: { loadMs: 150 } });
  try {
    const t0 = performance.now();
    const res = await postChat(proxy.url, "a");
    const body = await res.json();
    console.log(res.status, body, performance.now() - t0);
    assert.equal(res.status, 200);
    console.log(await proxy.engines());
    console.log(proxy.server.scaler.status());
  } finally {
    await proxy.close();
  }
});
