/**
 * The quickest slice of the benchmark harness, to prove it works: a real
 * proxy process with the process backend running the bench engine, one cold
 * start, one short autocannon run through the proxy, one short stream, a
 * short run with two dashboards open, and the report rendering. No assertion on any timing.
 *
 * @module
 */
import assert from "node:assert/strict";
import { runColdStarts } from "../../bench/cold.ts";
import { runLoad } from "../../bench/load.ts";
import { startProxy } from "../../bench/proxy.ts";
import { cpuMs, rssMiB } from "../../bench/procs.ts";
import { evaluateTargets, renderMarkdown, writeMarkdown } from "../../bench/report.ts";
import { runStreaming } from "../../bench/stream.ts";
import { WARM_BODY } from "../../bench/warm.ts";
import { runDashboardBench } from "../../bench/dashboard.ts";

Deno.test("bench harness: cold start, a load run, a stream and the report through a real proxy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bench-smoke-" });
  const proxy = await startProxy({ dir, name: "smoke", models: { bench: { loadMs: 50 } } });
  try {
    assert.ok(rssMiB(proxy.child.pid) > 0, "the proxy's RSS is readable");

    const cold = await runColdStarts(proxy, 1);
    assert.equal(cold.samples.length, 1);
    for (const value of Object.values(cold.samples[0])) assert.ok(Number.isFinite(value), "every figure is a number");

    const first = await fetch(`${proxy.url}/v1/completions`, { method: "POST", body: WARM_BODY });
    assert.equal(first.status, 200);
    assert.equal((await first.json()).model, "bench");
    const engine = (await proxy.lines()).findLast((l) => /bench-upstream: listening on/.test(l.msg));
    const directUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(engine?.msg ?? "")?.[0];
    assert.ok(directUrl, "the engine's URL is in the proxy log");

    const before = cpuMs(proxy.child.pid);
    const load = await runLoad({
      url: `${proxy.url}/v1/completions`,
      body: WARM_BODY,
      connections: 4,
      durationMs: 500,
      tool: "autocannon",
    });
    assert.ok(load.requests > 0, "autocannon sent requests through the proxy");
    assert.equal(load.errors, 0);
    assert.ok(cpuMs(proxy.child.pid) >= before);

    const stream = await runStreaming({ directUrl, proxyUrl: proxy.url, tokens: 20, tokensPerSec: 1000, streams: 1 });

    const dashboard = await runDashboardBench({
      proxy,
      dashboards: 2,
      concurrency: 4,
      durationMs: 500,
      rounds: 1,
      tool: "autocannon",
      say: () => {},
      idleMs: 100,
    });
    assert.ok(dashboard.eventsPerSecondPerDashboard > 0, "the open streams received events during the load");
    assert.ok(dashboard.snapshotsPerSecondPerDashboard > 0, "snapshots among them");
    assert.equal(dashboard.dropped, 0);
    assert.equal(dashboard.with.errors + dashboard.without.errors, 0);
    assert.equal(stream.direct.events, 21, "20 tokens and [DONE] straight from the engine");
    assert.equal(stream.proxy.events, 21, "20 tokens and [DONE] through the proxy");

    const results = {
      meta: {
        date: new Date().toISOString(),
        quick: true,
        durationS: 1,
        machine: { nproc: 2, cpu: "test", memoryGiB: 1, kernel: "test" },
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        nginx: null,
        loadTool: "autocannon",
        loadavg: { start: "", end: "" },
      },
      warm: null,
      streaming: stream,
      coldStart: { process: cold, kubernetes: null },
      switch: { process: null, kubernetes: null },
      fanIn: null,
      memory: { idleMiB: 50, kubernetesIdleMiB: null, held: null, bareHeld: null, afterRequests: [], imports: [] },
      profile: null,
      pool: null,
      decideCost: [],
      dashboard,
      notes: [],
    };
    const targets = evaluateTargets(results);
    assert.equal(targets.find((t) => t.name === "idle RSS, process backend")?.met, true);
    assert.equal(targets.find((t) => t.name === "idle RSS, Kubernetes backend")?.met, null, "not measured here");
    assert.equal(targets.find((t) => t.name.startsWith("warm p50"))?.met, null, "unmeasured targets say so");
    const doc = `${dir}/BENCHMARKS.md`;
    await Deno.writeTextFile(
      doc,
      "# Benchmarks\n\nkept text\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nkept too\n",
    );
    await writeMarkdown(doc, renderMarkdown({ ...results, targets }));
    const text = await Deno.readTextFile(doc);
    assert.match(text, /kept text/);
    assert.match(text, /kept too/);
    assert.doesNotMatch(text, /\nold\n/);
    assert.match(text, /### Streaming/);
    assert.match(text, /### Open dashboards \(2 GET \/admin\/events streams/);
  } finally {
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
