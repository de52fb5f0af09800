type Listener<T> = (payload: T) => void;
/** A tiny typed event emitter; a throwing listener does not stop the others. */
export declare class Emitter<Events extends {
    [K in keyof Events]: unknown;
}> {
    private listeners;
    on<E extends keyof Events>(event: E, fn: Listener<Events[E]>): () => void;
    off<E extends keyof Events>(event: E, fn: Listener<Events[E]>): void;
    once<E extends keyof Events>(event: E, fn: Listener<Events[E]>): () => void;
    emit<E extends keyof Events>(event: E, payload: Events[E]): void;
    listenerCount(event: keyof Events): number;
}
export {};
