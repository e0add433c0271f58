/**
 * Whether the real client, kubectl, is installed: the tests that run it are
 * reported as ignored without it.
 *
 * @module
 */

/**
 * True when `kubectl` can be run here.
 *
 * @example
 * ```ts
 * import { HAS_KUBECTL } from "./kubectl.ts";
 * typeof HAS_KUBECTL; // "boolean"
 * ```
 */
export const HAS_KUBECTL: boolean = (() => {
  try {
    new Deno.Command("kubectl", { args: ["version", "--client"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
})();
