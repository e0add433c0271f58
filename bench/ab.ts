/**
 * A/B comparison of two checkouts of vllm-chill on the warm path, for
 * judging an optimisation: both proxies run side by side (process backend,
 * bench engine), measured alternately in several rounds; prints req/s,
 * latency and the proxy process's CPU time per request (which other work on
 * the machine inflates much less than latency).
 *
 * ```sh
 * deno run -A bench/ab.ts --base /path/to/other/checkout [--rounds 3] [--c 64] [--seconds 3]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runLoad } from "./load.ts";
import { cpuMs, hasProgram } from "./procs.ts";
import { type ProxyProc, startProxy } from "./proxy.ts";
import { WARM_BODY } from "./warm.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      base: { type: "string" },
      rounds: { type: "string", default: "3" },
      c: { type: "string", default: "64" },
      seconds: { type: "string", default: "3" },
    },
  });
  if (!values.base) throw new Error("--base <checkout dir> is required");
  const tool = await hasProgram("wrk") ? "wrk" : "autocannon";
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-ab-" });
  const roots = {
    base: values.base.replace(/\/$/, ""),
    this: new URL("..", import.meta.url).pathname.replace(/\/$/, ""),
  };
  const procs: [string, ProxyProc][] = [];
  const url = (p: ProxyProc) => `${p.url}/v1/completions`;
  const totals: Record<string, { cpu: number; requests: number; rps: number[] }> = {};
  try {
    for (const [name, root] of Object.entries(roots)) {
      const p = await startProxy({ dir, name, root, models: { bench: { loadMs: 0 } } });
      procs.push([name, p]);
      await (await fetch(url(p), { method: "POST", body: WARM_BODY })).arrayBuffer();
      await runLoad({ url: url(p), body: WARM_BODY, connections: 64, durationMs: 1000, tool });
      totals[name] = { cpu: 0, requests: 0, rps: [] };
    }
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const [name, p] of procs) {
        const before = cpuMs(p.child.pid);
        const r = await runLoad({
          url: url(p),
          body: WARM_BODY,
          connections: Number(values.c),
          durationMs: Number(values.seconds) * 1000,
          tool,
        });
        const used = cpuMs(p.child.pid) - before;
        totals[name].cpu += used;
        totals[name].requests += r.requests;
        totals[name].rps.push(r.rps);
        console.log(
          `${name.padEnd(5)} c=${values.c} ${r.rps.toFixed(0).padStart(6)} req/s p50 ${r.p50Ms.toFixed(3)} ms p99 ${
            r.p99Ms.toFixed(3)
          } ms cpu ${(used * 1000 / r.requests).toFixed(0)} µs/req (loadavg ${Deno.loadavg()[0].toFixed(1)})`,
        );
      }
    }
    for (const [name, t] of Object.entries(totals)) {
      const rps = [...t.rps].sort((a, b) => a - b);
      console.log(
        `${name}: overall ${(t.cpu * 1000 / t.requests).toFixed(0)} µs CPU/req, median ${
          rps[Math.floor(rps.length / 2)].toFixed(0)
        } req/s`,
      );
    }
  } finally {
    for (const [, p] of procs) await p.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
