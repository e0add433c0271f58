/**
 * What reading `model` from a big JSON body costs in memory: the proxy's
 * RSS (sampled every 5 ms) while 1, then 3, bodies of ~30 MB made of many
 * small objects go through it (model switching on, so the body is read for
 * its `model`), against its RSS just before. `--root DIR` runs another
 * checkout's main.ts (an A/B comparison with the code before a change).
 *
 * ```sh
 * deno run -A bench/upload_rss.ts [--root DIR] [--mb 30]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { rssMiB, sleep } from "./procs.ts";
import { startProxy } from "./proxy.ts";

/** A chat body of about `mb` MB: many small message objects. */
function bigBody(mb: number): Uint8Array<ArrayBuffer> {
  const message = '{"role":"user","content":"hello there, small object"}';
  const count = Math.ceil((mb * 1_000_000) / (message.length + 1));
  return new TextEncoder().encode(
    `{"model":"bench","max_tokens":1,"messages":[${Array(count).fill(message).join(",")}]}`,
  );
}

/** Peak RSS (MiB) of `pid` while `work` runs, sampled every 5 ms. */
async function peakGrowth(pid: number, work: () => Promise<unknown>): Promise<{ peak: number }> {
  let peak = rssMiB(pid);
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, rssMiB(pid));
      await sleep(5);
    }
  })();
  try {
    await work();
  } finally {
    running = false;
    await sampler;
  }
  return { peak: Math.max(peak, rssMiB(pid)) };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { root: { type: "string" }, mb: { type: "string", default: "30" } },
  });
  const mb = Number(values.mb);
  const dir = await Deno.makeTempDir({ prefix: "vllm-chill-upload-rss-" });
  const proxy = await startProxy({
    dir,
    name: "upload",
    models: { bench: { loadMs: 0 } },
    switching: true,
    root: values.root,
    extra: { maxBodyBytes: "64Mi", ...(values.root ? {} : { maxUploadingBytes: "512Mi" }) },
  });
  try {
    const body = bigBody(mb);
    const send = async (payload = body) => {
      const res = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: payload,
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`status ${res.status}: ${text.slice(0, 200)}`);
    };
    await send(bigBody(0.001)); // warm: engine started, code paths compiled
    await sleep(500);
    const idle = rssMiB(proxy.child.pid);
    const results: Record<string, unknown> = {
      bodyMB: +(body.length / 1e6).toFixed(1),
      root: values.root ?? ".",
      idleMiB: +idle.toFixed(1),
    };
    // Growth is counted from the idle RSS before any big body: the first one grows the heap, later ones reuse it.
    for (const concurrent of [1, 3]) {
      const { peak } = await peakGrowth(
        proxy.child.pid,
        () => Promise.all(Array.from({ length: concurrent }, () => send())),
      );
      results[`x${concurrent}`] = { peakMiB: +peak.toFixed(1), growthMiB: +(peak - idle).toFixed(1) };
      await sleep(1000);
    }
    console.log(JSON.stringify(results));
  } finally {
    await proxy.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
