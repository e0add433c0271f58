/**
 * Placement (lib/scaler/placement.ts): which GPUs a model goes on and what makes room for it, as a pure function of
 * what occupies each GPU.
 */
import assert from "node:assert/strict";
import { type Occupant, place, type PlacementInput } from "../../lib/scaler/placement.ts";

const NOW = 100_000;

function occ(model: string, gpus: string[], share: number, kind: Occupant["kind"], extra: Partial<Occupant> = {}) {
  return { model, gpus, share, kind, lastUsed: 0, transitional: false, ...extra } satisfies Occupant;
}

function input(
  need: { gpus: number; share: number },
  occupants: Occupant[],
  more: Partial<PlacementInput> = {},
): PlacementInput {
  return { gpuIds: ["0"], occupants, claimed: new Map(), need, fixed: null, now: NOW, ...more };
}

// ---- fits ----

Deno.test("placement: an empty GPU fits; a CPU model needs no GPU", () => {
  assert.deepEqual(place(input({ gpus: 1, share: 900 }, [])), { kind: "fits", gpus: ["0"] });
  assert.deepEqual(place(input({ gpus: 0, share: 900 }, [occ("a", ["0"], 1000, "busy")])), { kind: "fits", gpus: [] });
});

Deno.test("placement: shares that add up to exactly a whole GPU fit (0.45 + 0.45 + 0.1)", () => {
  const here = [occ("a", ["0"], 450, "busy", { drainableAt: NOW + 1 }), occ("b", ["0"], 450, "idle")];
  assert.deepEqual(place(input({ gpus: 1, share: 100 }, here)), { kind: "fits", gpus: ["0"] });
  assert.notEqual(place(input({ gpus: 1, share: 101 }, here)).kind, "fits");
});

Deno.test("placement: best fit among the GPUs that fit (least room left), then pool order", () => {
  const gpuIds = ["0", "1", "2"];
  const here = [occ("a", ["0"], 200, "busy"), occ("b", ["1"], 500, "busy"), occ("c", ["2"], 300, "busy")];
  assert.deepEqual(place(input({ gpus: 1, share: 400 }, here, { gpuIds })), { kind: "fits", gpus: ["1"] });
  assert.deepEqual(place(input({ gpus: 1, share: 600 }, here, { gpuIds })), { kind: "fits", gpus: ["2"] });
  assert.deepEqual(place(input({ gpus: 1, share: 900 }, [], { gpuIds })), { kind: "fits", gpus: ["0"] });
});

// ---- victims ----

Deno.test("placement: room is made from the least recently used idle engines, only as many as needed", () => {
  const here = [
    occ("new", ["0"], 300, "idle", { lastUsed: 30 }),
    occ("old", ["0"], 300, "idle", { lastUsed: 10 }),
    occ("mid", ["0"], 300, "idle", { lastUsed: 20 }),
  ];
  assert.deepEqual(place(input({ gpus: 1, share: 300 }, here)), {
    kind: "evict",
    gpus: ["0"],
    victims: [{ model: "old", how: "now" }],
    until: null,
  });
  assert.deepEqual(place(input({ gpus: 1, share: 700 }, here)), {
    kind: "evict",
    gpus: ["0"],
    victims: [{ model: "old", how: "now" }, { model: "mid", how: "now" }],
    until: null,
  });
});

Deno.test("placement: an idle engine is evicted before a busy one, and the GPU whose victims are older wins", () => {
  const gpuIds = ["0", "1"];
  const busyOld = occ("busy", ["0"], 900, "busy", { lastUsed: 1, drainableAt: NOW });
  const idleNew = occ("idle", ["1"], 900, "idle", { lastUsed: 50 });
  assert.deepEqual(place(input({ gpus: 1, share: 900 }, [busyOld, idleNew], { gpuIds })), {
    kind: "evict",
    gpus: ["1"],
    victims: [{ model: "idle", how: "now" }],
    until: null,
  });
  const idleOld = occ("older", ["0"], 900, "idle", { lastUsed: 5 });
  const answer = place(input({ gpus: 1, share: 900 }, [idleOld, idleNew], { gpuIds }));
  assert.equal(answer.kind === "evict" && answer.victims[0].model, "older");
});

