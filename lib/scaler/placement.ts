/**
 * Placement: which GPUs a model goes on and which engines make room for it.
 * A pure function of what occupies each GPU; `decide` builds the view and
 * acts on the answer.
 *
 * The rules (DESIGN.md, "Scheduling rules"):
 * - A GPU's awake share never exceeds a whole GPU: a model fits where its
 *   share fits beside what is awake (or leaving, until it is gone).
 * - Room is made from the least recently used engines with nothing in flight
 *   and nothing held; a busy engine is drained first, and only once it has
 *   been loaded `minLoadedTime` (the caller says from when: `drainableAt`).
 * - Waiting for an engine that is already leaving beats evicting another.
 * - Starting, waking and falling-asleep engines count against the room; no
 *   engine starts or wakes on a GPU where another one is in such a
 *   transition (vLLM measures free memory at start, and a wake beside a
 *   sleep in progress crashed: vllm-project/vllm#36753).
 *
 * @module
 */
import { WHOLE_GPU } from "./state.ts";

/**
 * An engine that takes room on its GPUs, as placement sees it.
 *
 * @example
 * ```ts
 * import type { Occupant } from "./placement.ts";
 * const a: Occupant = { model: "a", gpus: ["0"], share: 450, kind: "idle", lastUsed: 0, transitional: false };
 * ```
 */
export interface Occupant {
  model: string;
  gpus: readonly string[];
  /** Thousandths of each of its GPUs. */
  share: number;
  /**
   * idle: ready (or starting) with nothing in flight or held (evict now) · asleep: sleeping but holding its GPUs (stop now) ·
   * busy: ready with requests (drain from `drainableAt`) · leaving: being drained, put to sleep or stopped
   * (wait) · transit: starting or waking (wait).
   */
  kind: "idle" | "asleep" | "busy" | "leaving" | "transit";
  lastUsed: number;
  /** busy: from when it may be drained. */
  drainableAt?: number;
  /** Starting, waking or falling asleep: nothing else starts or wakes on its GPUs meanwhile. */
  transitional: boolean;
}

/**
 * What placement needs.
 *
 * @example
 * ```ts
 * import type { PlacementInput } from "./placement.ts";
 * const input: PlacementInput = {
 *   gpuIds: ["0"], occupants: [], claimed: new Map(), need: { gpus: 1, share: 900 }, fixed: null, now: 0,
 * };
 * ```
 */
export interface PlacementInput {
  gpuIds: readonly string[];
  occupants: readonly Occupant[];
  /** Room (thousandths) already promised to models that wait longer, by GPU. */
  claimed: ReadonlyMap<string, number>;
  need: { gpus: number; share: number };
  /** The GPUs it must go on (a sleeping engine wakes where it sleeps); null: any. */
  fixed: readonly string[] | null;
  now: number;
}

/**
 * Placement's answer.
 *
 * - fits: start or wake now on `gpus`.
 * - evict: make room on `gpus` from `victims` (evict now, or drain first); look again at `until` when set.
 * - wait: room will come on `gpus` without evicting anything new (engines leaving or in transition, or a busy
 *   engine's minLoadedTime); look again at `until` when set, else at the next event.
 * - impossible: it can never fit (more GPUs, or more than a GPU, than the pool has).
 *
 * @example
 * ```ts
 * import type { Placement } from "./placement.ts";
 * const p: Placement = { kind: "evict", gpus: ["0"], victims: [{ model: "a", how: "now" }], until: null };
 * ```
 */
export type Placement =
  | { kind: "fits"; gpus: string[] }
  | { kind: "evict"; gpus: string[]; victims: { model: string; how: "now" | "drain" }[]; until: number | null }
  | { kind: "wait"; gpus: string[]; until: number | null }
  | { kind: "impossible"; reason: string };

/** How hard making room on one GPU is: lower is better. */
const enum Tier {
  Fits = 0,
  WaitLeaving = 1,
  EvictIdle = 2,
  Drain = 3,
  WaitLater = 4,
  Never = 5,
}

interface GpuPlan {
  gpu: string;
  tier: Tier;
  victims: { model: string; how: "now" | "drain"; lastUsed: number }[];
  until: number | null;
  /** Room left after placing (best fit among GPUs that fit). */
  leftover: number;
  transitional: boolean;
}

/**
 * Where `need` goes and what must make room, or why it cannot.
 *
 * @example
 * ```ts
 * import { place } from "./placement.ts";
 * const busy = { model: "a", gpus: ["0"], share: 900, kind: "idle" as const, lastUsed: 5, transitional: false };
 * const answer = place({
 *   gpuIds: ["0", "1"], occupants: [busy], claimed: new Map(), need: { gpus: 1, share: 900 }, fixed: null, now: 10,
 * });
 * answer; // { kind: "fits", gpus: ["1"] }
 * ```
 */
