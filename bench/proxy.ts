/**
 * Starts vllm-chill the way users run it — `deno run -A main.ts serve
 * --config <tmp json>` in its own process — with the process backend running
 * bench/upstream.ts as the engine, or the Kubernetes backend against a fake
 * API server; reads its JSON log back for the timestamps the figures need.
 *
 * @module
 */
import { type Child, sleep, spawnLogged } from "./procs.ts";
import { pickFreePort } from "../lib/backend/free_port.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const UPSTREAM = new URL("./upstream.ts", import.meta.url).pathname;

/** One engine model of the bench config. */
export interface BenchModel {
  /** Milliseconds the engine takes to load (after its process started). */
  loadMs: number;
  /** Milliseconds the engine takes to exit after SIGTERM. */
  stopMs?: number;
  /** Token rate of streams. */
  tokensPerSec?: number;
}

/** Options of {@link startProxy}. */
export interface ProxyOptions {
  /** Temp dir for config and log. */
  dir: string;
  /** A name for the files. */
  name: string;
  /** Models (process backend: engines run bench/upstream.ts). */
  models: Record<string, BenchModel>;
  /** Model switching on (default false: scale-only). */
  switching?: boolean;
  /** Extra top-level config keys. */
  extra?: Record<string, unknown>;
  /** Models as written in the config, instead of `models` (Kubernetes backend). */
  modelsConfig?: Record<string, unknown>;
  /** Checkout whose main.ts runs (default: this one; A/B comparisons of an optimisation). */
  root?: string;
  /** Extra arguments to deno run (e.g. --cpu-prof). */
  denoFlags?: string[];
  /** The script and its arguments before `--config` (default: `main.ts serve`). */
  entry?: string[];
}

/** A running proxy process. */
export interface ProxyProc {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  /** Parsed JSON log lines so far. */
  lines(): Promise<LogLine[]>;
  /** Stops the proxy (SIGTERM, graceful). */
  stop(): Promise<void>;
}

/** A line of the proxy's JSON log. */
export type LogLine = { time: string; msg: string; [key: string]: unknown };

/**
 * A free loopback TCP port, below the ephemeral range (see lib/backend/free_port.ts).
 *
 * @example
 * ```ts
 * import { freePort } from "./proxy.ts";
 * freePort() > 0; // true
 * ```
 */
export function freePort(): number {
  return pickFreePort("127.0.0.1");
}

/**
 * The command of a bench engine, with vllm-chill's placeholders.
 *
 * @example
 * ```ts
 * import { engineCommand } from "./proxy.ts";
 * engineCommand({ loadMs: 10 }).includes("{port}"); // true
 * ```
 */
export function engineCommand(m: BenchModel): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    UPSTREAM,
    "--port",
    "{port}",
    "--model",
    "{served}",
    "--load-ms",
    String(m.loadMs),
    "--stop-ms",
    String(m.stopMs ?? 0),
    "--tokens-per-sec",
    String(m.tokensPerSec ?? 1000),
  ];
}

/**
 * Writes the config and starts the proxy; resolves once it listens.
 *
 * @example
 * ```ts ignore
 * import { startProxy } from "./proxy.ts";
 * const p = await startProxy({ dir: "/tmp", name: "warm", models: { bench: { loadMs: 0 } } });
 * await p.stop();
 * ```
 */
export async function startProxy(o: ProxyOptions): Promise<ProxyProc> {
  const port = freePort();
  const config = {
    backend: "process",
    host: "127.0.0.1",
    port,
    enableModelSwitch: o.switching ?? false,
    idleTimeout: "1h",
    minLoadedTime: "0s",
    logFormat: "json",
    process: { stopGracePeriod: "5s" },
    models: o.modelsConfig ?? Object.fromEntries(
      Object.entries(o.models).map(([name, m]) => [name, { modelName: `bench/${name}`, command: engineCommand(m) }]),
    ),
    ...o.extra,
  };
  const configPath = `${o.dir}/${o.name}.config.json`;
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
  const logPath = `${o.dir}/${o.name}.log`;
  const child = spawnLogged(
    [
      Deno.execPath(),
      "run",
      "-A",
      ...(o.denoFlags ?? []),
      ...(o.entry ?? [`${o.root ?? ROOT}/main.ts`, "serve"]),
      "--config",
      configPath,
    ],
    logPath,
  );
  await child.waitFor(/"msg":"listening"/, 30_000);
  const url = `http://127.0.0.1:${port}`;
  // Ready means the backend state is known (the proxy holds requests until then).
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/readyz`).then(async (r) => (await r.body?.cancel(), r.ok), () => false);
    if (ok) break;
    await sleep(20);
  }
  return {
    url,
    port,
    child,
    lines: async () => parseLog(await child.output()),
    stop: () => child.stop(15_000),
  };
}

/**
 * The JSON lines of a log (other lines skipped).
 *
 * @example
 * ```ts
 * import { parseLog } from "./proxy.ts";
 * parseLog('{"time":"t","msg":"m"}\nnot json').length; // 1
 * ```
 */
export function parseLog(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line));
    } catch { /* partial line */ }
  }
  return out;
}

/**
 * An epoch-ms value printed by bench/upstream.ts (`key=<ms>`) in a log line, or NaN.
 *
 * @example
 * ```ts
 * import { stamp } from "./proxy.ts";
 * stamp({ time: "", msg: "bench-upstream: ready_at=12.5 /health is 200" }, "ready_at"); // 12.5
 * ```
 */
export function stamp(line: LogLine | undefined, key: string): number {
  const m = line ? new RegExp(`${key}=([\\d.]+)`).exec(line.msg) : null;
  return m ? Number(m[1]) : NaN;
}

/**
 * Sum of a Prometheus series' samples whose line contains every given fragment.
 *
 * @example
 * ```ts
 * import { metricSum } from "./proxy.ts";
 * metricSum('x{direction="up"} 2\nx{direction="down"} 1\n', "x{", ['direction="up"']); // 2
 * ```
 */
export function metricSum(text: string, prefix: string, fragments: string[] = []): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(prefix) || !fragments.every((f) => line.includes(f))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  }
  return sum;
}

/**
 * The proxy's /metrics text.
 *
 * @example
 * ```ts ignore
 * import { metricsText } from "./proxy.ts";
 * const text = await metricsText("http://127.0.0.1:8080");
 * ```
 */
export async function metricsText(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return await res.text();
}
