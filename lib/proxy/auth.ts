/**
 * API keys for forwarded routes and the admin token, compared in constant
 * time: the presented secret and every configured one are hashed with
 * SHA-256 and the fixed-length digests compared with a loop that always
 * runs to the end, over every key. Secrets are never logged or returned.
 *
 * @module
 */
import type { ChillConfig } from "../config/schema.ts";

const encoder = new TextEncoder();

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/**
 * Compares two equal-length digests without an early exit.
 *
 * @example
 * ```ts
 * import { timingSafeEqual } from "./auth.ts";
 * timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2])); // true
 * ```
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * The token of an `Authorization: Bearer <token>` header, or null.
 *
 * @example
 * ```ts
 * import { bearerToken } from "./auth.ts";
 * bearerToken("Bearer abc"); // "abc"
 * bearerToken("Basic abc"); // null
 * ```
 */
export function bearerToken(header: string | null): string | null {
  if (!header || header.length < 8) return null;
  if (header.slice(0, 7).toLowerCase() !== "bearer ") return null;
  const token = header.slice(7).trim();
  return token || null;
}

/**
 * A configured API key, as the proxy sees it after a match (never the key itself).
 *
 * @example
 * ```ts
 * import type { ApiKeyIdentity } from "./auth.ts";
 * const identity: ApiKeyIdentity = { name: "team-a", models: new Set(["qwen3-8b"]) };
 * ```
 */
export interface ApiKeyIdentity {
  /** Label for logs: the key's `name`, else `key#<index>`. */
  name: string;
  /** Models the key may use (keys or served names); null = all. */
  models: ReadonlySet<string> | null;
}

/**
 * Checks API keys.
 *
 * @example
 * ```ts
 * import { createKeyChecker, type KeyChecker } from "./auth.ts";
 * const keys: KeyChecker = createKeyChecker([]);
 * keys.enabled; // false
 * ```
 */
export interface KeyChecker {
  /** True when keys are configured (forwarded routes and /v1/models need one). */
  readonly enabled: boolean;
  /** The identity of `token`, or null when it matches no key. */
  check(token: string | null): Promise<ApiKeyIdentity | null>;
}

/**
 * Builds the checker for `config.apiKeys`.
 *
 * @example
 * ```ts
 * import { createKeyChecker } from "./auth.ts";
 * const keys = createKeyChecker([{ key: "team-a-secret", models: ["qwen"], name: "team-a" }]);
 * (await keys.check("team-a-secret"))?.name; // "team-a"
 * await keys.check("wrong"); // null
 * ```
 */
export function createKeyChecker(apiKeys: ChillConfig["apiKeys"]): KeyChecker {
  const entries = apiKeys.map((entry, index) => {
    const key = typeof entry === "string" ? entry : entry.key;
    const identity: ApiKeyIdentity = {
      name: typeof entry === "string" ? `key#${index}` : entry.name ?? `key#${index}`,
      models: typeof entry === "string" || !entry.models ? null : new Set(entry.models),
    };
    let hashed: Promise<Uint8Array> | null = null;
    // Hashed on first use: no async work is left pending by a handler that never sees a request.
    return { digest: () => hashed ??= digest(key), identity };
  });
  return {
    enabled: entries.length > 0,
    async check(token) {
      if (token === null || entries.length === 0) return null;
      const presented = await digest(token);
      let found: ApiKeyIdentity | null = null;
      for (const entry of entries) {
        // Every key is compared (no early exit), so timing says nothing about which matched.
        if (timingSafeEqual(presented, await entry.digest()) && found === null) found = entry.identity;
      }
      return found;
    },
  };
}

/**
 * The admin token check: "ok", "missing" (401) or "wrong" (403).
 *
 * @example
 * ```ts
 * import type { AdminCheck } from "./auth.ts";
 * const verdict: AdminCheck = "missing"; // → 401
 * ```
 */
export type AdminCheck = "ok" | "missing" | "wrong";

/**
 * Builds the admin token check; with no token configured every call is "ok".
 *
 * @example
 * ```ts
 * import { createAdminCheck } from "./auth.ts";
 * const check = createAdminCheck("admin-secret");
 * await check("Bearer admin-secret"); // "ok"
 * await check(null); // "missing"
 * ```
 */
export function createAdminCheck(
  adminToken: string | undefined,
): (authorization: string | null) => Promise<AdminCheck> {
  if (adminToken === undefined) return () => Promise.resolve("ok");
  let expected: Promise<Uint8Array> | null = null;
  return async (authorization) => {
    const token = bearerToken(authorization);
    if (token === null) return "missing";
    return timingSafeEqual(await digest(token), await (expected ??= digest(adminToken))) ? "ok" : "wrong";
  };
}

/**
 * Whether a key may use a model known by any of `names` (its key or served
 * name); no key, or a key without a model list, may use every model.
 *
 * @example
 * ```ts
 * import { mayUse } from "./auth.ts";
 * mayUse({ name: "team-a", models: new Set(["qwen"]) }, ["qwen", "Qwen/Qwen3-8B"]); // true
 * mayUse({ name: "team-a", models: new Set(["qwen"]) }, ["llama"]); // false
 * mayUse(null, ["llama"]); // true
 * ```
 */
export function mayUse(identity: ApiKeyIdentity | null, names: (string | undefined)[]): boolean {
  if (!identity?.models) return true;
  return names.some((n) => n !== undefined && identity.models!.has(n));
}
