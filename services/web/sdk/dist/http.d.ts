export type Method = "GET" | "POST" | "PATCH" | "DELETE";
/** One JSON request of `TelepathRest` or `TelepathServer`. */
export interface JsonRequest {
    fetch: typeof fetch;
    method: Method;
    /** The full URL. */
    url: string;
    /** What error messages name (`POST /rooms/{id}/join`): never a secret. */
    label: string;
    body?: unknown;
    /** The `Authorization` header's credential (sent as `Bearer <it>`). */
    bearer?: string;
    /** Secrets that must never show in an error message (the bearer is one already). */
    secrets?: ReadonlyArray<string | undefined>;
}
/**
 * JSON in, JSON out (undefined for an empty body, e.g. 204). Every non-2xx
 * answer rejects with TelepathError(code, message, status, retryAfter) from
 * the `{"error":{code,message}}` body (a code from the status when the body
 * has none); a failed fetch rejects with code `network`, a 2xx that is not
 * JSON with `bad_response`. No message quotes the bearer or a secret.
 */
export declare function requestJson<T>(req: JsonRequest): Promise<T>;
/** `?a=1&b=2` of the defined values ("" when none). */
export declare function query(q: Record<string, string | number | undefined>): string;
/** A path segment. */
export declare function enc(id: string): string;
