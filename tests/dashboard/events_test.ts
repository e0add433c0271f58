/**
 * GET /admin/events over real HTTP, process backend with fake engines: the
 * first event is a snapshot (the GET /admin/status JSON), changes follow
 * live, heartbeats keep the stream open, the admin token may come as a query
 * parameter (on this endpoint only) and is never logged, a client that does
 * not read is dropped while the others keep receiving, and opening the
 * stream never starts an engine.
 */
import assert from "node:assert/strict";
import { postChat, startProxy, waitUntil, within } from "../e2e/helpers.ts";
import { openEvents, type SseBlock } from "./sse_client.ts";

const ADMIN = "admin-token-dash-7c41e0b2";
const WRONG = "wrong-token-dash-19fa33d5";
const API_KEY = "api-key-dash-0d7be4c9";

const isSnapshot = (block: SseBlock) => block.event === "snapshot";
// deno-lint-ignore no-explicit-any
const parse = (block: SseBlock): any => JSON.parse(block.data);

Deno.test("events: snapshot first, live changes and log lines, recent operations, no engine woken", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, {
    a: { loadMs: 100 },
    b: { loadMs: 100 },
    broken: { modelName: "org/broken", command: ["sh", "-c", 'echo "CUDA out of memory" >&2; exit 3', "x"] },
  });
  try {
    const events = await openEvents(`${proxy.url}/admin/events`);
    try {
      assert.equal(events.response.status, 200);
      assert.equal(events.response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      const first = await events.next((b) => b.event !== null || b.retry !== null, 5000, "the first block", 0);
      assert.equal(first.retry, 3000, "the stream opens with a retry hint");
      const snapshot = await events.next((b) => b.event !== null, 5000, "the first event", 0);
      assert.equal(snapshot.event, "snapshot", "the first event is a snapshot");
      const status = parse(snapshot);
      // The snapshot is the GET /admin/status document.
      const direct = await (await fetch(`${proxy.url}/admin/status`)).json();
      assert.deepEqual(Object.keys(status).sort(), Object.keys(direct).sort());
      assert.equal(status.state, "idle");
      assert.deepEqual(status.models.a, {
        status: "cold",
        gpus: [],
        share: 0.9,
        inflight: 0,
        held: 0,
        lastUsed: null,
        lastColdStartMs: null,
        lastWakeMs: null,
        error: null,
      });
      assert.equal(status.models.b.status, "cold");
      assert.deepEqual(status.gpus, { "0": { awakeShare: 0, models: [] } });
      assert.deepEqual(status.recent, []);

      // Nothing woke up: no engine process exists for this proxy.
      assert.deepEqual(await proxy.engines(), [], "opening the stream started an engine");

      // A request for a: a live snapshot shows it ready on GPU 0, the log tail shows the request line.
      const res = await postChat(proxy.url, "a");
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const ready = parse(
        await events.next((b) => isSnapshot(b) && parse(b).models.a.status === "ready", 10_000, "a ready"),
      );
      assert.deepEqual(ready.models.a.gpus, ["0"]);
      assert.equal(ready.gpus["0"].awakeShare, 0.9);
      assert.deepEqual(ready.gpus["0"].models, ["a"]);
      assert.equal(typeof ready.models.a.lastColdStartMs, "number");
      const line = await events.next(
        (b) => b.event === "log" && JSON.parse(b.data).msg === "request",
        10_000,
        "the request's log line",
        0,
      );
      assert.equal(JSON.parse(line.data).path, "/v1/chat/completions");

      // Switch to b: recent shows a's stop, b's cold start and the switch, with durations.
      const switched = await postChat(proxy.url, "b");
      assert.equal(switched.status, 200);
      await switched.body?.cancel();
      const after = parse(
        await events.next(
          (b) => isSnapshot(b) && parse(b).recent.some((op: { kind: string }) => op.kind === "switch"),
          10_000,
          "the switch in recent",
        ),
      );
      const kinds = after.recent.map((op: { kind: string; model: string }) => `${op.kind}:${op.model}`);
      assert.deepEqual(kinds.toSorted(), ["coldStart:a", "coldStart:b", "stop:a", "switch:b"]);
      for (const op of after.recent) {
        if (op.kind !== "stop") assert.equal(typeof op.ms, "number", `${op.kind} has a duration`);
        assert.ok(!Number.isNaN(Date.parse(op.at)));
      }
      assert.equal(after.models.a.status, "cold");
      assert.equal(proxy.engineStarts("a"), 1);
      assert.equal(proxy.engineStarts("b"), 1);

      // A model whose engine fails: failed, with the reason.
      const failed = await postChat(proxy.url, "broken");
      assert.equal(failed.status, 503);
      await failed.body?.cancel();
      const broken = parse(
        await events.next((b) => isSnapshot(b) && parse(b).models.broken.status === "failed", 10_000, "broken failed"),
      ).models.broken;
      assert.match(broken.error, /exited with code 3/);
      assert.deepEqual(broken.gpus, []);
    } finally {
      await events.close();
    }
  } finally {
    await proxy.close();
  }
});