Deno.test("placement: a sleeper that keeps its GPU (Kubernetes) is a victim to stop at once", () => {
  const here = [occ("asleep", ["0"], 1000, "asleep", { lastUsed: 3 })];
  assert.deepEqual(place(input({ gpus: 1, share: 1000 }, here)), {
    kind: "evict",
    gpus: ["0"],
    victims: [{ model: "asleep", how: "now" }],
    until: null,
  });
});

Deno.test("placement: waiting for engines already leaving beats evicting another", () => {
  const here = [occ("leaving", ["0"], 500, "leaving"), occ("idle", ["0"], 400, "idle")];
  assert.deepEqual(place(input({ gpus: 1, share: 500 }, here)), { kind: "wait", gpus: ["0"], until: null });
  // Across GPUs too: the GPU that is being freed is chosen over one with an idle victim.
  const gpuIds = ["0", "1"];
  const two = [occ("leaving", ["0"], 900, "leaving"), occ("idle", ["1"], 900, "idle")];
  assert.deepEqual(place(input({ gpus: 1, share: 900 }, two, { gpuIds })), { kind: "wait", gpus: ["0"], until: null });
  // Not enough leaves: the rest is evicted.
  assert.deepEqual(place(input({ gpus: 1, share: 800 }, here)), {
    kind: "evict",
    gpus: ["0"],
    victims: [{ model: "idle", how: "now" }],
    until: null,
  });
});

Deno.test("placement: a busy engine is drained only from its drainableAt; before, wait until then", () => {
  const busy = occ("busy", ["0"], 900, "busy", { drainableAt: NOW + 5000 });
  assert.deepEqual(place(input({ gpus: 1, share: 900 }, [busy])), { kind: "wait", gpus: ["0"], until: NOW + 5000 });
  assert.deepEqual(place(input({ gpus: 1, share: 900 }, [busy], { now: NOW + 5000 })), {
    kind: "evict",
    gpus: ["0"],
    victims: [{ model: "busy", how: "drain" }],
    until: null,
  });
  // Two busy engines: the earliest drainableAt is when to look again.
  const later = occ("later", ["0"], 450, "busy", { drainableAt: NOW + 9000, lastUsed: 1 });
  const sooner = occ("sooner", ["0"], 450, "busy", { drainableAt: NOW + 2000, lastUsed: 2 });
  const answer = place(input({ gpus: 1, share: 900 }, [later, sooner]));
  assert.deepEqual(answer, { kind: "wait", gpus: ["0"], until: NOW + 2000 });
});

Deno.test("placement: engines starting or waking are waited for, never evicted", () => {
  const here = [occ("starting", ["0"], 800, "transit", { transitional: true })];
  assert.deepEqual(place(input({ gpus: 1, share: 500 }, here)), { kind: "wait", gpus: ["0"], until: null });
});

Deno.test("placement: no start or wake on a GPU where another engine is in transition, even if it fits", () => {
  const starting = occ("starting", ["0"], 300, "transit", { transitional: true });
  assert.deepEqual(place(input({ gpus: 1, share: 300 }, [starting])), { kind: "wait", gpus: ["0"], until: null });
  const fallingAsleep = occ("sleepy", ["0"], 300, "leaving", { transitional: true });
  assert.deepEqual(place(input({ gpus: 1, share: 300 }, [fallingAsleep])), { kind: "wait", gpus: ["0"], until: null });
  // Packing: the tightest fit wins even if a start is in progress there (whole GPUs stay free for big models);
  // the start then waits for that transition.
  const gpuIds = ["0", "1"];
  const big = occ("starting", ["0"], 600, "transit", { transitional: true });
  const small = occ("busy", ["1"], 300, "busy", { drainableAt: NOW + 1 });
  assert.deepEqual(place(input({ gpus: 1, share: 300 }, [big, small], { gpuIds })), {
    kind: "wait",
    gpus: ["0"],
    until: null,
  });
  // At equal fit, the GPU without a transition.
  const even = occ("busy", ["1"], 300, "busy", { drainableAt: NOW + 1 });
  assert.deepEqual(place(input({ gpus: 1, share: 300 }, [starting, even], { gpuIds })), { kind: "fits", gpus: ["1"] });
});

// ---- several GPUs ----

