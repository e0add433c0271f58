/**
 * vLLM's sleep mode and GPU memory, for the fake vLLM ({@link ./fake_vllm.ts}): the dev-mode routes, the
 * engine's sleep/wake state, and one engine's share of the shared GPU ledger ({@link ./gpu_ledger.ts}).
 *
 * ## What vLLM v0.11.0 does (tag v0.11.0 = commit b8b302cde434df8c9289a2b465406b47ebab1c2d), and the fake with it
 *
 * Routes — `vllm/entrypoints/openai/api_server.py`:
 * - :965 `if envs.VLLM_SERVER_DEV_MODE:` registers, at import, `POST /reset_prefix_cache` (:987-999),
 *   `POST /sleep` (:1001-1008), `POST /wake_up` (:1010-1020), `GET /is_sleeping` (:1022-1026),
 *   `POST /collective_rpc` (:1028-1052) (also `/server_info`, `/reset_mm_cache`: not faked). Without the env
 *   var the paths do not exist: FastAPI's 404 `{"detail":"Not Found"}`; a wrong method: 405
 *   `{"detail":"Method Not Allowed"}`. `--enable-sleep-mode` plays no part in registering them.
 * - `vllm/envs.py:1028-1029`: `bool(int(os.getenv("VLLM_SERVER_DEV_MODE", "0")))`: "1" (any non-zero integer)
 *   on, "0" off, "true" or "" raise ValueError at import: the server never starts (the fake CLI exits 1).
 * - `/sleep`: `level = query "level"` (default "1"), `sleep(int(level))`, 200 with an empty body. No other
 *   parameter (`mode` came later). A non-integer level: int() raises → 500.
 * - `/wake_up`: `tags = query_params.getlist("tags")` (repeated `?tags=weights&tags=kv_cache`); none = all;
 *   200, empty body. `/is_sleeping`: 200 `{"is_sleeping":false}`.
 * - `/reset_prefix_cache`: optional `device` query, `Device[device.upper()]` (GPU|CPU; another name: KeyError
 *   → 500; CPU: "Not supported on CPU." → 500, `v1/engine/async_llm.py:629-633`); 200, empty body, even when
 *   the reset is refused because blocks are in use (`v1/core/block_pool.py:355-369`, a warning only).
 * - `/collective_rpc`: body not JSON → 400 "JSON decode error: …"; no `method` → 400 "Missing 'method' in
 *   request body" (HTTPException → `{"error":{"message","type":"Bad Request","param":null,"code":400}}`,
 *   api_server.py:1532-1538); the result is one entry per worker: `{"results":[null]}` for
 *   `reload_weights` (`v1/worker/gpu_worker.py:218-219` → `v1/worker/gpu_model_runner.py:2701-2707`, weights
 *   loaded again in place). An unknown method: NotImplementedError (`vllm/utils/__init__.py:3103-3122`) → 500.
 *   The fake knows only `reload_weights`; any other method answers 500.
 * - Errors inside the engine (a utility call, `v1/engine/core.py:772-783` → `v1/engine/core_client.py:581-584`)
 *   reach the route as a plain `Exception`, which no handler covers → Starlette's 500, text body
 *   "Internal Server Error" (the handlers of `entrypoints/launcher.py:155-164` cover RuntimeError and
 *   EngineDeadError only: 500, empty body, then the server shuts down when the engine is dead).
 *
 * The engine:
 * - `--enable-sleep-mode` (`engine/arg_utils.py:589-590`, `config/model.py:249`, default False; :433-436
 *   CUDA only) only decides whether the weights and the KV cache are allocated in the CuMemAllocator pool
 *   (`v1/worker/gpu_worker.py:136-149`, :306-315). Nothing checks it at `/sleep`: without it, sleep runs
 *   over an empty pool (`device_allocator/cumem.py:188-235`), frees nothing, answers 200, and `is_sleeping`
 *   turns true; `/wake_up` maps nothing and answers 200; the engine kept its memory and its weights, so it
 *   still serves. The fake mirrors it (ledger claim kept; completions served, counted as forwarded while asleep).
 * - `AsyncLLM.sleep` resets the prefix cache, then sleeps (`v1/engine/async_llm.py:635-637`). Sleep, wake_up
 *   and is_sleeping are utility calls that the engine core runs one at a time (`v1/engine/core.py:377-384`):
 *   `/is_sleeping` sent during a sleep or a wake answers after it. The fake queues them the same way.
 * - `executor/executor_base.py:180-189`: sleeping again is a no-op (warning); after the workers slept,
 *   `sleeping_tags = {weights, kv_cache}` and `is_sleeping = True`. :192-214: waking an awake engine is a
 *   no-op; a tag that is not asleep makes the whole call a no-op (warning, still 200); woken tags leave
 *   `sleeping_tags`; `is_sleeping` turns false when none is left. A wake that raises leaves both unchanged.
 * - `v1/worker/gpu_worker.py:98-120`: level 1 copies "weights" to CPU and discards the KV cache; any other
 *   level discards both (level 2 keeps the model's buffers). After a level-2 wake the weights are garbage
 *   until `collective_rpc reload_weights` (the later docs/features/sleep_mode.md sequence; vLLM issue 29341,
 *   vllm-omni 4473): the fake answers "<corrupted weights>" until then.
 * - A wake that cannot map memory: `csrc/cumem_allocator.cpp:19-30,62` prints "CUDA Error: out of memory at
 *   …/csrc/cumem_allocator.cpp:62" and raises → `/wake_up` 500 "Internal Server Error"; the engine lives on,
 *   asleep (a real one leaks what it mapped, PR 34600: not faked).
 * - `/health` (api_server.py:345-352 → `v1/engine/async_llm.py:608-611`) is 503 only when the engine core is
 *   dead: 200 while asleep.
 * - Startup check, `v1/worker/gpu_worker.py:178-194` (`init_device`): requested = total ×
 *   gpu_memory_utilization; if free < requested, `ValueError(f"Free memory on device ({GiB(free)}/{GiB(total)}
 *   GiB) on startup is less than desired GPU memory utilization ({util}, {GiB(requested)} GiB). Decrease GPU
 *   memory utilization or reduce GPU memory used by other processes.")` with `GiB = round(b / 2**30, 2)`; the
 *   engine core logs "EngineCore failed to start." (`v1/engine/core.py:708`) and the server raises
 *   "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {…}"
 *   (`v1/engine/utils.py:785-787`): exit 1. The check reads free memory before the load; the memory is taken
 *   during it, so two engines started together on one GPU both pass it (the fake claims at the end of its
 *   load and records a violation, then dies with a CUDA out-of-memory).
 *
 * Bugs of vLLM the fake reproduces, so a scheduler that triggers them fails loudly:
 * - issue 15483: a completion sent to a sleeping engine → "CUDA error: an illegal memory access was
 *   encountered", engine dead, server exits. The fake answers 500 and dies (exit 1 as a process) — also while
 *   it is falling asleep or waking (memory half mapped) and for `reload_weights` into unmapped weights.
 * - issues 28714, 45520: `/sleep` with requests in flight answers 200, then the engine dies.
 * - issue 47654: `/sleep` answers 200 but the memory stays taken (`--sleep-frees-nothing`); every wake then
 *   runs out of memory unless the share fits a second time on top of the residue.
 *
 * Newer vLLM: the routes moved to `vllm/entrypoints/serve/sleep/api_router.py` (main at 09cb327f: `mode =
 * query "mode"`, default "abort": aborts in-flight requests before sleeping; `wait` from about v0.17); the docs
 * gained the level-2 sequence (`wake_up?tags=weights`, `collective_rpc reload_weights`,
 * `wake_up?tags=kv_cache`). The fake follows v0.11.0 and ignores `mode`.
 *
 * Fake's own choices: a partial wake (`?tags=…`) claims the whole share at once; a sleeper holds no residue
 * unless `--sleep-frees-nothing`; an engine claims its share on every device of `CUDA_VISIBLE_DEVICES`.
 *
 * @module
 */
