/**
 * Shared setup of the lib/kube integration tests: a fake API server with the
 * generated Role enforced, a client that loads the fake's kubeconfig file,
 * a capturing logger, and the check that every API call made is listed in
 * API_CALLS.
 *
 * @module
 */
import assert from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfig, ChillConfigInput } from "../../lib/config/schema.ts";
import { API_CALLS } from "../../lib/kube/api_calls.ts";
import { createKubeClient, type KubeClient } from "../../lib/kube/client.ts";
import { createLogger, type Logger } from "../../lib/log.ts";
import { renderRbac } from "../../lib/manifests/rbac.ts";
import { startFakeKube } from "../support/fake_kube.ts";

/** The fake API server handle. */
export type FakeKube = Awaited<ReturnType<typeof startFakeKube>>;
/** Options of the fake. */
export type FakeKubeOptions = NonNullable<Parameters<typeof startFakeKube>[0]>;

/** A config for tests: namespace ai-apps, model switching on, two models. */
export function testConfig(input: ChillConfigInput = {}): ChillConfig {
  return parseConfig({
    namespace: "ai-apps",
    enableModelSwitch: true,
    models: { "model-a": { modelName: "org/model-a" }, "model-b": { modelName: "org/model-b", maxModelLen: 4096 } },
    ...input,
  }) as ChillConfig;
}

/** The Role the manifests render for `config` (what the fake enforces). */
export function generatedRole(config: ChillConfig = testConfig()) {
  return renderRbac(config)[1] as unknown as { metadata?: { name?: string; namespace?: string }; rules: never[] };
}

/** A logger that keeps its lines. */
export function captureLogger(): { log: Logger; lines: () => { level: string; msg: string; [k: string]: unknown }[] } {
  const lines: string[] = [];
  const log = createLogger({ format: "json", level: "debug", write: (line) => lines.push(line) });
  return { log, lines: () => lines.map((l) => JSON.parse(l)) };
}

/** Everything a test gets. */
export interface KubeTestEnv {
  fake: FakeKube;
  client: KubeClient;
  config: ChillConfig;
  log: Logger;
  lines: () => { level: string; msg: string; [k: string]: unknown }[];
  /** A second client on the same fake (a restarted proxy). */
  newClient(): KubeClient;
}

/**
 * Runs `fn` against a fresh fake with the generated Role enforced, then
 * closes client and fake, and asserts every recorded call is in API_CALLS.
 */
export async function withKube(
  fn: (env: KubeTestEnv) => Promise<void>,
  options: { fake?: FakeKubeOptions; config?: ChillConfigInput; checkCalls?: boolean; watchTimeoutMs?: number } = {},
): Promise<void> {
  const config = testConfig(options.config);
  const fake = await startFakeKube({ namespace: "ai-apps", role: generatedRole(config), ...options.fake });
  const { log, lines } = captureLogger();
  const clients: KubeClient[] = [];
  const newClient = () => {
    const c = createKubeClient({
      kubeconfig: fake.kubeconfigPath,
      namespace: config.namespace,
      target: config.target,
      log,
      // Long watches (as in production, 5 min by default): a dropped or reset watch must be noticed at once,
      // never replaced only because its timeout ran out.
      watchTimeoutMs: options.watchTimeoutMs ?? 60_000,
    });
    clients.push(c);
    return c;
  };
  const client = newClient();
  try {
    await fn({ fake, client, config, log, lines, newClient });
    if (options.checkCalls !== false) assertCallsListed(fake);
  } finally {
    for (const c of clients) c.close();
    await fake.close();
  }
}

/**
 * A client of the same fake reached through `server` (e.g. a relay that cuts connections), with 60 s watches.
 * The caller closes it.
 */
export function clientVia(env: Pick<KubeTestEnv, "fake" | "config">, server: string): KubeClient {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: "fake", server, skipTLSVerify: true }],
    users: [{ name: "vllm-chill", token: env.fake.token }],
    contexts: [{ name: "fake", cluster: "fake", user: "vllm-chill", namespace: env.config.namespace }],
    currentContext: "fake",
  });
  return createKubeClient({
    kubeConfig,
    namespace: env.config.namespace,
    target: env.config.target,
    watchTimeoutMs: 60_000,
  });
}

/** Asserts every API call the fake recorded is covered by API_CALLS (SelfSubjectAccessReviews aside). */
export function assertCallsListed(fake: FakeKube): void {
  for (const call of fake.calls) {
    if (call.resource === "selfsubjectaccessreviews") continue;
    const listed = API_CALLS.some((entry) =>
      entry.resource === call.resource && (entry.subresource ?? "") === (call.subresource ?? "") &&
      (entry.verbs as readonly string[]).includes(call.verb ?? "")
    );
    assert.ok(
      listed,
      `API call ${call.method} ${call.path} (${call.verb} ${call.resource}${
        call.subresource ? "/" + call.subresource : ""
      }) is not listed in lib/kube/api_calls.ts`,
    );
  }
}

/** Resolves when `predicate` holds, checking after each fake call; bounded by `timeoutMs`. */
export async function eventually(predicate: () => boolean, timeoutMs = 3000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
