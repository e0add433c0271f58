import assert from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { createKubeContext } from "../../lib/kube/context.ts";

const fixture = (name: string) => Deno.readTextFileSync(new URL(`./fixtures/${name}`, import.meta.url));

function kubeConfigFor(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server, caData: btoa(fixture("ca.pem")) }],
    users: [{ name: "u", token: "t0ken-for-tests" }],
    contexts: [{ name: "x", cluster: "c", user: "u", namespace: "ai-apps" }],
    currentContext: "x",
  });
  return kc;
}

Deno.test("client-node calls over TLS negotiate HTTP/1.1, never h2 (Deno's nghttp2 aborts on GOAWAY races)", async () => {
  // A TLS server that offers h2 first, like a real API server, and answers one HTTP/1.1 request per connection.
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: fixture("server.pem"),
    key: fixture("server-key.pem"),
    alpnProtocols: ["h2", "http/1.1"],
  });
  const negotiated: (string | null)[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      const { alpnProtocol } = await conn.handshake();
      negotiated.push(alpnProtocol);
      const buf = new Uint8Array(16_384);
      await conn.read(buf);
      const body = JSON.stringify({ kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: "1" }, items: [] });
      await conn.write(new TextEncoder().encode(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      ));
      conn.close();
    }
  })();
  const closed = new AbortController();
  try {
    const ctx = createKubeContext(
      { namespace: "ai-apps" },
      closed.signal,
      kubeConfigFor(`https://127.0.0.1:${listener.addr.port}`),
    );
    const list = await ctx.core.listNamespacedPod({ namespace: "ai-apps" });
    assert.equal(list.items.length, 0);
    assert.deepEqual(negotiated, ["http/1.1"]);
  } finally {
    closed.abort();
    listener.close();
    await serving.catch(() => {});
  }
});
