// The module's API the way docs/client.md uses it. `make typecheck-js` compiles this with --strict
// and emits nothing; each `@ts-expect-error` must meet an error, or tsc fails ("unused directive").
import DefaultGateway, {
  WSGateway,
  WSGatewayError,
  type ChangedNotification,
  type ClipboardEntry,
  type Counts,
  type Notification,
  type Rule,
  type SiteMessages,
  type State,
  type WSGatewayOptions,
} from "../../wsgateway/static/wsgateway/wsgateway.mjs";

const same: typeof WSGateway = DefaultGateway;

// -- the socket ---------------------------------------------------------------------------

const gw = new WSGateway({ url: "/ws/", pingInterval: 0, requestTimeout: 2000 });
new same();
WSGateway.defaults.maxDelay = 60000;
const defaults: WSGatewayOptions = WSGateway.defaults;
const backoffs: number[] = [0, 1, 2].map((attempt) => gw.backoff(attempt));
const where: string = gw.url;
const open: boolean = gw.connected;
const username: string | undefined = gw.user?.username;
const services: string[] = gw.services;
gw.connect().close(1000, "bye").connect();
gw.close();

// @ts-expect-error: an option that does not exist
new WSGateway({ reconnect: true });
// @ts-expect-error: options are typed
new WSGateway({ minDelay: "500" });
// @ts-expect-error: the state is read-only to the page
gw.state = "open";

// -- states ---------------------------------------------------------------------------------

const { CONNECTING, OPEN, CLOSED, UNAUTHORIZED, GONE } = WSGateway.STATES;
const states: State[] = [CONNECTING, OPEN, CLOSED, UNAUTHORIZED, GONE];
// @ts-expect-error: STATES is frozen
WSGateway.STATES.OPEN = "opened";
// @ts-expect-error: not a state
const notAState: State = "reconnecting";

const offState = gw.on("state", (state, info) => {
  if (state === WSGateway.STATES.OPEN) {
    const user: string = info.user.username; // the hello's user goes with "open"
    console.log(user, info.services);
  } else if (state === "closed") {
    const delay: number | null = info.reconnectIn;
    const paused: boolean = info.rule === WSGateway.RULES.PAUSE; // 4429, 4408: a pause, not the backoff
    console.log(info.code, info.reason, delay, info.maintenance?.reason, info.error?.message, paused);
  } else if (state === "unauthorized") {
    console.log(info.error.code, info.error.message);
  } else if (state === "gone") {
    const message: string = info.error.message; // the retired path's reason: do not reconnect
    console.log(info.code, message);
  } else {
    const attempt: number = info.attempt;
    // @ts-expect-error: only "open" carries the user
    console.log(attempt, info.user);
  }
});
offState();

gw.on("maintenance", ({ reason, retryAfter, reconnectIn }) => {
  const seconds: number = retryAfter;
  console.log(reason, seconds, Math.round(reconnectIn / 1000));
});

gw.on("error", (error, frame) => {
  const code: string = error.code;
  console.warn(code, error.message, frame?.error.code);
});

// -- requests and channels -----------------------------------------------------------------

async function requests(): Promise<void> {
  try {
    await gw.request("gateway", { action: "ping" }, { timeout: 2000 });
  } catch (error) {
    if (error instanceof WSGatewayError && error.code === "timeout") console.log("no pong");
    if (error instanceof WSGateway.Error) console.log(error.frame?.error.message);
  }
  const sent: boolean = gw.send("echo", { action: "echo", data: 1 });

  const echo = gw.channel("echo");
  const stop = echo.on((payload, frame) => {
    if ("shout" in payload) console.log("shouted elsewhere:", payload.shout, frame.channel);
  });
  const reply = await echo.action("echo", { n: [1, 2] });
  console.log(reply.echo, sent);
  await echo.action("shout", "hi", { timeout: 2000 });
  const typed = await echo.request<{ echo: number[] }>({ action: "echo", data: [1] });
  const numbers: number[] = typed.echo;
  console.log(numbers);
  stop();
  gw.on("notifications", (payload) => console.log("unread:", payload.unread));
  gw.on<SiteMessages>("messages", ({ messages }) => {
    for (const { level, text } of messages) console.log(level.toUpperCase(), text);
  });

  const editor = gw.channel("editor");
  const unhandle = editor.handle<{ draft: boolean }>("which", async (data, { signal, frame }) => {
    if (signal.aborted) throw Object.assign(new Error("too late"), { code: "cancelled" });
    return { path: location.pathname, draft: data.draft, request: frame.request };
  });
  unhandle();
  // @ts-expect-error: a handler is a function
  editor.handle("which", "answer");

  // @ts-expect-error: a channel's name is a string
  gw.channel(7);
  // @ts-expect-error: the timeout is in ms
  await echo.action("echo", null, { timeout: "2s" });
}

// -- helpers ----------------------------------------------------------------------------------

const href: string | null = WSGateway.safeUrl("https://example.com/");
const close4401: 4401 = WSGateway.CLOSE_UNAUTHORIZED;
const close4409: 4409 = WSGateway.CLOSE_TOO_MANY_CONNECTIONS;
const close4410: 4410 = WSGateway.CLOSE_GONE;
const close4503: 4503 = WSGateway.CLOSE_SERVICE_UNAVAILABLE;
const offered: string[] = new WSGateway({ protocols: [WSGateway.SUBPROTOCOL] }).options.protocols;