import { checkFits, claimIfFits, type ClaimRequest, claimUnchecked, releaseClaim } from "./gpu_ledger.ts";

/** A memory tag of vLLM's allocator. */
export type SleepTag = "weights" | "kv_cache";
const ALL_TAGS: readonly SleepTag[] = ["weights", "kv_cache"];

/**
 * The dev-mode routes the fake serves, with their one method each.
 *
 * @example
 * ```ts
 * import { DEV_ROUTES } from "./fake_vllm_sleep.ts";
 * DEV_ROUTES["/sleep"]; // "POST"
 * ```
 */
export const DEV_ROUTES: Readonly<Record<string, "GET" | "POST">> = {
  "/sleep": "POST",
  "/wake_up": "POST",
  "/is_sleeping": "GET",
  "/collective_rpc": "POST",
  "/reset_prefix_cache": "POST",
};

/** Where the first device without room stands (to print vLLM's message). */
interface Shortfall {
  device: string;
  free: number;
  deviceGiB: number;
}

/**
 * vLLM v0.11.0's startup-check message (`v1/worker/gpu_worker.py:178-194`), Python number formatting included.
 *
 * @example
 * ```ts
 * import { startupCheckMessage } from "./fake_vllm_sleep.ts";
 * startupCheckMessage({ freeGiB: 32, totalGiB: 80, utilization: 0.6 });
 * // "Free memory on device (32.0/80.0 GiB) on startup is less than desired GPU memory utilization (0.6, 48.0 GiB). ..."
 * ```
 */
