import type { ConnectionAnalytics, CreateRoom, DirectMessage, DmConversation, DmPage, DmQuery, DmState, HistoryQuery, MessagePage, OnlineUser, Participant, Room, SearchPage, SearchQuery, ThreadPage, ThreadQuery, User } from "./types.js";
export interface TelepathRestOptions {
    /** The api's origin, e.g. `http://127.0.0.1:8080` ("" for the page's own origin in a browser). */
    baseUrl: string;
    /** A token, or a callback giving one (called for every request). */
    token?: string | (() => string | Promise<string>);
    /** fetch implementation (default globalThis.fetch). */
    fetch?: typeof fetch;
}
type Method = "GET" | "POST" | "DELETE";
/**
 * The REST api over fetch. Every non-2xx answer rejects with
 * TelepathError(code, message, status) from the `{"error":{code,message}}`
 * body; a failed fetch rejects with code `network`.
 */
export declare class TelepathRest {
    private readonly baseUrl;
    private readonly tokenSource?;
    private readonly fetchImpl?;
    constructor(opts: TelepathRestOptions);
    /** Dev login (`TELEPATH_DEV_LOGIN`): creates the user if new. */
    static login(baseUrl: string, username: string, role?: "user" | "admin"): Promise<{
        token: string;
        user: User;
    }>;
    /** Active public rooms and the caller's rooms; the caller's carry `unread`, `unread_capped` and `read_seq`. */
    listRooms(): Promise<Room[]>;
    createRoom(r: CreateRoom): Promise<Room>;
    /** Becomes a participant (409 `room_full`, 404 for private rooms). */
    joinRoom(id: string): Promise<Participant>;
    leaveRoom(id: string): Promise<void>;
    /** The owner or an admin closes the room. */
    closeRoom(id: string): Promise<void>;
    /** A page of history in seq order: `before` alone gives the newest below it, `after` the oldest above it. */
    history(room: string, q?: HistoryQuery): Promise<MessagePage>;
    /** The message (`parent`, as it is now) and a page of its replies in seq order; `before`/`after`/`limit` like history (404 for a message not in the room). */
    thread(room: string, messageId: string, q?: ThreadQuery): Promise<ThreadPage>;
    /**
     * Full-text search over the caller's rooms and DMs: every word must occur
     * (the last as a prefix); snippets mark matches with « and ». Page with
     * `offset` = the previous page's `next_offset`.
     */
    search(q: string, opts?: SearchQuery): Promise<SearchPage>;
    /** The caller's conversation with one user (id or name), both directions, a page in time order; DM ids as `before`/`after` anchors. */
    dmConversation(withUser: string, q?: DmQuery): Promise<DmPage>;
    /** The caller's conversations, most recent first (at most 200), each with its last DM and unread count. */
    dmConversations(): Promise<DmConversation[]>;
    /** Each participant carries `read_seq`, their read cursor. */
    participants(room: string): Promise<Participant[]>;
    online(): Promise<OnlineUser[]>;
    /** The caller's DMs not acked yet, oldest first. */
    pendingDms(): Promise<DirectMessage[]>;
    /** Where one DM stands (sender or recipient only). */
    dmState(id: string): Promise<DmState>;
    /** Admins only. */
    broadcast(body: string): Promise<{
        id: string;
    }>;
    /** Admins only: closes every connection of the user with 4003. */
    disconnectUser(userId: string): Promise<{
        disconnected: number;
    }>;
    /**
     * Admins only: every token of the user issued before now is refused from
     * now on (REST 401, handshake 401), and their live connections close with
     * `bye` `token_revoked` and 4001 on every gateway.
     */
    revokeUser(userId: string): Promise<{
        user_id: string;
        valid_after: number;
    }>;
    /** Admins only. */
    analytics(): Promise<ConnectionAnalytics>;
    /** Any route: JSON in, JSON out (undefined for 204). */
    call<T>(method: Method, path: string, body?: unknown, auth?: boolean): Promise<T>;
}
export {};