gw.notifications.onChange(({ unread, category }) => {
  console.log(unread === 0, String(unread), category ?? "");
});
gw.notifications.onNotification((n: Notification, { catchUp }) => {
  if (!catchUp && !n.is_read) console.log(n.label, n.category, n.actions.map((a) => WSGateway.safeUrl(a.url)));
});
gw.notifications.onUpdate((n) => console.log(n.seq, n.metainfo.changedDatetime));
gw.notifications.onCatchUp((missed) => console.log(`${missed.length} arrived while you were offline`));
gw.notifications.onNotificationChange((n, { change, catchUp, previous }) => {
  if (change === "read" || change === "deleted") console.log(n.id, n.label ?? "", catchUp, previous?.is_read);
  // @ts-expect-error: not a change of the protocol
  if (change === "done") console.log(n.version);
  // A grouped change carries the whole notification: "Alice and 4 others".
  if (change === "grouped") console.log(n.actors?.[0], (n.count ?? 1) - 1, n.group, n.kind);
});
gw.notifications.onReset(({ unread, counts }) => console.log(unread, counts?.badge));
const cursor: number | null = gw.notifications.seq;

async function helpers(): Promise<void> {
  const page = await gw.notifications.list({ before: 10, limit: 20, unreadOnly: true });
  const more: boolean = page.has_more;
  const first: Notification | undefined = page.notifications[0];
  const { unread } = await gw.notifications.markRead([1, 2]);
  await gw.notifications.markRead(3);
  await gw.notifications.markAllRead();
  // @ts-expect-error: ids, not notifications
  await gw.notifications.markRead(first);

  // The states (docs/protocol.md, "States and changes").
  const archived = await gw.notifications.list({ view: "archived" });
  // @ts-expect-error: a view is all, unread or archived
  await gw.notifications.list({ view: "snoozed" });
  await gw.notifications.markUnread(archived.notifications.map((n) => n.id));
  await gw.notifications.markSeen([1]);
  await gw.notifications.archive(1);
  await gw.notifications.unarchive([1]);
  await gw.notifications.delete([1]);
  await gw.notifications.snooze([1], new Date(Date.now() + 3600_000));
  await gw.notifications.snooze(1, "2030-01-01T09:00:00+01:00");
  await gw.notifications.unsnooze([1]);
  const { changed } = await gw.notifications.archiveAllRead();
  await gw.notifications.markAllSeen();
  const badge: number | undefined = (await gw.notifications.markAllRead()).counts?.badge;
  const counts: Counts | null = gw.notifications.counts;
  const known: ChangedNotification | null = gw.notifications.get(1);
  console.log(changed ?? 0, badge, counts?.unseen, known?.label ?? "", known?.archived);

  gw.clipboard.onChange((entries: ClipboardEntry[]) => console.log(entries.length));
  const { added } = await gw.clipboard.add({ any: ["json"] });
  const { refused } = await gw.clipboard.load("demo.document", [1, 2]);
  console.log(refused.map((r) => `${r.id}: ${r.code}`), more, unread, added);
  await gw.clipboard.remove(added[0]!.id);
  await gw.clipboard.flush();
  for (const entry of gw.clipboard.entries) console.log("model" in entry ? entry.label : entry.data);
  // @ts-expect-error: load takes a model label first
  await gw.clipboard.load([1, 2]);

  gw.presence.onChange((id: string, online: boolean) => console.log(id, online));
  const watched = await gw.presence.watch([42, "7"]);
  const dot: boolean | undefined = watched.users["42"];
  console.log(dot, watched.refused.join(), gw.presence.isOnline(42), gw.presence.online.get("7"));
  const { unwatched } = await gw.presence.unwatch("42");
  await gw.presence.unwatch();
  console.log(unwatched.length);
  // @ts-expect-error: ids, not an object
  await gw.presence.watch({ users: [1] });
}

export { backoffs, close4401, close4409, close4410, close4503, cursor, defaults, helpers, href, notAState, offered, open, requests, services, states, username, where };

// -- close codes ------------------------------------------------------------------------------

const afterTooManyFrames: Rule = WSGateway.reconnectRule(4429);
const known: Rule | undefined = WSGateway.RECONNECT[4401];
const [first, last, byRange] = WSGateway.RECONNECT_RANGES[0]!;
console.log(afterTooManyFrames, known, first + last, byRange);
// @ts-expect-error: the table is frozen
WSGateway.RECONNECT[4429] = "now";
// @ts-expect-error: not a rule
const notARule: Rule = "later";

// -- a site's own service ---------------------------------------------------------------------

class Chat {
  constructor(readonly gateway: WSGateway) {}
  say(text: string): Promise<unknown> {
    return this.gateway.channel("chat").action("say", text);
  }
}
declare module "../../wsgateway/static/wsgateway/wsgateway.mjs" {
  interface WSGateway {
    chat: Chat;
  }
}
WSGateway.addService("chat", (gateway) => new Chat(gateway));
const said: Promise<unknown> = gw.chat.say("hello");
// @ts-expect-error: build takes the gateway and returns the service
WSGateway.addService("chat", "Chat");
