/**
 * A/B of the warm path: this checkout's proxy against another checkout's
 * (`--before DIR`, e.g. `git archive <commit> | tar -x -C DIR`), in the same
 * rounds as the engine itself (direct), the platform floor
 * (bench/bare_proxy.ts), the floor with `fetch` (bench/bare_fetch.ts) and
 * nginx when installed. Both proxies read `model` from the body (model
 * switching on), as the floor does. The rounds alternate the targets so
 * other work on the machine hits them alike; each figure is the median of
 * the rounds. Prints one Markdown table per concurrency: requests/s, ratios
 * to the floor and to nginx, p50 and its overhead over direct, and the CPU
 * per request of each forwarding process.
 *
 * ```sh
 * deno run -A bench/ab_warm.ts --before /tmp/old [--c 1,64] [--rounds 5] [--ms 2000] [--tool autocannon]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LoadTool, runLoad } from "./load.ts";
import { ensureNginx, startNginx } from "./nginx.ts";
import { type Child, childPids, cpuMs, hasProgram, spawnLogged } from "./procs.ts";
import { freePort, type ProxyProc, startProxy } from "./proxy.ts";
import { percentile } from "./stream.ts";
import { WARM_BODY } from "./warm.ts";

interface Target {
  name: string;
  url: string;
  pids: () => number[];
}

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
  const proxies: ProxyProc[] = [];
  const children: Child[] = [];
  let stopNginx = () => Promise.resolve();
  try {
    const before = await startProxy({ dir, name: "before", models, root: values.before, switching: true });
    proxies.push(before);
    const after = await startProxy({ dir, name: "after", models, switching: true });
    proxies.push(after);
    for (const p of proxies) {
      const first = await fetch(`${p.url}/v1/completions`, {
        method: "POST",
        body: WARM_BODY,
        headers: { "content-type": "application/json" },
      });
      await first.arrayBuffer();
    }
    const lines = await after.lines();
    const engineUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(
      lines.findLast((l) => /bench-upstream: listening on/.test(l.msg))?.msg ?? "",
    )?.[0];
    const enginePid = Number(lines.find((l) => l.msg === "engine started")?.pid);
    if (!engineUrl) throw new Error("no engine URL in the proxy's log");
    const targets: Target[] = [
      { name: "direct", url: engineUrl, pids: () => [enginePid] },
      { name: "before", url: before.url, pids: () => [before.child.pid] },
      { name: "after", url: after.url, pids: () => [after.child.pid] },
    ];
    for (const [name, file] of [["floor", "bare_proxy.ts"], ["floor (fetch)", "bare_fetch.ts"]]) {
      const port = freePort();
      const child = spawnLogged(
        [Deno.execPath(), "run", "-A", new URL(`./${file}`, import.meta.url).pathname, String(port), engineUrl],
        `${dir}/${file}.log`,
      );
      children.push(child);
      await child.waitFor(/listening/, 30_000);
      targets.push({ name, url: `http://127.0.0.1:${port}`, pids: () => [child.pid] });
    }
    const missing = await ensureNginx();
    if (missing) console.error(`nginx skipped: ${missing}`);
    else {
      const nginx = await startNginx(dir, engineUrl.replace("http://", ""));
      stopNginx = () => nginx.stop();
      targets.push({ name: "nginx", url: nginx.url, pids: () => [nginx.child.pid, ...childPids(nginx.child.pid)] });
    }

    for (const c of values.c!.split(",").map(Number)) {
      const run = (t: Target, durationMs: number) =>
        runLoad({ url: `${t.url}/v1/completions`, body: WARM_BODY, connections: c, durationMs, tool });
      for (const t of targets) await run(t, 1000);
      const rps: Record<string, number[]> = {}, p50: Record<string, number[]> = {}, cpu: Record<string, number[]> = {};
      for (let round = 0; round < Number(values.rounds); round++) {
        for (const t of targets) {
          const pids = t.pids();
          const cpuBefore = pids.reduce((n, pid) => n + cpuMs(pid), 0);
          const load = await run(t, Number(values.ms));
          if (load.errors > 0) console.error(`${t.name} c=${c}: ${load.errors} errors`);
          (rps[t.name] ??= []).push(load.rps);
          (p50[t.name] ??= []).push(load.p50Ms);
          const used = pids.reduce((n, pid) => n + cpuMs(pid), 0) - cpuBefore;
          (cpu[t.name] ??= []).push((used * 1000) / Math.max(1, load.requests));
        }
      }
      const median = (xs: number[]) => percentile(xs, 50);
      const floor = median(rps.floor), nginx = rps.nginx ? median(rps.nginx) : NaN, direct = median(p50.direct);
      console.log(`\nc=${c}, medians of ${values.rounds} rounds of ${values.ms} ms, loadavg ${Deno.loadavg()[0]}`);
      console.log("| | req/s | ÷ floor | ÷ nginx | p50 ms | − direct ms | cpu µs/req |");
      console.log("|---|---|---|---|---|---|---|");
      for (const t of targets) {
        const r = median(rps[t.name]);
        console.log(
          `| ${t.name} | ${r.toFixed(0)} | ${(r / floor).toFixed(2)} | ${(r / nginx).toFixed(2)} | ${
            median(p50[t.name]).toFixed(3)
          } | ${(median(p50[t.name]) - direct).toFixed(3)} | ${median(cpu[t.name]).toFixed(0)} |`,
        );
      }
    }
  } finally {
    await stopNginx();
    for (const child of children) await child.stop(5000);
    for (const p of proxies) await p.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
