/**
 * Types of wsgateway.js, the browser client of wsgateway, as docs/client.md documents it.
 *
 * This file describes the module (`import { WSGateway } from ".../wsgateway.mjs"`);
 * wsgateway.d.ts declares the same classes as the globals the classic script sets.
 * Checked by `make typecheck-js` against tests/js/, which use the API as the docs show.
 */

/** Every value of `gw.state`. */
export interface States {
  readonly CONNECTING: "connecting";
  readonly OPEN: "open";
  readonly CLOSED: "closed";
  readonly UNAUTHORIZED: "unauthorized";
  /** The endpoint is retired (4410): the client does not reconnect. */
  readonly GONE: "gone";
}

export type State = States[keyof States];

/** What the client does after a close (`WSGateway.RULES`; wsgateway.codes.Reconnect on the server). */
export interface Rules {
  /** No reconnect by itself (4401, 4410); `connect()` tries again. */
  readonly STOP: "stop";
  /** On the backoff: within `minDelay` after a hello. */
  readonly NOW: "now";
  /** After a pause that a quick hello does not reset (4429, 4408, 4409). */
  readonly PAUSE: "pause";
  /** After the error frame's `retry_after` (4503); a pause without one. */
  readonly RETRY_AFTER: "retry_after";
}

export type Rule = Rules[keyof Rules];

/** The options of `new WSGateway(options)`; `WSGateway.defaults` holds one of each. */
export interface WSGatewayOptions {
  /** The endpoint; may be relative to the page. Default: from `{% wsgateway_script %}`, else "/ws/". */
  url: string;
  /** Connect right away (after the current task). Default true. */
  autoConnect: boolean;
  /** ms, the cap of the first reconnect delay. Default 500. */
  minDelay: number;
  /** ms, the largest reconnect delay. Default 30000. */
  maxDelay: number;
  /** ms, the default timeout of `request()`; 0 waits for ever. Default 10000. */
  requestTimeout: number;
  /** ms between keep-alive pings on the `gateway` channel; 0 turns them off. Default 25000. */
  pingInterval: number;
  /** ms to wait for the pong before the socket is given up and replaced. Default 10000. */
  pingTimeout: number;
  /** Offered in Sec-WebSocket-Protocol. Default `["wsgateway.v1"]`; `[]` offers none. */
  protocols: string[];
  /** The constructor to use. Default `window.WebSocket`. */
  WebSocket: new (url: string, protocols?: string | string[]) => WebSocket;
}

/** The user of the server's hello. */
export interface User {
  id: number;
  username: string;
}

/** `{code, message}` of an error frame; `maintenance` adds `retry_after` (seconds). */
export interface ErrorInfo {
  code: string;
  message: string;
  retry_after?: number;
}

/** What `gw.on("maintenance")` is given: the server refused the socket for maintenance. */
export interface MaintenanceInfo {
  /** The server's message, in the socket's language. */
  reason: string;
  /** Seconds the server asked the client to wait. */
  retryAfter: number;
  /** ms before the client reconnects by itself: `retryAfter` and a little random spread. */
  reconnectIn: number;
}

/** A frame the server sends: `{channel, payload}`, with the request's `id` on a reply. */
export interface Frame<Payload = any> {
  channel: string;
  payload: Payload;
  id?: number;
}

export interface ErrorFrame {
  channel: string;
  error: ErrorInfo;
  id?: number;
}

export interface ConnectingInfo {
  attempt: number;
}

export interface OpenInfo {
  user: User;
  services: string[];
}

export interface ClosedInfo {
  code: number;
  /** The close frame's reason, or (under daphne, which drops it) the message of the error frame before it. */
  reason: string;
  wasClean?: boolean;
  /** The close code's rule: "now", "pause" or "retry_after" (a close the page asked for has its code's too). */
  rule: Rule;
  /** The error frame on channel "gateway" that came just before the close, if one did. */
  error?: ErrorInfo;
  /** ms before the next attempt, or null after `close()`. */
  reconnectIn: number | null;
  attempt?: number;
  /** Set when the server refused the socket for maintenance (close code 4503). */
  maintenance?: MaintenanceInfo;
}

