/**
 * The floor for holding requests in Deno: a bare `Deno.serve` that reads each
 * request's body, watches `req.signal` (as any proxy must, to notice a client
 * that leaves) and never answers. `GET /held` says how many it holds. The
 * bench compares its RSS growth per held request with vllm-chill's.
 *
 * ```sh
 * deno run -A bench/bare_hold.ts <port>
 * ```
 *
 * @module
 */

if (import.meta.main) {
  const port = Number(Deno.args[0]);
  let held = 0;
  const never = new Promise<Response>(() => {});
  Deno.serve(
    { port, hostname: "127.0.0.1", onListen: () => console.log(`bare hold listening on ${port}`) },
    async (req) => {
      if (req.method === "GET") return new Response(String(held));
      await req.arrayBuffer();
      held++;
      req.signal.addEventListener("abort", () => held--, { once: true });
      return await never;
    },
  );
}
