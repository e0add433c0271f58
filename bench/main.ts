/**
 * `deno task bench [--quick] [--only warm,stream,cold,fanin,memory,kube,pool,profile,dashboard] [--out FILE] [--no-docs]`
 *
 * Starts everything itself on 127.0.0.1 (engines, proxies, nginx, a fake
 * Kubernetes API server), every loop bounded in count and time, and writes
 * bench/results/latest.json plus the tables of docs/BENCHMARKS.md. `--quick`
 * runs a reduced version in under a minute. Nothing here fails on a timing.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runColdStarts, runFanIn, runSwitches } from "./cold.ts";
import { runKubeColdAndSwitch } from "./kube.ts";
import { type PoolPlan, runPool } from "./pool.ts";
import type { LoadTool } from "./load.ts";
import { runLoad } from "./load.ts";
import { measureBareHeld, measureHeld, requestsServed } from "./memory.ts";
import { ensureNginx, type Nginx, startNginx } from "./nginx.ts";
import { type Child, childPids, hasProgram, killAll, rssMiB, sleep, spawnLogged } from "./procs.ts";
import { categoriseProfile, summariseProfile } from "./profile_summary.ts";
import { freePort, startProxy } from "./proxy.ts";
import { measureImports } from "./import_cost.ts";
import { measureDecide } from "./decide_cost.ts";
import { type BenchResults, evaluateTargets, renderMarkdown, writeMarkdown } from "./report.ts";
import { runStreaming } from "./stream.ts";
import { runWarm, WARM_BODY } from "./warm.ts";
import { runDashboardBench } from "./dashboard.ts";

const SECTIONS = ["warm", "stream", "cold", "fanin", "memory", "kube", "pool", "profile", "dashboard"] as const;
type Section = typeof SECTIONS[number];

/** Sizes of a run. */
interface Plan {
  concurrencies: number[];
  warmupMs: number;
  durationMs: number;
  rounds: number;
  streams: number;
  coldStarts: number;
  switches: number;
  loadMs: number;
  fanIn: number;
  held: number[];
  leakRequests: number;
  profileMs: number;
  /** Idle wait after the leak check's load. */
  settleMs: number;
  pool: PoolPlan;
  /** Open dashboards (event streams) in the dashboard section. */
  dashboards: number;
}

const FULL: Plan = {
  concurrencies: [1, 16, 64, 256],
  warmupMs: 1000,
  durationMs: 2000,
  rounds: 3,
  streams: 8,
  coldStarts: 5,
  switches: 4,
  loadMs: 500,
  fanIn: 1000,
  held: [1000, 10_000],
  leakRequests: 100_000,
  profileMs: 5000,
  settleMs: 20_000,
  pool: {
    switches: 20,
    clients: 30,
    perClient: 8,
    loadMs: 2000,
    sleepMs: 200,
    wakeMs: 300,
    tokens: 8,
    tokensPerSec: 200,
  },
  dashboards: 20,
};

const QUICK: Plan = {
  concurrencies: [1, 64],
  warmupMs: 0,
  durationMs: 1000,
  rounds: 1,
  streams: 2,
  coldStarts: 2,
  switches: 2,
  loadMs: 200,
  fanIn: 1000,
  held: [1000],
  leakRequests: 0,
  profileMs: 0,
  settleMs: 0,
  pool: {
    switches: 6,
    clients: 30,
    perClient: 2,
    loadMs: 500,
    sleepMs: 100,
    wakeMs: 150,
    tokens: 4,
    tokensPerSec: 200,
  },
  dashboards: 20,
};

/**
 * Runs the benchmark; returns the results (also written to `out` and the docs unless disabled).
 *
 * @example
 * ```ts ignore
 * import { runBench } from "./main.ts";
 * const results = await runBench(["--quick", "--no-docs", "--out", "/tmp/bench.json"]);
 * ```
 */