export interface GoneInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  rule: "stop";
  /** `gone` (or the code the retired path was given), and its message. */
  error: ErrorInfo;
}

export interface UnauthorizedInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  rule: "stop";
  /** `unauthorized`, `token_invalid`, `token_expired`, `logged_out`, ... */
  error: ErrorInfo;
}

/** The arguments of a `gw.on("state", handler)` handler: `info` goes with the state. */
export type StateChange =
  | [state: "connecting", info: ConnectingInfo]
  | [state: "open", info: OpenInfo]
  | [state: "closed", info: ClosedInfo]
  | [state: "unauthorized", info: UnauthorizedInfo]
  | [state: "gone", info: GoneInfo];

/** Calling it removes the handler. */
export type Unsubscribe = () => void;

export interface RequestOptions {
  /** ms; the default is the gateway's `requestTimeout`, 0 waits for ever. */
  timeout?: number;
}

/** A request the server refused or that got no reply. */
export declare class WSGatewayError extends Error {
  constructor(code: string, message: string, frame?: ErrorFrame | null);
  name: "WSGatewayError";
  /** The server's error code, or "timeout", "closed", "not_connected", "bad_reply". */
  code: string;
  /** The whole error frame, for an error the server sent. */
  frame: ErrorFrame | null;
}

/** One service's side of the socket, from `gw.channel(name)`. */
export declare class Channel {
  readonly gateway: WSGateway;
  readonly name: string;
  /** handler(payload, frame) for each frame the server sends on this channel by itself. */
  on<Payload = any>(handler: (payload: Payload, frame: Frame<Payload>) => void): Unsubscribe;
  /** Promise of the reply's payload; rejected with a WSGatewayError. */
  request<Reply = any>(payload: unknown, options?: RequestOptions): Promise<Reply>;
  /** `request({action, data})`: the payload every ActionService reads. */
  action<Reply = any>(action: string, data?: unknown, options?: RequestOptions): Promise<Reply>;
  /**
   * Answer the server's requests on this channel whose payload is `{action, data}`: the handler's
   * value is the answer, an error it throws (its `code`, else "client_error", and `message`) the
   * error answer. `signal` aborts when the server cancels the request or the socket closes.
   */
  handle<Data = any>(action: string, handler: RequestHandler<Data>): Unsubscribe;
}

/** A server request: `{"channel", "payload": {"action", "data"}, "request": "<id>"}`. */
export interface RequestFrame<Data = any> {
  channel: string;
  payload: { action: string; data: Data };
  request: string;
}

/** What `channel.handle(action, handler)` calls for each of the server's requests. */
export type RequestHandler<Data = any> = (
  data: Data,
  context: { signal: AbortSignal; frame: RequestFrame<Data> },
) => unknown;

/** The category tag of a notification: Django's message tags, or a site's own (MESSAGE_TAGS). */
export type Category = "info" | "success" | "warning" | "error" | "debug" | (string & {});

export interface NotificationAction {
  label: string;
  url: string;
}

/** What the latest change of a notification was (`change`): docs/protocol.md, "States and changes". */
export type ChangeKind =
  | "created"
  | "read"
  | "unread"
  | "seen"
  | "archived"
  | "unarchived"
  | "deleted"
  | "snoozed"
  | "unsnoozed"
  /** Another notification of its group arrived while it was unread: its content is the group's newest. */
  | "grouped";