Deno.test("events: scale-only mode shows its one engine on GPU 0 once it serves", async () => {
  const proxy = await startProxy({ enableModelSwitch: false }, {
    only: { loadMs: 50, spec: { gpuMemoryUtilization: 0.5 } },
  });
  try {
    const events = await openEvents(`${proxy.url}/admin/events`);
    try {
      const first = parse(await events.next(isSnapshot, 5000, "a snapshot", 0));
      // One entry, under the scheduler's key for "whatever the Deployment serves".
      const names = Object.keys(first.models);
      assert.equal(names.length, 1);
      const [name] = names;
      assert.equal(first.models[name].status, "cold");
      const res = await postChat(proxy.url, "only");
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const ready = parse(
        await events.next((b) => isSnapshot(b) && parse(b).models[name].status === "ready", 10_000, "ready"),
      );
      assert.deepEqual(ready.models[name].gpus, ["0"]);
      assert.deepEqual(ready.gpus["0"], { awakeShare: 0.5, models: [name] });
    } finally {
      await events.close();
    }
  } finally {
    await proxy.close();
  }
});

Deno.test("events: heartbeats; shutdown ends open streams at once", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: {} }, { dashboard: { heartbeatMs: 50 } });
  try {
    const events = await openEvents(`${proxy.url}/admin/events`);
    try {
      await events.next((b) => b.comment === "keepalive", 5000, "a heartbeat comment", 0);
      const count = events.blocks.filter((b) => b.comment === "keepalive").length;
      await events.next((b) => b.comment === "keepalive", 5000, "another heartbeat");
      assert.ok(events.blocks.filter((b) => b.comment === "keepalive").length > count);
      // An open stream must not hold the shutdown for its grace period (10 s here).
      await within(proxy.server.shutdown(), 5000, "the shutdown");
      await events.ended(5000);
    } finally {
      await events.close();
    }
  } finally {
    await proxy.close();
  }
});

Deno.test("events: admin token by header or ?token= (this endpoint only), compared, never logged", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, adminToken: ADMIN }, { a: {} });
  try {
    const missing = await fetch(`${proxy.url}/admin/events`);
    assert.equal(missing.status, 401);
    assert.equal((await missing.json()).error.code, "admin_token_required");
    const wrong = await fetch(`${proxy.url}/admin/events?token=${WRONG}`);
    assert.equal(wrong.status, 403);
    assert.equal((await wrong.json()).error.code, "admin_token_invalid");
    const wrongHeader = await fetch(`${proxy.url}/admin/events?token=${ADMIN}`, {
      headers: { authorization: `Bearer ${WRONG}` },
    });
    assert.equal(wrongHeader.status, 403, "the header wins over the query parameter");
    await wrongHeader.body?.cancel();

    for (
      const [url, headers] of [
        [`${proxy.url}/admin/events?token=${ADMIN}`, {}],
        [`${proxy.url}/admin/events`, { authorization: `Bearer ${ADMIN}` }],
      ] as const
    ) {
      const events = await openEvents(url, headers);
      try {
        assert.equal(events.response.status, 200);
        await events.next(isSnapshot, 5000, "a snapshot");
      } finally {
        await events.close();
      }
    }
    // Only /admin/events takes the query parameter.
    const status = await fetch(`${proxy.url}/admin/status?token=${ADMIN}`);
    assert.equal(status.status, 401);
    await status.body?.cancel();

    assert.equal(proxy.logs.messages("dashboard connected").length, 2, "one line per stream opened");
    const text = proxy.logs.lines.join("\n");
    assert.ok(!text.includes(ADMIN), "the admin token reached the log");
    assert.ok(!text.includes(WRONG), "a presented token reached the log");
    assert.ok(!text.includes(`token=`), "a query string reached the log");
    assert.deepEqual(await proxy.engines(), [], "nothing woke up");
  } finally {
    await proxy.close();
  }
});

