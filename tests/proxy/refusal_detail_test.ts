import assert from "node:assert/strict";
import { clientRefusal } from "../../lib/proxy/errors.ts";
import { Rejection } from "../../lib/scaler/types.ts";

const SCHEDULER =
  "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {gpu: a100}.";

Deno.test("a start the cluster had no room for: the client is told the kube scheduler's reason, nothing else", () => {
  const rejection = new Rejection(
    503,
    "model_unavailable",
    `model "a" failed to start: its pod could not be scheduled: ${SCHEDULER} (pod vllm-a-x Pending, engine log: …)`,
    30,
    SCHEDULER,
  );
  const r = clientRefusal(rejection, "a");
  assert.equal(r.status, 503);
  assert.equal(r.retryAfter, 30);
  assert.equal(
    r.message,
    `The model 'a' failed to start: no room in the cluster: ${SCHEDULER}; the reason is in GET /admin/status ` +
      "(lastError) and in the proxy's log",
  );
  assert.doesNotMatch(r.message, /engine log|vllm-a-x/);
});

Deno.test("without a detail the backend's reason stays out of the client's message; a long detail is one clipped line", () => {
  const plain = clientRefusal(new Rejection(503, "model_unavailable", 'model "a" failed to start: Traceback …'), "a");
  assert.doesNotMatch(plain.message, /Traceback|no room/);
  const long = clientRefusal(
    new Rejection(503, "model_unavailable", 'model "a" failed to start: x', 5, `0/9 nodes\n${"y".repeat(900)}`),
    "a",
  );
  assert.doesNotMatch(long.message, /\n/);
  assert.ok(long.message.length < 700, `${long.message.length}`);
});