/** A notification's states, in a whole notification and in a change alike. */
export interface NotificationStates {
  id: number;
  seq: number;
  is_read: boolean;
  /** The number of its latest change in the user's sequence (its `seq` until it changes). */
  version?: number;
  change?: ChangeKind;
  seen?: boolean;
  archived?: boolean;
  deleted?: boolean;
  /** ISO 8601: hidden until then. */
  snoozed_until?: string | null;
  /** ISO 8601: hidden after it. */
  expires_at?: string | null;
}

export interface Notification extends NotificationStates {
  category: Category;
  label: string;
  /** Its kind, a name of the site's `NOTIFICATION_KINDS`; "" for none. */
  kind?: string;
  /** Its group (`notify(..., group=)`); "" for none. */
  group?: string;
  /** How many notifications of its group it stands for (1 for one alone). */
  count?: number;
  /** The group's latest senders' names, newest first (a few). */
  actors?: string[];
  data: unknown;
  actions: NotificationAction[];
  metainfo: {
    createdDatetime: string;
    changedDatetime: string;
    /** The sender (`notify(..., sender=)`), by username; null when sent by no one. */
    createdUser: string | null;
    changedUser: string | null;
  };
  /** Set on a notification too large for any frame: `data` and `actions` empty, `label` cut. */
  trimmed?: boolean;
}

/**
 * A notification as the copy knows it after a change: its content when the page had it (or the
 * change carried it), else its states alone (a change of one the page never listed).
 */
export type ChangedNotification = NotificationStates & Partial<Notification>;

/** The counts of every frame of a server that numbers changes; `badge` is unread or unseen, as the site says. */
export interface Counts {
  unread: number;
  unseen: number;
  archived: number;
  badge: number;
}

export interface UnreadState {
  unread: number;
  category: Category | null;
  /** From a server that numbers changes. */
  counts?: Counts;
}

export interface NotificationPage extends UnreadState {
  notifications: Notification[];
  has_more: boolean;
}

/** What a bulk action (markAllRead, markAllSeen, archiveAllRead) resolves with. */
export interface BulkResult extends UnreadState {
  /** How many changed, over every call the action made. */
  changed?: number;
  has_more?: boolean;
}

/** Which notifications `list` gives: the inbox (not archived), its unread ones, or the archived ones. */
export type View = "all" | "unread" | "archived";

export interface ListOptions {
  /** A notification id: the page starts after it. */
  before?: number;
  /** Up to 100. */
  limit?: number;
  view?: View;
  /** The same as `view: "unread"` (kept for older servers). */
  unreadOnly?: boolean;
}

export interface ChangeInfo {
  /** What changed; null from a change item that names none. */
  change: ChangeKind | null;
  /** True when a catch-up (sync) brought it rather than its own push. */
  catchUp: boolean;
  /** The copy before the change, or null when the page did not hold it. */
  previous: ChangedNotification | null;
}

/**
 * One of Django's messages, pushed on the "messages" channel by wsgateway.messages.LiveMessagesMiddleware:
 * `gw.on<SiteMessages>("messages", ...)`. `text` is plain text: show it as text (textContent), never as HTML.
 */
export interface SiteMessage {
  /** Django's level by name; a custom level goes by the standard one under it. */
  level: "debug" | "info" | "success" | "warning" | "error";
  /** The message's tags: its level's tag (MESSAGE_TAGS) and its extra_tags. */
  tags: string;
  text: string;
}

/** The payload of a push on the "messages" channel: the messages of one request, in the order added. */
export interface SiteMessages {
  messages: SiteMessage[];
}