export function startupCheckMessage(m: { freeGiB: number; totalGiB: number; utilization: number }): string {
  const gib = (n: number) => pyFloat(pyRound2(n));
  return `Free memory on device (${gib(m.freeGiB)}/${gib(m.totalGiB)} GiB) on startup is less than desired GPU ` +
    `memory utilization (${pyFloat(m.utilization)}, ${gib(m.totalGiB * m.utilization)} GiB). Decrease GPU memory ` +
    "utilization or reduce GPU memory used by other processes.";
}

/** The CUDA error a wake prints when it cannot map its memory (`csrc/cumem_allocator.cpp:19-30,62`). */
export const WAKE_OOM_MESSAGE = "CUDA Error: out of memory at /workspace/csrc/cumem_allocator.cpp:62";

/** Python's `repr(float)` for the numbers vLLM prints: `80.0`, `0.6`, `1e-05`. */
function pyFloat(x: number): string {
  if (Number.isInteger(x)) return x.toFixed(1);
  const abs = Math.abs(x);
  if (abs < 1e-4 || abs >= 1e16) {
    const [mantissa, exponent] = x.toExponential().split("e");
    const e = Number(exponent);
    return `${mantissa}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  return String(x);
}

/** Python's `round(x, 2)`: the exact value rounded, ties to even (toFixed breaks exact ties upward). */
function pyRound2(x: number): number {
  const scaled = x * 100;
  if (Math.abs(scaled % 1) === 0.5 && Number.isInteger(x * 8)) {
    const floor = Math.floor(scaled);
    return (floor % 2 === 0 ? floor : floor + 1) / 100;
  }
  return Number(x.toFixed(2));
}

/** Python's `int(text)` for a query value; undefined where Python raises ValueError. */
export function pyInt(text: string): number | undefined {
  if (!/^\s*[+-]?\d+(_\d+)*\s*$/.test(text)) return undefined;
  return Number(text.trim().replaceAll("_", ""));
}

/** Python's `repr()` of a str, for error messages: `'abc'`. */
export function pyRepr(text: string): string {
  return text.includes("'") && !text.includes('"') ? `"${text}"` : `'${text.replaceAll("'", "\\'")}'`;
}

/**
 * One engine's memory in the shared GPU ledger: vLLM's startup check, the claim at the end of the load, the
 * release at sleep and exit, the claim again at wake.
 *
 * @example
 * ```ts
 * import { EngineGpu } from "./fake_vllm_sleep.ts";
 * const gpu = new EngineGpu({ ledger: Deno.makeTempFileSync(), model: "a", devices: ["0"], share: 0.6 });
 * gpu.startupCheck(); // undefined: it fits
 * gpu.claimLoaded(); // undefined: no oversubscription
 * gpu.release();
 * ```
 */
export class EngineGpu {
  readonly #request: ClaimRequest;
  readonly #ledger: string;
  /** The claim held, and whether it is a sleeper's residue (memory `/sleep` did not return). */
  #claim: { id: string; residue: boolean } | undefined;

  /** `share` of each of `devices`, in the ledger file `ledger`. */
  constructor(options: { ledger: string; model: string; devices: string[]; share: number }) {
    this.#ledger = options.ledger;
    this.#request = { model: options.model, devices: [...options.devices], share: options.share };
  }

  /** The ledger file. */
  get ledger(): string {
    return this.#ledger;
  }

  /** The devices and share. */
  get request(): Readonly<ClaimRequest> {
    return this.#request;
  }

  /** Whether a claim (full or residue) is held. */
  get claimed(): boolean {
    return this.#claim !== undefined;
  }

  /** vLLM's startup check: its message (without "ValueError: ") when the share does not fit, else undefined. */
  startupCheck(): string | undefined {
    const fit = checkFits(this.#ledger, this.#request);
    if (fit.ok) return undefined;
    return startupCheckMessage({
      freeGiB: fit.free * fit.deviceGiB,
      totalGiB: fit.deviceGiB,
      utilization: this.#request.share,
    });
  }

  /** The end of the load: the memory is taken. Returns a CUDA out-of-memory message if that oversubscribed a device. */
  claimLoaded(): string | undefined {
    const { id, violations, deviceGiB } = claimUnchecked(this.#ledger, this.#request);
    this.#claim = { id, residue: false };
    const over = violations[0];
    if (!over) return undefined;
    const others = over.claims.reduce((sum, c) => sum + c.share, 0) - this.#request.share;
    return oomMessage(over.device, this.#request.share, Math.max(0, 1 - others), deviceGiB);
  }

  /** Memory returned (sleep, exit). Idempotent. */
  release(): void {
    if (!this.#claim) return;
    releaseClaim(this.#ledger, this.#claim.id);
    this.#claim = undefined;
  }

  /** `/sleep` answered 200 but returned nothing (vLLM issue 47654): the claim stays, as a residue. */
  keepAsResidue(): void {
    if (this.#claim) this.#claim.residue = true;
  }

  /** A wake maps the memory again: undefined on success, else the shortfall (nothing claimed). */
  claimForWake(): Shortfall | undefined {
    if (this.#claim && !this.#claim.residue) return undefined;
    const result = claimIfFits(this.#ledger, this.#request, { residueOf: this.#claim?.id });
    if (!result.ok) return { device: result.device, free: result.free, deviceGiB: result.deviceGiB };
    this.#claim = { id: result.id, residue: false };
    return undefined;
  }
}

/** PyTorch's allocator message (its figures in GiB, two decimals). */
function oomMessage(device: string, share: number, freeShare: number, deviceGiB: number): string {
  return `torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ${(share * deviceGiB).toFixed(2)} GiB. ` +
    `GPU ${device} has a total capacity of ${deviceGiB.toFixed(2)} GiB of which ${
      (freeShare * deviceGiB).toFixed(2)
    } GiB is free.`;
}

/** How the fake's sleep mode is set up. */
export interface SleepModeOptions {
  /** `VLLM_SERVER_DEV_MODE=1`: the dev routes exist. */
  devMode: boolean;
  /** `--enable-sleep-mode`: sleeping really unmaps memory. */
  enabled: boolean;
  /** How long `/sleep` takes. */
  sleepMs: number;
  /** How long `/wake_up` takes. */
  wakeMs: number;
  /** Every `/wake_up` fails like a CUDA out-of-memory (500). */
  failWake: boolean;
  /** `/sleep` answers 200 but the memory stays taken (vLLM issue 47654). */
  sleepFreesNothing: boolean;
  /** Workers (tensor-parallel ranks): entries of a `collective_rpc` result. */
  workers: number;
}

/** What the sleep mode needs from the engine around it. */
export interface SleepModeHooks {
  /** Requests being generated now. */
  inflight(): number;
  /** The engine core dies (the process exits). */
  die(reason: string): void;
  /** One log line. */
  log(line: string): void;
  /** The engine's GPU memory, when a ledger is used. */
  gpu?: EngineGpu;
}

/** The sleep state and its counters, as `/_fake/stats` shows them. */
export interface SleepStats {
  /** `VLLM_SERVER_DEV_MODE` on: the dev routes exist. */
  devMode: boolean;
  /** `--enable-sleep-mode`. */
  sleepModeEnabled: boolean;
  /** What `/is_sleeping` answers. */
  isSleeping: boolean;
  /** Level of the last sleep (null before any). */
  sleepLevel: number | null;
  /** Tags still asleep. */
  sleepingTags: SleepTag[];
  /** A `/sleep` or `/wake_up` under way. */
  transition: "none" | "falling-asleep" | "waking";
  /** Sleeps that put the engine to sleep. */
  sleeps: number;
  /** Wakes that left no tag asleep. */
  wakes: number;
  /** `/wake_up` calls answered 500. */
  wakeFailures: number;
  /** `reload_weights` calls that reloaded. */
  reloads: number;
  /** Prefix-cache resets that happened (not refused). */
  resets: number;
  /** Weights discarded by a level-2 sleep and not reloaded: completions are garbage. */
  weightsCorrupted: boolean;
  /** `reload_weights` since the first wake after the last sleep (true if never woken). */
  reloadedSinceWake: boolean;
  /** A prefix-cache reset since the first wake after the last sleep (true if never woken). */
  resetSinceWake: boolean;
  /** Inference requests that arrived while asleep, falling asleep or waking. */
  forwardedWhileAsleep: number;
  /** Completions answered with corrupted weights. */
  corruptedResponses: number;
  /** Inference requests served after a wake before any prefix-cache reset (level 1 needs none). */
  servedWithoutReset: number;
  /** Sleeps begun with requests in flight (with sleep mode on, the engine died). */
  sleptWithInflight: number;
}

/**
 * vLLM's sleep mode for one fake engine: the dev routes, the state, the queue of engine-core calls.
 *
 * @example
 * ```ts
 * import { SleepMode } from "./fake_vllm_sleep.ts";
 * const sleep = new SleepMode(
 *   { devMode: true, enabled: true, sleepMs: 0, wakeMs: 0, failWake: false, sleepFreesNothing: false, workers: 1 },
 *   { inflight: () => 0, die: () => {}, log: () => {} },
 * );
 * (await sleep.handle(new Request("http://x/sleep?level=1", { method: "POST" }), "/sleep")).status; // 200
 * sleep.stats().isSleeping; // true
 * ```
 */
export class SleepMode {
  readonly #options: SleepModeOptions;
  readonly #hooks: SleepModeHooks;
  /** Engine-core calls run one at a time, in order. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly #waits = new Set<() => void>();
  #closed = false;
  #sleeping = false;
  #tags = new Set<SleepTag>();
  #level: number | null = null;
  #transition: SleepStats["transition"] = "none";
  #wokenSinceSleep = true;
  #weightsValid = true;
  #counts = {
    sleeps: 0,
    wakes: 0,
    wakeFailures: 0,
    reloads: 0,
    resets: 0,
    forwardedWhileAsleep: 0,
    corruptedResponses: 0,
    servedWithoutReset: 0,
    sleptWithInflight: 0,
  };
  #reloadedSinceWake = true;
  #resetSinceWake = true;

  /** A sleep mode with these options, around an engine reached through `hooks`. */
  constructor(options: SleepModeOptions, hooks: SleepModeHooks) {
    this.#options = options;
    this.#hooks = hooks;
  }

  /**
   * Answers a dev route (a path of {@link DEV_ROUTES}) as vLLM v0.11.0 does.
   */
  handle(req: Request, path: string): Promise<Response> {
    if (!this.#options.devMode) return Promise.resolve(detail(404, "Not Found"));
    const method = DEV_ROUTES[path];
    if (req.method !== method) return Promise.resolve(detail(405, "Method Not Allowed", { allow: method }));
    const url = new URL(req.url);
    switch (path) {
      case "/sleep":
        return this.#sleep(url);
      case "/wake_up":
        return this.#wake(url);
      case "/is_sleeping":
        return this.#serial(() => json(200, JSON.stringify({ is_sleeping: this.#sleeping })));
      case "/collective_rpc":
        return this.#collectiveRpc(req);
      default:
        return this.#resetPrefixCache(url);
    }
  }

  /**
   * An inference request reaches the engine: "serve", or "die" when its memory is (being) unmapped (vLLM
   * issue 15483). Without `--enable-sleep-mode` a "sleeping" engine still has its memory and serves.
   */
  admit(): "serve" | "die" {
    if (!this.#sleeping && this.#transition === "none") return "serve";
    this.#counts.forwardedWhileAsleep++;
    return this.#options.enabled ? "die" : "serve";
  }

  /** An inference request is being served: true if its output must be garbage (weights not reloaded). */
  serve(): boolean {
    if (!this.#resetSinceWake) this.#counts.servedWithoutReset++;
    if (this.#weightsValid) return false;
    this.#counts.corruptedResponses++;
    return true;
  }

  /** The state and counters. */
  stats(): SleepStats {
    return {
      devMode: this.#options.devMode,
      sleepModeEnabled: this.#options.enabled,
      isSleeping: this.#sleeping,
      sleepLevel: this.#level,
      sleepingTags: ALL_TAGS.filter((t) => this.#tags.has(t)),
      transition: this.#transition,
      ...this.#counts,
      weightsCorrupted: !this.#weightsValid,
      reloadedSinceWake: this.#reloadedSinceWake,
      resetSinceWake: this.#resetSinceWake,
    };
  }

  /** Ends the waits under way (the engine is going away); later calls change nothing. */
  close(): void {
    this.#closed = true;
    for (const end of [...this.#waits]) end();
  }

  #sleep(url: URL): Promise<Response> {
    const raw = url.searchParams.get("level") ?? "1";
    const level = pyInt(raw);
    if (level === undefined) {
      this.#hooks.log(`ERROR fake vLLM: ValueError: invalid literal for int() with base 10: ${pyRepr(raw)}`);
      return Promise.resolve(internalError());
    }
    return this.#serial(async () => {
      if (this.#sleeping) {
        this.#hooks.log("WARNING fake vLLM: Executor is already sleeping.");
        return ok();
      }
      const inflightAtStart = this.#hooks.inflight();
      this.#transition = "falling-asleep";
      if (!await this.#wait(this.#options.sleepMs)) return internalError();
      const gpu = this.#hooks.gpu;
      if (this.#options.enabled) {
        if (this.#options.sleepFreesNothing) gpu?.keepAsResidue();
        else gpu?.release();
        if (level !== 1) this.#weightsValid = false;
      }
      this.#sleeping = true;
      this.#tags = new Set(ALL_TAGS);
      this.#level = level;
      this.#transition = "none";
      this.#wokenSinceSleep = false;
      this.#counts.sleeps++;
      this.#hooks.log(
        `INFO fake vLLM: It took ${this.#options.sleepMs / 1000} seconds to fall asleep (level ${level}).`,
      );
      if (inflightAtStart > 0 || this.#hooks.inflight() > 0) {
        this.#counts.sleptWithInflight++;
        if (this.#options.enabled) {
          // vLLM issues 28714/45520: /sleep answers 200, then the running requests touch unmapped memory.
          setTimeout(() => this.#hooks.die("/sleep with requests in flight: CUDA error: an illegal memory access"), 0);
        }
      }
      return ok();
    });
  }

  #wake(url: URL): Promise<Response> {
    const asked = url.searchParams.getAll("tags");
    const tags = asked.length > 0 ? asked : null;
    this.#hooks.log(
      `INFO fake vLLM: wake up the engine with tags: ${tags ? `[${tags.map(pyRepr).join(", ")}]` : "None"}`,
    );
    return this.#serial(async () => {
      if (!this.#sleeping) {
        this.#hooks.log("WARNING fake vLLM: Executor is not sleeping.");
        return ok();
      }
      const missing = tags?.find((t) => !this.#tags.has(t as SleepTag));
      if (missing !== undefined) {
        this.#hooks.log(`WARNING fake vLLM: Tag ${missing} is not in sleeping tags ${pySet([...this.#tags])}`);
        return ok();
      }
      if (this.#options.failWake) return this.#wakeFailed("--fail-wake");
      if (this.#options.enabled) {
        const short = this.#hooks.gpu?.claimForWake();
        if (short) {
          return this.#wakeFailed(`device ${short.device} has ${short.free.toFixed(3)} of its memory free`);
        }
      }
      this.#transition = "waking";
      if (!await this.#wait(this.#options.wakeMs)) return internalError();
      for (const tag of tags ?? [...this.#tags]) this.#tags.delete(tag as SleepTag);
      if (!this.#wokenSinceSleep) {
        this.#wokenSinceSleep = true;
        this.#resetSinceWake = false;
        this.#reloadedSinceWake = false;
      }
      this.#transition = "none";
      if (this.#tags.size === 0) {
        this.#sleeping = false;
        this.#counts.wakes++;
        this.#hooks.log(`INFO fake vLLM: It took ${this.#options.wakeMs / 1000} seconds to wake up.`);
      }
      return ok();
    });
  }

  #wakeFailed(why: string): Response {
    this.#counts.wakeFailures++;
    this.#hooks.log(`ERROR fake vLLM: ${WAKE_OOM_MESSAGE} (${why})`);
    this.#hooks.log(
      `ERROR fake vLLM: Invocation of wake_up method failed: Call to wake_up method failed: ${WAKE_OOM_MESSAGE}`,
    );
    return internalError();
  }

  async #collectiveRpc(req: Request): Promise<Response> {
    const text = await req.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      const why = text.trim() === "" ? "Expecting value: line 1 column 1 (char 0)" : (e as Error).message;
      return errorInfo(400, `JSON decode error: ${why}`);
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      this.#hooks.log("ERROR fake vLLM: AttributeError: the collective_rpc body is not a JSON object");
      return internalError();
    }
    const method = (body as Record<string, unknown>).method;
    if (method === undefined || method === null) return errorInfo(400, "Missing 'method' in request body");
    return this.#serial(() => {
      if (method !== "reload_weights") {
        this.#hooks.log(
          `ERROR fake vLLM: Invocation of collective_rpc method failed: the fake knows only reload_weights, not ${
            JSON.stringify(method)
          }`,
        );
        return internalError();
      }
      if (this.#options.enabled && this.#tags.has("weights")) {
        // Loading into unmapped memory: an illegal memory access, like a completion to a sleeper.
        this.#hooks.die("reload_weights while the weights are asleep: CUDA error: an illegal memory access");
        return new Response(null, { status: 500 });
      }
      this.#weightsValid = true;
      this.#reloadedSinceWake = true;
      this.#counts.reloads++;
      return json(200, JSON.stringify({ results: Array(this.#options.workers).fill(null) }));
    });
  }

  #resetPrefixCache(url: URL): Promise<Response> {
    const device = url.searchParams.get("device")?.toUpperCase();
    if (device !== undefined && device !== "GPU") {
      const why = device === "CPU" ? "ValueError: Not supported on CPU." : `KeyError: ${pyRepr(device)}`;
      this.#hooks.log(`ERROR fake vLLM: ${why}`);
      return Promise.resolve(internalError());
    }
    return this.#serial(() => {
      const inflight = this.#hooks.inflight();
      if (inflight > 0) {
        this.#hooks.log(
          `WARNING fake vLLM: Failed to reset prefix cache because some blocks (${inflight}) are not freed yet`,
        );
        return ok();
      }
      this.#counts.resets++;
      this.#resetSinceWake = true;
      return ok();
    });
  }

  /** Runs `call` after every engine-core call queued before it. */
  #serial<T>(call: () => T | Promise<T>): Promise<T> {
    const result = this.#queue.then(call);
    this.#queue = result.then(() => {}, () => {});
    return result;
  }

  /** Waits `ms`; false if the engine closed meanwhile (then nothing may change). */
  async #wait(ms: number): Promise<boolean> {
    if (this.#closed) return false;
    if (ms > 0) {
      await new Promise<void>((resolve) => {
        const end = () => {
          clearTimeout(timer);
          this.#waits.delete(end);
          resolve();
        };
        const timer = setTimeout(end, ms);
        this.#waits.add(end);
      });
    }
    return !this.#closed;
  }
}

function pySet(items: string[]): string {
  return items.length === 0 ? "set()" : `{${items.map(pyRepr).join(", ")}}`;
}

function json(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "content-type": "application/json", ...headers } });
}

function ok(): Response {
  return new Response(null, { status: 200 });
}

/** FastAPI's own errors (unknown route, wrong method). */
function detail(status: number, message: string, headers: Record<string, string> = {}): Response {
  return json(status, JSON.stringify({ detail: message }), headers);
}

/** vLLM's HTTPException body (api_server.py:1532-1538). */
function errorInfo(status: 400, message: string): Response {
  return json(status, JSON.stringify({ error: { message, type: "Bad Request", param: null, code: status } }));
}

/** Starlette's answer to an exception no handler covers. */
function internalError(): Response {
  return new Response("Internal Server Error", {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
