/**
 * The platform floor: the least a Deno forwarder in front of vLLM must do,
 * with the same client semantics as vllm-chill — read the body, find
 * `model`, send the request once on a kept-alive connection (never re-sent:
 * at most once), drop that connection when the client leaves before the
 * answer (the engine then stops generating), and pass the answer back (a
 * small one whole, a chunked one chunk by chunk). No routing, auth, hold,
 * scaler, metrics or log. Its `cpu µs/req` and requests/s are the yardstick
 * of the warm-path table; bench/bare_fetch.ts is the same with `fetch`.
 *
 * ```sh
 * deno run -A bench/bare_proxy.ts <listen port> <upstream base URL>
 * ```
 *
 * @module
 */

type Bytes = Uint8Array<ArrayBuffer>;
/** A kept-alive connection to the engine and what was read past the last answer. */
type Wire = { conn: Deno.TcpConn; buf: Bytes; rest: Bytes | null; closed: boolean };

const encoder = new TextEncoder(), decoder = new TextDecoder();
const SKIP = new Set(["host", "content-length", "connection", "keep-alive", "transfer-encoding"]);

async function read(w: Wire): Promise<Bytes> {
  const rest = w.rest;
  w.rest = null;
  if (rest) return rest;
  const n = await w.conn.read(w.buf);
  if (n === null) throw new Error("the engine closed the connection");
  return w.buf.slice(0, n);
}

const join = (a: Bytes, b: Bytes): Bytes => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};

/** Reads until `test` finds its end in the bytes; returns [bytes, end]. */
async function readUntil(w: Wire, got: Bytes, test: (b: Bytes) => number): Promise<[Bytes, number]> {
  for (let end = test(got);; end = test(got)) {
    if (end >= 0) return [got, end];
    got = join(got, await read(w));
  }
}

const crlf2 = (b: Bytes) => decoder.decode(b).indexOf("\r\n\r\n");

if (import.meta.main) {
  const [port, upstream] = [Number(Deno.args[0]), new URL(Deno.args[1])];
  const idle: Wire[] = [];
  Deno.serve(
    { port, hostname: "127.0.0.1", onListen: () => console.log(`bare proxy listening on ${port}`) },
    async (req) => {
      const body = new Uint8Array(await req.arrayBuffer());
      const model = JSON.parse(decoder.decode(body)).model;
      if (typeof model !== "string") return new Response('{"error":"model"}', { status: 400 });
      let head = `${req.method} ${req.url.slice(req.url.indexOf("/", 8))} HTTP/1.1\r\nhost: ${upstream.host}\r\n`;
      req.headers.forEach((value, name) => {
        if (!SKIP.has(name)) head += `${name}: ${value}\r\n`;
      });
      head += `content-length: ${body.length}\r\n\r\n`;
      const w = idle.pop() ??
        {
          conn: await Deno.connect({ hostname: upstream.hostname, port: Number(upstream.port) }),
          buf: new Uint8Array(65536),
          rest: null,
          closed: false,
        };
      const drop = () => {
        w.closed = true;
        w.conn.close();
      };
      req.signal.addEventListener("abort", drop);
      const message = new Uint8Array(head.length + body.length);
      encoder.encodeInto(head, message);
      message.set(body, head.length);
      for (let at = 0; at < message.length;) at += await w.conn.write(message.subarray(at));
      const [got, end] = await readUntil(w, await read(w), crlf2);
      req.signal.removeEventListener("abort", drop);
      const lines = decoder.decode(got.subarray(0, end)).split("\r\n");
      const headers: [string, string][] = [];
      let length = -1, chunked = false;
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":"),
          name = line.slice(0, colon).toLowerCase(),
          value = line.slice(colon + 1).trim();
        if (name === "content-length") length = Number(value);
        if (name === "transfer-encoding") chunked = true;
        if (!SKIP.has(name)) headers.push([name, value]);
      }
      const status = Number(lines[0].slice(9, 12));
      let rest = got.subarray(end + 4);
      if (!chunked) {
        [rest] = await readUntil(w, rest, (b) => b.length >= length ? length : -1);
        w.rest = rest.length > length ? rest.slice(length) : null;
        if (!w.closed) idle.push(w);
        return new Response(rest.subarray(0, length), { status, headers });
      }
      // Chunked (SSE): each chunk is passed on as it arrives.
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const [sized, eol] = await readUntil(w, rest, (b) => decoder.decode(b.subarray(0, 32)).indexOf("\r\n"));
          const size = parseInt(decoder.decode(sized.subarray(0, eol)), 16);
          const [data] = await readUntil(w, sized.subarray(eol + 2), (b) => b.length >= size + 2 ? size : -1);
          rest = data.subarray(size + 2);
          if (size > 0) return controller.enqueue(data.slice(0, size));
          controller.close();
          w.rest = rest.length ? rest.slice() : null;
          if (!w.closed) idle.push(w);
        },
        cancel: drop,
      }, { highWaterMark: 0 });
      return new Response(stream, { status, headers });
    },
  );
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
}
