/**
 * The warm-path floor (bench/bare_proxy.ts) and its `fetch` variant forward
 * what the proxy forwards: a small completion whole, a stream chunk by chunk
 * to its end, several requests on one kept-alive engine connection. No
 * timing is asserted.
 *
 * @module
 */
import assert from "node:assert/strict";
import { spawnLogged } from "../../bench/procs.ts";
import { freePort } from "../../bench/proxy.ts";
import { startUpstream } from "../../bench/upstream.ts";

for (const file of ["bare_proxy.ts", "bare_fetch.ts"]) {
  Deno.test(`bench/${file} forwards a completion and a stream, requests after requests`, async () => {
    const engine = await startUpstream({ model: "bench", tokensPerSec: 5000 });
    const port = freePort();
    const dir = await Deno.makeTempDir({ prefix: "bare-proxy-" });
    const child = spawnLogged(
      [
        Deno.execPath(),
        "run",
        "-A",
        new URL(`../../bench/${file}`, import.meta.url).pathname,
        String(port),
        engine.url,
      ],
      `${dir}/bare.log`,
    );
    try {
      await child.waitFor(/listening/, 30_000);
      const post = (body: string) =>
        fetch(`http://127.0.0.1:${port}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
      for (let i = 0; i < 3; i++) {
        const small = await post('{"model":"bench","prompt":"hi","max_tokens":4}');
        assert.equal(small.status, 200);
        assert.equal((await small.json()).model, "bench");
        const stream = await post('{"model":"bench","prompt":"hi","max_tokens":7,"stream":true}');
        assert.equal(stream.status, 200);
        assert.match(stream.headers.get("content-type") ?? "", /^text\/event-stream/);
        const events = (await stream.text()).split("\n\n").filter((e) => e.startsWith("data:"));
        assert.equal(events.length, 8, "7 tokens and [DONE]");
        assert.equal(events.at(-1), "data: [DONE]");
      }
      const missing = await post('{"prompt":"no model"}');
      assert.equal(missing.status, 400);
      await missing.body?.cancel();
    } finally {
      await child.stop(5000);
      await engine.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
