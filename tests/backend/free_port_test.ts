/**
 * An engine's port is chosen below the kernel's ephemeral range, where no
 * outgoing connection takes it, and is free when chosen.
 */
import assert from "node:assert/strict";
import { pickFreePort } from "../../lib/backend/free_port.ts";

Deno.test("free port: below the ephemeral range, free, and different from one call to the next", () => {
  const low = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)[0]);
  const ports = new Set<number>();
  for (let i = 0; i < 20; i++) {
    const port = pickFreePort("127.0.0.1");
    assert.ok(port > 1024 && port < low, `${port} is below the ephemeral range starting at ${low}`);
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    listener.close();
    ports.add(port);
  }
  assert.ok(ports.size > 1, "ports are drawn at random, not always the same");
});

Deno.test("free port: a port taken by a listener is not chosen", () => {
  const held: Deno.Listener[] = [];
  try {
    const taken = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const port = pickFreePort("127.0.0.1");
      assert.ok(!taken.has(port), `port ${port} is held by a listener of this test`);
      held.push(Deno.listen({ hostname: "127.0.0.1", port }));
      taken.add(port);
    }
  } finally {
    for (const l of held) l.close();
  }
});