export async function runBench(args: string[]): Promise<BenchResults> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      out: { type: "string", default: new URL("./results/latest.json", import.meta.url).pathname },
      docs: { type: "string", default: new URL("../docs/BENCHMARKS.md", import.meta.url).pathname },
      "no-docs": { type: "boolean", default: false },
      tool: { type: "string" },
    },
  });
  const plan = values.quick ? QUICK : FULL;
  const only = new Set<Section>(
    values.only
      ? values.only.split(",").map((s) => s.trim() as Section)
      : SECTIONS.filter((s) => s !== "profile" || !values.quick),
  );
  for (const s of only) {
    if (!SECTIONS.includes(s)) throw new Error(`--only: unknown section "${s}" (${SECTIONS.join(", ")})`);
  }
  const started = performance.now();
  const say = (line: string) => console.error(`[bench ${((performance.now() - started) / 1000).toFixed(1)}s] ${line}`);
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-bench-" });
  const notes: string[] = [];
  const tool: LoadTool = (values.tool as LoadTool | undefined) ?? (await hasProgram("wrk") ? "wrk" : "autocannon");
  if (tool === "autocannon") {
    notes.push("wrk is not installed: npm:autocannon (in its own process) generated the load.");
  }
  const loadavgStart = (await Deno.readTextFile("/proc/loadavg")).trim();

  const results: Omit<BenchResults, "targets"> = {
    meta: {
      date: new Date().toISOString(),
      quick: values.quick!,
      durationS: 0,
      machine: await machine(),
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      nginx: null,
      loadTool: tool,
      loadavg: { start: loadavgStart, end: "" },
    },
    warm: null,
    streaming: null,
    coldStart: { process: null, kubernetes: null },
    switch: { process: null, kubernetes: null },
    fanIn: null,
    memory: { idleMiB: null, kubernetesIdleMiB: null, held: null, bareHeld: null, afterRequests: [], imports: [] },
    profile: null,
    profiles: [],
    pool: null,
    decideCost: [],
    dashboard: null,
    notes,
  };

  try {
    // ---- warm path, streaming, leak check: one proxy in front of one warm engine ----
    if (only.has("warm") || only.has("stream") || only.has("memory")) {
      // Model switching on: the proxy reads `model` from every body, as the floor does.
      const proxy = await startProxy({ dir, name: "warm", models: { bench: { loadMs: 0 } }, switching: true });
      await sleep(500);
      results.memory.idleMiB = rssMiB(proxy.child.pid);
      say(`proxy idle RSS ${results.memory.idleMiB.toFixed(1)} MiB`);
      const first = await fetch(`${proxy.url}/v1/completions`, {
        method: "POST",
        body: WARM_BODY,
        headers: { "content-type": "application/json" },
      });
      await first.arrayBuffer();
      const engineLine = (await proxy.lines()).findLast((l) => /bench-upstream: listening on/.test(l.msg));
      const directUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(engineLine?.msg ?? "")?.[0];
      if (!directUrl) throw new Error("could not find the engine's URL in the proxy log");
      const enginePid = Number((await proxy.lines()).find((l) => l.msg === "engine started")?.pid);
      let nginx: Nginx | null = null;
      let bare: Child | null = null;
      let bareUrl: string | null = null;
      let bareFetch: Child | null = null;
      let bareFetchUrl: string | null = null;
      if (only.has("warm")) {
        const missing = await ensureNginx();
        if (missing) notes.push(`nginx column skipped: ${missing}.`);
        else {
          nginx = await startNginx(dir, directUrl.replace("http://", ""));
          results.meta.nginx = `nginx ${nginx.version}`;
        }
      }
      if (only.has("warm")) {
        const port = freePort();
        bare = spawnLogged(
          [Deno.execPath(), "run", "-A", new URL("./bare_proxy.ts", import.meta.url).pathname, String(port), directUrl],
          `${dir}/bare.log`,
        );
        await bare.waitFor(/listening/, 30_000);
        bareUrl = `http://127.0.0.1:${port}`;
        const fetchPort = freePort();
        bareFetch = spawnLogged(
          [
            Deno.execPath(),
            "run",
            "-A",
            new URL("./bare_fetch.ts", import.meta.url).pathname,
            String(fetchPort),
            directUrl,
          ],
          `${dir}/bare_fetch.log`,
        );
        await bareFetch.waitFor(/listening/, 30_000);
        bareFetchUrl = `http://127.0.0.1:${fetchPort}`;
      }
      try {
        if (only.has("warm")) {
          say("warm path…");
          results.warm = await runWarm({
            directUrl,
            proxyUrl: proxy.url,
            nginxUrl: nginx?.url ?? null,
            bareUrl,
            bareFetchUrl,
            pids: {
              direct: () => [enginePid],
              proxy: () => [proxy.child.pid],
              nginx: () => nginx ? [nginx.child.pid, ...childPids(nginx.child.pid)] : [],
              bare: () => bare ? [bare.pid] : [],
              bareFetch: () => bareFetch ? [bareFetch.pid] : [],
            },
            concurrencies: plan.concurrencies,
            warmupMs: plan.warmupMs,
            durationMs: plan.durationMs,
            rounds: plan.rounds,
            tool,
            say,
          });
        }
        if (only.has("stream")) {
          say("streaming…");
          results.streaming = await runStreaming({
            directUrl,
            proxyUrl: proxy.url,
            tokens: 500,
            tokensPerSec: 1000,
            streams: plan.streams,
          });
          const s = results.streaming;
          say(
            `stream TTFB +${s.ttfbOverheadP50Ms.toFixed(3)} ms, lateness +${s.lateOverheadP50Ms.toFixed(3)} / +${
              s.lateOverheadP99Ms.toFixed(3)
            } ms`,
          );
        }
        if (only.has("memory")) {
          await sleep(500);
          let served = await requestsServed(proxy.url);
          results.memory.afterRequests.push({ requests: served, rssMiB: rssMiB(proxy.child.pid) });
          // Bounded: at most 10 rounds of at most 20 s.
          for (let round = 0; round < 10 && plan.leakRequests > 0; round++) {
            const target = results.memory.afterRequests[0].requests + plan.leakRequests;
            if (served >= target) break;
            await runLoad({
              url: `${proxy.url}/v1/completions`,
              body: WARM_BODY,
              connections: 64,
              durationMs: Math.min(20_000, Math.max(1000, ((target - served) / 2000) * 1000)),
              tool,
            });
            served = await requestsServed(proxy.url);
          }
          if (plan.leakRequests > 0) {
            await sleep(500);
            results.memory.afterRequests.push({ requests: served, rssMiB: rssMiB(proxy.child.pid) });
            // V8 gives memory back once the process is idle for a while: a leak would not go away.
            await sleep(plan.settleMs);
            results.memory.afterRequests.push({
              requests: served,
              rssMiB: rssMiB(proxy.child.pid),
              note: `after ${plan.settleMs / 1000} s idle`,
            });
          }
          say(
            `RSS after requests: ${
              results.memory.afterRequests.map((a) => `${a.requests}: ${a.rssMiB.toFixed(1)} MiB`).join(", ")
            }`,
          );
        }
      } finally {
        await nginx?.stop();
        await bare?.stop();
        await bareFetch?.stop();
        await proxy.stop();
      }
    }

    // ---- open dashboards: events delivered, and what they cost the warm path ----
    if (only.has("dashboard")) {
      say(`${plan.dashboards} open dashboards…`);
      const proxy = await startProxy({ dir, name: "dashboard", models: { bench: { loadMs: 0 } } });
      try {
        await (await fetch(`${proxy.url}/v1/completions`, { method: "POST", body: WARM_BODY })).arrayBuffer();
        results.dashboard = await runDashboardBench({
          proxy,
          dashboards: plan.dashboards,
          concurrency: 64,
          durationMs: plan.durationMs,
          rounds: plan.rounds,
          tool,
          say,
        });
      } finally {
        await proxy.stop();
      }
      const d = results.dashboard;
      say(
        `dashboards: ${d.eventsPerSecondPerDashboard.toFixed(0)} events/s each (${
          d.eventsPerSecondTotal.toFixed(0)
        } in all), warm path ${d.without.rps.toFixed(0)} → ${d.with.rps.toFixed(0)} req/s, cpu ${
          d.without.cpuUsPerRequest.toFixed(0)
        } → ${d.with.cpuUsPerRequest.toFixed(0)} µs/req`,
      );
    }

    // ---- CPU profiles of the proxy under load, at c=1 and c=64 (one proxy process each) ----
    if (only.has("profile") && plan.profileMs > 0) {
      results.profiles = [];
      for (const concurrency of [1, 64]) {
        say(`profile at c=${concurrency}…`);
        const profDir = `${dir}/profile-c${concurrency}`;
        const proxy = await startProxy({
          dir,
          name: `profile-c${concurrency}`,
          models: { bench: { loadMs: 0 } },
          switching: true,
          denoFlags: ["--cpu-prof", `--cpu-prof-dir=${profDir}`],
        });
        const url = `${proxy.url}/v1/completions`;
        let rps = NaN;
        try {
          await (await fetch(url, { method: "POST", body: WARM_BODY, headers: { "content-type": "application/json" } }))
            .arrayBuffer();
          await runLoad({ url, body: WARM_BODY, connections: concurrency, durationMs: 1000, tool });
          rps =
            (await runLoad({ url, body: WARM_BODY, connections: concurrency, durationMs: plan.profileMs, tool })).rps;
        } finally {
          await proxy.stop();
        }
        const file = [...Deno.readDirSync(profDir)].find((e) => e.name.endsWith(".cpuprofile"));
        if (!file) {
          notes.push(`the CPU profile at c=${concurrency} was not written.`);
          continue;
        }
        const rows = summariseProfile(JSON.parse(await Deno.readTextFile(`${profDir}/${file.name}`)));
        const run = {
          seconds: plan.profileMs / 1000 + 1,
          concurrency,
          rps,
          top: rows.slice(0, 25),
          categories: categoriseProfile(rows),
        };
        results.profiles.push(run);
        if (concurrency === 64) results.profile = run;
      }
    }

    // ---- cold start and switch, process backend ----
    if (only.has("cold")) {
      say("cold starts (process backend)…");
      const proxy = await startProxy({ dir, name: "cold", models: { bench: { loadMs: plan.loadMs } } });
      try {
        results.coldStart.process = await runColdStarts(proxy, plan.coldStarts);
      } finally {
        await proxy.stop();
      }
      say(`cold start overhead p50 ${results.coldStart.process.overheadP50Ms.toFixed(1)} ms`);
      say("switches (process backend)…");
      const sw = await startProxy({
        dir,
        name: "switch",
        switching: true,
        models: { a: { loadMs: plan.loadMs, stopMs: 100 }, b: { loadMs: plan.loadMs, stopMs: 100 } },
      });
      try {
        results.switch.process = await runSwitches(sw, plan.switches);
      } finally {
        await sw.stop();
      }
      say(`switch overhead p50 ${results.switch.process.overheadP50Ms.toFixed(1)} ms`);
    }

    // ---- the pool: switch by wake, mixed workload ----
    if (only.has("pool")) {
      say("pool (switch by wake, mixed workload)…");
      results.pool = await runPool({ dir, plan: plan.pool, say });
    }

    // ---- fan-in ----
    if (only.has("fanin")) {
      say(`fan-in of ${plan.fanIn}…`);
      const proxy = await startProxy({ dir, name: "fanin", models: { bench: { loadMs: 1000 } } });
      try {
        results.fanIn = await runFanIn(proxy, plan.fanIn);
      } finally {
        await proxy.stop();
      }
      say(`fan-in: ${results.fanIn.ok}/${results.fanIn.requests} ok, ${results.fanIn.scaleUps} scale-up(s)`);
    }

    // ---- held connections ----
    if (only.has("memory")) {
      say(`held connections ${plan.held.join(", ")}…`);
      // bench/held_proxy.ts: `serve` with room for 10,000 client connections whatever the descriptor limit.
      const maxHeld = Math.max(...plan.held);
      const proxy = await startProxy({
        dir,
        name: "held",
        models: { bench: { loadMs: 3_600_000 } },
        switching: true,
        entry: [new URL("./held_proxy.ts", import.meta.url).pathname, "--max-connections", String(maxHeld + 500)],
        extra: { maxHeldRequests: 20_000, holdTimeout: "1h", startTimeout: "2h", heartbeatInterval: "0s" },
      });
      try {
        results.memory.held = await measureHeld(proxy, plan.held, 120_000);
      } finally {
        await proxy.stop();
      }
      if (!values.quick) results.memory.bareHeld = await measureBareHeld(dir, plan.held, 120_000);
      say(
        `held: idle ${results.memory.held.idleMiB.toFixed(1)} MiB, ${
          results.memory.held.points.map((p) => `${p.held}: +${p.deltaMiB.toFixed(1)} MiB`).join(", ")
        }`,
      );
    }

    if (only.has("memory") && !values.quick) {
      say("RSS per import…");
      results.decideCost = await measureDecide([0, 1000, 10_000]);
      results.memory.imports = await measureImports([
        "zod",
        "../lib/proxy/mod.ts",
        "@kubernetes/client-node",
        "../lib/server.ts",
      ]);
    }

    // ---- kubernetes backend against the fake API server ----
    if (only.has("kube")) {
      say("kubernetes backend (fake API server)…");
      const k = await runKubeColdAndSwitch({
        dir,
        coldStarts: plan.coldStarts,
        switches: plan.switches,
        loadMs: plan.loadMs,
      });
      results.coldStart.kubernetes = k.coldStart;
      results.switch.kubernetes = k.switch;
      results.memory.kubernetesIdleMiB = k.idleMiB;
      notes.push(...k.notes);
      say(
        `kube cold overhead p50 ${k.coldStart.overheadP50Ms.toFixed(1)} ms, switch ${
          k.switch.overheadP50Ms.toFixed(1)
        } ms`,
      );
    }
  } catch (error) {
    say(`failed; the logs are kept in ${dir}`);
    throw error;
  } finally {
    await killAll();
  }

  results.meta.loadavg.end = (await Deno.readTextFile("/proc/loadavg")).trim();
  results.meta.durationS = (performance.now() - started) / 1000;
  const full: BenchResults = { ...results, targets: evaluateTargets(results) };
  // A relative --out is relative to the working directory (a bare `file://` + relative path is no URL).
  await Deno.mkdir(new URL(".", new URL(values.out!, `file://${Deno.cwd()}/`)), { recursive: true });
  await Deno.writeTextFile(values.out!, JSON.stringify(full, null, 2) + "\n");
  say(`wrote ${values.out}`);
  if (!values["no-docs"]) {
    await writeMarkdown(values.docs!, renderMarkdown(full));
    say(`wrote ${values.docs}`);
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  return full;
}

async function machine(): Promise<BenchResults["meta"]["machine"]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  return {
    nproc: navigator.hardwareConcurrency,
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memoryGiB: Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0) / 1024 / 1024,
    kernel: Deno.osRelease(),
  };
}

if (import.meta.main) {
  const results = await runBench(Deno.args);
  for (const t of results.targets) {
    console.log(`${t.met === null ? "–" : t.met ? "met    " : "NOT met"}  ${t.name}: ${t.value} (goal ${t.goal})`);
  }
}
