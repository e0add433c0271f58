/**
 * Running out of file descriptors never kills the proxy: `main.ts serve`
 * (process backend, a fake engine) runs under `prlimit --nofile=N:N`; a
 * flood of stalled sockets, more than it has descriptors for, makes it shed
 * connections (503) and fail accepts (EMFILE) — it logs its limits, stays up
 * with its engine, serves again once the sockets close, and still stops its
 * engine on SIGTERM. Skipped where `prlimit` is missing.
 */
import assert from "node:assert/strict";
import {
  assertNoEngines,
  DENO,
  fakeEngineCommand,
  newMarker,
  postChat,
  processesWith,
  REPO_ROOT,
  waitUntil,
  within,
} from "../e2e/helpers.ts";

const LIMIT = 200;
const FLOOD = 400;

async function hasPrlimit(): Promise<boolean> {
  try {
    return (await new Deno.Command("prlimit", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    `fd exhaustion: ${FLOOD} stalled sockets against a proxy limited to ${LIMIT} descriptors → sheds, survives, serves again`,
  ignore: !(await hasPrlimit()),
  async fn() {
    const marker = newMarker();
    const file = await Deno.makeTempFile({ prefix: "vllm-chill-fd-", suffix: ".json" });
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        backend: "process",
        enableModelSwitch: true,
        host: "127.0.0.1",
        port: 0,
        logFormat: "json",
        heartbeatInterval: "0s",
        process: { stopGracePeriod: "2s" },
        models: { a: { modelName: "org/a", command: fakeEngineCommand(marker, { loadMs: 50 }) } },
      }),
    );
    const child = new Deno.Command("prlimit", {
      args: [`--nofile=${LIMIT}:${LIMIT}`, DENO, "run", "-A", "main.ts", "serve", "--config", file],
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const lines: string[] = [];
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      let rest = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        rest += text;
        let nl: number;
        while ((nl = rest.indexOf("\n")) >= 0) {
          lines.push(rest.slice(0, nl));
          rest = rest.slice(nl + 1);
        }
      }
    };
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    const sockets: Deno.Conn[] = [];
    try {
      const listening = await waitUntil(() => lines.find((l) => l.includes('"msg":"listening"')), 30_000, "listening");
      const url = JSON.parse(listening).url as string;
      const port = Number(new URL(url).port);
      const limits = JSON.parse(lines.find((l) => l.includes('"msg":"file descriptor limits"'))!);
      assert.equal(limits.soft, LIMIT, "the soft limit is logged");
      assert.equal(limits.hard, LIMIT, "the hard limit is logged");

      // The engine runs before the flood.
      const first = await postChat(url, "a");
      assert.equal(first.status, 200, await first.text());
      const [engine] = await processesWith(marker);
      assert.ok(engine, "the engine runs");

      // The flood: sockets that connect and never send a byte, more than the proxy has descriptors for.
      for (let i = 0; i < FLOOD; i++) {
        try {
          sockets.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        } catch {
          break; // this test process may run out first
        }
      }
      // Shed connections are answered 503 (read a few of the newest).
      const shedAnswers = await Promise.all(
        sockets.slice(-5).map(async (conn) => {
          const buf = new Uint8Array(512);
          const n = await within(conn.read(buf), 10_000, "an answer to a shed connection").catch(() => null);
          return n ? new TextDecoder().decode(buf.subarray(0, n)) : "";
        }),
      );
      assert.ok(shedAnswers.some((a) => a.startsWith("HTTP/1.1 503")), `shed: ${JSON.stringify(shedAnswers)}`);
      await waitUntil(
        () => lines.some((l) => l.includes("too many open connections") || l.includes("cannot accept connections")),
        10_000,
        "the proxy to report the overload",
      );
      assert.equal(exited, false, `the proxy died:\n${lines.slice(-20).join("\n")}`);

      for (const conn of sockets.splice(0)) conn.close();
      // Served again once the descriptors are free (bounded retries: the proxy may still be closing sockets).
      const served = await waitUntil(
        async () => {
          const res = await postChat(url, "a").catch(() => null);
          if (!res) return null;
          const body = await res.text();
          return res.status === 200 ? body : null;
        },
        20_000,
        "a request to be served after the flood",
      );
      assert.match(served, /"model":"a"/);
      const health = await fetch(`${url}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      const metrics = await (await fetch(`${url}/metrics`)).text();
      const shed = Number(/vllm_chill_connections_shed_total\{reason="max_connections"\} (\d+)/.exec(metrics)?.[1]);
      const acceptErrors = Number(/vllm_chill_accept_errors_total (\d+)/.exec(metrics)?.[1] ?? 0);
      console.log(`fd exhaustion: ${shed} connections shed, ${acceptErrors} accept errors, proxy alive`);
      assert.ok(shed > 0, "connections were shed");

      assert.equal(exited, false, "the proxy is still running");
      const [still] = await processesWith(marker);
      assert.equal(still?.pid, engine.pid, "the same engine, never orphaned nor restarted");
      assert.equal(
        lines.filter((l) => l.includes("Uncaught")).length,
        0,
        lines.filter((l) => l.includes("Uncaught")).join("\n"),
      );

      child.kill("SIGTERM");
      assert.equal((await within(status, 15_000, "the proxy to exit")).code, 0);
      await assertNoEngines(marker, 5000);
    } finally {
      for (const conn of sockets) conn.close();
      if (!exited) child.kill("SIGKILL");
      await status;
      await pumps;
      await Deno.remove(file);
      await assertNoEngines(marker, 5000);
    }
  },
});
