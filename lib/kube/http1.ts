/**
 * Keeps client-node's API calls on HTTP/1.1. client-node 2.x sends requests
 * through undici 8, which negotiates HTTP/2 by default over TLS; under Deno
 * that goes through `node:http2` (nghttp2), which aborts the whole process on
 * a GOAWAY race (`find_stream_on_goaway_func: Assertion failed`, seen in our
 * own tests). An API server sends GOAWAY when it restarts, so HTTP/2 here
 * would let a routine control-plane event kill the proxy. HTTP/1.1 costs
 * nothing measurable: the proxy makes few API calls and none on the warm path.
 *
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from "undici";

type DispatcherOptions = ReturnType<KubeConfig["createDispatcherOptions"]>;
type WithDispatcher = { createDispatcher(cluster: unknown, agentOptions: unknown): unknown };

const PATCHED = Symbol.for("vllm-chill.kube.http1");
let globalSet = false;

/**
 * Makes every request made through `kc` use HTTP/1.1 (TLS settings kept),
 * and undici's global dispatcher too (used when the kubeconfig has no TLS
 * options). Idempotent; returns `kc`.
 *
 * @example
 * ```ts
 * import { KubeConfig } from "@kubernetes/client-node";
 * import { forceHttp1 } from "./http1.ts";
 * const kc = forceHttp1(new KubeConfig());
 * ```
 */
export function forceHttp1(kc: KubeConfig): KubeConfig {
  if (!globalSet) {
    globalSet = true;
    if (!(getGlobalDispatcher() instanceof Agent && (getGlobalDispatcher() as Agent & { [PATCHED]?: true })[PATCHED])) {
      const agent = Object.assign(new Agent({ allowH2: false }), { [PATCHED]: true as const });
      setGlobalDispatcher(agent);
    }
  }
  const target = kc as unknown as WithDispatcher & { [PATCHED]?: true };
  if (target[PATCHED]) return kc;
  const original = target.createDispatcher.bind(kc);
  target.createDispatcher = (cluster, agentOptions) => {
    const options: DispatcherOptions = kc.createDispatcherOptions(
      cluster as Parameters<KubeConfig["createDispatcherOptions"]>[0],
      agentOptions as Parameters<KubeConfig["createDispatcherOptions"]>[1],
    );
    if (options.type === "agent") return new Agent({ connect: options.connect, allowH2: false });
    return original(cluster, agentOptions);
  };
  target[PATCHED] = true;
  return kc;
}
