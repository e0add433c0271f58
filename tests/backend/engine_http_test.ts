/**
 * The sleep-mode client against small servers over real HTTP: deadlines,
 * aborts, malformed and failed answers. (The call sequences against an engine
 * process are in process_pool_test.ts.)
 */
import assert from "node:assert/strict";
import { probeSleeping, sleepEngine, wakeEngine } from "../../lib/backend/engine_http.ts";
import { freePort } from "../../lib/backend/process.ts";
import { BackendError } from "../../lib/backend/types.ts";

function serve(handler: (req: Request) => Response | Promise<Response>) {
  const seen: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    seen.push(`${req.method} ${url.pathname}${url.search}`);
    return handler(req);
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

const isError = (kind: string, message: RegExp | string) => (e: unknown) =>
  e instanceof BackendError && e.kind === kind &&
  (typeof message === "string" ? e.message === message : message.test(e.message));

Deno.test("engine http: /is_sleeping that never turns true → timeout at the deadline", async () => {
  const engine = serve(() => Response.json({ is_sleeping: false }));
  try {
    await assert.rejects(
      sleepEngine(engine.url, 1, {
        name: "model a",
        signal: new AbortController().signal,
        deadline: Date.now() + 1000,
      }),
      isError("timeout", "GET /is_sleeping of model a still said false at the deadline"),
    );
    assert.equal(engine.seen[0], "POST /sleep?level=1");
    assert.ok(engine.seen.length >= 3, "polled until the deadline");
  } finally {
    await engine.close();
  }
});

Deno.test("engine http: a malformed /is_sleeping answer fails at once, told to onAnswer", async () => {
  const engine = serve((req) =>
    new URL(req.url).pathname === "/is_sleeping" ? new Response("yes") : new Response(null)
  );
  const answers: [string, number, string][] = [];
  try {
    await assert.rejects(
      sleepEngine(engine.url, 2, {
        name: "model a",
        signal: new AbortController().signal,
        deadline: Date.now() + 10_000,
        onAnswer: (call, status, body) => answers.push([call, status, body]),
      }),
      isError("failed", 'GET /is_sleeping of model a did not answer {"is_sleeping": bool}'),
    );
    assert.deepEqual(engine.seen, ["POST /sleep?level=2", "GET /is_sleeping"]);
    assert.deepEqual(answers, [["GET /is_sleeping", 200, "yes"]]);
  } finally {
    await engine.close();
  }
});

Deno.test("engine http: a 400 from collective_rpc stops the level-2 wake; the body goes only to onAnswer", async () => {
  const engine = serve((req) =>
    new URL(req.url).pathname === "/collective_rpc"
      ? Response.json({ detail: "Missing 'method' in request body" }, { status: 400 })
      : new Response(null)
  );
  const answers: string[] = [];
  try {
    await assert.rejects(
      wakeEngine(engine.url, 2, {
        name: "model a",
        signal: new AbortController().signal,
        deadline: Date.now() + 10_000,
        onAnswer: (_call, _status, body) => answers.push(body),
      }),
      isError("failed", "POST /collective_rpc of model a answered 400 Bad Request"),
    );
    assert.deepEqual(engine.seen, ["POST /wake_up?tags=weights", "POST /collective_rpc"]);
    assert.match(answers[0], /Missing 'method'/);
  } finally {
    await engine.close();
  }
});

Deno.test("engine http: an abort ends a wake at once; nobody listening → unavailable", async () => {
  const engine = serve(() => Response.json({ is_sleeping: true }));
  try {
    const controller = new AbortController();
    const waking = wakeEngine(engine.url, 1, {
      name: "model a",
      signal: controller.signal,
      deadline: Date.now() + 60_000,
    });
    setTimeout(() => controller.abort(new Error("superseded")), 100);
    await assert.rejects(waking, isError("aborted", /^GET \/is_sleeping of model a aborted: superseded$/));
  } finally {
    await engine.close();
  }
  const nobody = `http://127.0.0.1:${await freePort("127.0.0.1")}`;
  await assert.rejects(
    sleepEngine(nobody, 1, { name: "model a", signal: new AbortController().signal, deadline: Date.now() + 300 }),
    isError("unavailable", /^POST \/sleep\?level=1 of model a got no answer \(/),
  );
  assert.equal(await probeSleeping(nobody, 200, new AbortController().signal), null);
});
