/**
 * The engine client over real sockets: framing (length, chunked, until
 * close), connection reuse, a connection the engine closed while idle, and
 * the at-most-once rule — a request is never written twice, and an error
 * says whether it may have left.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ChunkedDecoder, createEngineClient, EngineError, type EngineRequest } from "../../lib/proxy/engine_client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A raw TCP "engine": `respond` gets each request's head and body and writes whatever it wants. */
interface RawEngine {
  url: string;
  /** Requests received, in order. */
  requests: { head: string; body: string; conn: number }[];
  /** Connections accepted so far. */
  connections: number;
  /** Connections the engine saw closed by the client. */
  closedByClient: number;
  close(): Promise<void>;
}

type Respond = (conn: Deno.Conn, request: { head: string; body: string; index: number }) => Promise<"keep" | "close">;

function startRawEngine(respond: Respond): RawEngine {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const engine: RawEngine = {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    requests: [],
    connections: 0,
    closedByClient: 0,
    close: async () => {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await accepting;
      await Promise.all(serving);
    },
  };
  const serving: Promise<void>[] = [];
  const serve = async (conn: Deno.Conn, id: number) => {
    const buf = new Uint8Array(64 * 1024);
    let pending = new Uint8Array(0);
    try {
      for (;;) {
        const text = decoder.decode(pending);
        const end = text.indexOf("\r\n\r\n");
        const length = end < 0 ? -1 : Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
        if (end >= 0 && pending.length >= end + 4 + length) {
          const request = {
            head: text.slice(0, end),
            body: text.slice(end + 4, end + 4 + length),
            index: engine.requests.length,
          };
          engine.requests.push({ head: request.head, body: request.body, conn: id });
          pending = pending.slice(end + 4 + length);
          if (await respond(conn, request) === "close") {
            conn.close();
            return;
          }
          continue;
        }
        const n = await conn.read(buf);
        if (n === null) {
          engine.closedByClient++;
          conn.close();
          return;
        }
        const next = new Uint8Array(pending.length + n);
        next.set(pending);
        next.set(buf.subarray(0, n), pending.length);
        pending = next;
      }
    } catch {
      /* closed */
    } finally {
      conns.delete(conn);
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        serving.push(serve(conn, ++engine.connections));
      }
    } catch { /* closed */ }
  })();
  return engine;
}

const write = (conn: Deno.Conn, text: string) => conn.write(encoder.encode(text)).then(() => {});
const ok = (body: string, extra = "") =>
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${
    encoder.encode(body).length
  }\r\n${extra}\r\n${body}`;

function request(url: string, init: Partial<EngineRequest> = {}): EngineRequest {
  return {
    upstream: url,
    path: "/v1/completions",
    method: "POST",
    headers: [["content-type", "application/json"]],
    body: encoder.encode('{"model":"m"}'),
    signal: new AbortController().signal,
    ...init,
  };
}

async function text(answer: { bytes: Uint8Array | null; body: ReadableStream<Uint8Array> | null }): Promise<string> {
  if (answer.bytes) return decoder.decode(answer.bytes);
  return answer.body ? await new Response(answer.body).text() : "";
}

Deno.test("engine client: small answers are read whole, the connection is reused, the request is written once", async () => {
  const engine = startRawEngine(async (conn, r) => {
    await write(conn, ok(`{"n":${r.index}}`));
    return "keep";
  });
  const client = createEngineClient();
  try {
    for (let i = 0; i < 3; i++) {
      const answer = await client.send(request(engine.url, { headers: [["x-a", "é-latin1"], ["host", "evil"]] }));
      assert.equal(answer.status, 200);
      assert.ok(answer.bytes, "read whole");
      assert.equal(answer.body, null);
      assert.equal(decoder.decode(answer.bytes), `{"n":${i}}`);
    }
    assert.equal(engine.connections, 1, "one kept-alive connection");
    assert.equal(engine.requests.length, 3);
    const head = engine.requests[0].head;
    assert.match(head, /^POST \/v1\/completions HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\n/);
    assert.doesNotMatch(head, /evil/, "the caller cannot set host");
    assert.match(head, /content-length: 13/);
    assert.equal(engine.requests[0].body, '{"model":"m"}');
    assert.deepEqual(client.connections(), { idle: 1, busy: 0 });
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: header values are sent as bytes (latin-1), not widened to UTF-8", async () => {
  const received: Uint8Array[] = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(4096);
    const n = (await conn.read(buf))!;
    received.push(buf.slice(0, n));
    await write(conn, ok("{}", "connection: close\r\n"));
    conn.close();
  })();
  const client = createEngineClient();
  try {
    const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    await client.send(request(url, { method: "GET", body: null, headers: [["x-name", "caf\u00e9"]] }));
    await served;
    const bytes = received[0];
    const at = bytes.findIndex((b, i) => b === 0x63 && bytes[i + 1] === 0x61 && bytes[i + 2] === 0x66);
    assert.deepEqual([...bytes.subarray(at, at + 5)], [0x63, 0x61, 0x66, 0xe9, 0x0d], "é is the single byte 0xE9");
    assert.doesNotMatch(decoder.decode(bytes), /content-length/, "a GET without body has no content-length");
    assert.deepEqual(client.connections(), { idle: 0, busy: 0 }, "connection: close is not kept");
  } finally {
    client.close();
    listener.close();
  }
});

Deno.test("engine client: answer header bytes above ASCII are read one character per byte (latin-1)", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.read(new Uint8Array(4096));
    const head = encoder.encode("HTTP/1.1 200 OK\r\nx-name: caf?\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
    head[head.indexOf(0x3f)] = 0xe9; // the byte é has in latin-1, which is not UTF-8
    await conn.write(head);
    conn.close();
  })();
  const client = createEngineClient();
  try {
    const answer = await client.send(request(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`));
    await served;
    assert.deepEqual(answer.headers.find(([name]) => name === "x-name"), ["x-name", "caf\u00e9"]);
    assert.equal(await text(answer), "{}");
  } finally {
    client.close();
    listener.close();
  }
});

