/**
 * Scenario 5 — bad input: malformed and truncated JSON, bodies over the
 * limit (also trickled slowly over raw TCP), multipart without `model`, a
 * wrong content type, unknown models, odd paths sent over raw TCP (so no
 * client normalises them), admin endpoints without or with a wrong token,
 * missing or wrong API keys, control characters and header-injection
 * attempts in model names. Each case asserts its status and that nothing
 * was woken (no Kubernetes write, no pod) against the fake API server
 * enforcing the generated Role.
 */
import assert from "node:assert/strict";
import {
  assertNothingWoken,
  assertRoleSufficed,
  type FakeCluster,
  type KubeProxy,
  rawRequest,
  startCluster,
  startKubeProxy,
} from "./helpers.ts";

const API_KEY = "bad-input-key-5b1d9e";
const ADMIN = "bad-input-admin-77c2aa";
const AUTH = { authorization: `Bearer ${API_KEY}` };

/** One cluster + proxy for the whole file (every case asserts it woke nothing). */
async function withBadInputProxy(fn: (cluster: FakeCluster, proxy: KubeProxy) => Promise<void>): Promise<void> {
  const cluster = await startCluster({
    config: { apiKeys: [API_KEY], adminToken: ADMIN, maxBodyBytes: "4Ki" },
  });
  try {
    const proxy = await startKubeProxy(cluster);
    try {
      // Let the start-up work (ensure resources, RBAC self-check) finish so only the cases' calls are counted.
      await cluster.fake.until(() => cluster.replicas() === 0, 5000, "the Deployment ensured");
      await new Promise((r) => setTimeout(r, 100));
      await fn(cluster, proxy);
      assert.equal(cluster.scalePatches().length, 0, "no scale call in the whole file");
      assert.deepEqual(cluster.started, [], "no engine started in the whole file");
      assertRoleSufficed(cluster);
    } finally {
      await proxy.close();
    }
  } finally {
    await cluster.close();
  }
}

