/**
 * `deno task screenshot [--out docs/dashboard.png] [--width 1280] [--height 960]`:
 * regenerates the README's picture of the dashboard. Runs the proxy with the
 * process backend and the project's fake vLLM (no GPU), drives a few models
 * through cold starts, a failed start, a sleep and a wake, with a request in
 * flight, and photographs GET /ui in headless Chromium (see
 * tests/support/browser.ts for where the browser comes from).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseConfig } from "../lib/config/define.ts";
import { silentLogger } from "../lib/log.ts";
import { startServer } from "../lib/server.ts";
import { browserMissing, launchBrowser } from "../tests/support/browser.ts";
import { fakeVllmCommand, type FakeVllmFlags } from "../tests/support/fake_vllm_command.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** Relative to the repository root (the engines' working directory), so the log tail shows no local path. */
const FAKE_VLLM = "tests/support/fake_vllm.ts";

/** A model command running the fake vLLM with `flags` and vLLM's own arguments (sleep mode among them). */
function engine(flags: FakeVllmFlags): string[] {
  return fakeVllmCommand({ script: FAKE_VLLM, model: "{served}", sleepMs: 300, wakeMs: 400, ...flags, vllmArgs: true });
}

/**
 * Writes the screenshot; returns its path.
 *
 * @example
 * ```ts ignore
 * import { takeScreenshot } from "./screenshot.ts";
 * await takeScreenshot({ out: "/tmp/dashboard.png", width: 1280, height: 960 });
 * ```
 */
export async function takeScreenshot(options: { out: string; width: number; height: number }): Promise<string> {
  const missing = browserMissing();
  if (missing) throw new Error(missing);
  const cwd = Deno.cwd();
  Deno.chdir(ROOT);
  const config = parseConfig({
    backend: "process",
    host: "127.0.0.1",
    port: 0,
    enableModelSwitch: true,
    idleTimeout: "10m",
    minLoadedTime: "0s",
    heartbeatInterval: "0s",
    models: {
      "qwen3-8b": {
        modelName: "Qwen/Qwen3-8B",
        gpuMemoryUtilization: 0.45,
        sleepAfter: "10m",
        command: engine({ loadMs: 1400, tokensPerSec: 2 }),
      },
      "llama-3.1-8b": {
        modelName: "meta-llama/Llama-3.1-8B-Instruct",
        gpuMemoryUtilization: 0.45,
        sleepAfter: "10m",
        command: engine({ loadMs: 900 }),
      },
      "mistral-7b": {
        modelName: "mistralai/Mistral-7B-Instruct-v0.3",
        command: engine({ loadMs: 5000, exitAfterMs: 300 }),
      },
      "bge-m3": { modelName: "BAAI/bge-m3", gpuMemoryUtilization: 0.2, command: engine({ loadMs: 600 }) },
    },
  });
  const server = await startServer(config, { log: silentLogger, shutdownGraceMs: 1000 });
  const browser = await launchBrowser({ width: options.width, height: options.height });
  const streamEnd = new AbortController();
  try {
    const { page } = browser;
    await page.goto(`${server.url}/ui`);
    await page.locator(".connection[data-connection='live']").waitFor();
    const chat = (model: string, extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "hello" }], max_tokens: 8, ...extra }),
        signal,
      });
    const admin = (path: string) => fetch(`${server.url}/admin/${path}?wait=true`, { method: "POST" });
    await (await chat("mistral-7b")).arrayBuffer(); // its engine dies while loading: 503, model failed
    await (await chat("llama-3.1-8b")).arrayBuffer();
    await (await admin("models/llama-3.1-8b/sleep")).arrayBuffer();
    await (await chat("llama-3.1-8b")).arrayBuffer(); // a wake
    await (await chat("qwen3-8b", { max_tokens: 2 })).arrayBuffer(); // 0.45 + 0.45: both awake
    await (await admin("models/llama-3.1-8b/sleep")).arrayBuffer();
    await (await chat("bge-m3")).arrayBuffer();
    const inflight = `article.card[data-model="qwen3-8b"] .v-inflight`;
    await page.locator(inflight, { hasText: "0" }).waitFor();
    // One stream in flight while the picture is taken.
    const streaming = chat("qwen3-8b", { stream: true, max_tokens: 100 }, streamEnd.signal).catch(() => null);
    await page.locator(inflight, { hasText: "1" }).waitFor();
    await page.locator(`article.card[data-model="mistral-7b"][data-status="failed"]`).waitFor();
    await page.locator(`article.card[data-model="llama-3.1-8b"][data-status="sleeping"]`).waitFor();
    await page.locator(`article.card[data-model="bge-m3"][data-status="ready"]`).waitFor();
    await page.locator("#recent li[data-kind='wake']").waitFor();
    await page.screenshot({ path: options.out, fullPage: true });
    streamEnd.abort();
    await streaming;
    return options.out;
  } finally {
    streamEnd.abort();
    await browser.close();
    await server.shutdown();
    Deno.chdir(cwd);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string", default: new URL("../docs/dashboard.png", import.meta.url).pathname },
      width: { type: "string", default: "1280" },
      height: { type: "string", default: "960" },
    },
  });
  const missing = browserMissing();
  if (missing) {
    console.error(`screenshot: ${missing}`);
    Deno.exit(1);
  }
  const out = await takeScreenshot({ out: values.out!, width: Number(values.width), height: Number(values.height) });
  console.log(`wrote ${out}`);
}
