import assert from "node:assert/strict";
import { matchRoute } from "../../lib/proxy/routes.ts";

Deno.test("matchRoute: forwarded allow-list", () => {
  for (
    const path of [
      "/v1/chat/completions",
      "/v1/completions",
      "/v1/embeddings",
      "/v1/responses",
      "/v1/messages",
      "/v1/audio/transcriptions",
      "/v1/audio/translations",
      "/v1/rerank",
      "/v1/score",
      "/v2/rerank",
      "/tokenize",
      "/detokenize",
      "/pooling",
      "/score",
      "/rerank",
      "/classify",
    ]
  ) {
    const m = matchRoute(path);
    assert.equal(m.kind, "forward", path);
    assert.ok(m.kind === "forward" && m.hasBody && m.method === "POST");
  }
  const get = matchRoute("/v1/responses/resp_abc123");
  assert.deepEqual(get, { kind: "forward", method: "GET", hasBody: false, xApiKey: false });
  assert.equal(matchRoute("/v1/responses/resp_1/cancel").kind, "forward");
  assert.ok((matchRoute("/v1/messages") as { xApiKey: boolean }).xApiKey);
});

Deno.test("matchRoute: own endpoints", () => {
  assert.deepEqual(matchRoute("/healthz"), { kind: "own", route: "healthz", method: "GET" });
  assert.equal((matchRoute("/v1/models") as { route: string }).route, "models");
  assert.deepEqual(matchRoute("/admin/models/qwen3-8b/load"), {
    kind: "own",
    route: "admin_load",
    method: "POST",
    param: "qwen3-8b",
  });
  assert.equal((matchRoute("/admin/unload") as { route: string }).route, "admin_unload");
  assert.deepEqual(matchRoute("/admin/models/a/sleep"), {
    kind: "own",
    route: "admin_sleep",
    method: "POST",
    param: "a",
  });
  assert.deepEqual(matchRoute("/admin/models/a/unload"), {
    kind: "own",
    route: "admin_unload_model",
    method: "POST",
    param: "a",
  });
});

Deno.test("matchRoute: unknown and odd paths never match", () => {
  for (
    const path of [
      "/",
      "/v1/files",
      "/v1/chat/completions/",
      "/V1/chat/completions",
      "/v1%2Fchat/completions",
      "/v1/chat%2fcompletions",
      "/v1/responses/a%2F..%2Fadmin",
      "/v1/responses/a/b/c",
      "/v1/responses/%2e%2e",
      "/admin/models/a%2Fb/load",
      "/admin/models/a/drop",
      "/admin/models//load",
      "//v1/chat/completions",
      "/v1/chat\\completions",
      "/health",
      "/load",
      "/v1/load_lora_adapter",
    ]
  ) {
    assert.equal(matchRoute(path).kind, "not_found", path);
  }
  assert.equal(matchRoute("/v1/" + "a".repeat(2100)).kind, "too_long");
});