async function post(
  url: string,
  path: string,
  body: BodyInit,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${url}${path}`, { method: "POST", headers, body });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

function errorCode(text: string): string | undefined {
  try {
    return JSON.parse(text).error?.code;
  } catch {
    return undefined;
  }
}

const JSON_CT = { "content-type": "application/json", ...AUTH };

Deno.test("bad input: every hostile request gets its documented status and wakes nothing", async (t) => {
  await withBadInputProxy(async (cluster, proxy) => {
    const { url, server } = proxy;
    const port = server.port;
    const check = async (name: string, fn: () => Promise<void>) => {
      const before = cluster.fake.calls.length;
      await t.step(name, async () => {
        await fn();
        assertNothingWoken(cluster, before, name);
      });
    };

    await check("malformed JSON → 400 invalid_json", async () => {
      for (const body of ['{"model":', "{model: 'model-a'}", "not json", '{"model":"model-a",}', "\u0000\u0001"]) {
        const res = await post(url, "/v1/chat/completions", body, JSON_CT);
        assert.equal(res.status, 400, `${JSON.stringify(body)} → ${res.status} ${res.text}`);
        assert.equal(errorCode(res.text), "invalid_json");
      }
    });

    await check("truncated JSON (a valid body cut short) → 400", async () => {
      const full = JSON.stringify({ model: "model-a", messages: [{ role: "user", content: "hello" }] });
      for (const cut of [1, 10, full.length - 1]) {
        const res = await post(url, "/v1/chat/completions", full.slice(0, cut), JSON_CT);
        assert.equal(res.status, 400, `cut at ${cut}: ${res.text}`);
      }
    });

    await check("JSON that is not an object, or a model that is not a string → 400", async () => {
      for (const body of ["[]", '"model-a"', "null", "42", '{"model":42}', '{"model":["model-a"]}']) {
        const res = await post(url, "/v1/chat/completions", body, JSON_CT);
        assert.equal(res.status, 400, `${body} → ${res.status} ${res.text}`);
      }
    });

    await check("body over maxBodyBytes → 413", async () => {
      const body = JSON.stringify({ model: "model-a", prompt: "x".repeat(8192) });
      const res = await post(url, "/v1/completions", body, JSON_CT);
      assert.equal(res.status, 413);
      assert.equal(errorCode(res.text), "request_too_large");
    });

    await check("body over the limit trickled slowly (Content-Length) → 413 before it is all sent", async () => {
      const piece = new TextEncoder().encode("x".repeat(512));
      const res = await rawRequest(
        port,
        [
          "POST /v1/completions HTTP/1.1",
          "Host: proxy",
          "Content-Type: application/json",
          `Authorization: Bearer ${API_KEY}`,
          `Content-Length: ${512 * 40}`,
          "Connection: close",
          "",
          "",
        ].join("\r\n"),
        { body: Array(40).fill(piece), pauseMs: 10, timeoutMs: 8000 },
      );
      assert.equal(res.status, 413, res.head);
    });

    await check("body over the limit trickled slowly (chunked, no length) → 413", async () => {
      const chunk = (s: string) => new TextEncoder().encode(`${s.length.toString(16)}\r\n${s}\r\n`);
      const pieces = [chunk('{"model":"model-a","prompt":"'), ...Array(30).fill(chunk("y".repeat(300)))];
      pieces.push(new TextEncoder().encode("0\r\n\r\n"));
      const res = await rawRequest(
        port,
        [
          "POST /v1/completions HTTP/1.1",
          "Host: proxy",
          "Content-Type: application/json",
          `Authorization: Bearer ${API_KEY}`,
          "Transfer-Encoding: chunked",
          "Connection: close",
          "",
          "",
        ].join("\r\n"),
        { body: pieces, pauseMs: 10, timeoutMs: 8000 },
      );
      assert.equal(res.status, 413, res.head);
    });

    await check("multipart without model → 400", async () => {
      const form = new FormData();
      form.append("file", new Blob([new Uint8Array([1, 2, 3])]), "a.wav");
      form.append("language", "en");
      const res = await fetch(`${url}/v1/audio/transcriptions`, { method: "POST", headers: AUTH, body: form });
      const text = await res.text();
      assert.equal(res.status, 400, text);
      assert.equal(errorCode(text), "model_required");
    });

    await check("broken multipart (no boundary) → 400", async () => {
      const res = await post(url, "/v1/audio/transcriptions", "--x\r\nnothing", {
        ...AUTH,
        "content-type": "multipart/form-data",
      });
      assert.equal(res.status, 400, res.text);
    });

    await check("wrong content type → 415", async () => {
      for (const type of ["text/plain", "application/x-www-form-urlencoded", "application/xml"]) {
        const res = await post(url, "/v1/chat/completions", '{"model":"model-a"}', { ...AUTH, "content-type": type });
        assert.equal(res.status, 415, `${type} → ${res.status}`);
      }
    });

    await check("unknown model → 404 model_not_found", async () => {
      for (const model of ["gpt-4", "MODEL-A", "model-a ", "org/model-a", "model-a\u0000"]) {
        const res = await post(url, "/v1/chat/completions", JSON.stringify({ model }), JSON_CT);
        assert.equal(res.status, 404, `${JSON.stringify(model)} → ${res.status}`);
        assert.equal(errorCode(res.text), "model_not_found");
      }
    });

    await check("control characters and header injection in the model name → 404, nothing injected", async () => {
      for (
        const model of ["a\r\nX-Injected: 1", "model-a\r\n\r\nHTTP/1.1 200 OK", "\u001b[31mred", "a\nSet-Cookie: x=1"]
      ) {
        const body = JSON.stringify({ model });
        const res = await rawRequest(
          port,
          [
            "POST /v1/chat/completions HTTP/1.1",
            "Host: proxy",
            "Content-Type: application/json",
            `Authorization: Bearer ${API_KEY}`,
            `Content-Length: ${new TextEncoder().encode(body).length}`,
            "Connection: close",
            "",
            body,
          ].join("\r\n"),
        );
        assert.ok([400, 404].includes(res.status), `${JSON.stringify(model)} → ${res.status}`);
        assert.ok(!res.headers.has("x-injected") && !res.headers.has("set-cookie"), `header injected: ${res.head}`);
        assert.equal(res.head.split("\r\n").filter((l) => l.startsWith("HTTP/")).length, 1, "one status line");
        JSON.parse(res.body); // a well-formed JSON error body: the name was escaped
      }
      const lines = proxy.logs.lines.join("\n");
      assert.ok(!lines.includes("\r\nX-Injected"), "raw CR/LF from a model name reached the log");
    });

    await check("a hostile x-request-id is not echoed", async () => {
      const res = await rawRequest(
        port,
        [
          "POST /v1/chat/completions HTTP/1.1",
          "Host: proxy",
          "Content-Type: application/json",
          `Authorization: Bearer ${API_KEY}`,
          "X-Request-Id: <script>alert(1)</script>",
          "Content-Length: 2",
          "Connection: close",
          "",
          "{}",
        ].join("\r\n"),
      );
      assert.equal(res.status, 400);
      assert.ok(!res.head.includes("<script>"), res.head);
    });

    await check("odd paths over raw TCP → 403/404/414, never a forward or an admin action", async () => {
      const cases: [string, string, number[]][] = [
        // Resolved to /admin/unload by the URL parser: still needs the admin token (an API key is not it → 403).
        ["POST", "/v1/../admin/unload", [403]],
        ["POST", "/v1/%2e%2e/admin/unload", [403, 404]],
        ["POST", "/v1/%2E%2E/%2E%2E/admin/models/model-a/load", [403, 404]],
        ["POST", "/v1%2fchat%2fcompletions", [404]],
        ["POST", "/v1/chat%2Fcompletions", [404]],
        ["POST", "//v1/chat/completions", [404]],
        ["POST", "/v1/chat/completions/..%2f..%2fadmin%2funload", [404]],
        // The URL parser turns "\\" into "/" (WHATWG, http scheme): this is /admin/unload, admin token needed.
        ["POST", "/v1\\..\\admin\\unload", [403]],
        ["POST", "/v1/chat/completions%00", [404]],
        ["POST", "/admin/models/..%2fmodel-a/load", [403, 404]],
        ["GET", "/v1/models/../../admin/status", [403]],
        ["POST", `/v1/${"a".repeat(3000)}`, [414]],
        ["GET", `/${"%2e".repeat(2000)}`, [404, 414]],
      ];
      for (const [method, path, expected] of cases) {
        const body = JSON.stringify({ model: "model-a", messages: [] });
        const res = await rawRequest(
          port,
          [
            `${method} ${path} HTTP/1.1`,
            "Host: proxy",
            "Content-Type: application/json",
            `Authorization: Bearer ${API_KEY}`,
            `Content-Length: ${method === "GET" ? 0 : body.length}`,
            "Connection: close",
            "",
            method === "GET" ? "" : body,
          ].join("\r\n"),
        );
        assert.ok(
          expected.includes(res.status),
          `${method} ${path.slice(0, 60)} → ${res.status} (expected ${expected})`,
        );
      }
      // A very long request line: refused by the HTTP layer or the proxy, never served.
      const huge = await rawRequest(
        port,
        `GET /${"b".repeat(100_000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      assert.ok([0, 400, 404, 414, 431].includes(huge.status), `100 kB path → ${huge.status}`);
    });

    await check("admin endpoints without or with a wrong token → 401 / 403", async () => {
      const calls: [string, string][] = [
        ["GET", "/admin/status"],
        ["POST", "/admin/unload"],
        ["POST", "/admin/models/model-a/load"],
        ["POST", "/admin/models/model-a/load?wait=true"],
      ];
      for (const [method, path] of calls) {
        for (
          const [headers, status] of [
            [{}, 401],
            [{ authorization: "Bearer wrong-admin-token" }, 403],
            [{ authorization: `Bearer ${API_KEY}` }, 403], // an API key is not the admin token
            [{ authorization: ADMIN }, 401], // not a Bearer credential
            [{ authorization: `Basic ${btoa(`admin:${ADMIN}`)}` }, 401],
          ] as [Record<string, string>, number][]
        ) {
          const res = await fetch(`${url}${path}`, { method, headers });
          const text = await res.text();
          assert.equal(res.status, status, `${method} ${path} with ${JSON.stringify(headers)} → ${res.status}`);
          assert.ok(!text.includes(ADMIN), "the admin token echoed");
        }
      }
    });

    await check("missing or wrong API key → 401 invalid_api_key", async () => {
      const body = JSON.stringify({ model: "model-a", messages: [] });
      const cases: Record<string, string>[] = [
        { "content-type": "application/json" },
        { "content-type": "application/json", authorization: "Bearer wrong-key-123456" },
        { "content-type": "application/json", authorization: `Bearer ${API_KEY.slice(0, -1)}` },
        { "content-type": "application/json", authorization: API_KEY },
        { "content-type": "application/json", "x-api-key": API_KEY }, // only /v1/messages takes x-api-key
        { "content-type": "application/json", authorization: `Bearer ${ADMIN}` },
      ];
      for (const headers of cases) {
        const res = await post(url, "/v1/chat/completions", body, headers);
        assert.equal(res.status, 401, `${JSON.stringify(headers)} → ${res.status}`);
        assert.equal(errorCode(res.text), "invalid_api_key");
        assert.ok(!res.text.includes(API_KEY.slice(0, -1)), "the key echoed");
      }
      const list = await fetch(`${url}/v1/models`);
      await list.body?.cancel();
      assert.equal(list.status, 401, "the model list needs a key too");
    });

    await check("wrong methods → 405", async () => {
      const res = await fetch(`${url}/v1/chat/completions`, { headers: AUTH });
      await res.body?.cancel();
      assert.equal(res.status, 405);
      const del = await fetch(`${url}/admin/unload`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      await del.body?.cancel();
      assert.equal(del.status, 405);
    });

    // Nothing ever got near an engine.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.ok(!/vllm_chill_requests_total\{[^}]*code="200"/.test(metrics), "no forwarded request succeeded");
    assert.ok(!/vllm_chill_requests_total\{[^}]*code="5\d\d"/.test(metrics), "no 5xx");
  });
});