/** `gw.notifications`: the "notifications" channel. */
export declare class Notifications {
  readonly gateway: WSGateway;
  readonly channel: Channel;
  unread: number;
  category: Category | null;
  /** The server's counts, or null from a server that sends none. */
  counts: Counts | null;
  /** The last notification the server pushed. */
  last: Notification | null;
  /** The cursor: the latest number (a notification's `seq`, a change's `version`) applied; null before the first connect. */
  seq: number | null;
  onChange(handler: (state: UnreadState) => void): Unsubscribe;
  onNotification(handler: (notification: Notification, info: { catchUp: boolean }) => void): Unsubscribe;
  onUpdate(handler: (notification: Notification) => void): Unsubscribe;
  onCatchUp(handler: (notifications: Notification[]) => void): Unsubscribe;
  onNotificationChange(handler: (notification: ChangedNotification, info: ChangeInfo) => void): Unsubscribe;
  /** The server could not replay the changes since the cursor: list() again. */
  onReset(handler: (state: UnreadState) => void): Unsubscribe;
  /** The notification as last known (a bounded copy), or null. */
  get(id: number): ChangedNotification | null;
  list(options?: ListOptions): Promise<NotificationPage>;
  markRead(ids: number | number[]): Promise<UnreadState>;
  markUnread(ids: number | number[]): Promise<UnreadState>;
  markSeen(ids: number | number[]): Promise<UnreadState>;
  archive(ids: number | number[]): Promise<UnreadState>;
  unarchive(ids: number | number[]): Promise<UnreadState>;
  delete(ids: number | number[]): Promise<UnreadState>;
  /** Hidden until `until` (a Date, or ISO 8601 with its offset; at most 366 days ahead), then back as new. */
  snooze(ids: number | number[], until: Date | string): Promise<UnreadState>;
  unsnooze(ids: number | number[]): Promise<UnreadState>;
  markAllRead(): Promise<BulkResult>;
  markAllSeen(): Promise<BulkResult>;
  archiveAllRead(): Promise<BulkResult>;
}

/** Raw data stored with `add()`. */
export interface DataEntry {
  id: number;
  data: unknown;
  created: string;
}

/** A reference to a model instance, added with `load()`. */
export interface ReferenceEntry {
  id: number;
  model: string;
  pk: string | number;
  label: string;
  created: string;
}

export type ClipboardEntry = DataEntry | ReferenceEntry;

/** An id `load()` did not add. */
export interface Refused {
  id: string | number;
  code: string;
  message: string;
}

/** `gw.clipboard`: the "clipboard" channel. */
export declare class Clipboard {
  readonly gateway: WSGateway;
  readonly channel: Channel;
  /** Oldest first (id order). */
  entries: ClipboardEntry[];
  onChange(handler: (entries: ClipboardEntry[]) => void): Unsubscribe;
  add(data: unknown): Promise<{ added: ClipboardEntry[] }>;
  load(model: string, ids: string | number | Array<string | number>): Promise<{ added: ClipboardEntry[]; refused: Refused[] }>;
  remove(id: number): Promise<{ removed: number[] }>;
  flush(): Promise<{ removed: number[] }>;
}

/** `gw.presence`: the "presence" channel, for green dots (served when the site opts in). */
export declare class Presence {
  readonly gateway: WSGateway;
  readonly channel: Channel;
  /** The latest state of each watched user the server answered for, by id. */
  online: Map<string, boolean>;
  onChange(handler: (id: string, online: boolean) => void): Unsubscribe;
  isOnline(id: string | number): boolean;
  /** Watched again on every new socket, until unwatched. */
  watch(ids: string | number | Array<string | number>): Promise<{ users: Record<string, boolean>; refused: string[] }>;
  /** Without ids: everyone. */
  unwatch(ids?: string | number | Array<string | number>): Promise<{ unwatched: string[] }>;
}

/** The page's one socket to the gateway. */
export declare class WSGateway {
  constructor(options?: Partial<WSGatewayOptions>);

