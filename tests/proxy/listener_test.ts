/**
 * The guarded listener over raw sockets: connections that trickle a request
 * head (or send nothing) are closed at the header timeout and counted;
 * kept-alive idle connections close without being counted as slow; a long
 * answer is never cut; beyond the connection limit new connections get a 503
 * and the proxy serves again once they are gone. Timeouts are injected small.
 */
import assert from "node:assert/strict";
import { createMetrics, type Metrics } from "../../lib/metrics.ts";
import { silentLogger } from "../../lib/log.ts";
import { connectionLimitFor, type GuardedServer, serveGuarded } from "../../lib/proxy/listener.ts";
import type { ConnectionLimits, ServeConnection } from "../../lib/proxy/listener.ts";
import { waitUntil } from "../support/wait.ts";
import { readToEnd } from "./helpers.ts";

const encoder = new TextEncoder();

function start(
  limits: Partial<ConnectionLimits>,
  handler: (req: Request) => Response | Promise<Response> = () => new Response("ok"),
): { server: GuardedServer; metrics: Metrics; url: string; port: number } {
  const metrics = createMetrics();
  const server = serveGuarded({
    hostname: "127.0.0.1",
    port: 0,
    handler,
    onError: () => new Response(null, { status: 500 }),
    log: silentLogger,
    metrics,
    limits,
  });
  return { server, metrics, url: `http://127.0.0.1:${server.addr.port}`, port: server.addr.port };
}

Deno.test("listener: connections that trickle a head or send nothing are closed at the header timeout and counted", async () => {
  const { server, metrics, url, port } = start({ headerTimeoutMs: 300, idleTimeoutMs: 60_000 });
  const tricklers: Deno.Conn[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];
  try {
    for (let i = 0; i < 40; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      tricklers.push(conn);
      if (i % 2 === 0) continue; // half send nothing at all
      await conn.write(encoder.encode("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: "));
      timers.push(setInterval(() => conn.write(encoder.encode("a")).catch(() => {}), 50));
    }
    await waitUntil(() => server.connections() === 40, 5000, "40 open connections");
    // A normal client is served meanwhile.
    const res = await fetch(`${url}/healthz`);
    assert.equal(await res.text(), "ok");
    const ends = await Promise.all(tricklers.map((conn) => readToEnd(conn, 10_000)));
    assert.ok(ends.every((end) => end.closed), "every slow connection was closed by the proxy");
    assert.ok(ends.every((end) => end.text === ""), "without an answer");
    assert.equal(metrics.slowClientsTotal.get({ phase: "headers" }), 40);
    await waitUntil(() => server.connections() <= 1, 5000, "the slow connections to be gone");
  } finally {
    for (const timer of timers) clearInterval(timer);
    for (const conn of tricklers) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await server.shutdown();
  }
});

Deno.test("listener: a kept-alive idle connection is closed at the idle timeout, not counted as slow; a long answer is never cut", async () => {
  const { server, metrics, port } = start({ headerTimeoutMs: 150, idleTimeoutMs: 300 }, (req) => {
    if (new URL(req.url).pathname !== "/slow") return new Response("quick");
    // An answer that takes longer than both timeouts, in parts.
    let n = 0;
    return new Response(
      new ReadableStream({
        async pull(controller) {
          await new Promise((r) => setTimeout(r, 100));
          if (++n > 8) controller.close();
          else controller.enqueue(encoder.encode(`part${n}\n`));
        },
      }),
    );
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const slow = await readToEnd(conn, 10_000);
    assert.match(slow.text, /part8\n/, "the whole 800 ms answer arrived");

    const idle = await Deno.connect({ hostname: "127.0.0.1", port });
    await idle.write(encoder.encode("GET /quick HTTP/1.1\r\nHost: x\r\n\r\n"));
    const kept = await readToEnd(idle, 10_000);
    assert.match(kept.text, /quick$/);
    assert.ok(kept.closed, "closed after the idle timeout");
    assert.equal(metrics.slowClientsTotal.get({ phase: "headers" }), 0, "served connections are not slow clients");
  } finally {
    await server.shutdown();
  }
});

Deno.test("listener: beyond maxConnections new connections get 503 + Retry-After; served again once they close", async () => {
  const { server, metrics, url, port } = start({ headerTimeoutMs: 60_000, idleTimeoutMs: 60_000, maxConnections: 5 });
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 5; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await waitUntil(() => server.connections() === 5, 5000, "5 open connections");
    const extra = await Deno.connect({ hostname: "127.0.0.1", port });
    await extra.write(encoder.encode("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    const shed = await readToEnd(extra, 5000);
    assert.match(shed.text, /^HTTP\/1\.1 503 /);
    assert.match(shed.text, /retry-after: 1/i);
    assert.match(shed.text, /"code":"proxy_overloaded"/);
    assert.equal(metrics.connectionsShedTotal.get({ reason: "max_connections" }), 1);
    for (const conn of held.splice(0)) conn.close();
    await waitUntil(() => server.connections() === 0, 5000, "the held connections to close");
    const res = await fetch(`${url}/healthz`);
    assert.equal(await res.text(), "ok");
  } finally {
    for (const conn of held) conn.close();
    await server.shutdown();
  }
});

Deno.test("listener: without the runtime's per-connection server it falls back to Deno.serve (unguarded)", async () => {
  const metrics = createMetrics();
  const server = serveGuarded({
    hostname: "127.0.0.1",
    port: 0,
    handler: () => new Response("plain"),
    onError: () => new Response(null, { status: 500 }),
    log: silentLogger,
    metrics,
    serveConnection: null,
  });
  try {
    assert.equal(server.guarded, false);
    assert.equal(await (await fetch(`http://127.0.0.1:${server.addr.port}/`)).text(), "plain");
  } finally {
    await server.shutdown();
  }
});

Deno.test("listener: the connection limit leaves room for engine connections and a reserve", () => {
  assert.equal(connectionLimitFor(1024, 20), 470);
  assert.equal(connectionLimitFor(300, 20), 108);
  assert.equal(connectionLimitFor(50, 20), 8, "never below 8");
  assert.equal(connectionLimitFor(null, null), 16_384);
});

Deno.test("listener: closing a connection whose server is already releasing it is not an uncaught error", async () => {
  // The runtime's per-connection server, in the window where it stopped waiting for requests and is closing its
  // resource: its abort listener calls op_http_cancel on a resource already gone and throws BadResource
  // (ext/http/00_serve.ts). Thrown from an event listener, that is reported as uncaught and ends the process.
  let aborts = 0;
  const releasing: ServeConnection = (
    conn,
    signal,
  ) => {
    const { promise: finished, resolve } = Promise.withResolvers<void>();
    signal.addEventListener("abort", () => {
      aborts++;
      conn.close();
      resolve();
      throw new Deno.errors.BadResource("Bad resource ID");
    }, { once: true });
    return { finished, shutdown: () => finished };
  };
  const server = serveGuarded({
    hostname: "127.0.0.1",
    port: 0,
    handler: () => new Response("ok"),
    onError: () => new Response(null, { status: 500 }),
    log: silentLogger,
    metrics: createMetrics(),
    serveConnection: releasing,
  });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    for (let i = 0; i < 200 && server.connections() === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(server.connections(), 1);
    server.close();
    await server.finished;
    assert.equal(aborts, 1, "the connection was told to close");
    // Any other error thrown from a listener is still reported: only this one, raised while closing, is expected.
  } finally {
    client.close();
  }
});