Deno.test("events: log events carry lines at info and above, secrets redacted", async () => {
  // The served name carries an API key, so the engine's start line does too: the tail must mask it.
  const proxy = await startProxy(
    { enableModelSwitch: true, adminToken: ADMIN, apiKeys: [API_KEY] },
    { a: { spec: { servedModelName: `served-${API_KEY}` } } },
  );
  try {
    const events = await openEvents(`${proxy.url}/admin/events`, { authorization: `Bearer ${ADMIN}` });
    try {
      await events.next(isSnapshot, 5000, "a snapshot");
      const res = await fetch(`${proxy.url}/admin/models/a/load`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      assert.equal(res.status, 202);
      await res.body?.cancel();
      const started = await events.next(
        (b) => b.event === "log" && JSON.parse(b.data).msg === "engine started",
        10_000,
        "the engine start line",
        0,
      );
      const record = JSON.parse(started.data);
      assert.equal(record.level, "info");
      assert.equal(record.model, "a");
      assert.match(started.data, /served-\[redacted\]/);
      assert.ok(proxy.logs.lines.some((l) => l.includes(API_KEY)), "the unredacted line exists (test logger)");
      for (const block of events.blocks) {
        if (block.event !== "log") continue; // snapshots are GET /admin/status, which shows the served name as is
        assert.ok(!block.data.includes(API_KEY), "an API key reached the log tail");
        assert.notEqual(JSON.parse(block.data).level, "debug", "a debug line reached the log tail");
      }
    } finally {
      await events.close();
    }
  } finally {
    await proxy.close();
  }
});

Deno.test("events: at most maxClients streams; 503 beyond", async () => {
  const proxy = await startProxy({ enableModelSwitch: true }, { a: {} }, { dashboard: { maxClients: 2 } });
  try {
    const one = await openEvents(`${proxy.url}/admin/events`);
    const two = await openEvents(`${proxy.url}/admin/events`);
    try {
      const three = await fetch(`${proxy.url}/admin/events`);
      assert.equal(three.status, 503);
      assert.equal((await three.json()).error.code, "too_many_dashboards");
      assert.equal(three.headers.get("retry-after"), "5");
    } finally {
      await one.close();
      await two.close();
    }
    await waitUntil(() => proxy.server.dashboard.hub.clients === 0, 5000, "the streams to close");
    const again = await openEvents(`${proxy.url}/admin/events`);
    try {
      assert.equal(again.response.status, 200);
    } finally {
      await again.close();
    }
  } finally {
    await proxy.close();
  }
});

Deno.test("events: a client that does not read is dropped; the others keep receiving", async () => {
  const proxy = await startProxy(
    { enableModelSwitch: true },
    { a: { loadMs: 0 } },
    // Small buffer, a flush per change: the silent client falls behind quickly.
    { dashboard: { maxBufferedBytes: 32 * 1024, minIntervalMs: 1 } },
  );
  const port = new URL(proxy.url).port;
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  try {
    await silent.write(new TextEncoder().encode(`GET /admin/events HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`));
    const reader = await openEvents(`${proxy.url}/admin/events`);
    try {
      await reader.next(isSnapshot, 5000, "a snapshot");
      await waitUntil(() => proxy.server.dashboard.hub.clients === 2, 5000, "both streams open");
      // Warm requests with long request ids: every one changes the status and adds a log line.
      const id = "x".repeat(120);
      let sent = 0;
      for (let round = 0; round < 2000 && proxy.server.dashboard.hub.clients === 2; round++) {
        const batch = await Promise.all(
          Array.from({ length: 8 }, (_, i) => postChat(proxy.url, "a", {}, { "x-request-id": `${id}${round}-${i}` })),
        );
        for (const res of batch) {
          assert.equal(res.status, 200);
          await res.body?.cancel();
        }
        sent += batch.length;
      }
      assert.equal(proxy.server.dashboard.hub.clients, 1, `the silent client was not dropped after ${sent} requests`);
      assert.equal(proxy.logs.messages("dashboard client dropped: it does not read its events").length, 1);

      // The silent client's connection was closed by the proxy: reading it now ends (EOF or reset).
      const drained = (async () => {
        const buffer = new Uint8Array(64 * 1024);
        let total = 0;
        try {
          for (let n = 0; n < 100_000; n++) {
            const read = await silent.read(buffer);
            if (read === null) break;
            total += read;
          }
        } catch { /* reset */ }
        return total;
      })();
      const received = await within(drained, 10_000, "the silent connection to end");
      assert.ok(received > 0, "the silent client got the start of the stream");

      // The reading client still gets live events.
      const before = reader.blocks.length;
      const res = await postChat(proxy.url, "a", {}, { "x-request-id": "after-the-drop" });
      await res.body?.cancel();
      await reader.next(
        (b) => b.event === "log" && JSON.parse(b.data).id === "after-the-drop",
        5000,
        "a log line after the drop",
        before,
      );
    } finally {
      await reader.close();
    }
  } finally {
    try {
      silent.close();
    } catch { /* already closed */ }
    await proxy.close();
  }
});
