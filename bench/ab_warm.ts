/**
 * A/B of the warm path: this checkout's proxy against another checkout's
 * (`--before DIR`, e.g. `git archive <commit> | tar -x -C DIR`), with the
 * bare `Deno.serve` + `fetch` forwarder (bench/bare_proxy.ts) as the yardstick.
 * Each proxy runs its own bench engine; the rounds alternate the targets so
 * other work on the machine hits them alike. Reports the median requests/s
 * and the proxy process's CPU per request (which other load inflates less).
 *
 * ```sh
 * deno run -A bench/ab_warm.ts --before /tmp/old [--c 1,64] [--rounds 5] [--ms 2000] [--tool autocannon]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LoadTool, runLoad } from "./load.ts";
import { cpuMs, hasProgram, spawnLogged } from "./procs.ts";
import { freePort, startProxy } from "./proxy.ts";
import { percentile } from "./stream.ts";
import { WARM_BODY } from "./warm.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      before: { type: "string" },
      c: { type: "string", default: "1,64" },
      rounds: { type: "string", default: "5" },
      ms: { type: "string", default: "2000" },
      tool: { type: "string" },
    },
  });
  if (!values.before) throw new Error("--before DIR (a checkout to compare with) is required");
  const tool: LoadTool = (values.tool as LoadTool | undefined) ?? (await hasProgram("wrk") ? "wrk" : "autocannon");
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-ab-" });
  const models = { bench: { loadMs: 0 } };
  const before = await startProxy({ dir, name: "before", models, root: values.before });
  const after = await startProxy({ dir, name: "after", models });
  for (const p of [before, after]) {
    (await fetch(`${p.url}/v1/completions`, { method: "POST", body: WARM_BODY })).body?.cancel();
  }
  const engineUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(
    (await after.lines()).findLast((l) => /bench-upstream: listening on/.test(l.msg))?.msg ?? "",
  )?.[0];
  if (!engineUrl) throw new Error("no engine URL in the proxy's log");
  const barePort = freePort();
  const bare = spawnLogged(
    [Deno.execPath(), "run", "-A", new URL("./bare_proxy.ts", import.meta.url).pathname, String(barePort), engineUrl],
    `${dir}/bare.log`,
  );
  await bare.waitFor(/listening/, 30_000);
  const targets = [
    { name: "before", url: before.url, pid: before.child.pid },
    { name: "after", url: after.url, pid: after.child.pid },
    { name: "bare", url: `http://127.0.0.1:${barePort}`, pid: bare.pid },
  ];
  try {
    for (const c of values.c!.split(",").map(Number)) {
      for (const t of targets) {
        await runLoad({ url: `${t.url}/v1/completions`, body: WARM_BODY, connections: c, durationMs: 1000, tool });
      }
      const rps: Record<string, number[]> = {}, cpu: Record<string, number[]> = {};
      for (let round = 0; round < Number(values.rounds); round++) {
        for (const t of targets) {
          const cpuBefore = cpuMs(t.pid);
          const load = await runLoad({
            url: `${t.url}/v1/completions`,
            body: WARM_BODY,
            connections: c,
            durationMs: Number(values.ms),
            tool,
          });
          if (load.errors > 0) console.error(`${t.name} c=${c}: ${load.errors} errors`);
          (rps[t.name] ??= []).push(load.rps);
          (cpu[t.name] ??= []).push(((cpuMs(t.pid) - cpuBefore) * 1000) / Math.max(1, load.requests));
        }
      }
      const median = (xs: number[]) => percentile(xs, 50);
      const row: Record<string, unknown> = { c, loadavg: Deno.loadavg()[0] };
      for (const t of targets) {
        row[t.name] = { rps: Math.round(median(rps[t.name])), cpuUs: Math.round(median(cpu[t.name])) };
      }
      row.beforeOverBare = +(median(rps.before) / median(rps.bare)).toFixed(2);
      row.afterOverBare = +(median(rps.after) / median(rps.bare)).toFixed(2);
      row.afterOverBefore = +(median(rps.after) / median(rps.before)).toFixed(2);
      console.log(JSON.stringify(row));
    }
  } finally {
    await bare.stop(5000);
    await before.stop();
    await after.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
