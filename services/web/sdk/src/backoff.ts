/** Reconnect backoff settings (all optional). */
export interface BackoffOptions {
  /** Delay of the first attempt, ms (default 250). */
  initialDelayMs?: number;
  /** Cap, ms (default 10000). */
  maxDelayMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Proportional jitter in [0, 1] (default 0.5): the delay is drawn from [d·(1−jitter), d]. 1 is full jitter. */
  jitter?: number;
  /** Random source in [0, 1), for tests (default Math.random). */
  random?: () => number;
}

export const DEFAULT_BACKOFF = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
} as const;

/**
 * The delay before reconnect attempt `attempt` (1 for the first retry):
 * `min(max, initial · factor^(attempt−1))`, then proportional jitter that
 * only ever shortens it, so the result is always within
 * `[capped·(1−jitter), capped]` and never above `maxDelayMs`. Pure apart
 * from `random`.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = nonNegative(opts.initialDelayMs, DEFAULT_BACKOFF.initialDelayMs);
  const max = Math.max(initial, nonNegative(opts.maxDelayMs, DEFAULT_BACKOFF.maxDelayMs));
  const factor = Math.max(1, nonNegative(opts.factor, DEFAULT_BACKOFF.factor));
  const jitter = Math.min(1, nonNegative(opts.jitter, DEFAULT_BACKOFF.jitter));
  const random = opts.random ?? Math.random;
  const n = Math.max(1, Math.floor(Number.isFinite(attempt) ? attempt : 1));
  // Exponent capped so huge attempt numbers cannot overflow to Infinity·0.
  const base = Math.min(max, initial * Math.pow(factor, Math.min(n - 1, 64)));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(base * (1 - jitter * r));
}

function nonNegative(v: number | undefined, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : fallback;
}
