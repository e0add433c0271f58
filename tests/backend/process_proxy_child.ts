/**
 * A stand-in proxy for the restart tests: a process that runs the process
 * backend, starts the engines it is told to (and puts some to sleep), prints
 * `READY {"a":pid,…}` and then waits to be killed, as a crashed proxy would
 * be (SIGKILL: no close(), no unload handler), or, with `exit`, exits at
 * once without close() (the unload handler must stop the engines).
 *
 * ```sh
 * deno run -A tests/backend/process_proxy_child.ts '{"config":{…},"start":[{"key":"a","gpus":["0"]}],"sleep":[{"key":"a","level":1}]}'
 * ```
 *
 * @module
 */
import { createProcessBackend } from "../../lib/backend/process.ts";
import { parseConfig } from "../../lib/config/define.ts";
import type { ChillConfigInput } from "../../lib/config/schema.ts";
import { createLogger } from "../../lib/log.ts";

/** What the stand-in proxy is told to do. */
export interface ChildPlan {
  config: ChillConfigInput;
  start: { key: string; gpus: string[] }[];
  sleep?: { key: string; level: 1 | 2 }[];
  /** Exit (code 0, no close()) right after READY. */
  exit?: boolean;
}

/**
 * Runs the plan, prints READY with the engines' pids, and never returns.
 *
 * @example
 * ```ts ignore
 * import { runChild } from "./process_proxy_child.ts";
 * await runChild({ config: { backend: "process", models: {} }, start: [] });
 * ```
 */
export async function runChild(plan: ChildPlan): Promise<never> {
  const config = parseConfig(plan.config);
  const log = createLogger({ format: "json", write: (line) => console.error(line) });
  const backend = createProcessBackend({ config, log });
  const deadline = () => ({ signal: new AbortController().signal, deadline: Date.now() + 30_000 });
  await Promise.all(plan.start.map(({ key, gpus }) => {
    const spec = config.models[key];
    const model = { ...spec, name: key, servedModelName: spec.servedModelName ?? key, source: "config" as const };
    return backend.start(
      { key, model, gpus, sleepMode: (spec.sleepAfter ?? config.sleepAfter) !== undefined },
      deadline(),
    );
  }));
  for (const { key, level } of plan.sleep ?? []) await backend.sleep(key, level, deadline());
  const engines = backend.describe().engines as Record<string, { pid: number }>;
  console.log(`READY ${JSON.stringify(Object.fromEntries(Object.entries(engines).map(([k, e]) => [k, e.pid])))}`);
  if (plan.exit) Deno.exit(0);
  setInterval(() => {}, 1 << 30);
  return await new Promise<never>(() => {});
}

if (import.meta.main) await runChild(JSON.parse(Deno.args[0]) as ChildPlan);
