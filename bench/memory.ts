/**
 * Memory of the proxy process (VmRSS): idle, while holding many requests for
 * a model that takes long to load (raw sockets, so the client side costs
 * little), and after many warm requests (no growth = no leak).
 *
 * @module
 */
import { freePort, metricsText, metricSum, type ProxyProc } from "./proxy.ts";
import { rssMiB, sleep, spawnLogged } from "./procs.ts";

/** RSS with `held` requests held. */
export interface HeldPoint {
  held: number;
  rssMiB: number;
  /** rssMiB − idle RSS of the same proxy. */
  deltaMiB: number;
}

const encoder = new TextEncoder();

/**
 * Opens `targets` (ascending) held requests in steps, reading the RSS once
 * the proxy reports them all held; closes every socket at the end.
 *
 * @example
 * ```ts ignore
 * import { measureHeld } from "./memory.ts";
 * const points = await measureHeld(proxy, [1000, 10000], 60_000);
 * ```
 */
export function measureHeld(proxy: ProxyProc, targets: number[], timeoutMs: number): Promise<{
  idleMiB: number;
  points: HeldPoint[];
}> {
  return holdAndMeasure(
    { pid: proxy.child.pid, port: proxy.port },
    async () => metricSum(await metricsText(proxy.url), "vllm_chill_held_requests"),
    targets,
    timeoutMs,
  );
}

/**
 * The same against bench/bare_hold.ts (Deno.serve alone), started here on a free port.
 *
 * @example
 * ```ts ignore
 * import { measureBareHeld } from "./memory.ts";
 * const bare = await measureBareHeld("/tmp/bench", [1000], 60_000);
 * ```
 */
export async function measureBareHeld(dir: string, targets: number[], timeoutMs: number): Promise<{
  idleMiB: number;
  points: HeldPoint[];
}> {
  const port = freePort();
  const child = spawnLogged(
    [Deno.execPath(), "run", "-A", new URL("./bare_hold.ts", import.meta.url).pathname, String(port)],
    `${dir}/bare_hold.log`,
  );
  try {
    await child.waitFor(/listening/, 30_000);
    const count = async () => Number(await (await fetch(`http://127.0.0.1:${port}/held`)).text());
    return await holdAndMeasure({ pid: child.pid, port }, count, targets, timeoutMs);
  } finally {
    await child.stop(5000);
  }
}

async function holdAndMeasure(
  server: { pid: number; port: number },
  heldNow: () => Promise<number>,
  targets: number[],
  timeoutMs: number,
): Promise<{ idleMiB: number; points: HeldPoint[] }> {
  await sleep(500);
  const idleMiB = rssMiB(server.pid);
  const conns: Deno.TcpConn[] = [];
  const points: HeldPoint[] = [];
  const request = encoder.encode(
    "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 46\r\n\r\n" +
      '{"model":"bench","prompt":"hi","max_tokens":4}',
  );
  const deadline = Date.now() + timeoutMs;
  try {
    for (const target of targets) {
      while (conns.length < target) {
        const batch = Math.min(250, target - conns.length);
        const opened = await Promise.all(
          Array.from({ length: batch }, () => Deno.connect({ hostname: "127.0.0.1", port: server.port })),
        );
        conns.push(...opened);
        await Promise.all(opened.map((c) => c.write(request)));
        if (Date.now() > deadline) throw new Error("held connections: out of time opening sockets");
      }
      for (;;) {
        const held = await heldNow();
        if (held >= target) break;
        if (Date.now() > deadline) throw new Error(`held connections: only ${held}/${target} held in time`);
        await sleep(100);
      }
      await sleep(300);
      const rss = rssMiB(server.pid);
      points.push({ held: target, rssMiB: rss, deltaMiB: rss - idleMiB });
    }
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
  return { idleMiB, points };
}

/**
 * Requests the proxy has answered so far (sum of `vllm_chill_requests_total`).
 *
 * @example
 * ```ts ignore
 * import { requestsServed } from "./memory.ts";
 * await requestsServed("http://127.0.0.1:8080");
 * ```
 */
export async function requestsServed(url: string): Promise<number> {
  return metricSum(await metricsText(url), "vllm_chill_requests_total");
}
