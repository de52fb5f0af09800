import { redact } from "./util.js";
/** A tiny typed event emitter; a throwing listener does not stop the others. */
export class Emitter {
    listeners = new Map();
    on(event, fn) {
        let set = this.listeners.get(event);
        if (!set) {
            set = new Set();
            this.listeners.set(event, set);
        }
        set.add(fn);
        return () => this.off(event, fn);
    }
    off(event, fn) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        set.delete(fn);
        // `once` wrappers are found through their original.
        for (const l of set)
            if (l.__original === fn)
                set.delete(l);
    }
    once(event, fn) {
        const wrapper = (payload) => {
            this.off(event, wrapper);
            fn(payload);
        };
        wrapper.__original = fn;
        return this.on(event, wrapper);
    }
    emit(event, payload) {
        const set = this.listeners.get(event);
        if (!set || set.size === 0)
            return;
        for (const fn of [...set]) {
            try {
                fn(payload);
            }
            catch (err) {
                report(err);
            }
        }
    }
    listenerCount(event) {
        return this.listeners.get(event)?.size ?? 0;
    }
}
/**
 * A listener's exception: the page's `reportError` (an uncaught error) where
 * there is one; else the SDK's only console call, with anything shaped like
 * a token or a ticket taken out.
 */
function report(err) {
    const g = globalThis;
    if (typeof g.reportError === "function")
        g.reportError(err);
    else {
        const text = err instanceof Error ? err.stack ?? `${err.name}: ${err.message}` : String(err);
        console.error(`telepath: an event listener threw: ${redact(text)}`);
    }
}
