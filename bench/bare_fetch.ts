/**
 * bench/bare_proxy.ts with Deno's `fetch` as the client: read the body, find
 * `model`, `fetch` upstream (aborted when the client leaves), stream back.
 * Shown for reference only: `fetch` may send a request twice when a
 * kept-alive connection breaks before the answer (denoland/deno#32566), which
 * vllm-chill must not do, so it is not the floor the targets use.
 *
 * ```sh
 * deno run -A bench/bare_fetch.ts <listen port> <upstream base URL>
 * ```
 *
 * @module
 */

if (import.meta.main) {
  const [port, upstream] = [Number(Deno.args[0]), Deno.args[1]];
  const decoder = new TextDecoder();
  Deno.serve(
    { port, hostname: "127.0.0.1", onListen: () => console.log(`bare fetch listening on ${port}`) },
    async (req) => {
      const body = await req.arrayBuffer();
      const model = JSON.parse(decoder.decode(body)).model;
      if (typeof model !== "string") return new Response('{"error":"model"}', { status: 400 });
      const url = req.url;
      const res = await fetch(upstream + url.slice(url.indexOf("/", 8)), {
        method: req.method,
        headers: req.headers,
        body,
        signal: req.signal,
      });
      return new Response(res.body, { status: res.status, headers: res.headers });
    },
  );
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
