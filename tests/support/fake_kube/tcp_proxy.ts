/**
 * A loopback TCP relay in front of the fake's HTTP server, so faults can
 * break a connection abruptly (a reset watch, a reset request) as a real
 * network or API server restart does; Deno.serve alone cannot drop a
 * connection.
 *
 * @module
 */

interface Pair {
  client: Deno.TcpConn;
  upstream: Deno.TcpConn;
  closed: boolean;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/**
 * Relays 127.0.0.1:<port> to an upstream port; connections are keyed by the
 * upstream side's local port (what the HTTP server sees as remoteAddr).
 *
 * @example
 * ```ts ignore
 * const proxy = new TcpRelay(upstreamPort);
 * proxy.reset(info.remoteAddr.port);
 * await proxy.close();
 * ```
 */
export class TcpRelay {
  readonly #listener: Deno.TcpListener;
  readonly #upstreamPort: number;
  readonly #pairs = new Map<number, Pair>();
  readonly #tasks = new Set<Promise<unknown>>();
  #closed = false;
  readonly #acceptLoop: Promise<void>;

  constructor(upstreamPort: number) {
    this.#upstreamPort = upstreamPort;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#acceptLoop = this.#accept();
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return;
      }
      if (this.#closed) {
        closeQuietly(client);
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
      closeQuietly(client);
      return;
    }
    const key = (upstream.localAddr as Deno.NetAddr).port;
    const pair: Pair = { client, upstream, closed: false };
    this.#pairs.set(key, pair);
    if (this.#closed) this.#closePair(pair);
    const pipe = async (from: Deno.TcpConn, to: Deno.TcpConn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await from.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      } catch { /* connection reset or closed */ }
      this.#closePair(pair);
    };
    await Promise.all([pipe(client, upstream), pipe(upstream, client)]);
    this.#pairs.delete(key);
  }

  #closePair(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    closeQuietly(pair.client);
    closeQuietly(pair.upstream);
  }

  /**
   * Breaks the client connection whose upstream local port is `upstreamLocalPort`: a few bytes that are
   * not valid HTTP framing, then close, so every HTTP client (undici too, which ignores a bare close of a
   * chunked body under Deno) reports an error.
   */
  reset(upstreamLocalPort: number): void {
    const pair = this.#pairs.get(upstreamLocalPort);
    if (!pair || pair.closed) return;
    closeQuietly(pair.upstream);
    const task = pair.client
      .write(new TextEncoder().encode("\r\nconnection reset by fake kube\r\n"))
      .catch(() => 0)
      .finally(() => this.#closePair(pair));
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  /** Stops accepting, breaks every connection and waits for the relays to end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const pair of this.#pairs.values()) this.#closePair(pair);
    await this.#acceptLoop;
    await Promise.all([...this.#tasks]);
  }
}
