/**
 * The floor for any Deno-based forwarder: `Deno.serve` + `fetch` and nothing
 * else (no routing, auth, body read for the model, scaler, metrics or log).
 * Shown next to vllm-chill in the warm-path table so the share of the cost
 * that is Deno's own HTTP server and client is visible.
 *
 * ```sh
 * deno run -A bench/bare_proxy.ts <listen port> <upstream base URL>
 * ```
 *
 * @module
 */

if (import.meta.main) {
  const port = Number(Deno.args[0]);
  const upstream = Deno.args[1];
  Deno.serve(
    { port, hostname: "127.0.0.1", onListen: () => console.log(`bare proxy listening on ${port}`) },
    async (req) => {
      const url = req.url;
      const res = await fetch(upstream + url.slice(url.indexOf("/", 8)), {
        method: req.method,
        headers: req.headers,
        body: await req.arrayBuffer(),
      });
      return new Response(res.body, { status: res.status, headers: res.headers });
    },
  );
}
