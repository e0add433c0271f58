/**
 * A shared GPU-memory ledger for fake vLLM engines: one JSON file (its path in env `FAKE_GPU_LEDGER` for
 * child processes) in which every fake engine, in this process or in another, writes the share of each
 * device it holds, the way a real engine takes and frees HBM. Tests read it to prove that no GPU was ever
 * oversubscribed (see {@link assertNeverOversubscribed}).
 *
 * Rules:
 * - Every change is a read-modify-write under an exclusive lock on `<path>.lock` (`Deno.FsFile.lockSync`,
 *   flock: it holds across processes and between two files of one process); the data is written to a
 *   temporary file and renamed, so a reader never sees half a ledger even if a writer is SIGKILLed.
 * - A claim carries its process id and that process's start time (`/proc/<pid>/stat`, field 22). Every
 *   access drops ("reaps") the claims of dead processes (gone, zombie, or a reused pid), so a SIGKILLed
 *   engine, which cannot release, frees its memory as the GPU driver would.
 * - `violations`: every moment a claim left a device above 1.0 (a claim at the end of a load that was
 *   checked at its start, like vLLM's own check: two engines started together on one GPU both pass it).
 * - `refusals`: every claim refused because it did not fit (vLLM's startup check, a CUDA OOM at wake). A
 *   refusal is the engine protecting itself, not an oversubscription; a scheduler that never causes one
 *   can assert so with `assertNeverOversubscribed(path, { allowRefusals: false })`.
 * - `highWater`: per device, the largest total share ever held at once.
 *
 * @module
 */

/** One engine's hold on its devices. */
export interface LedgerClaim {
  /** Unique per claim. */
  id: string;
  /** The engine's process. */
  pid: number;
  /** That process's start time in clock ticks (`/proc/<pid>/stat` field 22), so a reused pid is not mistaken for it. */
  pidStart: string | null;
  /** The served model, for messages. */
  model: string;
  /** CUDA device ids (as in `CUDA_VISIBLE_DEVICES`). */
  devices: string[];
  /** Fraction of each device held (vLLM's `--gpu-memory-utilization`). */
  share: number;
  /** ISO time of the claim. */
  since: string;
}

/** A moment a device held more than all of its memory. */
export interface LedgerViolation {
  at: string;
  device: string;
  /** The total share held on the device at that moment (> 1). */
  share: number;
  /** The model whose claim went over. */
  by: string;
  /** Every claim on the device at that moment. */
  claims: { model: string; pid: number; share: number }[];
}

/** A claim refused because it did not fit. */
export interface LedgerRefusal {
  at: string;
  /** "startup": vLLM's free-memory check at start; "wake": a CUDA out-of-memory at `/wake_up`. */
  kind: "startup" | "wake";
  device: string;
  model: string;
  pid: number;
  /** The share asked for. */
  share: number;
  /** The share that was free on the device. */
  free: number;
}

/** A claim dropped because its process had died without releasing it. */
export interface LedgerReaped {
  at: string;
  model: string;
  pid: number;
  devices: string[];
  share: number;
}

/** The whole ledger file. */
export interface Ledger {
  version: 1;
  /** The memory of every fake device, in GiB (what vLLM's messages print). */
  deviceGiB: number;
  claims: LedgerClaim[];
  violations: LedgerViolation[];
  refusals: LedgerRefusal[];
  reaped: LedgerReaped[];
  /** Per device, the largest total share ever held at once. */
  highWater: Record<string, number>;
}

/** What a refused claim reports (enough to print vLLM's message). */
export interface LedgerShortfall {
  ok: false;
  /** The first device without room. */
  device: string;
  /** Its free share before the claim. */
  free: number;
  /** `deviceGiB` of the ledger. */
  deviceGiB: number;
}

/** A claim as an engine asks for it. */
export interface ClaimRequest {
  model: string;
  devices: string[];
  share: number;
}

/** The default memory of a fake device, in GiB. */
export const DEFAULT_DEVICE_GIB = 80;
/** Float slack: 0.6 + 0.4 fits in 1.0. */
const EPSILON = 1e-9;

/**
 * Creates (or empties) a ledger file.
 *
 * @example
 * ```ts
 * import { createLedger, readLedger } from "./gpu_ledger.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".json" });
 * createLedger(path, { deviceGiB: 24 });
 * readLedger(path).deviceGiB; // 24
 * ```
 */
export function createLedger(path: string, options: { deviceGiB?: number } = {}): void {
  const deviceGiB = options.deviceGiB ?? DEFAULT_DEVICE_GIB;
  if (!(deviceGiB > 0)) throw new Error(`deviceGiB must be positive, got ${deviceGiB}`);
  withLedger(path, (ledger) => {
    Object.assign(ledger, emptyLedger(deviceGiB));
  });
}

/**
 * Reads the ledger (reaping the claims of dead processes first). A missing file reads as an empty ledger.
 *
 * @example
 * ```ts
 * import { readLedger } from "./gpu_ledger.ts";
 * const ledger = readLedger(Deno.makeTempFileSync({ suffix: ".json" }));
 * ledger.claims.length; // 0
 * ```
 */