export function place(input: PlacementInput): Placement {
  const { gpuIds, need, fixed } = input;
  if (need.share > WHOLE_GPU) {
    return { kind: "impossible", reason: `it needs ${need.share / 10}% of a GPU` };
  }
  if (fixed) {
    const unknown = fixed.filter((g) => !gpuIds.includes(g));
    if (unknown.length) return { kind: "impossible", reason: `its GPUs ${unknown.join(",")} are not in the pool` };
  } else if (need.gpus > gpuIds.length) {
    return {
      kind: "impossible",
      reason: `it needs ${need.gpus} GPUs and the pool has ${gpuIds.length}`,
    };
  }
  if (need.gpus === 0 && !fixed?.length) return { kind: "fits", gpus: [] };

  let chosen: string[];
  if (fixed) chosen = [...fixed];
  else {
    const ranked = gpuIds.map((gpu) => planGpu(input, gpu, new Set())).sort(compare);
    chosen = ranked.slice(0, need.gpus).map((p) => p.gpu);
    // Keep the pool's order for a stable CUDA_VISIBLE_DEVICES.
    chosen.sort((a, b) => gpuIds.indexOf(a) - gpuIds.indexOf(b));
  }

  // Again in order, counting a victim once even if it spans several of the chosen GPUs.
  const freed = new Set<string>();
  const victims: { model: string; how: "now" | "drain" }[] = [];
  let worst = Tier.Fits;
  let until: number | null = null;
  let transitional = false;
  for (const gpu of chosen) {
    const plan = planGpu(input, gpu, freed);
    worst = Math.max(worst, plan.tier);
    if (plan.until !== null) until = until === null ? plan.until : Math.min(until, plan.until);
    transitional ||= plan.transitional;
    for (const v of plan.victims) {
      freed.add(v.model);
      victims.push({ model: v.model, how: v.how });
    }
  }
  if (worst === Tier.Fits) {
    return transitional ? { kind: "wait", gpus: chosen, until: null } : { kind: "fits", gpus: chosen };
  }
  // Room promised to others: nothing to evict for this one yet.
  if (worst === Tier.Never) return { kind: "wait", gpus: chosen, until: null };
  if (victims.length) return { kind: "evict", gpus: chosen, victims, until };
  return { kind: "wait", gpus: chosen, until };
}

function planGpu(input: PlacementInput, gpu: string, freed: ReadonlySet<string>): GpuPlan {
  const { need, now } = input;
  const capacity = WHOLE_GPU - (input.claimed.get(gpu) ?? 0);
  const here = input.occupants.filter((o) => o.gpus.includes(gpu) && !freed.has(o.model));
  const used = here.reduce((sum, o) => sum + o.share, 0);
  const transitional = here.some((o) => o.transitional);
  let deficit = used + need.share - capacity;
  if (deficit <= 0) return { gpu, tier: Tier.Fits, victims: [], until: null, leftover: -deficit, transitional };

  let tier = Tier.WaitLeaving;
  let until: number | null = null;
  const victims: GpuPlan["victims"] = [];
  for (const o of here) if (o.kind === "leaving") deficit -= o.share;
  const lru = (kinds: Occupant["kind"][]) =>
    here.filter((o) => kinds.includes(o.kind)).sort((a, b) => a.lastUsed - b.lastUsed || (a.model < b.model ? -1 : 1));
  const idle = lru(["idle", "asleep"]);
  for (const o of idle) {
    if (deficit <= 0) break;
    victims.push({ model: o.model, how: "now", lastUsed: o.lastUsed });
    deficit -= o.share;
    tier = Tier.EvictIdle;
  }
  // No victim more than needed: one that a later (bigger) victim's room makes unnecessary stays, the most
  // recently used first (LRU order picked them; this only drops the superfluous ones).
  for (let i = victims.length - 1; i >= 0 && deficit < 0; i--) {
    const share = idle.find((o) => o.model === victims[i].model)!.share;
    if (deficit + share <= 0) {
      deficit += share;
      victims.splice(i, 1);
    }
  }
  for (const o of lru(["busy"])) {
    if (deficit <= 0) break;
    const at = o.drainableAt ?? now;
    if (at <= now) {
      victims.push({ model: o.model, how: "drain", lastUsed: o.lastUsed });
      tier = Math.max(tier, Tier.Drain);
    } else {
      until = until === null ? at : Math.min(until, at);
      tier = Tier.WaitLater;
    }
    deficit -= o.share;
  }
  for (const o of here) {
    if (deficit <= 0) break;
    if (o.kind !== "transit") continue;
    deficit -= o.share;
    tier = Tier.WaitLater;
  }
  if (deficit > 0) tier = Tier.Never;
  return { gpu, tier, victims, until, leftover: 0, transitional };
}

/**
 * Better GPUs first: easier tier; among GPUs that fit, the tightest fit (packing keeps whole GPUs free for big
 * models, even if it means waiting for a start in progress there), then one with no transition in progress;
 * among the others, older victims, then fewer; pool order last.
 */
function compare(a: GpuPlan, b: GpuPlan): number {
  if (a.tier !== b.tier) return a.tier - b.tier;
  if (a.tier === Tier.Fits) {
    if (a.leftover !== b.leftover) return a.leftover - b.leftover;
    if (a.transitional !== b.transitional) return a.transitional ? 1 : -1;
    return 0;
  }
  const newest = (p: GpuPlan) => p.victims.reduce((m, v) => Math.max(m, v.lastUsed), Number.NEGATIVE_INFINITY);
  if (a.victims.length && b.victims.length && newest(a) !== newest(b)) return newest(a) - newest(b);
  if (a.victims.length !== b.victims.length) return a.victims.length - b.victims.length;
  return 0; // Array.prototype.sort is stable: pool order
}
