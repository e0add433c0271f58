/**
 * The fake vLLM (fake_vllm.ts) run as its CLI, a real child process on
 * `--port 0`: its URL is read from the "listening on" line it prints, and
 * its exit code and output are kept for the test.
 *
 * @module
 */

const FAKE_VLLM = new URL("./fake_vllm.ts", import.meta.url).pathname;

/** A fake vLLM child process. */
export interface FakeVllmCli {
  child: Deno.ChildProcess;
  /** Its base URL; "" when it never listened (it exited first, or printed nothing within 15 s). */
  url: string;
  /** Waits for the exit; its code and everything it printed. */
  finish(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * Starts `fake_vllm.ts --port 0 <args>` with `env` added to this process's environment, and waits (at most
 * 15 s) for it to print the URL it listens on.
 *
 * @example
 * ```ts ignore
 * import { spawnFakeVllmCli, stopFakeVllmCli } from "./fake_vllm_cli.ts";
 * const engine = await spawnFakeVllmCli(["--model", "m"]);
 * await stopFakeVllmCli(engine);
 * ```
 */
export async function spawnFakeVllmCli(args: string[], env: Record<string, string> = {}): Promise<FakeVllmCli> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", FAKE_VLLM, "--port", "0", ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = (async () => {
    let err = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) err += chunk;
    return err;
  })();
  let out = "";
  let url = "";
  const deadline = Date.now() + 15_000;
  while (!url && Date.now() < deadline) {
    const { value, done } = await lines.read();
    if (done) break;
    out += value;
    url = /listening on (http:\/\/\S+)/.exec(out)?.[1] ?? "";
  }
  const rest = (async () => {
    while (true) {
      const { value, done } = await lines.read();
      if (done) return out;
      out += value;
    }
  })();
  return {
    child,
    url,
    finish: async () => ({ code: (await child.status).code, stdout: await rest, stderr: await stderr }),
  };
}

/**
 * Kills the fake vLLM (SIGKILL, if it still runs) and waits for its exit.
 *
 * @example
 * ```ts ignore
 * import { spawnFakeVllmCli, stopFakeVllmCli } from "./fake_vllm_cli.ts";
 * await stopFakeVllmCli(await spawnFakeVllmCli(["--model", "m"]));
 * ```
 */
export async function stopFakeVllmCli(engine: FakeVllmCli): Promise<void> {
  try {
    engine.child.kill("SIGKILL");
  } catch { /* exited */ }
  await engine.finish();
}
