/**
 * The event hub in-process: nothing runs without a client, changes are
 * coalesced into one flush that every client shares (the same bytes), log
 * lines beyond the per-flush budget are counted as skipped, and a client
 * that does not read is dropped without holding the others.
 */
import assert from "node:assert/strict";
import { EventHub, type EventHubTuning, frame } from "../../lib/dashboard/event_hub.ts";
import { createLogger, tapLogger } from "../../lib/log.ts";
import { within } from "../e2e/helpers.ts";

interface Harness {
  hub: EventHub;
  /** Snapshot reads so far. */
  reads: () => number;
  /** Change listeners subscribed now. */
  listeners: () => number;
  /** Fires the change signal. */
  change: () => void;
  /** Sets what the next snapshot read returns. */
  setStatus: (text: string) => void;
  lines: string[];
}

function harness(tuning: Partial<EventHubTuning> = {}): Harness {
  let reads = 0;
  let status = '{"state":"idle"}';
  const listeners = new Set<() => void>();
  const lines: string[] = [];
  const hub = new EventHub({
    snapshot: () => {
      reads++;
      return Promise.resolve(status);
    },
    onChange: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    log: createLogger({ write: (line) => lines.push(line) }),
    tuning: { heartbeatMs: 60_000, refreshMs: 60_000, ...tuning },
  });
  return {
    hub,
    reads: () => reads,
    listeners: () => listeners.size,
    change: () => {
      for (const listener of listeners) listener();
    },
    setStatus: (text) => status = text,
    lines,
  };
}

