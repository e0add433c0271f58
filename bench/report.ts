/**
 * The bench results: their JSON shape, the targets with met / not met, and
 * the Markdown tables written into docs/BENCHMARKS.md between
 * `<!-- bench:begin -->` and `<!-- bench:end -->` (the text around them is
 * written by people and kept).
 *
 * @module
 */
import type { ColdSummary, FanInResult } from "./cold.ts";
import type { HeldPoint } from "./memory.ts";
import type { ImportCost } from "./import_cost.ts";
import type { DecideCost } from "./decide_cost.ts";
import type { ProfileCategory, ProfileRow } from "./profile_summary.ts";
import type { StreamResult } from "./stream.ts";
import type { WarmRow } from "./warm.ts";
import type { PoolResult } from "./pool.ts";
import type { DashboardBench } from "./dashboard.ts";

/** Everything one bench run measured. */
export interface BenchResults {
  meta: {
    date: string;
    quick: boolean;
    durationS: number;
    machine: { nproc: number; cpu: string; memoryGiB: number; kernel: string };
    deno: string;
    v8: string;
    nginx: string | null;
    loadTool: string;
    /** /proc/loadavg at start and end (other work on the machine skews figures). */
    loadavg: { start: string; end: string };
  };
  warm: WarmRow[] | null;
  streaming: StreamResult | null;
  coldStart: { process: ColdSummary | null; kubernetes: ColdSummary | null };
  switch: { process: ColdSummary | null; kubernetes: ColdSummary | null };
  fanIn: FanInResult | null;
  memory: {
    idleMiB: number | null;
    /** Idle RSS of the proxy with the Kubernetes backend (client-node loaded, watches open). */
    kubernetesIdleMiB: number | null;
    /** RSS of a fresh Deno process after one import. */
    imports: ImportCost[];
    held: { idleMiB: number; points: HeldPoint[] } | null;
    /** The same with a bare Deno.serve that holds requests (bench/bare_hold.ts): the runtime's floor. */
    bareHeld: { idleMiB: number; points: HeldPoint[] } | null;
    afterRequests: { requests: number; rssMiB: number; note?: string }[];
  };
  /** µs per scaler decision by number of held requests (in-process). */
  decideCost: DecideCost[];
  profile: ProfileRun | null;
  /** Profiles at c=1 and c=64 (`profile` is the c=64 one); absent in older runs. */
  profiles?: ProfileRun[];
  /** The pool: switch by wake and the mixed workload. */
  pool: PoolResult | null;
  /** Open dashboards (GET /admin/events streams): events delivered and the warm path's cost; absent in older runs. */
  dashboard?: DashboardBench | null;
  targets: Target[];
  notes: string[];
}

/** One CPU profile of the proxy under load. */
export interface ProfileRun {
  seconds: number;
  concurrency: number;
  rps: number;
  top: ProfileRow[];
  /** Self time by what spends it; absent in older runs. */
  categories?: ProfileCategory[];
}

/** One target of the issue. */
export interface Target {
  name: string;
  goal: string;
  value: string;
  met: boolean | null;
}

const f = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || Number.isNaN(v) ? "n/a" : v.toFixed(digits);

/**
 * The issue's targets evaluated on a run.
 *
 * @example
 * ```ts ignore
 * import { evaluateTargets } from "./report.ts";
 * const targets = evaluateTargets(results);
 * ```
 */