  /** Defaults of every new instance; `url` is the one `{% wsgateway_script %}` gave, if any. */
  static defaults: WSGatewayOptions;
  static readonly STATES: States;
  /** The same class as `WSGatewayError`. */
  static readonly Error: typeof WSGatewayError;
  /** 4401: "log in first"; the client does not reconnect after it. */
  static readonly CLOSE_UNAUTHORIZED: 4401;
  /** 4409: too many sockets for the user; the client reconnects, later. */
  static readonly CLOSE_TOO_MANY_CONNECTIONS: 4409;
  /** 4410: the endpoint is retired; the client does not reconnect (state "gone"). */
  static readonly CLOSE_GONE: 4410;
  /** 4503: maintenance, or the server's channel layer down; the client reconnects after the server's `retry_after`. */
  static readonly CLOSE_SERVICE_UNAVAILABLE: 4503;
  /** "wsgateway.v1", offered by default (`options.protocols`). */
  static readonly SUBPROTOCOL: "wsgateway.v1";
  /** 4001: the server closed the socket on purpose (after a "closing" error); the client reconnects. */
  static readonly CLOSE_RECONNECT: 4001;
  /** `url` when the browser reads it as http(s), else null: what to put in an `href`. */
  static safeUrl(url: unknown): string | null;
  /** The rules a close code may have. */
  static readonly RULES: Rules;
  /** The rule after each close code the client knows (frozen; the same table as wsgateway.codes.RECONNECT). */
  static readonly RECONNECT: Readonly<Record<number, Rule>>;
  /** `[first, last, rule]`: the rule for a code RECONNECT does not name. */
  static readonly RECONNECT_RANGES: ReadonlyArray<readonly [first: number, last: number, rule: Rule]>;
  /** The rule after a close with `code`: its entry in RECONNECT, else its range's. */
  static reconnectRule(code: number): Rule;
  /**
   * Every new WSGateway gets `gw[property] = build(gw)`, as `notifications` and `clipboard` do.
   * Register before `new WSGateway`; a property the socket has already throws a TypeError. To type
   * it, merge it into the class: `declare module "…/wsgateway.mjs" { interface WSGateway { chat: Chat } }`.
   */
  static addService(property: string, build: (gateway: WSGateway) => unknown): void;

  readonly options: WSGatewayOptions;
  /** The absolute ws:// or wss:// endpoint. */
  readonly url: string;
  readonly state: State;
  /** True while the socket can send. */
  readonly connected: boolean;
  /** From the server's hello, once open. */
  readonly user: User | null;
  /** The channels the endpoint serves. */
  readonly services: string[];
  /**
   * The backoff's step: closes since the last healthy connection. A hello resets it, except after a
   * PAUSE close: then only a connection that stays open as long as the pause was.
   */
  readonly attempt: number;
  readonly notifications: Notifications;
  readonly clipboard: Clipboard;
  readonly presence: Presence;

  /** The channel `name`: the same object on every call. */
  channel(name: string): Channel;
  /** Every change of `gw.state`. */
  on(event: "state", handler: (...change: StateChange) => void): Unsubscribe;
  /** Error frames no request is waiting for, and a catch-up that failed. */
  on(event: "error", handler: (error: WSGatewayError, frame: ErrorFrame | null) => void): Unsubscribe;
  /** The server refused the socket for maintenance; the client reconnects by itself after `reconnectIn` ms. */
  on(event: "maintenance", handler: (info: MaintenanceInfo) => void): Unsubscribe;
  /** `gw.channel(channel).on(handler)`. */
  on<Payload = any>(channel: string, handler: (payload: Payload, frame: Frame<Payload>) => void): Unsubscribe;
  off(name: string, handler: (...args: any[]) => void): void;
  /** Send without waiting for a reply; false (and nothing sent) when the socket is not open. */
  send(channel: string, payload: unknown): boolean;
  /** `gw.channel(channel).request(payload, options)`. */
  request<Reply = any>(channel: string, payload: unknown, options?: RequestOptions): Promise<Reply>;
  /** Open the socket (again); also the way to retry after "unauthorized". */
  connect(): this;
  /** Close the socket and stay closed until `connect()`. */
  close(code?: number, reason?: string): this;
  /** ms before reconnect attempt `attempt` (0 for the first). */
  backoff(attempt: number): number;
}

export default WSGateway;