/** Reads chunks until one contains `needle`; returns every chunk read. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, needle: string): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < 1000; i++) {
    const { value, done } = await within(reader.read(), 5000, `a chunk with ${needle}`);
    if (done) throw new Error(`the stream ended before ${needle}`);
    chunks.push(value);
    if (new TextDecoder().decode(value).includes(needle)) return chunks;
  }
  throw new Error(`no chunk with ${needle}`);
}

Deno.test("hub: nothing is subscribed or read while no client is open", async () => {
  const h = harness();
  h.hub.write('{"msg":"before"}', "info");
  assert.equal(h.hub.listening, false);
  assert.equal(h.listeners(), 0);
  assert.equal(h.reads(), 0);
  const reader = h.hub.connect()!.getReader();
  await readUntil(reader, "event: snapshot");
  assert.equal(h.listeners(), 1);
  assert.equal(h.reads(), 1);
  await reader.cancel();
  assert.equal(h.hub.clients, 0);
  assert.equal(h.listeners(), 0, "the last client leaving unsubscribes from the scaler");
  h.change();
  assert.equal(h.reads(), 1);
  h.hub.close();
});

Deno.test("hub: first chunk is retry, backlog, snapshot; a burst of changes is one flush shared by all clients", async () => {
  const h = harness({ minIntervalMs: 20 });
  const a = h.hub.connect()!.getReader();
  const b = h.hub.connect()!.getReader();
  const [firstA] = await readUntil(a, "event: snapshot");
  const [firstB] = await readUntil(b, "event: snapshot");
  assert.equal(new TextDecoder().decode(firstA), `retry: 3000\n\n${frame("snapshot", '{"state":"idle"}')}`);
  assert.equal(firstA, firstB, "both clients got the same bytes");
  const readsBefore = h.reads();

  h.setStatus('{"state":"ready"}');
  for (let i = 0; i < 1000; i++) h.change();
  const [nextA] = await readUntil(a, "ready");
  const [nextB] = await readUntil(b, "ready");
  assert.equal(nextA, nextB, "one serialization shared by all clients");
  assert.equal(new TextDecoder().decode(nextA), frame("snapshot", '{"state":"ready"}'));
  assert.equal(h.reads() - readsBefore, 1, "1000 change signals, one status read");

  // An unchanged status is not sent again; log lines are.
  h.change();
  h.hub.write('{"msg":"hello"}', "info");
  const [logChunk] = await readUntil(a, "hello");
  assert.equal(new TextDecoder().decode(logChunk), frame("log", '{"msg":"hello"}'));

  // A later client gets the recent log lines before its snapshot.
  const c = h.hub.connect()!.getReader();
  const [firstC] = await readUntil(c, "event: snapshot");
  assert.equal(
    new TextDecoder().decode(firstC),
    `retry: 3000\n\n${frame("log", '{"msg":"hello"}')}${frame("snapshot", '{"state":"ready"}')}`,
  );
  await Promise.all([a.cancel(), b.cancel(), c.cancel()]);
  h.hub.close();
});

Deno.test("hub: log lines beyond the per-flush budget are counted as skipped, never built", async () => {
  const h = harness({ minIntervalMs: 20, logLinesPerFlush: 3 });
  const reader = h.hub.connect()!.getReader();
  await readUntil(reader, "event: snapshot");
  let built = 0;
  // The base logger writes errors only, so whatever reads the fields below is the tap building a line.
  const log = tapLogger(createLogger({ level: "error", write: () => {} }), h.hub);
  for (let i = 1; i <= 10; i++) {
    log.info("line", {
      get n() {
        built++;
        return i;
      },
    });
  }
  assert.equal(built, 3, "lines beyond the budget are not even serialized");
  const [chunk] = await readUntil(reader, "skipped");
  const text = new TextDecoder().decode(chunk);
  assert.ok(text.startsWith(frame("skipped", '{"lines":7}')), text);
  assert.deepEqual(
    text.split("\n").filter((l) => l.startsWith('data: {"time')).map((l) => JSON.parse(l.slice(6)).n),
    [1, 2, 3],
  );
  await reader.cancel();
  h.hub.close();
});

Deno.test("hub: a client that does not read is dropped; a reading one is not held up", async () => {
  const h = harness({ minIntervalMs: 0, maxBufferedBytes: 4096 });
  const silent = h.hub.connect()!.getReader();
  const reading = h.hub.connect()!.getReader();
  await readUntil(reading, "event: snapshot");
  const line = JSON.stringify({ msg: "x".repeat(200) });
  let rounds = 0;
  for (; rounds < 1000 && h.hub.clients === 2; rounds++) {
    h.hub.write(line, "info");
    await readUntil(reading, "xxxx");
  }
  assert.equal(h.hub.clients, 1, "the silent client is still connected");
  assert.ok(rounds > 5, "dropped only once its buffer was full");
  // The silent client sees its stream errored after what was queued.
  await assert.rejects(async () => {
    for (let i = 0; i < 1000; i++) if ((await silent.read()).done) return;
  }, /too slow/);
  assert.equal(h.lines.filter((l) => l.includes("dashboard client dropped")).length, 1);
  h.hub.write(line, "info");
  await readUntil(reading, "xxxx");
  await reading.cancel();
  h.hub.close();
});

Deno.test("hub: full → null; closed → null and streams end", async () => {
  const h = harness({ maxClients: 1 });
  const reader = h.hub.connect()!.getReader();
  assert.equal(h.hub.connect(), null);
  await readUntil(reader, "event: snapshot");
  h.hub.close();
  assert.equal((await within(reader.read(), 5000, "the end")).done, true);
  assert.equal(h.hub.connect(), null);
});

Deno.test("hub: a failing status read is logged and retried at the next change, not in a loop", async () => {
  let reads = 0;
  let fail = true;
  const listeners = new Set<() => void>();
  const lines: string[] = [];
  const hub = new EventHub({
    snapshot: () => (reads++, fail ? Promise.reject(new Error("boom")) : Promise.resolve('{"ok":true}')),
    onChange: (l) => (listeners.add(l), () => listeners.delete(l)),
    log: createLogger({ write: (line) => lines.push(line) }),
    tuning: { minIntervalMs: 5, heartbeatMs: 60_000, refreshMs: 60_000 },
  });
  const reader = hub.connect()!.getReader();
  for (let i = 0; i < 100 && reads === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(reads, 1);
  assert.ok(lines.some((l) => l.includes("could not read the status")));
  fail = false;
  for (const l of listeners) l();
  await readUntil(reader, '{"ok":true}');
  assert.equal(reads, 2, "one read per change, no retry loop");
  await reader.cancel();
  hub.close();
});

Deno.test("tapLogger: copies info and above as redacted JSON, only while listened to", () => {
  const copies: string[] = [];
  const written: string[] = [];
  let listening = false;
  const sink = { accepts: () => listening, write: (json: string) => void copies.push(json) };
  const base = createLogger({ level: "error", write: (line) => written.push(line) });
  const log = tapLogger(base, sink, ["sekret-1234", 'quo"te-5678']).with({ component: "x" });
  log.info("not listened");
  assert.deepEqual(copies, []);
  listening = true;
  log.debug("debug line");
  log.info("uses sekret-1234", { key: 'quo"te-5678' });
  log.error("bad");
  assert.equal(copies.length, 2, "debug is not copied; info is, whatever the base level");
  const first = JSON.parse(copies[0]);
  assert.equal(first.msg, "uses [redacted]");
  assert.equal(first.key, "[redacted]");
  assert.equal(first.component, "x");
  assert.equal(written.length, 1, "the base logger keeps its own level");
});
