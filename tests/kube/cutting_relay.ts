/**
 * A loopback TCP relay for tests that cuts open watch connections in the
 * middle of their response body, as a network failure or an API server
 * crash does (the fake's own `dropWatches` ends the stream cleanly instead).
 * The client side is closed without finishing the chunked body, so an HTTP
 * client that reads on sees an error, not a clean end.
 *
 * @module
 */

interface Pair {
  client: Deno.TcpConn;
  upstream: Deno.TcpConn;
  /** The request line asked for a watch. */
  watch: boolean;
  /** Bytes relayed back to the client since the last request (its response has started when > 0). */
  answered: number;
  closed: boolean;
}

/** Relays 127.0.0.1:<port> to `upstream` (an http://127.0.0.1:N URL); {@link cutWatches} breaks watches. */
export class CuttingRelay {
  readonly #listener: Deno.TcpListener;
  readonly #upstreamPort: number;
  readonly #pairs = new Set<Pair>();
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #acceptLoop: Promise<void>;
  #closed = false;

  /** Starts relaying to `upstream`. */
  constructor(upstream: string) {
    this.#upstreamPort = Number(new URL(upstream).port);
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#acceptLoop = this.#accept();
  }

  /** http://127.0.0.1:<relay port> */
  get url(): string {
    return `http://127.0.0.1:${this.#listener.addr.port}`;
  }

  /** How many watch connections are open and already streaming their response. */
  streamingWatches(): number {
    return [...this.#pairs].filter((p) => p.watch && p.answered > 0 && !p.closed).length;
  }

  /** Breaks every watch connection that is streaming its response, abruptly; returns how many were cut. */
  cutWatches(): number {
    let cut = 0;
    for (const pair of this.#pairs) {
      if (!pair.watch || pair.answered === 0 || pair.closed) continue;
      this.#close(pair);
      cut++;
    }
    return cut;
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return;
      }
      const task = this.#relay(client);
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  async #relay(client: Deno.TcpConn): Promise<void> {
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#upstreamPort });
    } catch {
      client.close();
      return;
    }
    const pair: Pair = { client, upstream, watch: false, answered: 0, closed: false };
    this.#pairs.add(pair);
    if (this.#closed) this.#close(pair);
    const pipe = async (from: Deno.TcpConn, to: Deno.TcpConn, request: boolean) => {
      const buf = new Uint8Array(64 * 1024);
      const decoder = new TextDecoder();
      try {
        while (true) {
          const n = await from.read(buf);
          if (n === null) break;
          // Keep-alive connections carry several requests: the latest request line decides.
          if (request) {
            const head = decoder.decode(buf.subarray(0, Math.min(n, 2048)));
            const line = /^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+)/m.exec(head);
            if (line) {
              pair.watch = /[?&]watch=(true|1)\b/.test(line[2]);
              pair.answered = 0;
            }
          } else pair.answered += n;
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      } catch { /* reset or closed */ }
      this.#close(pair);
    };
    await Promise.all([pipe(client, upstream, true), pipe(upstream, client, false)]);
    this.#pairs.delete(pair);
  }

  #close(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    for (const conn of [pair.client, pair.upstream]) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  /** Stops accepting, breaks every connection and waits for the relays to end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const pair of this.#pairs) this.#close(pair);
    await this.#acceptLoop;
    await Promise.all([...this.#tasks]);
  }
}