export function readLedger(path: string): Ledger {
  return withLedger(path, (ledger) => structuredClone(ledger));
}

/**
 * The total share held on each device that has claims.
 *
 * @example
 * ```ts
 * import { heldShares, type Ledger } from "./gpu_ledger.ts";
 * const claim = { id: "x", pid: 1, pidStart: null, model: "a", devices: ["0"], share: 0.6, since: "" };
 * heldShares({ claims: [claim] } as Ledger); // { "0": 0.6 }
 * ```
 */
export function heldShares(ledger: Pick<Ledger, "claims">): Record<string, number> {
  const held: Record<string, number> = {};
  for (const claim of ledger.claims) {
    for (const device of claim.devices) held[device] = (held[device] ?? 0) + claim.share;
  }
  return held;
}

/**
 * Throws, listing every violation (and every refusal unless `allowRefusals`), if any device of the ledger was
 * ever oversubscribed.
 *
 * @example
 * ```ts
 * import { assertNeverOversubscribed, createLedger } from "./gpu_ledger.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".json" });
 * createLedger(path);
 * assertNeverOversubscribed(path); // no throw
 * ```
 */
export function assertNeverOversubscribed(path: string, options: { allowRefusals?: boolean } = {}): void {
  const ledger = readLedger(path);
  const problems = ledger.violations.map((v) =>
    `${v.at} device ${v.device} held ${round(v.share)} (> 1.0) when ${v.by} claimed; claims: ${
      v.claims.map((c) => `${c.model}(pid ${c.pid}) ${c.share}`).join(", ")
    }`
  );
  if (options.allowRefusals === false) {
    for (const r of ledger.refusals) {
      problems.push(
        `${r.at} ${r.kind} of ${r.model} (pid ${r.pid}) refused on device ${r.device}: asked ${r.share}, free ${
          round(r.free)
        }`,
      );
    }
  }
  if (problems.length > 0) {
    throw new Error(`GPU ledger ${path}: oversubscription\n  ${problems.join("\n  ")}`);
  }
}

/**
 * vLLM's startup check, made against the ledger: does `share` fit on every device? Nothing is claimed (the
 * engine claims at the end of its load, {@link claimUnchecked}); a shortfall is recorded as a refusal.
 *
 * @example
 * ```ts
 * import { checkFits, createLedger } from "./gpu_ledger.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".json" });
 * createLedger(path);
 * checkFits(path, { model: "a", devices: ["0"], share: 0.9 }).ok; // true
 * ```
 */
export function checkFits(path: string, request: ClaimRequest): { ok: true } | LedgerShortfall {
  return withLedger(path, (ledger) => {
    const shortfall = findShortfall(ledger, request);
    if (shortfall) refuse(ledger, "startup", request, shortfall);
    return shortfall ?? { ok: true };
  });
}

/**
 * Claims `share` on every device without checking (the end of a load: the memory is taken whatever is
 * free). Records a violation for every device it takes above 1.0, and returns them.
 *
 * @example
 * ```ts
 * import { claimUnchecked, createLedger } from "./gpu_ledger.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".json" });
 * createLedger(path);
 * claimUnchecked(path, { model: "a", devices: ["0"], share: 0.5 }).violations.length; // 0
 * ```
 */
export function claimUnchecked(
  path: string,
  request: ClaimRequest,
): { id: string; violations: LedgerViolation[]; deviceGiB: number } {
  return withLedger(path, (ledger) => {
    const id = addClaim(ledger, request);
    const held = heldShares(ledger);
    const violations: LedgerViolation[] = [];
    for (const device of request.devices) {
      if (held[device] > 1 + EPSILON) {
        violations.push({
          at: new Date().toISOString(),
          device,
          share: held[device],
          by: request.model,
          claims: ledger.claims.filter((c) => c.devices.includes(device)).map((c) => ({
            model: c.model,
            pid: c.pid,
            share: c.share,
          })),
        });
      }
    }
    ledger.violations.push(...violations);
    return { id, violations, deviceGiB: ledger.deviceGiB };
  });
}

/**
 * Claims `share` on every device only if it fits on all of them (a wake: mapping memory fails with a CUDA
 * out-of-memory when it does not); a shortfall is recorded as a refusal. With `residueOf`, the id of a claim
 * this engine still holds (memory its sleep never returned, vLLM issue 47654), the share must fit on top of
 * that residue, which then stands for the new claim (the engine holds its share once, not twice).
 *
 * @example
 * ```ts
 * import { claimIfFits, createLedger } from "./gpu_ledger.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".json" });
 * createLedger(path);
 * claimIfFits(path, { model: "a", devices: ["0"], share: 0.6 }).ok; // true
 * claimIfFits(path, { model: "b", devices: ["0"], share: 0.6 }).ok; // false
 * ```
 */
