/**
 * Request bodies within limits: size (413), the proxy-wide budget of bytes
 * being received (503 + Retry-After), a body that stalls (408, counted as a
 * slow client, connection closed), a client that leaves mid-upload (one
 * info line, status 499). Over real HTTP where the behaviour is the
 * proxy's; the engine is checked to have received nothing.
 */
import assert from "node:assert/strict";
import { createUploadGuard } from "../../lib/proxy/uploads.ts";
import { MODELS, readToEnd, startProxy } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A body stream that sends `parts` then waits for `release` before ending. */
function slowBody(parts: string[]): { stream: ReadableStream<Uint8Array>; release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  let i = 0;
  return {
    release,
    stream: new ReadableStream({
      async pull(c) {
        if (i < parts.length) return c.enqueue(enc.encode(parts[i++]));
        await released;
        c.close();
      },
    }),
  };
}

Deno.test("uploads: declared and chunked sizes over the limit are refused; the budget counts bodies being received", async () => {
  const uploads = createUploadGuard({ budgetBytes: 100, stallMs: 60_000 });
  try {
    const big = new Request("http://x/", { method: "POST", body: "123456789", headers: { "content-length": "9" } });
    assert.deepEqual(await uploads.read(big, 8), { ok: false, refusal: "too_large" });
    const chunked = slowBody(["abc", "def", "ghi"]);
    chunked.release();
    const read = await uploads.read(new Request("http://x/", { method: "POST", body: chunked.stream }), 5);
    assert.deepEqual(read, { ok: false, refusal: "too_large" });

    // An upload of unknown length is counted as it arrives: 60 bytes in flight.
    const first = slowBody(["x".repeat(60)]);
    const pending = uploads.read(new Request("http://x/", { method: "POST", body: first.stream }), 1000);
    for (let i = 0; i < 100 && uploads.inUse() < 60; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(uploads.inUse(), 60);
    // 50 more declared bytes would pass the 100-byte budget.
    const second = new Request("http://x/", { method: "POST", body: "y".repeat(50) });
    assert.deepEqual(await uploads.read(second, 1000), { ok: false, refusal: "over_budget" });
    // 40 fit.
    const third = await uploads.read(new Request("http://x/", { method: "POST", body: "z".repeat(40) }), 1000);
    assert.ok(third.ok && third.bytes.length === 40);
    first.release();
    const done = await pending;
    assert.ok(done.ok && dec.decode(done.bytes) === "x".repeat(60));
    assert.equal(uploads.inUse(), 0, "nothing counted once received");
  } finally {
    uploads.close();
  }
});

Deno.test("uploads: a body that stops arriving is dropped as stalled (small declared, and streamed)", async () => {
  const uploads = createUploadGuard({ budgetBytes: 1 << 20, stallMs: 100 });
  try {
    const streamed = slowBody(["abc"]);
    const outcome = await uploads.read(new Request("http://x/", { method: "POST", body: streamed.stream }), 1000);
    assert.deepEqual(outcome, { ok: false, refusal: "stalled" });
    assert.equal(uploads.inUse(), 0);
  } finally {
    uploads.close();
  }
});

/** Sends a raw HTTP request head plus the first part of its body; returns the socket. */
async function rawUpload(url: string, declared: number, first: string, extra = ""): Promise<Deno.Conn> {
  const port = Number(new URL(url).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}` +
      `Content-Length: ${declared}\r\n\r\n${first}`,
  ));
  return conn;
}

Deno.test("uploads over HTTP: a stalled body gets 408 and its connection closed, counted as a slow client", async () => {
  const p = await startProxy({ enableModelSwitch: true, models: MODELS }, { bodyStallMs: 150 });
  try {
    p.gate.warm.add("qwen");
    const url = p.serve();
    const conn = await rawUpload(url, 100_000, '{"model":"qwen3-8b","messages":[');
    const answer = await readToEnd(conn, 10_000);
    assert.match(answer.text, /^HTTP\/1\.1 408 /);
    assert.match(answer.text, /"code":"request_timeout"/);
    assert.ok(answer.closed, "the proxy closed the connection");
    assert.equal(p.metrics.slowClientsTotal.get({ phase: "body" }), 1);
    assert.equal(p.upstream.requests.length, 0, "nothing reached the engine");
    const line = p.logs.find((l) => l.msg === "request");
    assert.equal(line?.status, 408);
  } finally {
    await p.close();
  }
});

Deno.test("uploads over HTTP: a client that leaves mid-upload is logged once, at info, as 499", async () => {
  const p = await startProxy({ enableModelSwitch: true, models: MODELS }, { bodyStallMs: 60_000 });
  try {
    p.gate.warm.add("qwen");
    const url = p.serve();
    const conn = await rawUpload(url, 100_000, '{"model":"qwen3-8b","messages":[');
    for (let i = 0; i < 200 && p.logs.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    conn.close();
    for (let i = 0; i < 400 && !p.logs.some((l) => l.msg === "request"); i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const lines = p.logs.filter((l) => l.msg === "request");
    assert.equal(lines.length, 1, JSON.stringify(p.logs));
    assert.equal(lines[0].status, 499);
    assert.equal(lines[0].level, "info");
    assert.equal(lines[0].path, "/v1/chat/completions");
    assert.deepEqual(p.logs.filter((l) => l.level === "error"), [], "no error line");
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "client_closed" }), 1);
  } finally {
    await p.close();
  }
});

Deno.test("uploads over HTTP: beyond maxUploadingBytes new uploads get 503 + Retry-After until bodies complete", async () => {
  const p = await startProxy({ enableModelSwitch: true, models: MODELS, maxBodyBytes: 4096, maxUploadingBytes: 4096 });
  try {
    p.gate.warm.add("qwen");
    const url = p.serve();
    const body = JSON.stringify({ model: "qwen3-8b", messages: [], pad: "x".repeat(3000) });
    const head = body.slice(0, 100);
    const slow = await rawUpload(url, body.length, head, "Connection: close\r\n");
    // The slow upload holds ~3 KiB of the 4 KiB budget (once the proxy has its head).
    for (let i = 0; i < 200; i++) {
      const probe = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", messages: [], pad: "y".repeat(1500) }),
      });
      const text = await probe.text();
      if (probe.status === 503) {
        assert.equal(probe.headers.get("retry-after"), "1");
        assert.equal(JSON.parse(text).error.code, "upload_budget_exceeded");
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(p.metrics.rejectedRequestsTotal.get({ reason: "upload_budget" }), 1);
    await slow.write(enc.encode(body.slice(100)));
    const answer = await readToEnd(slow, 10_000);
    assert.match(answer.text, /^HTTP\/1\.1 200 /, "the slow upload itself completes");
    const after = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen3-8b", messages: [], pad: "y".repeat(1500) }),
    });
    assert.equal(after.status, 200, await after.text());
  } finally {
    await p.close();
  }
});

Deno.test("uploads over HTTP: /healthz keeps answering while three 30 MB bodies of small objects are uploaded", async () => {
  const p = await startProxy({ enableModelSwitch: true, models: MODELS, maxBodyBytes: "64Mi" });
  try {
    p.gate.warm.add("qwen");
    const url = p.serve();
    const piece = enc.encode(`${'{"role":"user","content":"hello there, small object"},'.repeat(20_000)}`); // ~1 MB
    const parts = 30;
    let uploading = 3;
    const upload = async () => {
      let i = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 10));
          if (i === 0) c.enqueue(enc.encode('{"model":"qwen3-8b","messages":['));
          if (i < parts) c.enqueue(piece);
          else {
            c.enqueue(enc.encode('{"role":"user","content":"last"}]}'));
            c.close();
          }
          i++;
        },
      });
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      const text = await res.text();
      uploading--;
      return { status: res.status, text };
    };
    const uploads = [upload(), upload(), upload()];
    let answeredDuring = 0;
    for (let i = 0; i < 1000 && uploading > 0; i++) {
      const health = await fetch(`${url}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      if (uploading > 0) answeredDuring++;
      await new Promise((r) => setTimeout(r, 20));
    }
    const results = await Promise.all(uploads);
    for (const r of results) assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.ok(answeredDuring >= 3, `/healthz answered ${answeredDuring} times during the uploads`);
    assert.equal(p.upstream.requests.length, 3);
    for (const r of p.upstream.requests) {
      assert.ok(r.body.length > 30 * piece.length, "the whole body reached the engine");
    }
  } finally {
    await p.close();
  }
});
