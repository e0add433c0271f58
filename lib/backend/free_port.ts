/**
 * Choosing the port an engine will listen on before it runs. A port read by
 * binding port 0 comes from the kernel's ephemeral range, the same range every
 * outgoing connection on the machine takes its local port from; vLLM binds
 * its port only once its weights are loaded (a minute later), and by then a
 * connection may hold it. So the port is chosen below that range, where only
 * listeners live, and checked free by binding it.
 *
 * @module
 */

/** Where the kernel's ephemeral range starts when it cannot be read (Linux's default). */
const DEFAULT_EPHEMERAL_LOW = 32768;
/** How wide the band below the ephemeral range is that ports are drawn from. */
const BAND = 12_000;

/** The first port of the kernel's ephemeral range (Linux: ip_local_port_range), or Linux's default. */
function ephemeralLow(): number {
  try {
    const low = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 1024) return low;
  } catch { /* not Linux, or not readable */ }
  return DEFAULT_EPHEMERAL_LOW;
}

/** Binds `port` on `host` and releases it; false when it is taken. */
function isFree(host: string, port: number): boolean {
  try {
    Deno.listen({ hostname: host, port }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied) return false;
    throw error;
  }
}

/**
 * A TCP port free on `host` now, drawn at random from the band just below the
 * kernel's ephemeral range (so no outgoing connection takes it before the
 * engine listens); when that band is full, one from the kernel (port 0).
 *
 * @example
 * ```ts
 * import { pickFreePort } from "./free_port.ts";
 * const port = pickFreePort("127.0.0.1");
 * port > 1024; // true
 * ```
 */
export function pickFreePort(host: string): number {
  const top = ephemeralLow() - 1;
  const bottom = Math.max(1025, top - BAND);
  for (let attempt = 0; attempt < 64 && top > bottom; attempt++) {
    const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
    if (isFree(host, port)) return port;
  }
  const listener = Deno.listen({ hostname: host, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