Deno.test("engine client: a chunked SSE answer is passed on chunk by chunk, then the connection is reused", async () => {
  let next!: () => void;
  const engine = startRawEngine(async (conn, r) => {
    if (r.index === 1) {
      await write(conn, ok("{}"));
      return "keep";
    }
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
    await write(conn, "d\r\ndata: first\n\n\r\n");
    await new Promise<void>((r) => next = r);
    // The next chunk split across writes, with an extension and a trailer.
    await write(conn, "e;ext=1\r\ndata: se");
    await write(conn, "cond\n\n\r\n0\r\nx-trailer: 1\r\n\r\n");
    return "keep";
  });
  const client = createEngineClient();
  try {
    const answer = await client.send(request(engine.url));
    assert.equal(answer.bytes, null, "SSE is never read whole");
    const reader = answer.body!.getReader();
    const first = await reader.read();
    assert.equal(decoder.decode(first.value), "data: first\n\n", "the first event arrives before the second is sent");
    next();
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += decoder.decode(value);
    }
    assert.equal(rest, "data: second\n\n");
    assert.equal(await text(await client.send(request(engine.url))), "{}");
    assert.equal(engine.connections, 1, "the connection was reused after the chunked body");
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: a large answer is streamed; a body ended by close is read to the end", async () => {
  const big = "x".repeat(200_000);
  const engine = startRawEngine(async (conn, r) => {
    if (r.index === 0) {
      await write(conn, ok(big));
      return "keep";
    }
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end");
    return "close";
  });
  const client = createEngineClient();
  try {
    const large = await client.send(request(engine.url));
    assert.equal(large.bytes, null);
    assert.equal((await text(large)).length, big.length);
    const eof = await client.send(request(engine.url));
    assert.equal(await text(eof), "until the end");
    assert.deepEqual(client.connections(), { idle: 0, busy: 0 }, "a close-delimited body ends its connection");
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: an engine that closes after reading the request → EngineError sent=true, never re-sent", async () => {
  const engine = startRawEngine(async (conn, r) => {
    if (r.index === 0) {
      await write(conn, ok("{}"));
      return "keep";
    }
    return "close"; // read the request, then die without answering
  });
  const client = createEngineClient();
  try {
    await text(await client.send(request(engine.url)));
    const error = await client.send(request(engine.url)).then(() => null, (e) => e);
    assert.ok(error instanceof EngineError, String(error));
    assert.equal(error.kind, "broken");
    assert.equal(error.sent, true, "the request may have arrived");
    assert.equal(engine.requests.length, 2, "written once (fetch would have re-sent it on a new connection)");
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: a refused connection → kind refused, sent=false", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  const client = createEngineClient();
  try {
    const error = await client.send(request(url)).then(() => null, (e) => e);
    assert.ok(error instanceof EngineError);
    assert.equal(error.kind, "refused");
    assert.equal(error.sent, false);
  } finally {
    client.close();
  }
});

Deno.test("engine client: a connection the engine closed while idle is dropped, the next request uses a new one", async () => {
  const engine = startRawEngine(async (conn) => {
    // Answers, then closes the kept-alive connection shortly after (as an engine restart or keep-alive expiry).
    await write(conn, ok("{}"));
    setTimeout(() => {
      try {
        conn.close();
      } catch { /* closed */ }
    }, 20);
    return "keep";
  });
  const client = createEngineClient();
  try {
    await text(await client.send(request(engine.url)));
    // Deadline-bounded wait on the condition: the idle connection is noticed as closed.
    for (let i = 0; i < 200 && client.connections().idle > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(client.connections(), { idle: 0, busy: 0 });
    assert.equal(await text(await client.send(request(engine.url))), "{}");
    assert.equal(engine.requests.length, 2, "each request arrived once");
    assert.equal(engine.connections, 2);
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: idle connections are closed after idleTimeoutMs", async () => {
  const engine = startRawEngine(async (conn) => {
    await write(conn, ok("{}"));
    return "keep";
  });
  const client = createEngineClient({ idleTimeoutMs: 50 });
  try {
    await text(await client.send(request(engine.url)));
    assert.equal(client.connections().idle, 1);
    for (let i = 0; i < 200 && engine.closedByClient === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(engine.closedByClient, 1, "the client closed the idle connection");
    assert.equal(client.connections().idle, 0);
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: aborting before the answer, or cancelling the body, closes the connection", async () => {
  let sawClose = 0;
  const engine = startRawEngine(async (conn, r) => {
    if (r.index === 0) {
      // No answer: wait for the client to leave.
      while (await conn.read(new Uint8Array(1024)).catch(() => null) !== null);
      sawClose++;
      return "close";
    }
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
    await write(conn, "5\r\nhello\r\n");
    return "keep";
  });
  const client = createEngineClient();
  try {
    const abort = new AbortController();
    const pending = client.send(request(engine.url, { signal: abort.signal }));
    for (let i = 0; i < 200 && engine.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    abort.abort();
    const error = await pending.then(() => null, (e) => e);
    assert.ok(error instanceof EngineError);
    assert.equal(error.kind, "aborted");
    for (let i = 0; i < 200 && sawClose === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(sawClose, 1, "the engine saw the client leave");

    const answer = await client.send(request(engine.url));
    const reader = answer.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), "hello");
    await reader.cancel();
    for (let i = 0; i < 200 && engine.closedByClient < 1; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(engine.closedByClient, 1, "cancelling the body closes the connection");
    assert.deepEqual(client.connections(), { idle: 0, busy: 0 });
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("engine client: malformed answers are errors that say the request was sent", async () => {
  const answers = [
    "garbage\r\n\r\n",
    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
    "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
  ];
  const engine = startRawEngine(async (conn, r) => {
    await write(conn, answers[r.index]);
    return "close";
  });
  const client = createEngineClient();
  try {
    for (const raw of answers) {
      const error = await client.send(request(engine.url)).then((a) => text(a)).then(() => null, (e) => e);
      assert.ok(error instanceof EngineError, `${JSON.stringify(raw)}: ${error}`);
      assert.equal(error.sent, true);
    }
  } finally {
    client.close();
    await engine.close();
  }
});

Deno.test("chunked decoder: any split of any chunked body decodes to the original bytes (fast-check)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 10 }),
      (pieces, cuts) => {
        const framed: number[] = [];
        for (const piece of pieces) {
          framed.push(...encoder.encode(`${piece.length.toString(16)}\r\n`), ...piece, 13, 10);
        }
        framed.push(...encoder.encode("0\r\n\r\n"), 42);
        const bytes = new Uint8Array(framed);
        const decoder = new ChunkedDecoder();
        const out: number[] = [];
        let at = 0, c = 0, rest: Uint8Array | null = null, done = false;
        while (at < bytes.length && !done) {
          const size = cuts[c++ % cuts.length];
          const result = decoder.push(bytes.slice(at, at + size));
          at += size;
          if (result.data) out.push(...result.data);
          done = result.done;
          rest = result.rest;
        }
        assert.ok(done);
        assert.deepEqual(out, pieces.flatMap((p) => [...p]));
        const trailing = [...(rest ?? []), ...bytes.slice(at)];
        assert.deepEqual(trailing, [42], "what follows the body is handed back");
      },
    ),
    { numRuns: 300, seed: 11 },
  );
});
