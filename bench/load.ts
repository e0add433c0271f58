/**
 * Load generation with an established tool: Debian's `wrk` (C, light, its
 * own process) when installed, else npm:autocannon. Both are driven the same
 * way: POST a fixed JSON body at a fixed concurrency for a fixed time, and
 * report requests/s and latency percentiles in milliseconds.
 *
 * @module
 */
import { run } from "./procs.ts";

/** One load run. */
export interface LoadOptions {
  /** Full URL to POST to. */
  url: string;
  /** JSON body. */
  body: string;
  /** Open connections (= concurrency). */
  connections: number;
  /** Duration in ms. */
  durationMs: number;
  /** "wrk" (default when installed) or "autocannon". */
  tool: LoadTool;
}

/** A load generator. */
export type LoadTool = "wrk" | "autocannon";

/** Figures of one load run. */
export interface LoadResult {
  tool: LoadTool;
  connections: number;
  durationMs: number;
  requests: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Non-2xx answers plus socket errors. */
  errors: number;
}

const WRK_SCRIPT = `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"p50\\":%d,\\"p90\\":%d,\\"p99\\":%d,\\"max\\":%d,\\"errors\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout + e.status))
end
`;

let scriptPath: string | undefined;

/**
 * Runs one load.
 *
 * @example
 * ```ts ignore
 * import { runLoad } from "./load.ts";
 * const r = await runLoad({ url: "http://127.0.0.1:8000/v1/completions", body: "{}", connections: 16, durationMs: 1000, tool: "wrk" });
 * console.log(r.rps, r.p50Ms, r.p99Ms);
 * ```
 */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  return options.tool === "wrk" ? runWrk(options) : runAutocannon(options);
}

async function runWrk(o: LoadOptions): Promise<LoadResult> {
  scriptPath ??= await Deno.makeTempFile({ prefix: "bench-wrk-", suffix: ".lua" });
  await Deno.writeTextFile(scriptPath, WRK_SCRIPT);
  const seconds = Math.max(1, Math.round(o.durationMs / 1000));
  const cmd = new Deno.Command("wrk", {
    args: ["-t1", `-c${o.connections}`, `-d${seconds}s`, "--timeout", "10s", "-s", scriptPath, o.url],
    env: { BENCH_BODY: o.body },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(seconds * 1000 + 20_000),
  });
  const out = await cmd.output();
  const text = new TextDecoder().decode(out.stdout);
  const m = /BENCH_JSON (\{.*\})/.exec(text);
  if (!out.success || !m) {
    throw new Error(`wrk failed (code ${out.code}): ${text}${new TextDecoder().decode(out.stderr)}`);
  }
  const j = JSON.parse(m[1]);
  const us = (v: number) => v / 1000;
  return {
    tool: "wrk",
    connections: o.connections,
    durationMs: j.duration_us / 1000,
    requests: j.requests,
    rps: j.requests / (j.duration_us / 1e6),
    p50Ms: us(j.p50),
    p90Ms: us(j.p90),
    p99Ms: us(j.p99),
    maxMs: us(j.max),
    errors: j.errors,
  };
}

async function runAutocannon(o: LoadOptions): Promise<LoadResult> {
  // In its own process, like wrk: the load generator must not share an event loop with what it measures.
  const runner = new URL("./autocannon_runner.ts", import.meta.url).pathname;
  const res = await run(
    [Deno.execPath(), "run", "-A", runner, JSON.stringify(o)],
    o.durationMs + 30_000,
  );
  const m = /BENCH_JSON (\{.*\})/.exec(res.stdout);
  if (res.code !== 0 || !m) throw new Error(`autocannon failed (code ${res.code}): ${res.stdout}${res.stderr}`);
  const j = JSON.parse(m[1]);
  return {
    tool: "autocannon",
    connections: o.connections,
    durationMs: j.duration * 1000,
    requests: j.requests,
    rps: j.requests / j.duration,
    p50Ms: j.p50,
    p90Ms: j.p90,
    p99Ms: j.p99,
    maxMs: j.max,
    errors: j.errors,
  };
}