export function claimIfFits(
  path: string,
  request: ClaimRequest,
  options: { residueOf?: string } = {},
): { ok: true; id: string } | LedgerShortfall {
  return withLedger(path, (ledger) => {
    const shortfall = findShortfall(ledger, request);
    if (shortfall) {
      refuse(ledger, "wake", request, shortfall);
      return shortfall;
    }
    if (options.residueOf !== undefined) {
      const residue = ledger.claims.find((c) => c.id === options.residueOf);
      if (residue) return { ok: true, id: residue.id };
    }
    return { ok: true, id: addClaim(ledger, request) };
  });
}

/**
 * Releases a claim; false if it was not there (already released or reaped).
 *
 * @example
 * ```ts
 * import { claimIfFits, createLedger, releaseClaim } from "./gpu_ledger.ts";
 * const path = Deno.makeTempFileSync({ suffix: ".json" });
 * createLedger(path);
 * const claim = claimIfFits(path, { model: "a", devices: ["0"], share: 0.6 });
 * if (claim.ok) releaseClaim(path, claim.id); // true
 * ```
 */
export function releaseClaim(path: string, id: string): boolean {
  return withLedger(path, (ledger) => {
    const before = ledger.claims.length;
    ledger.claims = ledger.claims.filter((c) => c.id !== id);
    return ledger.claims.length !== before;
  });
}

function emptyLedger(deviceGiB: number): Ledger {
  return { version: 1, deviceGiB, claims: [], violations: [], refusals: [], reaped: [], highWater: {} };
}

function findShortfall(ledger: Ledger, request: ClaimRequest): LedgerShortfall | undefined {
  const held = heldShares(ledger);
  for (const device of request.devices) {
    const free = Math.max(0, 1 - (held[device] ?? 0));
    if (request.share > free + EPSILON) return { ok: false, device, free, deviceGiB: ledger.deviceGiB };
  }
  return undefined;
}

function refuse(ledger: Ledger, kind: LedgerRefusal["kind"], request: ClaimRequest, shortfall: LedgerShortfall) {
  ledger.refusals.push({
    at: new Date().toISOString(),
    kind,
    device: shortfall.device,
    model: request.model,
    pid: Deno.pid,
    share: request.share,
    free: shortfall.free,
  });
}

function addClaim(ledger: Ledger, request: ClaimRequest): string {
  const id = crypto.randomUUID();
  ledger.claims.push({
    id,
    pid: Deno.pid,
    pidStart: processStart(Deno.pid),
    model: request.model,
    devices: [...request.devices],
    share: request.share,
    since: new Date().toISOString(),
  });
  const held = heldShares(ledger);
  for (const device of request.devices) {
    ledger.highWater[device] = Math.max(ledger.highWater[device] ?? 0, held[device]);
  }
  return id;
}

/** Runs `change` on the ledger under the lock, after reaping dead claims, and writes the result back. */
function withLedger<T>(path: string, change: (ledger: Ledger) => T): T {
  const lock = Deno.openSync(`${path}.lock`, { read: true, write: true, create: true });
  try {
    lock.lockSync(true);
    const ledger = load(path);
    reap(ledger);
    const result = change(ledger);
    const temp = `${path}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(temp, JSON.stringify(ledger, null, 2) + "\n");
    Deno.renameSync(temp, path);
    return result;
  } finally {
    lock.close(); // closing the last descriptor releases the flock
  }
}

function load(path: string): Ledger {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return emptyLedger(DEFAULT_DEVICE_GIB);
    throw e;
  }
  if (text.trim() === "") return emptyLedger(DEFAULT_DEVICE_GIB);
  let parsed: Ledger;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`GPU ledger ${path} is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (parsed?.version !== 1 || !Array.isArray(parsed.claims)) {
    throw new Error(`GPU ledger ${path} is not a version-1 ledger`);
  }
  return parsed;
}

function reap(ledger: Ledger): void {
  const alive = new Map<number, boolean>();
  ledger.claims = ledger.claims.filter((claim) => {
    const key = claim.pid;
    const live = alive.get(key) ?? isAlive(claim.pid, claim.pidStart);
    alive.set(key, live);
    if (!live) {
      ledger.reaped.push({
        at: new Date().toISOString(),
        model: claim.model,
        pid: claim.pid,
        devices: claim.devices,
        share: claim.share,
      });
    }
    return live;
  });
}

/** `/proc/<pid>/stat` split after the command name: [state, ppid, …]; undefined if the process is gone. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function processStart(pid: number): string | null {
  if (Deno.build.os !== "linux") return null;
  return procStat(pid)?.[19] ?? null; // field 22 of stat; the slice starts at field 3
}

function isAlive(pid: number, start: string | null): boolean {
  if (Deno.build.os !== "linux") return true; // no /proc: a dead engine's claim stays (conservative)
  const stat = procStat(pid);
  if (!stat) return false;
  if (stat[0] === "Z" || stat[0] === "X") return false; // killed, not yet reaped by its parent
  return start === null || stat[19] === start;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
