/**
 * Scenario 6 — security: with the fake API server enforcing the generated
 * least-privilege Role, the API keys, the admin token and the Hugging Face
 * token (referenced through vllm.hfTokenSecret, and also put where it could
 * leak: a model's env and the vLLM pod env) never appear in the captured
 * (unredacted) log lines, /admin/status, /metrics, /v1/models, response
 * headers or error bodies — through successes, refusals, Kubernetes faults
 * and admin actions. The proxy never reads Secrets.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/define.ts";
import { renderRbac } from "../../lib/manifests/rbac.ts";
import { assertNoSecrets, assertRoleSufficed, startCluster, startKubeProxy } from "./helpers.ts";

const KEY_A = "sk-team-a-4f9c2e71d0";
const KEY_B = "sk-team-b-a81b33c9f2";
const ADMIN = "admin-tok-0c6e57b1aa";
const HF = "hf_FAKEtoken9d3b1c7e55aa";
const SECRETS = [KEY_A, KEY_B, ADMIN, HF];

Deno.test("security: keys, admin token and HF token never leak into logs, status, metrics or error bodies", async () => {
  const cluster = await startCluster({
    config: {
      apiKeys: [KEY_A, { key: KEY_B, models: ["model-a"], name: "team-b" }],
      adminToken: ADMIN,
      // HF_TOKEN itself comes from the Secret (setting it in vllm.env too is refused); an alias carries the value.
      vllm: { hfTokenSecret: { name: "hf-token" }, env: { HUGGING_FACE_HUB_TOKEN: HF } },
      models: {
        "model-a": { modelName: "org/model-a", env: { HF_TOKEN: HF } },
        "model-b": { modelName: "org/model-b" },
        "model-c": { modelName: "org/model-c" },
      },
    },
  });
  const { fake } = cluster;
  const seen: string[] = [];
  const record = async (what: string, res: Response) => {
    const text = await res.text();
    seen.push(`${what} ${res.status} ${JSON.stringify([...res.headers])} ${text}`);
    return { status: res.status, text };
  };
  try {
    const proxy = await startKubeProxy(cluster);
    const { url } = proxy;
    try {
      const auth = (token: string) => ({ authorization: `Bearer ${token}` });
      const post = (model: string, headers: Record<string, string>) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }),
        });

      assert.equal((await record("models", await fetch(`${url}/v1/models`, { headers: auth(KEY_B) }))).status, 200);
      assert.equal((await record("a with key A", await post("model-a", auth(KEY_A)))).status, 200);
      assert.equal((await record("b with key B", await post("model-b", auth(KEY_B)))).status, 403);
      // A key limited to model-a cannot smuggle another model past the check with duplicate or escaped keys:
      // the proxy routes on the same `model` the engine reads (the last one, as JSON.parse and Python do).
      const raw = (body: string) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", ...auth(KEY_B) },
          body,
        });
      for (const body of ['{"model":"model-a","model":"model-b"}', '{"model":"model-a","\\u006dodel":"model-b"}']) {
        assert.equal((await record(`smuggle ${body}`, await raw(body))).status, 403, body);
      }
      const last = await record("duplicate, allowed last", await raw('{"model":"model-b","model":"model-a"}'));
      assert.equal(last.status, 200);
      assert.equal(JSON.parse(last.text).model, "model-a", "served by the model the key may use");
      assert.equal((await record("wrong key", await post("model-a", auth(`${KEY_A}x`)))).status, 401);
      assert.equal((await record("admin as key", await post("model-a", auth(ADMIN)))).status, 401);
      assert.equal((await record("HF as key", await post("model-a", auth(HF)))).status, 401);
      assert.equal((await record("x-api-key", await post("model-a", { "x-api-key": KEY_A }))).status, 401);
      assert.equal((await record("unknown model", await post("gpt-4", auth(KEY_A)))).status, 404);
      // A Kubernetes fault in the middle of a switch: errors get logged — without secrets.
      fake.faults.failNext({ verb: "patch", subresource: "scale" }, 500, 2);
      fake.faults.failNext({ verb: "update", resource: "configmaps" }, 409, 1);
      assert.equal((await record("switch to b", await post("model-b", auth(KEY_A)))).status, 200);
      // The upstream going away: a 502 error body.
      await cluster.vllm()?.close();
      const gone = await record("upstream gone", await post("model-b", auth(KEY_A)));
      assert.ok(gone.status >= 500, `upstream gone → ${gone.status}`);

      const admin = (path: string, token: string, method = "GET") =>
        fetch(`${url}${path}`, { method, headers: auth(token) });
      assert.equal((await record("status", await admin("/admin/status", ADMIN))).status, 200);
      assert.equal((await record("status wrong", await admin("/admin/status", `${ADMIN}x`))).status, 403);
      assert.equal((await record("status key", await admin("/admin/status", KEY_A))).status, 403);
      assert.equal((await record("status none", await fetch(`${url}/admin/status`))).status, 401);
      await record("unload", await admin("/admin/unload?wait=true", ADMIN, "POST"));
      await record("load", await admin("/admin/models/model-c/load?wait=true", ADMIN, "POST"));
      await record("status after", await admin("/admin/status", ADMIN));
      await record("metrics", await fetch(`${url}/metrics`));
      await record("readyz", await fetch(`${url}/readyz`));

      // The proxy never touches Secrets (the generated Role does not allow it either).
      assert.deepEqual(fake.calls.filter((c) => c.resource === "secrets"), []);
      assertRoleSufficed(cluster);
      assert.ok(!JSON.stringify(renderRbac(cluster.config)).includes('"secrets"'), "the Role grants no Secret access");
      // The HF token reaches the pod only as a secretKeyRef, never as a value the proxy wrote… except where the
      // user put it in env themselves: then it is in the cluster objects, but still in no log or response.
      const deployment = fake.store.getObject("deployments", "vllm");
      const env = deployment.spec.template.spec.containers[0].env as { name: string; valueFrom?: unknown }[];
      assert.deepEqual(env.find((e) => e.valueFrom)?.valueFrom, { secretKeyRef: { name: "hf-token", key: "token" } });
      assert.ok(fake.calls.every((c) => !c.path.includes(HF) && !c.query.includes(HF)), "no secret in API URLs");
    } finally {
      await proxy.close();
    }
    const logs = proxy.logs.lines.join("\n");
    assert.ok(proxy.logs.lines.length > 20, "there were logs to grep");
    assert.ok(logs.includes("team-b"), "keys are named in the log by their label");
    assertNoSecrets(logs, SECRETS, "the log");
    assertNoSecrets(seen.join("\n"), SECRETS, "responses (status, metrics, admin, error bodies, headers)");
  } finally {
    await cluster.close();
  }
});

Deno.test("security: config errors never echo a key or token value", () => {
  const inputs = [
    { apiKeys: ["sk-1234"], adminToken: "adm1234" },
    { apiKeys: [{ key: "sk-abc1", models: "model-a" }] },
    { apiKeys: [{ key: KEY_A, extra: KEY_B }] },
    { adminToken: 12345678, apiKeys: KEY_A },
    { vllm: { hfTokenSecret: { name: HF.toUpperCase() } } },
  ];
  for (const input of inputs) {
    const error = (() => {
      try {
        parseConfig(input);
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    assert.ok(error, `${JSON.stringify(input)} should be refused`);
    assertNoSecrets(error.message, ["sk-1234", "adm1234", "sk-abc1", KEY_A, KEY_B, HF.toUpperCase()], "a config error");
  }
});
