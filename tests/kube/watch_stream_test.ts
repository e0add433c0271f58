import assert from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { ForbiddenError, KubeError, UnavailableError } from "../../lib/kube/errors.ts";
import { forceHttp1 } from "../../lib/kube/http1.ts";
import { httpClientOptions, streamWatch, type WatchEvent, watchUrl } from "../../lib/kube/watch_stream.ts";

// Test-only certificates (a throwaway CA and a server certificate for 127.0.0.1), valid until 2125.
const fixture = (name: string) => Deno.readTextFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const CA = fixture("ca.pem");
const SERVER_CERT = fixture("server.pem");
const SERVER_KEY = fixture("server-key.pem");
const TOKEN = "watch-stream-test-token";
const PATH = "/api/v1/namespaces/ai-apps/pods";

function kubeConfigFor(server: string, cluster: Record<string, unknown> = {}, user: Record<string, unknown> = {}) {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // client-node refuses plain http unless TLS verification is skipped (it has none to skip).
    clusters: [{ name: "c", server, ...(server.startsWith("http:") ? { skipTLSVerify: true } : {}), ...cluster }],
    users: [{ name: "u", token: TOKEN, ...user }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return kc;
}

const line = (type: string, name: string, rv: string) =>
  JSON.stringify({ type, object: { kind: "Pod", metadata: { name, resourceVersion: rv } } }) + "\n";

/**
 * A raw HTTP/1.1 server on 127.0.0.1, so a test controls chunk boundaries and can cut a connection in the
 * middle of a chunked body. `respond` gets the request head and the connection; the connection is closed after.
 */
function rawServer(respond: (head: string, conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      const buf = new Uint8Array(16 * 1024);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        head += new TextDecoder().decode(buf.subarray(0, n));
      }
      await respond(head, conn);
    } catch {
      /* the client went away */
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const task = serve(conn);
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await accepting.catch(() => {});
      await Promise.all([...tasks]);
    },
  };
}

const encoder = new TextEncoder();
const write = (conn: Deno.Conn, text: string) => conn.write(encoder.encode(text));
const chunk = (text: string) => `${encoder.encode(text).length.toString(16)}\r\n${text}\r\n`;
const STREAM_HEAD = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";

Deno.test("watchUrl: server + path + watch=true + query, undefined values left out", () => {
  const url = watchUrl("https://k8s.example:6443/", PATH, {
    resourceVersion: "42",
    labelSelector: "app=vllm,managed-by=vllm-chill",
    fieldSelector: undefined,
  });
  assert.equal(url.origin + url.pathname, "https://k8s.example:6443" + PATH);
  assert.equal(url.searchParams.get("watch"), "true");
  assert.equal(url.searchParams.get("resourceVersion"), "42");
  assert.equal(url.searchParams.get("labelSelector"), "app=vllm,managed-by=vllm-chill");
  assert.equal(url.searchParams.has("fieldSelector"), false);
});

Deno.test("streamWatch: bearer token and query sent, lines split across chunks joined, clean end resolves", async () => {
  let head = "";
  const server = rawServer(async (h, conn) => {
    head = h;
    const first = line("ADDED", "a", "5");
    const second = line("BOOKMARK", "", "7");
    const error = JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } }) + "\n";
    await write(conn, STREAM_HEAD);
    // One event cut in three chunks, the next two in one chunk (the second split again), then the end.
    await write(conn, chunk(first.slice(0, 10)));
    await write(conn, chunk(first.slice(10, 30)));
    await write(conn, chunk(first.slice(30) + second.slice(0, 5)));
    await write(conn, chunk(second.slice(5) + error));
    await write(conn, "0\r\n\r\n");
  });
  try {
    const events: WatchEvent[] = [];
    await streamWatch(kubeConfigFor(server.url), {
      path: PATH,
      query: { resourceVersion: "4", labelSelector: "app=vllm", timeoutSeconds: "290" },
      onEvent: (e) => events.push(e),
    }, AbortSignal.timeout(5000));
    assert.deepEqual(events.map((e) => e.type), ["ADDED", "BOOKMARK", "ERROR"]);
    assert.deepEqual(events[0].object, { kind: "Pod", metadata: { name: "a", resourceVersion: "5" } });
    assert.equal((events[2].object as { code: number }).code, 410);
    const requestLine = head.split("\r\n")[0];
    assert.match(requestLine, /^GET \/api\/v1\/namespaces\/ai-apps\/pods\?watch=true&/);
    assert.match(requestLine, /resourceVersion=4/);
    assert.match(requestLine, /labelSelector=app%3Dvllm/);
    assert.match(requestLine, /timeoutSeconds=290/);
    assert.match(head, new RegExp(`^authorization: Bearer ${TOKEN}\\r$`, "mi"));
  } finally {
    await server.close();
  }
});

Deno.test("streamWatch: a connection cut in the middle of an event rejects at once with a network error", async () => {
  const server = rawServer(async (_h, conn) => {
    await write(conn, STREAM_HEAD);
    const partial = line("MODIFIED", "b", "9");
    await write(conn, chunk(line("ADDED", "a", "8") + partial.slice(0, 12)));
    // Closed here by rawServer: the chunked body never ends.
  });
  try {
    const events: WatchEvent[] = [];
    const started = Date.now();
    await assert.rejects(
      streamWatch(
        kubeConfigFor(server.url),
        { path: PATH, query: {}, onEvent: (e) => events.push(e) },
        AbortSignal.timeout(5000),
      ),
      (e) => e instanceof UnavailableError && e.status === 0 && /watch connection/.test(e.message),
    );
    assert.ok(Date.now() - started < 2000, "noticed at once, not after a timeout");
    assert.deepEqual(events.map((e) => e.type), ["ADDED"], "the complete event was delivered, the cut one not");
  } finally {
    await server.close();
  }
});

