import assert from "node:assert/strict";
import fc from "fast-check";
import { parseConfig } from "../../lib/config/define.ts";
import { createLogger } from "../../lib/log.ts";
import { createMetrics } from "../../lib/metrics.ts";
import { ModelRegistry } from "../../lib/models/registry.ts";
import { FakeClock } from "../../lib/scaler/clock.ts";
import { decide } from "../../lib/scaler/decide.ts";
import { countByModel } from "../../lib/scaler/views.ts";
import { createScaler } from "../../lib/scaler/driver.ts";
import { initialState, policyFromConfig, type SchedulerEvent, type SchedulerState } from "../../lib/scaler/state.ts";
import type { Lease } from "../../lib/scaler/types.ts";
import { FakeBackend } from "../support/fake_backend.ts";

/** Lets promise callbacks (backend results, grants) run; no real waiting. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => queueMicrotask(r));
}

type Step = { kind: "acquire"; model: "a" | "b" } | { kind: "release"; pick: number } | { kind: "advance"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("acquire" as const),
    model: fc.constantFrom("a" as const, "a" as const, "b" as const),
  }),
  fc.record({ kind: fc.constant("release" as const), pick: fc.nat(1000) }),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.constantFrom(0, 1, 500, 20_000, 61_000) }),
);

Deno.test("driver: warm tryAcquire/release end in the same state, counts, activity and timer as decide", async () => {
  await fc.assert(
    // sleepAfter: none, before idleTimeout (the idle clock arms it), after idleTimeout (ignored).
    fc.asyncProperty(
      fc.array(step, { maxLength: 60 }),
      fc.constantFrom(null, "30s", "5m"),
      async (steps, sleepAfter) => {
        const clock = new FakeClock();
        const backend = new FakeBackend();
        const config = parseConfig({
          enableModelSwitch: true,
          idleTimeout: "1m",
          ...(sleepAfter ? { sleepAfter } : {}),
          models: { a: { modelName: "org/a" }, b: { modelName: "org/b" } },
        });
        const registry = new ModelRegistry(config.models);
        const metrics = createMetrics();
        const log = createLogger({ write: () => {} });
        const scaler = createScaler({ backend, registry, config, clock, log, metrics, scaleOnly: false });
        await scaler.start();
        // Warm "a" through the slow path, then compare every warm step against decide run by hand.
        const first = scaler.acquire("a", { signal: new AbortController().signal });
        await flush();
        backend.last("start").resolve();
        (await first).release();
        await flush();

        let ref: SchedulerState = initialState(policyFromConfig(config, config.models), clock.now());
        const apply = (event: SchedulerEvent) => {
          const d = decide(ref, event, clock.now());
          ref = d.state;
          return d.effects;
        };
        apply({ type: "observed", op: 0, engines: [] });
        apply({ type: "request", id: "first", model: "a" });
        apply({ type: "started", model: "a", op: ref.engines.a.op });
        apply({ type: "release", id: "first" });

        const leases: { lease: Lease; id: string }[] = [];
        let n = 0;
        for (const s of steps) {
          if (s.kind === "acquire") {
            // Only the warm fast path is compared: cold requests and ticks change lifecycle, which both sides share.
            const warm = ref.observed && ref.engines[s.model]?.status === "ready" && !ref.shuttingDown;
            const lease = scaler.tryAcquire(s.model);
            assert.equal(lease !== null, warm);
            if (!lease) continue;
            const id = `x${++n}`;
            const fx = apply({ type: "request", id, model: s.model });
            assert.ok(fx.some((e) => e.type === "grant" && e.ids.includes(id)));
            leases.push({ lease, id });
          } else if (s.kind === "release") {
            if (leases.length === 0) continue;
            const [{ lease, id }] = leases.splice(s.pick % leases.length, 1);
            lease.release();
            apply({ type: "release", id });
          } else {
            // The reference ticks when its own timer is due (the driver's may fire earlier: it then re-arms).
            const until = clock.now() + s.ms;
            while (ref.timerAt !== null && ref.timerAt <= until && ref.lifecycle === "ready") {
              clock.advance(ref.timerAt - clock.now());
              apply({ type: "tick" });
              await flush();
            }
            clock.advance(until - clock.now());
            await flush();
          }
          const status = scaler.status();
          assert.equal(status.state, ref.lifecycle);
          assert.deepEqual(status.inflight, countByModel(ref).inflight);
          assert.equal(
            status.lastActivity,
            ref.lastActivity === null ? null : new Date(ref.lastActivity).toISOString(),
          );
          const lastUsed = ref.engines.a?.lastUsed;
          assert.equal(status.models.a.lastUsed, lastUsed === undefined ? null : new Date(lastUsed).toISOString());
          // The warm path leaves an earlier timer armed (its tick re-arms it): never later than decide's.
          if (ref.timerAt !== null) assert.ok(clock.nextAt() !== null && clock.nextAt()! <= ref.timerAt);
          assert.equal(metrics.inflightRequests.get({ model: "a" }), countByModel(ref).inflight.a ?? 0);
          if (ref.lifecycle !== "ready") break; // the engine is being stopped: the warm path is over
        }
        for (const { lease } of leases) lease.release();
        await scaler.shutdown();
      },
    ),
    { numRuns: 150 },
  );
});
