/**
 * Runs the reliability suite and prints the figures for docs/RELIABILITY.md:
 * tests passed/failed per file, the load run's numbers (requests sent /
 * answered / lost, switches vs the anti-thrash bound) and the faults
 * injected / survived.
 *
 * ```sh
 * deno run -A tests/reliability/report.ts            # 10,000 requests in the load run
 * RELIABILITY_LOAD_REQUESTS=2000 deno run -A tests/reliability/report.ts
 * ```
 *
 * @module
 */

/**
 * One test file's outcome.
 *
 * @example
 * ```ts
 * import type { FileOutcome } from "./report.ts";
 * const outcome: FileOutcome = { file: "tests/reliability/load_test.ts", passed: 1, failed: 0, seconds: 21 };
 * ```
 */
export interface FileOutcome {
  /** Path relative to the repository root. */
  file: string;
  /** Tests (and steps) passed. */
  passed: number;
  /** Tests (and steps) failed. */
  failed: number;
  /** Wall time in seconds. */
  seconds: number;
}

/**
 * Faults each scenario injects, by file (kept next to the tests they describe).
 *
 * @example
 * ```ts
 * import { FAULTS } from "./report.ts";
 * FAULTS["tests/reliability/kube_api_faults_test.ts"].length > 0; // true
 * ```
 */
export const FAULTS: Record<string, string[]> = {
  "tests/reliability/kube_api_faults_test.ts": [
    "3× HTTP 500 on the scale patch",
    "2× HTTP 500 on the ConfigMap update",
    "2× HTTP 500 on the pod watch",
    "200 ms latency on every API call",
    "HTTP 500 on every scale patch (permanent, then cleared)",
    "3× HTTP 409 on the ConfigMap update during a switch",
    "pod watch dropped during a cold start",
    "HTTP 503 on every API call at proxy start (then cleared)",
    "API server unreachable (closed port) at proxy start, then reachable",
    "3 s latency on the scale patch and the pod watch",
    "scale-only mode: HTTP 503 on every call at start, then 2× HTTP 500 on the scale patch",
  ],
  "tests/reliability/workload_faults_test.ts": [
    "pod never Ready",
    "crash-looping pod",
    "upstream connection reset mid-stream",
    "old pod stuck terminating during a switch",
    "pod deleted while serving a stream",
  ],
  "tests/reliability/proxy_faults_test.ts": [
    "SIGTERM with 3 streams in flight + 1 held request",
    "SIGKILL while the old pod terminates during a switch",
    "SIGKILL after the new model's scale-up, before Ready",
  ],
  "tests/reliability/secrets_test.ts": [
    "2× HTTP 500 on the scale patch + 409 on the ConfigMap (secrets grep)",
    "upstream gone (secrets grep)",
  ],
  "tests/reliability/at_most_once_test.ts": [
    "engine SIGKILLed 1 s into a 3 s request on a kept-alive connection (5 trials)",
  ],
  "tests/reliability/fd_exhaustion_test.ts": [
    "prlimit --nofile=200 and 400 stalled sockets (shedding, EMFILE accepts)",
  ],
};

/**
 * Runs one test file and counts its results.
 *
 * @example
 * ```ts ignore
 * import { runFile } from "./report.ts";
 * const outcome = await runFile("tests/reliability/secrets_test.ts", {});
 * ```
 */
export async function runFile(file: string, env: Record<string, string>): Promise<FileOutcome> {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", file],
    cwd: new URL("../../", import.meta.url).pathname,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const summary = text.match(/(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed/);
  return {
    file,
    passed: Number(summary?.[1] ?? 0) + Number(summary?.[2] ?? 0),
    failed: Number(summary?.[3] ?? (out.success ? 0 : 1)),
    seconds: Math.round((performance.now() - started) / 100) / 10,
  };
}

if (import.meta.main) {
  const root = new URL("../../", import.meta.url).pathname;
  const files = [...Deno.readDirSync(`${root}tests/reliability`)]
    .filter((e) => e.name.endsWith("_test.ts"))
    .map((e) => `tests/reliability/${e.name}`)
    .sort();
  const reportFile = await Deno.makeTempFile({ prefix: "reliability-", suffix: ".jsonl" });
  const env = {
    RELIABILITY_LOAD_REQUESTS: Deno.env.get("RELIABILITY_LOAD_REQUESTS") ?? "10000",
    RELIABILITY_REPORT_FILE: reportFile,
  };
  const outcomes: FileOutcome[] = [];
  for (const file of files) {
    const outcome = await runFile(file, env);
    outcomes.push(outcome);
    console.error(`${file}: ${outcome.passed} passed, ${outcome.failed} failed (${outcome.seconds} s)`);
  }
  const lines = (await Deno.readTextFile(reportFile)).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  await Deno.remove(reportFile);
  const load = lines.find((l) => l.load)?.load;
  const faults = Object.entries(FAULTS).flatMap(([file, list]) => list.map((fault) => ({ file, fault })));
  const survived = faults.filter((f) => outcomes.find((o) => o.file === f.file)?.failed === 0);
  console.log(`| file | passed | failed | seconds |\n|---|---|---|---|`);
  for (const o of outcomes) console.log(`| ${o.file} | ${o.passed} | ${o.failed} | ${o.seconds} |`);
  console.log(`\nfaults injected: ${faults.length}, survived: ${survived.length}`);
  if (load) {
    console.log(
      `load: ${load.requests} requests from ${load.clients} clients: answered ${load.answered}, ok ${load.ok}, ` +
        `lost ${load.lost}, duplicates ${load.duplicates}, wrong model ${load.wrongModel}; switches ` +
        `${load.switches} (bound ${load.switchBound}, minLoadedTime ${load.minLoadedTimeMs} ms) in ` +
        `${load.durationMs} ms (${load.requestsPerSecond} req/s), engine starts ${load.engineStarts}`,
    );
  }
  Deno.exit(outcomes.every((o) => o.failed === 0) ? 0 : 1);
}
