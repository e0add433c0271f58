import assert from "node:assert/strict";
import { API_CALLS } from "../../lib/kube/api_calls.ts";
import { ForbiddenError } from "../../lib/kube/mod.ts";
import { BackendError } from "../../lib/backend/types.ts";
import { generatedRole, testConfig, withKube } from "./helpers.ts";

Deno.test("the RBAC self-check passes with the generated Role", async () => {
  await withKube(async ({ fake, client }) => {
    const report = await client.rbacSelfCheck();
    assert.equal(report.ok, true, report.message);
    const expected = API_CALLS.reduce((n, c) => n + c.verbs.length, 0);
    const reviews = fake.calls.filter((c) => c.resource === "selfsubjectaccessreviews");
    assert.equal(reviews.length, expected);
  });
});

Deno.test("the RBAC self-check reports every missing permission in one message", async () => {
  const role = generatedRole(testConfig());
  const rules = (role.rules as { apiGroups?: string[]; resources?: string[]; verbs: string[] }[]).map((r) => ({
    ...r,
    verbs: r.resources?.includes("deployments/scale")
      ? r.verbs.filter((v) => v !== "patch")
      : r.resources?.includes("pods")
      ? r.verbs.filter((v) => v !== "watch")
      : r.verbs,
  }));
  await withKube(async ({ client, fake }) => {
    const report = await client.rbacSelfCheck();
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.missing.map((p) => `${p.verb} ${p.resource}${p.subresource ? "/" + p.subresource : ""}`).sort(),
      ["patch deployments/scale", "watch pods"],
    );
    assert.match(report.message, /lacks 2 permissions in namespace "ai-apps"/);
    assert.match(report.message, /- patch deployments\/scale \(apps\)/);
    assert.match(report.message, /- watch pods \(core\)/);
    await assert.rejects(client.scale(1), (e) => e instanceof ForbiddenError && /forbidden/i.test(e.message));

    // A wait whose watch is refused fails at once with kind "forbidden" instead of spinning until its deadline.
    fake.store.createObject("deployments", {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "vllm", namespace: "ai-apps" },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: "vllm" } },
        template: { metadata: { labels: { app: "vllm" } }, spec: { containers: [{ name: "vllm", image: "x" }] } },
      },
    }, "ai-apps");
    const started = Date.now();
    await assert.rejects(
      client.waitReady({ deadline: Date.now() + 5000 }),
      (e) => e instanceof BackendError && e.kind === "forbidden" && /watch/.test(e.message),
    );
    assert.ok(Date.now() - started < 2000, "failed fast");
  }, { fake: { role: { ...role, rules: rules as never[] } }, checkCalls: false });
});
