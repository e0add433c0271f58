/**
 * A test engine for the process backend: the fake vLLM (fake_vllm.ts) plus
 * vLLM v0.11.0's sleep-mode endpoints, and a journal file of what it was
 * given and asked, so that a test can count what the engine saw.
 *
 * ```sh
 * deno run -A tests/support/sleep_engine.ts --journal FILE --port 8001 --served-model-name a \
 *   [--load-ms 0] [--fail /wake_up=500] [--exit-on /wake_up] [--sleep-ms 0] [--ignore-sigterm] [any vLLM argument…]
 * ```
 *
 * Journal (JSON lines): first `{"event":"start","pid","argv","env"}` (argv:
 * every argument; env: CUDA_VISIBLE_DEVICES, VLLM_SERVER_DEV_MODE and every
 * TEST_* variable, each null when unset), then one
 * `{"event":"call","method","path","query","body"}` per sleep-mode call.
 *
 * Sleep mode as vLLM v0.11.0 serves it (vllm/entrypoints/openai/api_server.py
 * :965-1053, vllm/executor/executor_base.py:180-214):
 *
 * - the five routes exist only when `VLLM_SERVER_DEV_MODE` is a non-zero
 *   integer (404 otherwise);
 * - `POST /sleep?level=N` puts every tag ("weights", "kv_cache") to sleep;
 *   asleep already: a no-op; level 2 drops the weights;
 * - `POST /wake_up[?tags=…]` wakes the tags named (all without tags); a tag
 *   not asleep makes it a no-op; `GET /is_sleeping` is true until no tag
 *   sleeps;
 * - `POST /collective_rpc` needs a JSON body with `method` (400 otherwise);
 *   `reload_weights` restores dropped weights;
 * - `POST /reset_prefix_cache` answers 200.
 *
 * `/health` stays 200 while asleep. A generation request while asleep makes
 * the engine exit (vLLM issue 15483), so that forwarding to a sleeper is
 * loud; after a level-2 wake without `reload_weights` it answers 500.
 * `--sleep-ms N` makes `/sleep` answer at once but `/is_sleeping` turn true
 * only N ms later (a caller must poll). `--fail ROUTE=STATUS` makes that
 * route answer STATUS with an error body naming the engine's internals;
 * `--exit-on ROUTE` makes the engine exit (code 1) when that route is called.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createFakeVllmHandler } from "./fake_vllm.ts";

/** The sleep-mode routes, each recorded in the journal. */
const SLEEP_ROUTES = ["/sleep", "/wake_up", "/is_sleeping", "/collective_rpc", "/reset_prefix_cache"];
/** Routes that need the weights (a request on them while asleep kills the engine). */
const GENERATION_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

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
  const { values } = parseArgs({
    args,
    options: {
      journal: { type: "string" },
      port: { type: "string", default: "8000" },
      host: { type: "string", default: "127.0.0.1" },
      model: { type: "string" },
      "served-model-name": { type: "string" },
      "load-ms": { type: "string", default: "0" },
      "sleep-ms": { type: "string", default: "0" },
      fail: { type: "string", multiple: true, default: [] },
      "exit-on": { type: "string", multiple: true, default: [] },
      "ignore-sigterm": { type: "boolean", default: false },
    },
    strict: false,
    allowPositionals: true,
  });
  const journal = typeof values.journal === "string" ? values.journal : undefined;
  const served = String(values["served-model-name"] ?? values.model ?? "engine");
  const write = (entry: Record<string, unknown>) => {
    if (journal) Deno.writeTextFileSync(journal, JSON.stringify(entry) + "\n", { append: true });
  };
  const envOf = (name: string) => Deno.env.get(name) ?? null;
  const env: Record<string, string | null> = {
    CUDA_VISIBLE_DEVICES: envOf("CUDA_VISIBLE_DEVICES"),
    VLLM_SERVER_DEV_MODE: envOf("VLLM_SERVER_DEV_MODE"),
  };
  for (const [name, value] of Object.entries(Deno.env.toObject())) if (name.startsWith("TEST_")) env[name] = value;
  write({ event: "start", pid: Deno.pid, argv: args, env });

  const devMode = Number.parseInt(env.VLLM_SERVER_DEV_MODE ?? "0", 10) ? true : false;
  const failures = new Map<string, number>();
  for (const rule of values.fail as string[]) {
    const [route, status] = rule.split("=");
    failures.set(route, Number(status));
  }
  const sleepMs = Number(values["sleep-ms"]);
  const fake = createFakeVllmHandler({ model: served, loadMs: Number(values["load-ms"]) });
  /** Tags asleep (vllm/executor/executor_base.py:187); is_sleeping while any is. */
  const sleepingTags = new Set<string>();
  let asleepAt = 0;
  let weightsDropped = false;

  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

  const sleepRoute = async (req: Request, url: URL): Promise<Response> => {
    const body = req.method === "POST" ? await req.text() : "";
    write({ event: "call", method: req.method, path: url.pathname, query: url.search, body });
    if ((values["exit-on"] as string[]).includes(url.pathname)) {
      console.error(`ERROR sleep engine: dying on ${url.pathname} (simulated)`);
      Deno.exit(1);
    }
    const failure = failures.get(url.pathname);
    if (failure) {
      return json(failure, {
        error: { message: `Traceback: torch.OutOfMemoryError in ${url.pathname} (engine internals)` },
      });
    }
    switch (`${req.method} ${url.pathname}`) {
      case "POST /sleep": {
        if (sleepingTags.size > 0) return new Response(null, { status: 200 });
        const level = Number(url.searchParams.get("level") ?? "1");
        sleepingTags.add("weights").add("kv_cache");
        asleepAt = Date.now() + sleepMs;
        if (level === 2) weightsDropped = true;
        return new Response(null, { status: 200 });
      }
      case "POST /wake_up": {
        const tags = url.searchParams.getAll("tags");
        if (sleepingTags.size === 0) return new Response(null, { status: 200 });
        if (tags.some((t) => !sleepingTags.has(t))) return new Response(null, { status: 200 });
        if (tags.length === 0) sleepingTags.clear();
        else for (const t of tags) sleepingTags.delete(t);
        return new Response(null, { status: 200 });
      }
      case "GET /is_sleeping":
        return json(200, { is_sleeping: sleepingTags.size > 0 && Date.now() >= asleepAt });
      case "POST /collective_rpc": {
        let method: unknown;
        try {
          method = (JSON.parse(body) as { method?: unknown }).method;
        } catch {
          return json(400, { detail: "JSON decode error" });
        }
        if (typeof method !== "string") return json(400, { detail: "Missing 'method' in request body" });
        if (method !== "reload_weights") return json(500, { detail: `no such worker method: ${method}` });
        if (!sleepingTags.has("weights")) weightsDropped = false;
        return json(200, { results: [null] });
      }
      case "POST /reset_prefix_cache":
        return new Response(null, { status: 200 });
      default:
        return json(405, { detail: "Method Not Allowed" });
    }
  };

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (SLEEP_ROUTES.includes(url.pathname)) {
      return devMode ? await sleepRoute(req, url) : json(404, { detail: "Not Found" });
    }
    if (GENERATION_ROUTES.includes(url.pathname)) {
      if (sleepingTags.size > 0) {
        console.error("ERROR sleep engine: a request reached a sleeping engine; the engine core dies (vLLM #15483)");
        setTimeout(() => Deno.exit(1), 10);
        return json(500, { error: { message: "engine dead" } });
      }
      if (weightsDropped) return json(500, { error: { message: "weights were never reloaded after a level-2 wake" } });
    }
    return await fake.fetch(req);
  };

  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: Number(values.port),
    hostname: String(values.host),
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, handler);
  const addr = await listening;
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const onSignal = () => {
    if (values["ignore-sigterm"]) {
      console.error("WARN sleep engine: ignoring SIGTERM");
      return;
    }
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
    console.error(`sleep engine: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(2);
  }
}
