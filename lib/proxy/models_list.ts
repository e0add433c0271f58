/**
 * `GET /v1/models`: every known model, cold ones too, in OpenAI's list
 * format plus a `status` field. With API keys configured it needs one, and
 * lists only the models that key may use.
 *
 * @module
 */
import { bearerToken, mayUse } from "./auth.ts";
import { errorResponse } from "./errors.ts";
import { type OwnDeps, type OwnHandler, SCALE_ONLY_KEY } from "./own.ts";

const CREATED = Math.floor(Date.now() / 1000);

/**
 * The model list handler.
 *
 * @example
 * ```ts
 * import { createModelListHandlers } from "./models_list.ts";
 * import { createKeyChecker } from "./auth.ts";
 * import { defineVllmChill } from "../config/define.ts";
 * import { ModelRegistry } from "../models/registry.ts";
 * import type { Gate } from "../scaler/types.ts";
 * const { models } = createModelListHandlers({
 *   config: defineVllmChill({}), registry: new ModelRegistry(), keys: createKeyChecker([]), gate: {} as Gate,
 * });
 * (await (await models(new Request("http://proxy/v1/models"))).json()).data; // []
 * ```
 */
export function createModelListHandlers(
  deps: Pick<OwnDeps, "config" | "gate" | "registry" | "keys">,
): { models: OwnHandler } {
  const { config, gate, registry, keys } = deps;
  return {
    async models(req) {
      let identity = null;
      if (keys.enabled) {
        const token = bearerToken(req.headers.get("authorization")) ?? req.headers.get("x-api-key");
        identity = await keys.check(token);
        if (!identity) {
          return errorResponse(
            401,
            token === null ? "Missing API key: send it as 'Authorization: Bearer <key>'" : "Incorrect API key provided",
            "invalid_api_key",
          );
        }
      }
      const data = registry.list()
        .filter((m) => mayUse(identity, [m.name, m.servedModelName]))
        .map((m) => ({
          id: m.servedModelName,
          object: "model",
          created: CREATED,
          owned_by: "vllm-chill",
          root: m.modelName,
          status: gate.modelStatus(config.enableModelSwitch ? m.name : SCALE_ONLY_KEY),
        }));
      return Response.json({ object: "list", data });
    },
  };
}