Deno.test("streamWatch: HTTP errors keep the server's Status (410 Gone, 403 Forbidden)", async () => {
  const status = (code: number, reason: string, message: string) => {
    const body = JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message });
    return `HTTP/1.1 ${code} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  };
  const server = rawServer(async (head, conn) => {
    if (/resourceVersion=1\b/.test(head)) await write(conn, status(410, "Gone", "too old resource version: 1 (9)"));
    else await write(conn, status(403, "Forbidden", 'pods is forbidden: cannot watch resource "pods"'));
  });
  try {
    const watch = (rv: string) =>
      streamWatch(
        kubeConfigFor(server.url),
        { path: PATH, query: { resourceVersion: rv }, onEvent: () => {} },
        AbortSignal.timeout(5000),
      );
    await assert.rejects(watch("1"), (e) => e instanceof KubeError && e.status === 410 && /too old/.test(e.message));
    await assert.rejects(watch("2"), (e) => e instanceof ForbiddenError && /cannot watch/.test(e.message));
  } finally {
    await server.close();
  }
});

Deno.test("streamWatch: aborting mid-stream rejects at once and releases the request, body and client", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const server = rawServer(async (_h, conn) => {
    await write(conn, STREAM_HEAD + chunk(line("ADDED", "a", "3")));
    await held; // never ends the body on its own
  });
  try {
    const controller = new AbortController();
    const events: WatchEvent[] = [];
    const watching = streamWatch(kubeConfigFor(server.url), {
      path: PATH,
      query: {},
      onEvent: (e) => {
        events.push(e);
        controller.abort(new Error("stop watching"));
      },
    }, controller.signal);
    const started = Date.now();
    await assert.rejects(watching, /stop watching/);
    assert.ok(Date.now() - started < 1000, "aborted at once");
    assert.equal(events.length, 1);
  } finally {
    release();
    await server.close();
  }
});

Deno.test("streamWatch over https trusts the kubeconfig's CA (caData and caFile) and fails without it", async () => {
  const events: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: SERVER_CERT, key: SERVER_KEY, onListen() {} },
    (req) => {
      const ok = req.headers.get("authorization") === `Bearer ${TOKEN}`;
      return new Response(ok ? line("ADDED", "tls", "1") : "", { status: ok ? 200 : 401 });
    },
  );
  const url = `https://127.0.0.1:${server.addr.port}`;
  const caFile = await Deno.makeTempFile({ suffix: ".pem" });
  try {
    await Deno.writeTextFile(caFile, CA);
    for (const cluster of [{ caData: btoa(CA) }, { caFile }]) {
      await streamWatch(kubeConfigFor(url, cluster), {
        path: PATH,
        query: {},
        onEvent: (e) => events.push((e.object as { metadata: { name: string } }).metadata.name),
      }, AbortSignal.timeout(5000));
    }
    assert.deepEqual(events, ["tls", "tls"]);
    await assert.rejects(
      streamWatch(kubeConfigFor(url), { path: PATH, query: {}, onEvent: () => {} }, AbortSignal.timeout(5000)),
      (e) => e instanceof UnavailableError && /certificate|UnknownIssuer|invalid peer/i.test(e.message),
    );
  } finally {
    await server.shutdown();
    await Deno.remove(caFile);
  }
});

Deno.test("streamWatch: insecure-skip-tls-verify on https falls back to client-node's Watch, which still works", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: SERVER_CERT, key: SERVER_KEY, onListen() {} },
    () => new Response(line("ADDED", "insecure", "1")),
  );
  try {
    // As in the product (createKubeContext): HTTP/1.1 only — undici's h2 aborts Deno (nghttp2) on a GOAWAY race.
    const kc = forceHttp1(kubeConfigFor(`https://127.0.0.1:${server.addr.port}`, { skipTLSVerify: true }));
    assert.equal(httpClientOptions(kc), null, "Deno's fetch cannot skip verification");
    const events: WatchEvent[] = [];
    await streamWatch(kc, { path: PATH, query: {}, onEvent: (e) => events.push(e) }, AbortSignal.timeout(5000));
    assert.deepEqual(events.map((e) => e.type), ["ADDED"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("httpClientOptions: CA, client certificate (data or files) and proxy from the kubeconfig", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, SERVER_CERT);
    await Deno.writeTextFile(`${dir}/key.pem`, SERVER_KEY);
    const fromData = httpClientOptions(
      kubeConfigFor("https://k8s:6443", { caData: btoa(CA), proxyUrl: "http://proxy:3128" }, {
        certData: btoa(SERVER_CERT),
        keyData: btoa(SERVER_KEY),
      }),
    );
    assert.deepEqual(fromData, {
      caCerts: [CA],
      cert: SERVER_CERT,
      key: SERVER_KEY,
      proxy: { url: "http://proxy:3128" },
    });
    const fromFiles = httpClientOptions(
      kubeConfigFor("https://k8s:6443", {}, { certFile: `${dir}/cert.pem`, keyFile: `${dir}/key.pem` }),
    );
    assert.deepEqual(fromFiles, { cert: SERVER_CERT, key: SERVER_KEY });
    assert.deepEqual(httpClientOptions(kubeConfigFor("http://127.0.0.1:1", { skipTLSVerify: true })), {});
    assert.equal(httpClientOptions(kubeConfigFor("https://k8s:6443", { tlsServerName: "api" })), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
