import assert from "node:assert/strict";
import {
  ConflictError,
  ForbiddenError,
  InvalidError,
  type KubeError,
  NotFoundError,
  toKubeError,
  UnavailableError,
} from "../../lib/kube/mod.ts";
import { retryUnavailable } from "../../lib/kube/retry.ts";

const status = (code: number, reason: string, message: string) =>
  JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message });

Deno.test("toKubeError maps status codes to typed errors and keeps the server's message", () => {
  const cases: [number, string, new (...a: never[]) => KubeError][] = [
    [404, "NotFound", NotFoundError],
    [409, "Conflict", ConflictError],
    [403, "Forbidden", ForbiddenError],
    [401, "Unauthorized", ForbiddenError],
    [422, "Invalid", InvalidError],
    [415, "UnsupportedMediaType", InvalidError],
    [500, "InternalError", UnavailableError],
    [503, "ServiceUnavailable", UnavailableError],
  ];
  for (const [code, reason, type] of cases) {
    const e = toKubeError({ code, body: status(code, reason, `server says ${code}`) }, "doing a thing");
    assert.ok(e instanceof type, `${code} → ${type.name}`);
    assert.equal(e.status, code);
    assert.equal(e.reason, reason);
    assert.equal(e.message, `doing a thing: server says ${code}`);
  }
});

Deno.test("toKubeError treats network failures as Unavailable and passes typed errors through", () => {
  const network = toKubeError(new TypeError("fetch failed: connection refused"));
  assert.ok(network instanceof UnavailableError);
  assert.match(network.message, /connection refused/);
  const typed = new ConflictError(409, "Conflict", "x");
  assert.equal(toKubeError(typed), typed);
  const watchDone = toKubeError(Object.assign(new Error("Gone"), { statusCode: 410 }));
  assert.equal(watchDone.status, 410);
});

Deno.test("retryUnavailable retries 5xx only, and stops at the deadline", async () => {
  let calls = 0;
  const value = await retryUnavailable(() => {
    calls++;
    if (calls < 3) return Promise.reject({ code: 503, body: status(503, "ServiceUnavailable", "busy") });
    return Promise.resolve("ok");
  }, { minDelayMs: 1, maxDelayMs: 2 });
  assert.equal(value, "ok");
  assert.equal(calls, 3);

  calls = 0;
  await assert.rejects(
    retryUnavailable(() => {
      calls++;
      return Promise.reject({ code: 404, body: status(404, "NotFound", "gone") });
    }, { minDelayMs: 1 }),
    NotFoundError,
  );
  assert.equal(calls, 1);

  calls = 0;
  await assert.rejects(
    retryUnavailable(() => {
      calls++;
      return Promise.reject({ code: 500, body: status(500, "InternalError", "down") });
    }, { minDelayMs: 50, deadline: Date.now() + 60 }),
    UnavailableError,
  );
  assert.ok(calls <= 2, `bounded by the deadline (${calls} calls)`);

  // With a deadline (and no attempt limit), an outage longer than 6 attempts is ridden out.
  calls = 0;
  const late = await retryUnavailable(() => {
    calls++;
    if (calls <= 10) return Promise.reject(new TypeError("connection refused"));
    return Promise.resolve("back");
  }, { minDelayMs: 1, maxDelayMs: 2, deadline: Date.now() + 5000 });
  assert.equal(late, "back");
  assert.equal(calls, 11);
});
