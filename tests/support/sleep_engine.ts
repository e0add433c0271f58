/**
 * A test engine for the process backend that journals what it was given and
 * asked: the fake vLLM (fake_vllm.ts: sleep mode as strict as vLLM v0.11.0,
 * the GPU ledger, death on a request forwarded to a sleeper) behind a thin
 * layer that writes a journal file, so that a test can check the order of the
 * calls an engine saw, and its argv and environment.
 *
 * ```sh
 * [VLLM_SERVER_DEV_MODE=1] [CUDA_VISIBLE_DEVICES=0] [FAKE_GPU_LEDGER=…] \
 * deno run -A tests/support/sleep_engine.ts --journal FILE --port 8001 [--tag X] \
 *   [--load-ms 0] [--fail-wake] [--exit-on /wake_up] [--sleep-lag-ms 0] [--ignore-sigterm] [vLLM arguments…]
 * ```
 *
 * vLLM's arguments are read as the fake's CLI reads them (`--served-model-name`,
 * `--enable-sleep-mode`, `--gpu-memory-utilization`, `--tensor-parallel-size`,
 * `serve MODEL`); others are accepted and ignored. Besides the fake's own
 * behaviour:
 *
 * - `--exit-on ROUTE`: the engine exits (code 1) when ROUTE is called;
 * - `--sleep-lag-ms N`: `/sleep` answers 200 at once and the engine falls
 *   asleep N ms later (what vLLM's v0 frontend did: api_server.py:1006-1007
 *   in v0.11.0), so a caller must poll `/is_sleeping`;
 * - `--tag X`: only marks the command line (tests find engines by it).
 *
 * Journal (JSON lines): first `{"event":"start","pid","argv","env"}` (argv:
 * every argument; env: CUDA_VISIBLE_DEVICES, VLLM_SERVER_DEV_MODE and every
 * TEST_* variable, null when unset), then one
 * `{"event":"call","method","path","query","body"}` per sleep-mode call.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createFakeVllmHandler } from "./fake_vllm.ts";
import { DEV_ROUTES } from "./fake_vllm_sleep.ts";

/**
 * Runs the engine from command-line arguments; resolves when it has stopped.
 *
 * @example
 * ```ts ignore
 * import { runSleepEngine } from "./sleep_engine.ts";
 * await runSleepEngine(["--journal", "/tmp/j", "--port", "0", "--served-model-name", "a"]);
 * ```
 */
export async function runSleepEngine(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      journal: { type: "string" },
      tag: { type: "string" },
      port: { type: "string", default: "8000" },
      host: { type: "string", default: "127.0.0.1" },
      model: { type: "string" },
      "served-model-name": { type: "string" },
      "gpu-memory-utilization": { type: "string" },
      "tensor-parallel-size": { type: "string" },
      "enable-sleep-mode": { type: "boolean", default: false },
      "load-ms": { type: "string", default: "0" },
      "fail-wake": { type: "boolean", default: false },
      "exit-on": { type: "string", multiple: true, default: [] },
      "sleep-lag-ms": { type: "string", default: "0" },
      "ignore-sigterm": { type: "boolean", default: false },
    },
    strict: false,
    allowPositionals: true,
  });
  const str = (name: keyof typeof values) => typeof values[name] === "string" ? values[name] as string : undefined;
  const journal = str("journal");
  const write = (entry: Record<string, unknown>) => {
    if (journal) Deno.writeTextFileSync(journal, JSON.stringify(entry) + "\n", { append: true });
  };
  const env: Record<string, string | null> = {
    CUDA_VISIBLE_DEVICES: Deno.env.get("CUDA_VISIBLE_DEVICES") ?? null,
    VLLM_SERVER_DEV_MODE: Deno.env.get("VLLM_SERVER_DEV_MODE") ?? null,
  };
  for (const [name, value] of Object.entries(Deno.env.toObject())) if (name.startsWith("TEST_")) env[name] = value;
  write({ event: "start", pid: Deno.pid, argv: args, env });

  // `vllm serve MODEL …`: the model is the positional after "serve".
  const rest = positionals[0] === "serve" ? positionals.slice(1) : [];
  const served = str("served-model-name") ?? str("model") ?? rest[0] ?? "engine";
  const exitOn = values["exit-on"] as string[];
  const lagMs = Number(str("sleep-lag-ms") ?? "0");
  const fake = createFakeVllmHandler({
    model: served,
    modelName: rest[0],
    loadMs: Number(str("load-ms") ?? "0"),
    // vllm/envs.py:1028-1029 (v0.11.0): bool(int(os.getenv("VLLM_SERVER_DEV_MODE", "0"))).
    devMode: Number.parseInt(env.VLLM_SERVER_DEV_MODE ?? "0", 10) !== 0,
    enableSleepMode: values["enable-sleep-mode"] === true,
    failWake: values["fail-wake"] === true,
    gpuLedger: Deno.env.get("FAKE_GPU_LEDGER") || undefined,
    devices: (env.CUDA_VISIBLE_DEVICES ?? "0").split(",").filter((d) => d),
    ...(str("gpu-memory-utilization") ? { gpuMemoryUtilization: Number(str("gpu-memory-utilization")) } : {}),
    ...(str("tensor-parallel-size") ? { tensorParallelSize: Number(str("tensor-parallel-size")) } : {}),
    log: (line) => console.error(line),
    onEngineDead: () => setTimeout(() => Deno.exit(1), 20),
  });

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (!(url.pathname in DEV_ROUTES)) return await fake.fetch(req);
    const body = req.method === "POST" ? await req.text() : "";
    write({ event: "call", method: req.method, path: url.pathname, query: url.search, body });
    if (exitOn.includes(url.pathname)) {
      console.error(`ERROR sleep engine: dying on ${url.pathname} (simulated)`);
      Deno.exit(1);
    }
    // Built now: the original request's headers cannot be read once it has been answered.
    const forwarded = new Request(req.url, {
      method: req.method,
      headers: new Headers(req.headers),
      body: body || null,
    });
    if (lagMs > 0 && url.pathname === "/sleep") {
      setTimeout(() => void fake.fetch(forwarded).then((res) => res.body?.cancel()), lagMs);
      return new Response(null, { status: 200 });
    }
    return await fake.fetch(forwarded);
  };

  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: Number(str("port") ?? "8000"),
    hostname: str("host") ?? "127.0.0.1",
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, handler);
  const addr = await listening;
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const onSignal = () => {
    if (values["ignore-sigterm"]) return console.error("WARN sleep engine: ignoring SIGTERM");
    stop();
  };
  Deno.addSignalListener("SIGTERM", onSignal);
  console.log(`listening on http://${addr.hostname}:${addr.port}`);
  await stopped;
  Deno.removeSignalListener("SIGTERM", onSignal);
  fake.shutdown();
  await server.shutdown();
  Deno.exit(0);
}

/** One line of an engine's journal. */
export type JournalEntry =
  | { event: "start"; pid: number; argv: string[]; env: Record<string, string | null> }
  | { event: "call"; method: string; path: string; query: string; body: string };

/**
 * Reads an engine's journal (every line written so far; [] before the engine wrote any).
 *
 * @example
 * ```ts
 * import { readJournal } from "./sleep_engine.ts";
 * readJournal("/nonexistent/journal"); // []
 * ```
 */
export function readJournal(path: string): JournalEntry[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as JournalEntry);
}

if (import.meta.main) {
  try {
    await runSleepEngine(Deno.args);
  } catch (e) {
    // A refused start (the ledger's "Free memory on device …"), a bad argument: exit 1 as vLLM does.
    console.error(`sleep engine: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  }
}
