// @telepath/sdk: a client for Telepath (WebSocket gateway + REST), no dependencies.
export { Telepath } from "./client.js";
export type {
  AuthMode,
  ConnectionState,
  GapEvent,
  ReconnectOptions,
  StateChange,
  TelepathEvents,
  TelepathOptions,
  TokenSource,
} from "./client.js";
export { TelepathRest } from "./rest.js";
export type { TelepathRestOptions } from "./rest.js";
export { TelepathServer } from "./server.js";
export type { ApiKeySource, TelepathServerOptions } from "./server.js";
export { verifyWebhook } from "./webhook.js";
export type { VerifyWebhookOptions } from "./webhook.js";
export { TelepathError } from "./errors.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { decodeJwtPayload, tokenExpiry, randomId } from "./util.js";
export type * from "./types.js";