export function evaluateTargets(r: Omit<BenchResults, "targets">): Target[] {
  const t: Target[] = [];
  const c64 = r.warm?.find((w) => w.concurrency === 64) ?? null;
  const c1 = r.warm?.find((w) => w.concurrency === 1) ?? null;
  // The performance issue's targets: ratios within one run, medians of the rounds.
  t.push({
    name: "c=64 throughput vs the platform floor (bench/bare_proxy.ts)",
    goal: "≥ 0.9 × the floor",
    value: c64?.rpsProxyOverBare != null
      ? `${f(c64.rpsProxyOverBare)} × (${f(c64.proxy.rps, 0)} vs ${f(c64.bare!.rps, 0)} req/s; cpu ${
        f(c64.proxy.cpuUsPerRequest, 0)
      } vs ${f(c64.bare!.cpuUsPerRequest, 0)} µs/req)`
      : "n/a",
    met: c64?.rpsProxyOverBare != null ? c64.rpsProxyOverBare >= 0.9 : null,
  });
  t.push({
    name: "c=1 p50 overhead over direct",
    goal: "≤ 0.2 ms",
    value: c1
      ? `${f(c1.p50OverheadMs, 3)} ms (the floor: ${c1.bare ? f(c1.bare.p50Ms - c1.direct.p50Ms, 3) : "n/a"} ms)`
      : "n/a",
    met: c1 ? c1.p50OverheadMs <= 0.2 : null,
  });
  const s = r.streaming;
  t.push({
    name: "streaming: lateness added per chunk, p99",
    goal: "≤ 0.5 ms",
    value: s ? `${f(s.lateOverheadP99Ms, 3)} ms (p50 ${f(s.lateOverheadP50Ms, 3)} ms)` : "n/a",
    met: s ? s.lateOverheadP99Ms <= 0.5 : null,
  });
  const held10k = r.memory.held?.points.find((p) => p.held === 10_000) ?? null;
  const bare10k = r.memory.bareHeld?.points.find((p) => p.held === 10_000) ?? null;
  const perHeldKB = (p: HeldPoint) => (p.deltaMiB * 1048576) / p.held / 1000;
  t.push({
    name: "RSS per held request, 10,000 held",
    goal: "≤ 25 KB",
    value: held10k
      ? `${f(perHeldKB(held10k), 1)} KB (bare \`Deno.serve\`: ${bare10k ? f(perHeldKB(bare10k), 1) : "n/a"} KB)`
      : "n/a",
    met: held10k ? perHeldKB(held10k) <= 25 : null,
  });
  for (const [name, mib] of [["process", r.memory.idleMiB], ["Kubernetes", r.memory.kubernetesIdleMiB]] as const) {
    t.push({
      name: `idle RSS, ${name} backend`,
      goal: "≤ 80 MB",
      value: mib !== null ? `${f(mib * 1.048576, 1)} MB` : "n/a",
      met: mib !== null ? mib * 1.048576 <= 80 : null,
    });
  }
  const mixed = r.pool?.mixed ?? null;
  t.push({
    name: "pool: mixed workload total vs its lower bound",
    goal: "reported",
    value: mixed ? `${f(mixed.ratio)} × (${f(mixed.totalMs, 0)} vs ${f(mixed.lowerBoundMs, 0)} ms)` : "n/a",
    met: null,
  });
  // Earlier issues' targets.
  t.push({
    name: "warm p50 overhead, c=64",
    goal: "≤ 0.5 ms",
    value: c64 ? `${f(c64.p50OverheadMs, 3)} ms` : "n/a",
    met: c64 ? c64.p50OverheadMs <= 0.5 : null,
  });
  t.push({
    name: "warm p99 overhead, c=64",
    goal: "≤ 2 ms",
    value: c64 ? `${f(c64.p99OverheadMs, 3)} ms` : "n/a",
    met: c64 ? c64.p99OverheadMs <= 2 : null,
  });
  t.push({
    name: "throughput vs nginx, c=64",
    goal: "≥ 0.8 × nginx",
    value: c64?.rpsProxyOverNginx != null ? `${f(c64.rpsProxyOverNginx)} ×` : "n/a",
    met: c64?.rpsProxyOverNginx != null ? c64.rpsProxyOverNginx >= 0.8 : null,
  });
  const rtf = [r.coldStart.process, r.coldStart.kubernetes].filter((s): s is ColdSummary => s !== null);
  const worstRtf = rtf.length ? Math.max(...rtf.map((s) => s.readyToResponseMaxMs)) : NaN;
  const p50Rtf = rtf.length ? Math.max(...rtf.map((s) => s.readyToResponseP50Ms)) : NaN;
  t.push({
    name: "readiness-to-forward (worst cold start, both backends)",
    goal: "≤ 50 ms",
    value: `${f(worstRtf, 1)} ms (p50 of the slower backend: ${f(p50Rtf, 1)} ms)`,
    met: rtf.length ? worstRtf <= 50 : null,
  });
  const sw = [r.switch.process, r.switch.kubernetes].filter((s): s is ColdSummary => s !== null);
  const worstSw = sw.length ? Math.max(...sw.map((s) => s.overheadMaxMs)) : NaN;
  const p50Sw = sw.length ? Math.max(...sw.map((s) => s.overheadP50Ms)) : NaN;
  t.push({
    name: "switch orchestration overhead (worst, both backends)",
    goal: "≤ 300 ms",
    value: `${f(worstSw, 1)} ms (p50 of the slower backend: ${f(p50Sw, 1)} ms)`,
    met: sw.length ? worstSw <= 300 : null,
  });
  const wake = r.pool?.wakeSwitch ?? null;
  t.push({
    name: "switch by wake: latency − the engines' own sleep + wake, p50",
    goal: "≤ 50 ms",
    value: wake ? `${f(wake.overheadP50Ms, 1)} ms (max ${f(wake.overheadMaxMs, 1)} ms)` : "n/a",
    met: wake ? wake.overheadP50Ms <= 50 : null,
  });
  const p10k = r.memory.held?.points.find((p) => p.held === 10_000) ?? null;
  t.push({
    name: "RSS growth with 10,000 held connections",
    goal: "≤ +60 MB",
    value: p10k ? `+${f(p10k.deltaMiB, 1)} MiB` : "n/a",
    met: p10k ? p10k.deltaMiB * 1.048576 <= 60 : null,
  });
  return t;
}

