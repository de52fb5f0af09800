import { TelepathError } from "./errors.js";
import { redact } from "./util.js";
/**
 * JSON in, JSON out (undefined for an empty body, e.g. 204). Every non-2xx
 * answer rejects with TelepathError(code, message, status, retryAfter) from
 * the `{"error":{code,message}}` body (a code from the status when the body
 * has none); a failed fetch rejects with code `network`, a 2xx that is not
 * JSON with `bad_response`. No message quotes the bearer or a secret.
 */
export async function requestJson(req) {
    const headers = { accept: "application/json" };
    if (req.body !== undefined)
        headers["content-type"] = "application/json";
    if (req.bearer)
        headers["authorization"] = `Bearer ${req.bearer}`;
    const secrets = [req.bearer, ...(req.secrets ?? [])];
    let res;
    let text;
    try {
        const init = { method: req.method, headers };
        if (req.body !== undefined)
            init.body = JSON.stringify(req.body);
        // Called unbound: a browser's fetch refuses any `this` but the window.
        const f = req.fetch;
        res = await f(req.url, init);
        text = await res.text();
    }
    catch (err) {
        throw new TelepathError("network", redact(`${req.label}: ${err?.message ?? String(err)}`, secrets));
    }
    let json = undefined;
    if (text) {
        try {
            json = JSON.parse(text);
        }
        catch {
            if (res.ok)
                throw new TelepathError("bad_response", `${req.label}: not JSON`, res.status);
        }
    }
    if (!res.ok) {
        const e = json?.error;
        const code = typeof e?.code === "string" && e.code ? e.code : statusCode(res.status);
        const message = typeof e?.message === "string" && e.message ? redact(e.message, secrets) : `${req.label}: HTTP ${res.status}`;
        throw new TelepathError(code, message, res.status, retryAfter(res));
    }
    return json;
}
/** `?a=1&b=2` of the defined values ("" when none). */
export function query(q) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q))
        if (v !== undefined)
            params.set(k, String(v));
    const s = params.toString();
    return s ? `?${s}` : "";
}
/** A path segment. */
export function enc(id) {
    return encodeURIComponent(id);
}
/** `Retry-After` in seconds (the delta form), or undefined. */
function retryAfter(res) {
    const v = res.headers?.get?.("retry-after");
    if (!v)
        return undefined;
    const n = Number(v.trim());
    return Number.isFinite(n) && n >= 0 ? n : undefined;
}
function statusCode(status) {
    switch (status) {
        case 400:
        case 405:
        case 415:
            return "bad_request";
        case 401:
            return "unauthorized";
        case 403:
            return "forbidden";
        case 404:
            return "not_found";
        case 409:
            return "conflict";
        case 413:
            return "too_large";
        case 429:
            return "rate_limited";
        case 503:
        case 507:
            return "unavailable";
        default:
            return "internal";
    }
}
