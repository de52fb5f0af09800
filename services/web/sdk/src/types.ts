// Wire types of the Telepath protocol v1 (docs/PROTOCOL.md; the serde types in
// shared/src/protocol.rs are the source of truth for every field name).

/** A user as frames and REST bodies show it. */
export interface UserRef {
  id: string;
  name: string;
}

export type Role = "user" | "admin";

/** A user with a role (`welcome`, `POST /auth/login`). */
export interface User extends UserRef {
  role: Role | string;
}

/** Statuses a user may choose. */
export type ChosenStatus = "online" | "away" | "busy" | "meditating";
/** Every status a presence event may carry (`offline` is set by the server only). */
export type PresenceStatus = ChosenStatus | "offline";

/** The protocol's error codes (replies, `error` frames, REST error bodies). */
export type ServerErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "room_full"
  | "rate_limited"
  | "too_large"
  | "conflict"
  | "unavailable"
  | "internal";

/** Codes the SDK itself uses for failures that are not the server's answer. */
export type ClientErrorCode = "timeout" | "disconnected" | "closed" | "cancelled" | "network" | "bad_response";

export interface Limits {
  max_frame_bytes: number;
  max_rate_per_s: number;
  max_body_bytes: number;
  max_rooms_per_conn: number;
  [k: string]: unknown;
}

// ---------------------------------------------------------------------------
// Server -> client frames
// ---------------------------------------------------------------------------

/** Always the first frame on a connection. */
export interface Welcome {
  type: "welcome";
  conn_id: string;
  user: User;
  node: string;
  heartbeat_ms: number;
  limits: Limits;
}

export interface ErrorBody {
  code: ServerErrorCode | string;
  message: string;
}

export interface ReplyOk<T = unknown> {
  type: "reply";
  ref: string;
  ok: true;
  data: T;
}

export interface ReplyErr {
  type: "reply";
  ref: string;
  ok: false;
  error: ErrorBody;
}

/** The answer to a request that carried a `ref`. */
export type Reply<T = unknown> = ReplyOk<T> | ReplyErr;

/** A room message (`message` frame). The REST form is the same without `type`. */
export interface RoomMessage {
  type?: "message";
  room: string;
  id: string;
  seq: number;
  from: UserRef;
  body: string;
  kind: string;
  /** RFC 3339. */
  ts: string;
  reply_to?: string | null;
}

/** A direct message (`dm` frame; also `GET /dms/pending`). */
export interface DirectMessage {
  type?: "dm";
  id: string;
  from: UserRef;
  /** The recipient's user id. */
  to: string;
  body: string;
  ts: string;
}

/** An admin broadcast (`broadcast` frame). */
export interface Broadcast {
  type?: "broadcast";
  id: string;
  from: UserRef;
  body: string;
  ts: string;
}

/** A user's presence changed (`presence` frame). */
export interface PresenceEvent {
  type?: "presence";
  user: UserRef;
  status: PresenceStatus | string;
  text?: string | null;
  last_seen: string;
}

/** Someone started or stopped typing (`typing` frame). */
export interface TypingEvent {
  type?: "typing";
  room: string;
  user: UserRef;
  active: boolean;
}

/** Someone joined or left a room (`member` frame; defined, not emitted by this server version). */
export interface MemberEvent {
  type?: "member";
  room: string;
  user: UserRef;
  action: "joined" | "left";
}

/** A failing request without `ref` (`error` frame). */
export interface ServerError {
  type?: "error";
  code: ServerErrorCode | string;
  message: string;
}

/** Sent just before the server closes the connection. */
export interface Bye {
  type?: "bye";
  reason: "admin" | "restart" | "token_expired" | "token_revoked" | "slow_consumer" | "replaced" | string;
}

/** A room was closed by its owner or an admin (Telepath's own frame). */
export interface RoomClosed {
  type?: "room_closed";
  room: string;
  by: UserRef;
}

export type WelcomeFrame = Welcome;
export type ReplyFrame = Reply;
export type MessageFrame = RoomMessage & { type: "message" };
export type DmFrame = DirectMessage & { type: "dm" };
export type BroadcastFrame = Broadcast & { type: "broadcast" };
export type PresenceFrame = PresenceEvent & { type: "presence" };
export type TypingFrame = TypingEvent & { type: "typing" };
export type MemberFrame = MemberEvent & { type: "member" };
export type ErrorFrame = ServerError & { type: "error" };
export type ByeFrame = Bye & { type: "bye" };
export type RoomClosedFrame = RoomClosed & { type: "room_closed" };

/** Every frame the server sends, tagged by `type`. */
export type ServerFrame =
  | WelcomeFrame
  | ReplyFrame
  | MessageFrame
  | DmFrame
  | BroadcastFrame
  | PresenceFrame
  | TypingFrame
  | MemberFrame
  | ErrorFrame
  | ByeFrame
  | RoomClosedFrame;

export type ServerFrameType = ServerFrame["type"];

// ---------------------------------------------------------------------------
// Client -> server frames
// ---------------------------------------------------------------------------

export type ClientFrame =
  | { type: "join"; ref?: string; room: string; since?: number }
  | { type: "leave"; ref?: string; room: string }
  | { type: "send"; ref?: string; room: string; body: string; kind?: string; client_id?: string; reply_to?: string }
  | { type: "dm"; ref?: string; to: string; body: string; client_id?: string }
  | { type: "broadcast"; ref?: string; body: string }
  | { type: "typing"; ref?: string; room: string; active: boolean }
  | { type: "status"; ref?: string; status: ChosenStatus; text?: string }
  | { type: "ack"; ref?: string; room: string; seq: number }
  | { type: "ack"; ref?: string; dm: string }
  | { type: "refresh"; ref?: string; token: string }
  | { type: "ping"; ref?: string };

// ---------------------------------------------------------------------------
// Reply data
// ---------------------------------------------------------------------------

/** `join` reply data: `seq` is the room's latest; `recovered` false means the gap was over the replay cap. */
export interface JoinReply {
  room: string;
  seq: number;
  recovered: boolean;
}

export interface SendReply {
  id: string;
  seq: number;
  ts: string;
}

export interface DmReply {
  id: string;
  ts: string;
  /** Whether the recipient had a live connection. */
  delivered: boolean;
}

// ---------------------------------------------------------------------------
// REST bodies
// ---------------------------------------------------------------------------

export interface Room {
  id: string;
  name: string;
  description: string | null;
  max_participants: number;
  private: boolean;
  created_by: string;
  created_at: string;
  is_active: boolean;
}

export interface CreateRoom {
  name: string;
  description?: string;
  max_participants?: number;
  private?: boolean;
}

export interface Participant {
  user: UserRef;
  role: string;
  joined_at: string;
  online: boolean;
}

export interface OnlineUser {
  id: string;
  name: string;
  status: PresenceStatus | string;
  text?: string | null;
  last_seen: string;
  connections: number;
}

export interface MessagePage {
  messages: RoomMessage[];
  has_more: boolean;
}

export interface HistoryQuery {
  before?: number;
  after?: number;
  limit?: number;
}

export interface LoginResponse {
  token: string;
  user: User;
}

export interface DmState {
  id: string;
  from: UserRef;
  to: string;
  ts: string;
  delivered: boolean;
  delivered_at: string | null;
  queued: boolean;
}

export interface ConnectionAnalytics {
  online_users: number;
  connections: number;
  by_node: Record<string, number>;
  connects_total: number;
  disconnects_total: number;
  messages_per_minute?: number;
  active_rooms?: number;
  rooms_total?: number;
  [k: string]: unknown;
}