const met = (t: Target) =>
  t.met === null ? (t.value === "n/a" ? "not measured" : "") : t.met ? "**met**" : "**not met**";

/**
 * The generated Markdown (tables only).
 *
 * @example
 * ```ts ignore
 * import { renderMarkdown } from "./report.ts";
 * const md = renderMarkdown(results);
 * ```
 */
export function renderMarkdown(r: BenchResults): string {
  const m = r.meta;
  const out: string[] = [];
  out.push(
    `Run: ${m.date} · ${m.quick ? "`--quick` (reduced)" : "full"} run, ${f(m.durationS, 0)} s · ` +
      `${m.machine.nproc} CPUs (${m.machine.cpu}), ${f(m.machine.memoryGiB, 1)} GiB RAM, Linux ${m.machine.kernel} · ` +
      `Deno ${m.deno} (V8 ${m.v8}) · ${m.nginx ?? "nginx: not available"} · load generator: ${m.loadTool} · ` +
      `loadavg at start ${m.loadavg.start}, at end ${m.loadavg.end}`,
    "",
    "### Targets",
    "",
    "| target | goal | measured | |",
    "|---|---|---|---|",
    ...r.targets.map((t) => `| ${t.name} | ${t.goal} | ${t.value} | ${met(t)} |`),
    "",
  );
  if (r.warm) {
    out.push(
      "### Warm path (small non-streaming completion)",
      "",
      "Requests/s and latency as the load generator saw them; `cpu µs/req` is the CPU time (user + system, all",
      "threads) of the forwarding process alone per request (for direct: the engine's), which other work on the",
      "machine does not inflate the way it inflates latency. `floor` is bench/bare_proxy.ts: `Deno.serve`, the body",
      "read and `model` found, the request sent once on a kept-alive connection (dropped if the client leaves), the",
      "answer passed back, and nothing else: the least a Deno forwarder with vllm-chill's client semantics does.",
      "`floor (fetch)` is the same with Deno's `fetch` (bench/bare_fetch.ts), which may send a request twice.",
      "Every throughput is given as a ratio to the floor and to nginx (one worker, keep-alive, no buffering).",
      "",
      `Each figure is the median of ${r.warm[0]?.proxy.rounds ?? 1} runs of the targets in turn.`,
      "",
      "| c | | req/s | ÷ floor | ÷ nginx | p50 ms | p99 ms | cpu µs/req | loadavg |",
      "|---|---|---|---|---|---|---|---|---|",
      ...r.warm.flatMap((w) =>
        ([
          ["direct", w.direct],
          ["vllm-chill", w.proxy],
          ["floor", w.bare],
          ["floor (fetch)", w.bareFetch ?? null],
          ["nginx", w.nginx],
        ] as const)
          .filter(([, x]) => x !== null)
          .map(([name, x]) =>
            `| ${w.concurrency} | ${name} | ${f(x!.rps, 0)} | ${w.bare ? f(x!.rps / w.bare.rps) : "n/a"} | ${
              w.nginx ? f(x!.rps / w.nginx.rps) : "n/a"
            } | ${f(x!.p50Ms, 3)} | ${f(x!.p99Ms, 3)} | ${f(x!.cpuUsPerRequest, 0)} | ${f(x!.loadavg, 1)} |`
          )
      ),
      "",
      "| c | vllm-chill − direct, p50 / p99 ms | floor − direct, p50 ms | vllm-chill ÷ direct | vllm-chill ÷ floor | vllm-chill ÷ nginx | floor ÷ nginx |",
      "|---|---|---|---|---|---|---|",
      ...r.warm.map((w) =>
        `| ${w.concurrency} | ${f(w.p50OverheadMs, 3)} / ${f(w.p99OverheadMs, 3)} | ${
          w.bare ? f(w.bare.p50Ms - w.direct.p50Ms, 3) : "n/a"
        } | ${f(w.rpsProxyOverDirect)} | ${f(w.rpsProxyOverBare)} | ${f(w.rpsProxyOverNginx)} | ${
          w.bare && w.nginx ? f(w.bare.rps / w.nginx.rps) : "n/a"
        } |`
      ),
      "",
    );
    const errors = r.warm.flatMap((w) => [w.direct, w.proxy, w.nginx, w.bare, w.bareFetch]).reduce(
      (n, x) => n + (x?.errors ?? 0),
      0,
    );
    out.push(`Errors (non-2xx + socket errors) over all warm runs: ${errors}.`, "");
  }
  if (r.dashboard) {
    const d = r.dashboard;
    const row = (name: string, x: DashboardBench["with"]) =>
      `| ${name} | ${f(x.rps, 0)} | ${f(x.p50Ms, 3)} | ${f(x.p99Ms, 3)} | ${f(x.cpuUsPerRequest, 0)} | ${x.errors} |`;
    out.push(
      `### Open dashboards (${d.dashboards} GET /admin/events streams, warm path at c=${d.concurrency})`,
      "",
      `Measured ${d.measuredAt} (loadavg ${d.loadavg}). The warm path with no dashboard open and with ${d.dashboards}`,
      "open and read, in turn; the streams are read by the bench process on the same machine, so on a small machine",
      `req/s also shows their reading. Medians of ${d.rounds} runs of ${f(d.durationMs / 1000, 0)} s. Every request`,
      "adds a log line and changes the in-flight count, so the streams run at their limits: one flush per 250 ms",
      "with at most 100 log lines (the rest are only counted, in a `skipped` event).",
      "",
      "| dashboards | req/s | p50 ms | p99 ms | proxy cpu µs/req | errors |",
      "|---|---|---|---|---|---|",
      row("none", d.without),
      row(String(d.dashboards), d.with),
      "",
      `Each stream received ${f(d.eventsPerSecondPerDashboard, 0)} events/s (${
        f(d.snapshotsPerSecondPerDashboard, 1)
      } snapshots/s, ${f(d.kibPerSecondPerDashboard, 0)} KiB/s; ${
        f(d.skippedLinesPerSecondPerDashboard, 0)
      } log lines/s skipped), ${
        f(d.eventsPerSecondTotal, 0)
      } events/s in all; streams dropped as too slow: ${d.dropped}.`,
      `With the ${d.dashboards} streams open and no traffic the proxy used ${f(d.idleCpuMs, 0)} ms of CPU in ${
        f(d.idleSeconds, 1)
      } s (the clock counts in 10 ms ticks).`,
      "",
    );
  }
  if (r.streaming) {
    const s = r.streaming;
    out.push(
      `### Streaming (${s.tokens} tokens at ${s.tokensPerSec} tokens/s, ${s.direct.streams} streams each)`,
      "",
      "Gap = time between consecutive events as the client read them (0 when several came in one read);",
      "lateness = arrival − (first event + n ms), i.e. how late token n reached the client against the engine's schedule.",
      "",
      "| | TTFB p50 / p99 ms | gap p50 / p99 ms | lateness p50 / p99 ms | stream duration p50 ms | events |",
      "|---|---|---|---|---|---|",
      ...([["direct", s.direct], ["proxy", s.proxy]] as const).map(([name, x]) =>
        `| ${name} | ${f(x.ttfbP50Ms, 3)} / ${f(x.ttfbP99Ms, 3)} | ${f(x.gapP50Ms, 3)} / ${f(x.gapP99Ms, 3)} | ${
          f(x.lateP50Ms, 3)
        } / ${f(x.lateP99Ms, 3)} | ${f(x.durationP50Ms, 1)} | ${x.events} |`
      ),
      `| added by the proxy | ${f(s.ttfbOverheadP50Ms, 3)} (p50) | ${f(s.gapOverheadP50Ms, 3)} / ${
        f(s.gapOverheadP99Ms, 3)
      } | ${f(s.lateOverheadP50Ms, 3)} / ${f(s.lateOverheadP99Ms, 3)} | | |`,
      "",
    );
  }
  const coldRows: string[] = [];
  const coldRow = (what: string, s: ColdSummary | null) => {
    if (!s) return;
    coldRows.push(
      `| ${what} | ${s.samples.length} | ${f(s.totalP50Ms, 1)} | ${f(s.engineP50Ms, 1)} | ${f(s.overheadP50Ms, 1)} / ${
        f(s.overheadMaxMs, 1)
      } | ${f(s.readyToResponseP50Ms, 1)} / ${f(s.readyToResponseMaxMs, 1)} |`,
    );
  };
  coldRow("cold start, process backend", r.coldStart.process);
  coldRow("cold start, kubernetes backend (fake API server)", r.coldStart.kubernetes);
  coldRow("switch, process backend", r.switch.process);
  coldRow("switch, kubernetes backend (fake API server)", r.switch.kubernetes);
  if (coldRows.length) {
    out.push(
      "### Cold start and switch",
      "",
      "| | samples | client wait p50 ms | engine's own time p50 ms | orchestration overhead p50 / max ms | engine ready → response p50 / max ms |",
      "|---|---|---|---|---|---|",
      ...coldRows,
      "",
    );
  }
  if (r.pool) {
    const { wakeSwitch: w, mixed: m } = r.pool;
    out.push(
      "### The pool: switch by wake, mixed workload",
      "",
      `Switch by wake (two 0.6 models on one GPU, each request puts the other to sleep and wakes its own; the fake ` +
        `engine sleeps and wakes in ${w.engineMs} ms together): ${w.samples} switches, client wait p50 ` +
        `${f(w.latencyP50Ms, 1)} ms, overhead over the engines' own time and a warm request (${
          f(w.warmP50Ms, 2)
        } ms) p50 ${f(w.overheadP50Ms, 1)} ms, max ${f(w.overheadMaxMs, 1)} ms.`,
      "",
      `Mixed workload (${m.clients} clients × ${m.perClient} sequential requests over ${m.models} models on one GPU, ` +
        `sleep on): ${f(m.totalMs, 0)} ms against a lower bound of ${f(m.lowerBoundMs, 0)} ms (${f(m.ratio, 2)} ×); ` +
        `${m.coldStarts} cold starts, ${m.wakes} wakes, ${m.sleeps} sleeps, ${m.errors} errors. The bound: every ` +
        "model loaded once, the GPU handed over at least twice, each model's clients' sequential requests.",
      "",
    );
  }
  if (r.fanIn) {
    const x = r.fanIn;
    out.push(
      "### Fan-in",
      "",
      `${x.requests} concurrent requests at zero: ${x.ok} answered 200 (${
        Object.entries(x.statuses).map(([k, v]) => `${k}: ${v}`).join(", ")
      }); engines started: ${x.engineStarts}; scale-up events: ${x.scaleUps}; ` +
        `extra wait after the engine turned ready p50 ${f(x.extraWaitP50Ms, 1)} ms, p99 ${
          f(x.extraWaitP99Ms, 1)
        } ms, max ${f(x.extraWaitMaxMs, 1)} ms. For reference, the same burst of ${x.requests} once warm took ` +
        `p50 ${f(x.warmBurstThroughProxy.p50Ms, 1)} / p99 ${
          f(x.warmBurstThroughProxy.p99Ms, 1)
        } ms through the proxy ` +
        `and p50 ${f(x.warmBurstDirect.p50Ms, 1)} / p99 ${f(x.warmBurstDirect.p99Ms, 1)} ms straight to the engine ` +
        "(send → answer read, new client connections each time).",
      "",
    );
  }
  const mem = r.memory;
  out.push(
    "### Memory (VmRSS of the proxy process)",
    "",
    "| state | RSS MiB | vs idle |",
    "|---|---|---|",
    `| idle (started, no request yet) | ${f(mem.idleMiB, 1)} | |`,
  );
  if (mem.held) {
    out.push(`| idle (held-connections proxy) | ${f(mem.held.idleMiB, 1)} | |`);
    for (const p of mem.held.points) {
      out.push(`| ${p.held.toLocaleString("en")} held requests | ${f(p.rssMiB, 1)} | +${f(p.deltaMiB, 1)} |`);
    }
  }
  if (mem.bareHeld) {
    for (const p of mem.bareHeld.points) {
      out.push(
        `| reference: bare \`Deno.serve\` holding ${p.held.toLocaleString("en")} requests | ${f(p.rssMiB, 1)} | +${
          f(p.deltaMiB, 1)
        } (idle ${f(mem.bareHeld.idleMiB, 1)}) |`,
      );
    }
  }
  if (mem.kubernetesIdleMiB !== null) {
    out.push(`| idle, Kubernetes backend (client-node loaded, watches open) | ${f(mem.kubernetesIdleMiB, 1)} | |`);
  }
  for (const a of mem.afterRequests) {
    out.push(
      `| after ${a.requests.toLocaleString("en")} requests${a.note ? `, ${a.note}` : ""} | ${f(a.rssMiB, 1)} | +${
        f(a.rssMiB - (mem.idleMiB ?? NaN), 1)
      } |`,
    );
  }
  out.push("");
  if (mem.imports.length) {
    out.push(
      "RSS of a fresh Deno process after a single import (where the idle RSS goes):",
      "",
      "| import | RSS MiB |",
      "|---|---|",
      ...mem.imports.map((i) => `| \`${i.what}\` | ${f(i.rssMiB, 1)} |`),
      "",
    );
  }
  if (r.decideCost.length) {
    out.push(
      "Cost of one scaler decision (`decide`, in-process, no I/O) by number of requests already held:",
      "",
      "| held | µs per event |",
      "|---|---|",
      ...r.decideCost.map((d) => `| ${d.held.toLocaleString("en")} | ${f(d.usPerEvent, 1)} |`),
      "",
    );
  }
  const profiles = r.profiles?.length ? r.profiles : r.profile ? [r.profile] : [];
  for (const p of profiles) {
    out.push(
      `### CPU profile of the proxy under load (c=${p.concurrency}, ${p.seconds} s, ${
        f(p.rps, 0)
      } req/s with the profiler on)`,
      "",
      "`(idle)` is time the JavaScript thread was not running JavaScript: waiting, and the Rust side of Deno",
      "(HTTP parsing, sockets) on the same thread. A function's self time includes the V8 builtins it calls.",
      "",
    );
    if (p.categories?.length) {
      out.push(
        "| self % | spent by |",
        "|---|---|",
        ...p.categories.filter((c) => c.selfPct >= 0.1).map((c) => `| ${f(c.selfPct, 1)} | ${c.what} |`),
        "",
      );
    }
    out.push(
      "| self % | total % | function |",
      "|---|---|---|",
      ...p.top.map((row) => `| ${f(row.selfPct, 1)} | ${f(row.totalPct, 1)} | \`${row.name}\` |`),
      "",
    );
  }
  if (r.notes.length) out.push("Notes:", "", ...r.notes.map((n) => `- ${n}`), "");
  return out.join("\n");
}

/**
 * Replaces the generated block of docs/BENCHMARKS.md (creating the file when missing).
 *
 * @example
 * ```ts ignore
 * import { writeMarkdown } from "./report.ts";
 * await writeMarkdown("docs/BENCHMARKS.md", "| table |");
 * ```
 */
export async function writeMarkdown(path: string, generated: string): Promise<void> {
  const begin = "<!-- bench:begin -->";
  const end = "<!-- bench:end -->";
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    text = `# Benchmarks\n\n${begin}\n${end}\n`;
  }
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  const block = `${begin}\n<!-- generated by \`deno task bench\`; edit outside this block -->\n\n${generated}\n${end}`;
  text = a >= 0 && b > a ? text.slice(0, a) + block + text.slice(b + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  await Deno.writeTextFile(path, text);
}