Deno.test("placement: a tensor-parallel model takes the GPUs that fit, in pool order", () => {
  const gpuIds = ["0", "1", "2"];
  const here = [occ("a", ["1"], 500, "busy", { drainableAt: NOW + 1 })];
  assert.deepEqual(place(input({ gpus: 2, share: 800 }, here, { gpuIds })), { kind: "fits", gpus: ["0", "2"] });
  assert.deepEqual(place(input({ gpus: 3, share: 800 }, [], { gpuIds })), { kind: "fits", gpus: ["0", "1", "2"] });
});

Deno.test("placement: a victim that spans several of the chosen GPUs is evicted once", () => {
  const gpuIds = ["0", "1"];
  const tp = occ("tp", ["0", "1"], 600, "idle", { lastUsed: 1 });
  assert.deepEqual(place(input({ gpus: 2, share: 800 }, [tp], { gpuIds })), {
    kind: "evict",
    gpus: ["0", "1"],
    victims: [{ model: "tp", how: "now" }],
    until: null,
  });
  // A one-GPU model needs only one of its GPUs, but the victim frees both.
  assert.deepEqual(place(input({ gpus: 1, share: 800 }, [tp], { gpuIds })), {
    kind: "evict",
    gpus: ["0"],
    victims: [{ model: "tp", how: "now" }],
    until: null,
  });
});

Deno.test("placement: a tensor-parallel model evicts on each of its GPUs", () => {
  const gpuIds = ["0", "1"];
  const here = [occ("x", ["0"], 600, "idle", { lastUsed: 1 }), occ("y", ["1"], 600, "idle", { lastUsed: 2 })];
  assert.deepEqual(place(input({ gpus: 2, share: 500 }, here, { gpuIds })), {
    kind: "evict",
    gpus: ["0", "1"],
    victims: [{ model: "x", how: "now" }, { model: "y", how: "now" }],
    until: null,
  });
});

// ---- fixed GPUs, claims, impossible ----

Deno.test("placement: a sleeping engine wakes where it sleeps (fixed GPUs), even if another GPU is free", () => {
  const gpuIds = ["0", "1"];
  const here = [occ("idle", ["1"], 600, "idle")];
  assert.deepEqual(place(input({ gpus: 1, share: 600 }, here, { gpuIds, fixed: ["1"] })), {
    kind: "evict",
    gpus: ["1"],
    victims: [{ model: "idle", how: "now" }],
    until: null,
  });
  assert.deepEqual(place(input({ gpus: 1, share: 300 }, here, { gpuIds, fixed: ["1"] })), {
    kind: "fits",
    gpus: ["1"],
  });
});

Deno.test("placement: room promised to older waiters is not taken, nor evicted for, by a younger one", () => {
  const claimed = new Map([["0", 600]]);
  assert.deepEqual(place(input({ gpus: 1, share: 500 }, [], { claimed })), { kind: "wait", gpus: ["0"], until: null });
  assert.deepEqual(place(input({ gpus: 1, share: 400 }, [], { claimed })), { kind: "fits", gpus: ["0"] });
  // Nothing is evicted for it while the claim leaves no room even after evicting.
  const here = [occ("idle", ["0"], 300, "idle")];
  assert.deepEqual(place(input({ gpus: 1, share: 500 }, here, { claimed })), {
    kind: "wait",
    gpus: ["0"],
    until: null,
  });
  // Another GPU without a claim is used instead.
  const gpuIds = ["0", "1"];
  assert.deepEqual(place(input({ gpus: 1, share: 500 }, [], { claimed, gpuIds })), { kind: "fits", gpus: ["1"] });
});

Deno.test("placement: impossible — more than a GPU, more GPUs than the pool, GPUs not in the pool", () => {
  const over = place(input({ gpus: 1, share: 1001 }, []));
  assert.equal(over.kind, "impossible");
  const many = place(input({ gpus: 3, share: 500 }, [], { gpuIds: ["0", "1"] }));
  assert.equal(many.kind, "impossible");
  assert.match(many.kind === "impossible" ? many.reason : "", /needs 3 GPUs and the pool has 2/);
  const gone = place(input({ gpus: 1, share: 500 }, [], { fixed: ["7"] }));
  assert.equal(gone.kind, "impossible");
  assert.match(gone.kind === "impossible" ? gone.reason : "", /7/);
});
