/**
 * Scenario 5 (property-based, npm:fast-check) — arbitrary request bodies
 * (JSON values, objects with odd `model`s, raw bytes, under several content
 * types) sent over real HTTP: the proxy answers with a documented status,
 * never 500, and never wakes anything for them. Arbitrary config objects:
 * `parseConfig` either returns a valid config or throws a ConfigError whose
 * issues all carry a path and a message — never anything else.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConfigError, parseConfig } from "../../lib/config/define.ts";
import { assertNothingWoken, assertRoleSufficed, startCluster, startKubeProxy } from "./helpers.ts";

const KNOWN = new Set(["model-a", "model-b", "model-c"]);
/** Statuses the proxy documents for a request it refuses before forwarding. */
const DOCUMENTED = new Set([400, 404, 413, 415]);
const SEED = Number(Deno.env.get("RELIABILITY_SEED") ?? 20261122);

/** Whether a body would legitimately wake a known model (then it is not "invalid"). */
function namesKnownModel(bytes: Uint8Array): boolean {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes));
    return parsed !== null && typeof parsed === "object" && KNOWN.has(parsed.model);
  } catch {
    return false;
  }
}

const encoder = new TextEncoder();
const bodies = fc.oneof(
  fc.jsonValue().map((v) => encoder.encode(JSON.stringify(v))),
  fc.record({
    model: fc.oneof(
      fc.string(),
      fc.string({ unit: "binary" }),
      fc.constantFrom("", " ", "model-a\r\n", "MODEL-A", "../model-a", "model-a%00", "\u202emodel-a"),
      fc.integer(),
      fc.constant(null),
      fc.array(fc.string(), { maxLength: 2 }),
    ),
    messages: fc.jsonValue(),
    stream: fc.oneof(fc.boolean(), fc.string()),
  }, { requiredKeys: [] }).map((v) => encoder.encode(JSON.stringify(v))),
  fc.uint8Array({ maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 200 }).map((s) => encoder.encode(s)),
  // Big bodies: over maxBodyBytes (2 KiB here).
  fc.integer({ min: 2049, max: 6000 }).map((n) => encoder.encode(`{"model":"${"z".repeat(n)}"}`)),
);
const contentTypes = fc.constantFrom(
  "application/json",
  "application/json; charset=utf-8",
  "application/vnd.api+json",
  "text/plain",
  "multipart/form-data; boundary=xyz",
  "multipart/form-data",
  "",
);
const paths = fc.constantFrom("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize");

Deno.test("property: arbitrary request bodies get a documented status, never 500, and wake nothing", async () => {
  const cluster = await startCluster({ config: { maxBodyBytes: "2Ki" } });
  try {
    const proxy = await startKubeProxy(cluster);
    try {
      await cluster.fake.until(() => cluster.replicas() === 0, 5000, "the Deployment ensured");
      await new Promise((r) => setTimeout(r, 100));
      const before = cluster.fake.calls.length;
      const seen = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(bodies, contentTypes, paths, async (body, type, path) => {
          fc.pre(!namesKnownModel(body));
          const headers: Record<string, string> = type ? { "content-type": type } : {};
          const res = await fetch(`${proxy.url}${path}`, { method: "POST", headers, body });
          const text = await res.text();
          seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
          assert.ok(DOCUMENTED.has(res.status), `status ${res.status} for ${type} ${path}: ${text.slice(0, 200)}`);
          const error = JSON.parse(text).error;
          assert.equal(typeof error?.message, "string", "OpenAI error body");
          assert.equal(typeof error?.code, "string");
        }),
        { numRuns: 250, seed: SEED },
      );
      assertNothingWoken(cluster, before, "arbitrary bodies");
      assertRoleSufficed(cluster);
      assert.ok(seen.size >= 3, `several statuses exercised: ${JSON.stringify([...seen])}`);
    } finally {
      await proxy.close();
    }
  } finally {
    await cluster.close();
  }
});

const base = { backend: "process", models: { a: { modelName: "org/a" } } };
const fieldValue = fc.oneof(
  fc.anything({ maxDepth: 2 }),
  fc.constantFrom("5m", "0s", "-1s", "1.5h", "32Mi", "1Gi", "", "ai-apps", "AI_APPS", 0, -1, 65536, 8080, true, null),
);
const keys = fc.constantFrom(
  "namespace",
  "enableModelSwitch",
  "backend",
  "port",
  "idleTimeout",
  "holdTimeout",
  "minLoadedTime",
  "maxHeldRequests",
  "maxBodyBytes",
  "apiKeys",
  "adminToken",
  "target",
  "vllm",
  "process",
  "defaultModel",
  "models",
  "unknownKey",
);
const configs = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.dictionary(keys, fieldValue, { maxKeys: 4 }).map((patch) => ({ ...base, ...patch })),
  fc.record({
    modelName: fieldValue,
    servedModelName: fieldValue,
    gpuMemoryUtilization: fieldValue,
    extraArgs: fc.array(fc.oneof(fc.string(), fc.constantFrom("--port", "-tp", "--seed=7", "--")), { maxLength: 3 }),
    env: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer()), { maxKeys: 2 }),
  }, { requiredKeys: [] }).map((model) => ({ ...base, models: { a: model } })),
);

Deno.test("property: parseConfig returns a valid config or throws a ConfigError with paths — nothing else", () => {
  let valid = 0;
  let invalid = 0;
  fc.assert(
    fc.property(configs, (input) => {
      let config;
      try {
        config = parseConfig(input);
      } catch (error) {
        assert.ok(error instanceof ConfigError, `threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
        assert.ok(error.issues.length > 0, "a ConfigError lists at least one issue");
        for (const issue of error.issues) {
          assert.equal(typeof issue.path, "string");
          assert.ok(issue.message.length > 0, "every issue has a message");
        }
        assert.ok(error.message.startsWith("invalid config"), error.message);
        invalid++;
        return;
      }
      valid++;
      assert.ok(Object.isFrozen(config), "the config is frozen");
      assert.equal(typeof config.port, "number");
      assert.ok(Number.isInteger(config.idleTimeout) && config.idleTimeout >= 0);
      assert.ok(Number.isInteger(config.maxBodyBytes) && config.maxBodyBytes >= 0);
      assert.ok(["kubernetes", "process"].includes(config.backend));
      // A valid config is stable: its input parses again to the same result.
      assert.deepEqual(parseConfig(input), config);
    }),
    { numRuns: 600, seed: SEED },
  );
  assert.ok(valid > 0 && invalid > 0, `both outcomes exercised (valid ${valid}, invalid ${invalid})`);
});
