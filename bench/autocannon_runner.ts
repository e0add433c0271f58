/**
 * Runs one npm:autocannon load in its own process (the fallback when `wrk`
 * is not installed) and prints `BENCH_JSON {…}` for bench/load.ts.
 *
 * ```sh
 * deno run -A bench/autocannon_runner.ts '{"url":"http://127.0.0.1:8000/v1/completions","body":"{}","connections":16,"durationMs":1000}'
 * ```
 *
 * @module
 */
import autocannon from "autocannon";

if (import.meta.main) {
  const o = JSON.parse(Deno.args[0]);
  const r = await autocannon({
    url: o.url,
    method: "POST",
    body: o.body,
    headers: { "content-type": "application/json" },
    connections: o.connections,
    duration: o.durationMs / 1000,
  });
  console.log(
    "BENCH_JSON " + JSON.stringify({
      requests: r.requests.total,
      duration: r.duration,
      p50: r.latency.p50,
      p90: r.latency.p90,
      p99: r.latency.p99,
      max: r.latency.max,
      errors: r.errors + r.timeouts + r.non2xx,
    }),
  );
  Deno.exit(0);
}
