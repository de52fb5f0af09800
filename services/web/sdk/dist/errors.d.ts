import type { ClientErrorCode, ServerErrorCode } from "./types.js";
/**
 * A failed request. `code` is the server's error code (`not_found`,
 * `too_large`, ...) or one of the SDK's own: `timeout` (no reply within the
 * request timeout), `disconnected` (the socket dropped with the request in
 * flight), `closed` (the client was closed), `cancelled` (superseded, e.g. a
 * join cancelled by `leave`), `network` and `bad_response` (REST only).
 * `status` is the HTTP status for REST errors, and `retryAfter` the seconds
 * of a REST answer's `Retry-After` header (429 and 503 carry one).
 * Messages never quote a token or a ticket.
 */
export declare class TelepathError extends Error {
    readonly code: ServerErrorCode | ClientErrorCode | string;
    readonly status?: number;
    readonly retryAfter?: number;
    constructor(code: ServerErrorCode | ClientErrorCode | string, message?: string, status?: number, retryAfter?: number);
}
