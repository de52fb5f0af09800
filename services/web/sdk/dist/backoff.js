export const DEFAULT_BACKOFF = {
    initialDelayMs: 250,
    maxDelayMs: 10_000,
    factor: 2,
    jitter: 0.5,
};
/**
 * The delay before reconnect attempt `attempt` (1 for the first retry):
 * `min(max, initial · factor^(attempt−1))`, then proportional jitter that
 * only ever shortens it, so the result is always within
 * `[capped·(1−jitter), capped]` and never above `maxDelayMs`. Pure apart
 * from `random`.
 */
export function backoffDelay(attempt, opts = {}) {
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
function nonNegative(v, fallback) {
    return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : fallback;
}
