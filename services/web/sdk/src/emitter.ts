import { redact } from "./util.js";

type Listener<T> = (payload: T) => void;

/** A tiny typed event emitter; a throwing listener does not stop the others. */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private listeners = new Map<keyof Events, Set<Listener<any>>>();

  on<E extends keyof Events>(event: E, fn: Listener<Events[E]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }

  off<E extends keyof Events>(event: E, fn: Listener<Events[E]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    set.delete(fn);
    // `once` wrappers are found through their original.
    for (const l of set) if ((l as { __original?: unknown }).__original === fn) set.delete(l);
  }

  once<E extends keyof Events>(event: E, fn: Listener<Events[E]>): () => void {
    const wrapper: Listener<Events[E]> & { __original?: unknown } = (payload) => {
      this.off(event, wrapper);
      fn(payload);
    };
    wrapper.__original = fn;
    return this.on(event, wrapper);
  }

  emit<E extends keyof Events>(event: E, payload: Events[E]): void {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (err) {
        report(err);
      }
    }
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0;
  }
}

/**
 * A listener's exception: the page's `reportError` (an uncaught error) where
 * there is one; else the SDK's only console call, with anything shaped like
 * a token or a ticket taken out.
 */
function report(err: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === "function") g.reportError(err);
  else {
    const text = err instanceof Error ? err.stack ?? `${err.name}: ${err.message}` : String(err);
    console.error(`telepath: an event listener threw: ${redact(text)}`);
  }
}
