/**
 * The scaler: the pool scheduler, pure (`decide`, `place`, the views), and the driver that
 * executes its effects (`createScaler`), behind the proxy's `Gate`.
 *
 * @example
 * ```ts ignore
 * import { createScaler } from "./mod.ts";
 * const scaler = createScaler({ backend, registry, config, log, metrics, scaleOnly: true });
 * scaler.start();
 * const lease = scaler.tryAcquire("*") ?? await scaler.acquire("*", { signal: req.signal });
 * ```
 *
 * @module
 */
export { type Clock, FakeClock, realClock, type TimerHandle } from "./clock.ts";
export { decide, type Decision } from "./decide.ts";
export { activeModelOf, countByModel, gpuUsageOf, lifecycleOf, modelStatusOf } from "./views.ts";
export {
  createScaler,
  type ModelTransitionInfo,
  SCALE_ONLY_KEY,
  type Scaler,
  type ScalerOptions,
  type TransitionInfo,
} from "./driver.ts";
export { type Occupant, place, type Placement, type PlacementInput } from "./placement.ts";
export {
  DEFAULT_STOP_TIMEOUT,
  type EngineState,
  type HeldRequest,
  initialState,
  type ModelError,
  type ModelPolicy,
  modelPolicy,
  type ObservedEngine,
  type Policy,
  policyFromConfig,
  type SchedulerEffect,
  type SchedulerEvent,
  type SchedulerState,
} from "./state.ts";
export {
  type Gate,
  type GpuView,
  type Lease,
  type LifecycleState,
  type ModelStatus,
  type ModelView,
  type RecentOperation,
  Rejection,
  type ScalerStatus,
} from "./types.ts";
