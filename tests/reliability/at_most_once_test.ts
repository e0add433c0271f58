/**
 * A request reaches an engine at most once: the engine (a real child
 * process) is killed with SIGKILL in the middle of a 3 s completion that
 * arrived on a kept-alive connection. The client gets 502, and the engine
 * side saw the request exactly once — counted by the engines themselves
 * (each appends a line per request to a file, which survives the kill),
 * after a follow-up request has started the next engine (where a replayed
 * request would have landed).
 */
import assert from "node:assert/strict";
import { delay, postChat, startProxy, waitUntil, within } from "../e2e/helpers.ts";

const TRIALS = 5;

/** Lines of the arrivals file whose request id is `id`. */
async function arrivalsOf(file: string, id: string): Promise<string[]> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.split("\n").filter((line) => line.endsWith(` ${id}`));
}

Deno.test("at most once: an engine killed 1 s into a 3 s request → 502, the request arrived exactly once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-once-" });
  const arrivalsFile = `${dir}/arrivals.log`;
  // 30 tokens at 10 tokens/s: a 3 s non-streaming completion.
  const proxy = await startProxy(
    { enableModelSwitch: true, holdTimeout: "20s", startTimeout: "20s" },
    { a: { loadMs: 100, tokensPerSec: 10, arrivalsFile } },
  );
  try {
    const outcomes: string[] = [];
    for (let trial = 1; trial <= TRIALS; trial++) {
      // A short request first: the engine is up and the proxy holds a kept-alive connection to it.
      const warm = await postChat(proxy.url, "a", { max_tokens: 1 }, { "x-request-id": `warm-${trial}` });
      assert.equal(warm.status, 200, await warm.text());
      const pid = (proxy.server.backend.describe().engines as Record<string, { pid: number }>).a?.pid;
      assert.equal(typeof pid, "number");

      const id = `slow-${trial}`;
      const slow = postChat(proxy.url, "a", { max_tokens: 30 }, { "x-request-id": id });
      await waitUntil(async () => (await arrivalsOf(arrivalsFile, id)).length > 0, 10_000, `${id} to reach the engine`);
      await delay(1000);
      Deno.kill(pid, "SIGKILL");
      const res = await within(slow, 10_000, `the answer to ${id}`);
      const body = await res.text();
      assert.equal(res.status, 502, body);
      assert.equal(JSON.parse(body).error.code, "upstream_error");

      // Once the proxy noticed the death, the next request starts a new engine, where a replay of the killed
      // request would arrive too.
      await waitUntil(() => proxy.server.scaler.modelStatus("a") !== "ready", 10_000, "the proxy to notice the kill");
      const next = await postChat(proxy.url, "a", { max_tokens: 1 }, { "x-request-id": `after-${trial}` });
      assert.equal(next.status, 200, await next.text());
      const seen = await arrivalsOf(arrivalsFile, id);
      outcomes.push(`${id}: ${seen.length} arrival(s)`);
      assert.equal(seen.length, 1, `the request arrived ${seen.length} times: ${seen.join(" | ")}`);
      assert.ok(seen[0].startsWith(`${pid} `), "at the engine that was killed");
    }
    console.log(`at most once: ${TRIALS} trials, ${outcomes.join(", ")}`);
    assert.equal(proxy.engineStarts("a"), TRIALS + 1, "one new engine per kill");
  } finally {
    await proxy.close();
    await Deno.remove(dir, { recursive: true });
  }
});
