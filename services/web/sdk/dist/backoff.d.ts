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
export declare const DEFAULT_BACKOFF: {
    readonly initialDelayMs: 250;
    readonly maxDelayMs: 10000;
    readonly factor: 2;
    readonly jitter: 0.5;
};
/**
 * The delay before reconnect attempt `attempt` (1 for the first retry):
 * `min(max, initial · factor^(attempt−1))`, then proportional jitter that
 * only ever shortens it, so the result is always within
 * `[capped·(1−jitter), capped]` and never above `maxDelayMs`. Pure apart
 * from `random`.
 */
export declare function backoffDelay(attempt: number, opts?: BackoffOptions): number;
