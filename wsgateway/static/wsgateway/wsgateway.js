/*!
 * wsgateway.js: the browser client of wsgateway.
 *
 * Plain JavaScript for current browsers: no build step, no dependencies.
 * Load it with {% load wsgateway %}{% wsgateway_script %}, which also tells it the endpoint.
 * The API is documented in docs/client.md.
 *
 * The one source of the client, run two ways: as a classic script (the tag), and as a module
 * when wsgateway.mjs imports it for `import { WSGateway } from ".../wsgateway.mjs"`. So it holds
 * nothing a module refuses (no top-level `this`, nothing sloppy-mode only) and exports nothing:
 * it sets the globals either way, and wsgateway.mjs re-exports them.
 */
(function (global) {
  "use strict";

  /**
   * Set once the globals are: a page that loads the script and imports the module runs this file
   * twice (classic scripts and modules are cached apart), and the second run keeps the first's
   * class, so that there is one `WSGateway` on the page and `instanceof` holds across both.
   */
  const LOADED = Symbol.for("wsgateway.client");
  if (global[LOADED]) return;

  // -- constants -----------------------------------------------------------------------

  /** Close code the server uses for "log in first": never reconnect after it. */
  const CLOSE_UNAUTHORIZED = 4401;
  /** Close code the server uses when the user has too many sockets open: reconnect after a pause. */
  const CLOSE_TOO_MANY_CONNECTIONS = 4409;
  /** Close code of a retired path (the server's RefusingConsumer): "gone", never reconnect after it. */
  const CLOSE_GONE = 4410;
  /** Close code of a site in maintenance or with its layer down: reconnect after the error frame's `retry_after`. */
  const CLOSE_SERVICE_UNAVAILABLE = 4503;
  /** Close code of a socket the server closed on purpose (close_sockets(): a deploy): reconnect. */
  const CLOSE_RECONNECT = 4001;
  /** Close code this client uses when it gives up on a socket that stopped answering pings. */
  const CLOSE_PING_TIMEOUT = 4000;
  /** The subprotocol this client offers: the server selects it, or refuses a version it does not speak. */
  const SUBPROTOCOL = "wsgateway.v1";

  /**
   * What the client does after a close (wsgateway.codes.Reconnect): STOP, no reconnect by itself;
   * NOW, on the backoff (within `minDelay` after a hello); PAUSE, after a pause that a quick hello
   * does not cut short (see Backoff); RETRY_AFTER, after the error frame's `retry_after`, and after
   * a pause when it gave none.
   */
  const RULES = Object.freeze({ STOP: "stop", NOW: "now", PAUSE: "pause", RETRY_AFTER: "retry_after" });

  /**
   * The rule after each close code, the same table as wsgateway/codes.py's RECONNECT (why each
   * rule is what it is is written there); tests/test_codes.py fails when the two differ. A code
   * not in it goes by RECONNECT_RANGES.
   */
  const RECONNECT = Object.freeze({
    1000: "now", // a close without a reason: daphne's websocket_timeout, a server's plain close()
    1001: "now", // going away: a server shutting down
    1006: "now", // the connection was lost, or the handshake failed (a refused origin, a server down)
    1009: "now", // one frame was too big; it is not sent again
    1011: "now", // the ASGI server's answer to an application that raised
    1012: "now", // a server or proxy restarting
    1013: "pause", // "try again later": the server is overloaded
    4000: "now", // this client gave up on a socket that stopped answering pings
    4001: "now", // the server closed it on purpose and asks for a reconnect (close_sockets())
    4401: "stop", // log in first: the same credentials get the same answer
    4408: "pause", // not reading: coming back at once, the catch-up would bring the same backlog
    4409: "pause", // too many sockets: one of the user's others must close first
    4410: "stop", // the path is retired
    4413: "now", // 1009 under daphne
    4429: "pause", // too many frames: the page's loop that sent them is still running
    4503: "retry_after", // maintenance, or the channel layer down: the server says when to come back
  });

  /**
   * [first, last, rule] for a code RECONNECT does not name (a newer server's, a site's own), as
   * wsgateway/codes.py's RECONNECT_RANGES. None stops: a code this client does not know must not
   * strand the page until it is reloaded.
   */
  const RECONNECT_RANGES = Object.freeze([
    Object.freeze([1000, 2999, "now"]), // the WebSocket protocol's and the browser's
    Object.freeze([3000, 3999, "now"]), // registered to libraries and frameworks
    Object.freeze([4000, 4399, "now"]), // wsgateway's own signals and a site's close_sockets() codes
    Object.freeze([4400, 4499, "pause"]), // mirrors HTTP 4xx: a refusal of this client
    Object.freeze([4500, 4999, "pause"]), // mirrors HTTP 5xx: the server is in trouble
  ]);

  /** The rule after a close with `code`: its entry, its range's, or (outside 1000-4999) as after 1006. */
  function reconnectRule(code) {
    if (Object.prototype.hasOwnProperty.call(RECONNECT, code)) return RECONNECT[code];
    for (const [first, last, rule] of RECONNECT_RANGES) if (code >= first && code <= last) return rule;
    return RULES.NOW;
  }

  /**
   * A PAUSE starts at this step of the backoff at least (a wait of half to all of minDelay × 2⁵:
   * 8 to 16 s with the defaults), and each PAUSE in a row goes one step on, up to maxDelay.
   */
  const PAUSE_ATTEMPT = 5;
  /**
   * After a maintenance refusal, the wait is `retry_after` plus up to this share of it at random (at
   * least MAINTENANCE_MIN_SPREAD ms), so that a thousand tabs do not come back in the same second.
   */
  const MAINTENANCE_SPREAD = 0.2;
  const MAINTENANCE_MIN_SPREAD = 1000;
  const GATEWAY = "gateway";
  /** Event names of `gw.on()` that are not channels. */
  const STATE_EVENT = "state";
  const ERROR_EVENT = "error";
  const MAINTENANCE_EVENT = "maintenance";
  /** Notifications per page of a `sync`: the most the server gives in one reply. */
  const SYNC_LIMIT = 100;
  /**
   * A sync page the server answers `rate_limited` (its inbound limit: a long catch-up asks for page
   * after page faster than a socket may send) is asked for again after a pause, this many times.
   */
  const SYNC_RETRIES = 10;
  const SYNC_RETRY_DELAY = 500;
  /**
   * Pushes kept while the client fills a gap before them. Past this it forgets them all and lets
   * the sync bring them again: memory stays bounded however many pushes race a slow sync.
   */
  const MAX_BUFFERED = 256;
  /**
   * Notifications the local copy of `gw.notifications` holds (the most recently touched): enough for
   * what a page shows; one it forgot is merged from what its next change carries.
   */
  const MAX_KEPT = 500;
  /** Ids remembered as handed over during one catch-up, so that none is handed over twice. */
  const MAX_HANDED = 10000;
  /** Calls of one bulk action (each changes at most 5000 rows) before it resolves anyway. */
  const MAX_BULK_CALLS = 20;

  /**
   * Every value of `gw.state`, in one place: pages compare with `WSGateway.STATES.OPEN` rather
   * than a string of their own, and freezing keeps a page from changing what the client compares with.
   */
  const STATES = Object.freeze({
    CONNECTING: "connecting",
    OPEN: "open",
    CLOSED: "closed",
    UNAUTHORIZED: "unauthorized",
    /** The endpoint is retired (4410): the client does not reconnect; `connect()` tries again. */
    GONE: "gone",
  });

  // -- helpers -------------------------------------------------------------------------

  /** The error answer to a server request whose channel has no handler for its action. */
  const UNKNOWN_ACTION = "unknown_action";
  /** The error answer's code for a handler that threw an error without a string `code`. */
  const CLIENT_ERROR = "client_error";

  /** A rejected request: `code` is the server's error code, or "timeout", "closed", "not_connected". */
  class WSGatewayError extends Error {
    constructor(code, message, frame) {
      super(message);
      this.name = "WSGatewayError";
      this.code = code;
      this.frame = frame || null;
    }
  }

  /** A list of handlers; `add` returns a function that removes the handler again. */
  class Listeners {
    constructor() {
      this.handlers = [];
    }

    add(handler) {
      if (typeof handler !== "function") throw new TypeError("A handler must be a function.");
      this.handlers.push(handler);
      return () => this.remove(handler);
    }

    remove(handler) {
      const index = this.handlers.indexOf(handler);
      if (index >= 0) this.handlers.splice(index, 1);
    }

    emit(...args) {
      for (const handler of this.handlers.slice()) {
        try {
          handler(...args);
        } catch (error) {
          // One broken handler must not break the socket or the other handlers.
          setTimeout(() => {
            throw error;
          });
        }
      }
    }
  }

  /**
   * A request waiting for the frame that carries its id. It settles once: by that frame, by its
   * timeout, or by its socket's close; whichever comes first clears the timer, so nothing fires late.
   */
  class PendingRequest {
    constructor(resolve, reject) {
      this._resolve = resolve;
      this._reject = reject;
      this._timer = null;
    }

    /** Reject with "timeout" after `ms` (never for 0), once `expired` has forgotten the request. */
    startTimeout(ms, expired) {
      if (!(ms > 0)) return;
      this._timer = setTimeout(() => {
        this._timer = null;
        expired();
        this._reject(new WSGatewayError("timeout", `No reply within ${ms} ms.`));
      }, ms);
    }

    resolve(payload) {
      this._stopTimeout();
      this._resolve(payload);
    }

    reject(error) {
      this._stopTimeout();
      this._reject(error);
    }

    _stopTimeout() {
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /**
   * The reconnect timer, and the backoff step it reached: one attempt pending at a time.
   *
   * `attempt` counts the closes since the last healthy connection, and sets the next wait: full
   * jitter over min(maxDelay, minDelay × 2^attempt) after a NOW close, half of that to all of it
   * (from PAUSE_ATTEMPT on) after a PAUSE close. A hello resets it, except after a PAUSE: a client
   * the server told to slow down (4429, 4408) would otherwise be told again right after its hello,
   * and be back within `minDelay` every time. So after a PAUSE the step goes back to 0 only once a
   * connection has stayed open as long as the pause was (`holdFor`).
   */
  class Backoff {
    /** `options`: the gateway's, read on each use (`minDelay`, `maxDelay`). */
    constructor(options) {
      this.options = options;
      this.attempt = 0;
      /** ms a connection must stay open to reset the step; 0 when a hello resets it at once. */
      this.holdFor = 0;
      this._timer = null;
      /** The pending wait is one the server asked for, which coming back online does not cut short. */
      this.firm = false;
      this._holding = null;
    }

    /** The cap of the wait before attempt `attempt` (0 for the first). */
    cap(attempt) {
      return Math.min(this.options.maxDelay, this.options.minDelay * 2 ** attempt);
    }

    /** Full jitter: anywhere between 0 and the cap, so that a thousand tabs do not return in step. */
    delay(attempt) {
      return Math.random() * this.cap(attempt);
    }

    /** The wait after a close whose rule is NOW or PAUSE; the step goes on by one. */
    next(rule) {
      let delay;
      if (rule === RULES.PAUSE) {
        this.attempt = Math.max(this.attempt, PAUSE_ATTEMPT);
        const cap = this.cap(this.attempt);
        delay = cap / 2 + (Math.random() * cap) / 2;
        this.holdFor = delay;
      } else {
        delay = this.delay(this.attempt);
      }
      this.attempt += 1;
      return delay;
    }

    /** Call `retry` in `delay` ms, instead of any wait pending; `firm`: see `this.firm`. */
    schedule(delay, retry, firm) {
      this.clear();
      this.firm = !!firm;
      this._timer = setTimeout(() => {
        this._timer = null;
        this.firm = false;
        retry();
      }, delay);
    }

    get pending() {
      return this._timer !== null;
    }

    clear() {
      if (this._timer !== null) clearTimeout(this._timer);
      this._timer = null;
      this.firm = false;
    }

    /** A hello: the step goes back to 0 now, or once the connection has stayed open `holdFor` ms. */
    opened() {
      this._stopHolding();
      if (!(this.holdFor > 0)) {
        this.attempt = 0;
        return;
      }
      this._holding = setTimeout(() => {
        this._holding = null;
        this.reset();
      }, this.holdFor);
    }

    /** The connection closed: it did not stay open long enough to reset the step, if it had to. */
    closed() {
      this._stopHolding();
    }

    /** Nothing failed (a maintenance's wait): the next close starts from the first step. */
    reset() {
      this._stopHolding();
      this.attempt = 0;
      this.holdFor = 0;
    }

    _stopHolding() {
      if (this._holding !== null) clearTimeout(this._holding);
      this._holding = null;
    }
  }

  /** Absolute ws:// or wss:// URL for `url`, which may be relative to the page ("/ws/"). */
  function resolveUrl(url) {
    const base = global.location ? global.location.href : undefined;
    const resolved = new URL(url, base);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    else if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  }

  /** Schemes a link may have: nothing that runs script (`javascript:`) or renders a page of its own (`data:`). */
  const LINK_PROTOCOLS = ["http:", "https:"];

  /**
   * `url` as given when the browser reads it, against this page, as an http(s) URL (an absolute
   * one, or one relative to an http(s) page); else null. What to put in an `href` from a
   * notification's action: the server refuses other URLs in `notify()`, but a row saved some
   * other way is not checked.
   */
  function safeUrl(url) {
    if (typeof url !== "string") return null;
    let resolved;
    try {
      resolved = new URL(url, global.location ? global.location.href : undefined);
    } catch (error) {
      return null;
    }
    return LINK_PROTOCOLS.includes(resolved.protocol) ? url : null;
  }

  /**
   * What {% wsgateway_script %} put on the script tag that loaded this file. Run as a module (see
   * wsgateway.mjs) there is no current script: then the first script tag of the page that has
   * `data-wsgateway-url`, if any.
   */
  function scriptConfig() {
    const document = global.document;
    const script = document && (document.currentScript || document.querySelector("script[data-wsgateway-url]"));
    const config = {};
    if (script && script.dataset && script.dataset.wsgatewayUrl) config.url = script.dataset.wsgatewayUrl;
    return config;
  }

  /** The frame in a message, or null for text that is not a JSON object (nothing can be done with it). */
  function parseFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (error) {
      return null;
    }
    return frame !== null && typeof frame === "object" ? frame : null;
  }

  function frameError(frame) {
    return new WSGatewayError(frame.error.code, frame.error.message, frame);
  }

  function isObject(value) {
    return value !== null && typeof value === "object";
  }

  /** A notification that carries its per-user sequence number (servers before "seq" send none). */
  function hasSeq(notification) {
    return isObject(notification) && Number.isInteger(notification.seq) && notification.seq > 0;
  }

  // -- channel -------------------------------------------------------------------------

  /**
   * One service's side of the socket, from `gw.channel(name)`. Built-in or a site's own, every
   * service is reached the same way; the socket only routes frames by name.
   */
  class Channel {
    constructor(gateway, name) {
      this.gateway = gateway;
      this.name = name;
      this._listeners = new Listeners();
      /** action -> fn, for the server's requests on this channel (see `handle`). */
      this._handlers = new Map();
    }

    /** handler(payload, frame) for each frame the server sends on this channel by itself. */
    on(handler) {
      return this._listeners.add(handler);
    }

    /** Promise of the reply's payload; see `WSGateway.request`. */
    request(payload, options) {
      return this.gateway.request(this.name, payload, options);
    }

    /** `{"action": name, "data": data}`, the payload every ActionService reads. */
    action(name, data, options) {
      return this.request({ action: name, data }, options);
    }

    /**
     * fn(data, {signal, frame}) answers the server's requests on this channel whose payload is
     * `{"action": action, "data": data}`: its value (or what its Promise resolves to) is the answer,
     * an error it throws the error answer. `signal` aborts when the server cancels the request or
     * the socket closes. One handler per action; returns a function that removes it.
     */
    handle(action, fn) {
      if (typeof action !== "string") throw new TypeError("An action must be a string.");
      if (typeof fn !== "function") throw new TypeError("A handler must be a function.");
      this._handlers.set(action, fn);
      return () => {
        if (this._handlers.get(action) === fn) this._handlers.delete(action);
      };
    }
  }

  // -- socket --------------------------------------------------------------------------

  /** property -> build(gateway), in the order they were added: see `WSGateway.addService`. */
  const SERVICES = new Map();

  class WSGateway {
    /**
     * @param {object} [options] see WSGateway.defaults; `url` may be relative to the page.
     */
    constructor(options) {
      this.options = Object.assign({}, WSGateway.defaults, options || {});
      this.url = resolveUrl(this.options.url);
      /** One of WSGateway.STATES. */
      this.state = STATES.CLOSED;
      /** The server's hello: {id, username} and the channels it serves, once open. */
      this.user = null;
      this.services = [];

      this._socket = null;
      // Apart from the channels, so that a site's service may be called "state" or "error".
      this._events = new Map([
        [STATE_EVENT, new Listeners()],
        [ERROR_EVENT, new Listeners()],
        [MAINTENANCE_EVENT, new Listeners()],
      ]);
      this._channels = new Map();
      this._pending = new Map();
      /** The server's requests being answered: their id -> the AbortController of their handler. */
      this._asked = new Map();
      this._nextId = 1;
      /** The reconnect timer and the backoff step. */
      this._backoff = new Backoff(this.options);
      this._pingTimer = null;
      this._stopped = false;
      /**
       * The error frame on channel "gateway" that came just before the close (unauthorized, gone,
       * maintenance, closing): the close's reason, which daphne does not pass on.
       */
      this._refusal = null;

      for (const [property, build] of SERVICES) {
        if (property in this) throw new TypeError(`WSGateway already has a property ${JSON.stringify(property)}.`);
        this[property] = build(this);
      }

      if (global.addEventListener) {
        // Back online: retry now rather than at the end of a long backoff.
        global.addEventListener("online", () => {
          // Not a wait the server asked for (a pause, a retry_after): the network was not why.
          if (this._backoff.pending && !this._backoff.firm) this.connect();
        });
      }
      if (this.options.autoConnect) {
        // Later in this task, so that handlers added right after `new` see every event.
        queueMicrotask(() => {
          if (this.state === STATES.CLOSED && !this._stopped && this._socket === null) this.connect();
        });
      }
    }

    /**
     * Every new WSGateway gets `gw[property] = build(gw)`: how the built-in services (`gw.notifications`,
     * `gw.clipboard`) join the socket, which knows none of them, and how a site's own may. Register
     * before `new WSGateway`; a property the socket has already is refused.
     */
    static addService(property, build) {
      if (typeof property !== "string" || !property) throw new TypeError("A service's property must be a string.");
      if (typeof build !== "function") throw new TypeError("A service's build must be a function.");
      if (SERVICES.has(property) || property in WSGateway.prototype) {
        throw new TypeError(`WSGateway already has a property ${JSON.stringify(property)}.`);
      }
      SERVICES.set(property, build);
    }

    /** The channel `name`: the same object on every call, so its handlers live as long as the socket. */
    channel(name) {
      if (typeof name !== "string") throw new TypeError("A channel name must be a string.");
      let channel = this._channels.get(name);
      if (channel === undefined) {
        channel = new Channel(this, name);
        this._channels.set(name, channel);
      }
      return channel;
    }

    // -- events ----------------------------------------------------------------------

    /**
     * `on("state", handler)`: handler(state, info) on each change of `state`.
     * `on("error", handler)`: handler(error, frame) for error frames no request is waiting for.
     * `on("maintenance", handler)`: handler({reason, retryAfter, reconnectIn}) when the server refused
     * the socket for maintenance; the client reconnects in `reconnectIn` ms, by itself.
     * `on(channel, handler)`: the same as `channel(channel).on(handler)`.
     * Returns a function that removes the handler.
     */
    on(name, handler) {
      const events = this._events.get(name);
      return events ? events.add(handler) : this.channel(name).on(handler);
    }

    off(name, handler) {
      const channel = this._channels.get(name);
      const listeners = this._events.get(name) || (channel && channel._listeners);
      if (listeners) listeners.remove(handler);
    }

    _setState(state, info) {
      this.state = state;
      this._events.get(STATE_EVENT).emit(state, info || {});
    }

    // -- connection ------------------------------------------------------------------

    /** Open the socket (again); also the way to retry after "unauthorized", e.g. after a login. */
    connect() {
      this._stopped = false;
      this._backoff.clear();
      if (this._socket !== null) return this;
      this._refusal = null;
      this._setState(STATES.CONNECTING, { attempt: this.attempt });
      let socket;
      try {
        const protocols = this.options.protocols;
        socket =
          protocols && protocols.length
            ? new this.options.WebSocket(this.url, protocols)
            : new this.options.WebSocket(this.url);
      } catch (error) {
        this._handleClose({ code: 1006, reason: String(error), wasClean: false });
        return this;
      }
      this._socket = socket;
      socket.onmessage = (event) => {
        if (socket === this._socket) this._receive(event.data);
      };
      socket.onclose = (event) => {
        if (socket === this._socket) this._handleClose(event);
      };
      return this;
    }

    /** Close the socket and stay closed until `connect()` is called. */
    close(code, reason) {
      this._stopped = true;
      this._backoff.clear();
      this._abandon(code || 1000, reason || "closed by the client");
      return this;
    }

    get connected() {
      return this._socket !== null && this._socket.readyState === 1;
    }

    /** Closes since the last healthy connection: the backoff's step (see Backoff). */
    get attempt() {
      return this._backoff.attempt;
    }

    /** Milliseconds before attempt `attempt` after a NOW close: full jitter over an exponentially growing cap. */
    backoff(attempt) {
      return this._backoff.delay(attempt);
    }

    _abandon(code, reason) {
      const socket = this._socket;
      if (socket === null) {
        // Nothing open: stop a pending retry from looking like one.
        if (this.state !== STATES.UNAUTHORIZED && this.state !== STATES.GONE) {
          this._setState(STATES.CLOSED, { code, reason, reconnectIn: null });
        }
        return;
      }
      socket.onmessage = socket.onclose = null;
      try {
        socket.close(code, reason);
      } catch (error) {
        // A socket that never opened may refuse a close code; it is dropped all the same.
      }
      this._handleClose({ code, reason, wasClean: false });
    }

    _handleClose(event) {
      this._socket = null;
      this._stopPing();
      this._backoff.closed();
      const pending = Array.from(this._pending.values());
      this._pending.clear();
      for (const request of pending) {
        request.reject(new WSGatewayError("closed", "The connection closed before the reply arrived."));
      }
      // The server has forgotten them with the socket: nobody is left to answer.
      for (const controller of this._asked.values()) controller.abort();
      this._asked.clear();
      const refusal = this._refusal;
      const rule = reconnectRule(event.code);
      // daphne sends every close without its reason; the error frame before it said the same.
      const reason = event.reason || (refusal && typeof refusal.message === "string" ? refusal.message : "");
      const info = { code: event.code, reason, wasClean: !!event.wasClean, rule };
      if (refusal) info.error = refusal;
      if (rule === RULES.STOP) {
        this._stop(info);
        return;
      }
      if (this._stopped) {
        this._setState(STATES.CLOSED, Object.assign(info, { reconnectIn: null }));
        return;
      }
      if (refusal && Number.isFinite(refusal.retry_after) && refusal.retry_after > 0) {
        // A maintenance refusal, or a close_sockets() that said when to come back.
        this._maintenance(info, refusal);
        return;
      }
      // A RETRY_AFTER close without its retry_after (another server) waits a pause.
      const delay = this._backoff.next(rule === RULES.NOW ? RULES.NOW : RULES.PAUSE);
      this._retryIn(delay, rule !== RULES.NOW);
      this._setState(STATES.CLOSED, Object.assign(info, { reconnectIn: delay, attempt: this.attempt }));
    }

    /** A STOP close: 4401 is "unauthorized", any other "gone"; no reconnect until `connect()`. */
    _stop(info) {
      if (info.code === CLOSE_UNAUTHORIZED) {
        info.error = info.error || { code: "unauthorized", message: "Log in to connect." };
        this._setState(STATES.UNAUTHORIZED, info);
      } else {
        info.error = info.error || { code: "gone", message: "This address is no longer served." };
        this._setState(STATES.GONE, info);
      }
    }

    /**
     * Refused for maintenance (or closed with a `retry_after`): come back after the server's
     * `retry_after`, spread a little, instead of the backoff; the backoff's steps start over, as
     * nothing failed. The "maintenance" event is for a maintenance only.
     */
    _maintenance(info, refusal) {
      const wait = refusal.retry_after * 1000;
      const delay = wait + Math.random() * Math.max(MAINTENANCE_MIN_SPREAD, wait * MAINTENANCE_SPREAD);
      const maintenance = { reason: String(refusal.message || ""), retryAfter: refusal.retry_after, reconnectIn: delay };
      this._backoff.reset();
      this._retryIn(delay, true);
      if (refusal.code !== "maintenance") {
        this._setState(STATES.CLOSED, Object.assign(info, { reconnectIn: delay, attempt: 0 }));
        return;
      }
      this._events.get(MAINTENANCE_EVENT).emit(maintenance);
      this._setState(STATES.CLOSED, Object.assign(info, { reconnectIn: delay, attempt: 0, maintenance }));
    }

    /** The next attempt, in `delay` ms; a `firm` wait is the server's, and coming back online keeps it. */
    _retryIn(delay, firm) {
      this._backoff.schedule(delay, () => this.connect(), firm);
    }

    _startPing() {
      this._stopPing();
      if (!(this.options.pingInterval > 0)) return;
      const gateway = this.channel(GATEWAY);
      this._pingTimer = setInterval(() => {
        // Not action("ping"): the gateway answers exactly {"action": "ping"}, without "data".
        gateway.request({ action: "ping" }, { timeout: this.options.pingTimeout }).catch((error) => {
          // A socket that cannot answer a ping is dead even if the browser has not noticed.
          if (error.code === "timeout") this._abandon(CLOSE_PING_TIMEOUT, "ping timeout");
        });
      }, this.options.pingInterval);
    }

    _stopPing() {
      if (this._pingTimer !== null) clearInterval(this._pingTimer);
      this._pingTimer = null;
    }

    // -- frames ----------------------------------------------------------------------

    _receive(text) {
      const frame = parseFrame(text);
      if (frame === null || this._acknowledge(frame) || this._settle(frame)) return;
      // A request from the server, or its cancel: for the channel's handlers, never its `on` listeners.
      if (typeof frame.request === "string") {
        this._answer(frame);
        return;
      }
      if (typeof frame.cancel === "string") {
        const controller = this._asked.get(frame.cancel);
        this._asked.delete(frame.cancel);
        if (controller) controller.abort();
        return;
      }
      if (frame.error) {
        if (frame.channel === GATEWAY) {
          // The reason of the close that follows: 4401, 4410, 4001, or 4503 (with its retry_after).
          this._refusal = frame.error;
        }
        this._reportError(frameError(frame));
        return;
      }
      if (frame.channel === GATEWAY) this._hello(frame.payload);
      const channel = this._channels.get(frame.channel);
      if (channel) channel._listeners.emit(frame.payload, frame);
    }

    /**
     * Flow control: a mark the server put in the stream (each quarter of its window, and before a
     * frame waits for room) is echoed at once, which acknowledges every frame read before it. The
     * server closes a socket that leaves more than the window unacknowledged (4408). True for a
     * mark, which is for no listener.
     */
    _acknowledge(frame) {
      const payload = frame.payload;
      if (frame.channel !== GATEWAY || !isObject(payload) || payload.action !== "mark") return false;
      if (typeof payload.data === "string") this.send(GATEWAY, { action: "ack", data: payload.data });
      return true;
    }

    /** To `on("error")`: an error no request of the page waits for (a stray error frame, a failed catch-up). */
    _reportError(error) {
      this._events.get(ERROR_EVENT).emit(error, error.frame);
    }

    /** Settle the request this frame answers; false when no request is waiting for it. */
    _settle(frame) {
      const pending = frame.id !== undefined && frame.id !== null ? this._pending.get(frame.id) : undefined;
      if (!pending) return false;
      this._pending.delete(frame.id);
      if (frame.error) pending.reject(frameError(frame));
      else pending.resolve(frame.payload);
      return true;
    }

    /**
     * Answer a request from the server with its channel's handler for the action: the handler's
     * value, or its error; `unknown_action` when there is none. Nothing once it is cancelled, or
     * once its socket is gone (the server forgot it with the socket).
     */
    _answer(frame) {
      const id = frame.request;
      const payload = frame.payload;
      const channel = this._channels.get(frame.channel);
      const action = isObject(payload) ? payload.action : undefined;
      const handler = channel && typeof action === "string" ? channel._handlers.get(action) : undefined;
      const reply = { channel: frame.channel, reply: id };
      if (handler === undefined) {
        const message = `No handler for ${JSON.stringify(action)} on channel ${JSON.stringify(frame.channel)}.`;
        this._sendFrame(Object.assign(reply, { error: { code: UNKNOWN_ACTION, message } }));
        return;
      }
      const controller = new AbortController();
      const socket = this._socket;
      this._asked.set(id, controller);
      const settle = (fields) => {
        if (this._asked.get(id) !== controller || this._socket !== socket) return;
        this._asked.delete(id);
        this._sendFrame(Object.assign(reply, fields));
      };
      new Promise((resolve) => resolve(handler(payload.data, { signal: controller.signal, frame }))).then(
        (value) => settle({ payload: value === undefined ? null : value }),
        (error) => {
          const code = error && typeof error.code === "string" && error.code ? error.code : CLIENT_ERROR;
          const message = error && typeof error.message === "string" ? error.message : String(error);
          settle({ error: { code, message } });
        },
      );
    }

    /** The server's hello opens the client: the socket is authenticated, the on-connect frames follow. */
    _hello(payload) {
      if (!payload || !payload.user) return;
      this.user = payload.user;
      this.services = Array.isArray(payload.services) ? payload.services : [];
      this._backoff.opened();
      this._startPing();
      this._setState(STATES.OPEN, { user: this.user, services: this.services });
    }

    /** Send a frame without waiting for a reply. False when the socket is not open. */
    send(channel, payload, id) {
      const frame = { channel, payload };
      if (id !== undefined && id !== null) frame.id = id;
      return this._sendFrame(frame);
    }

    _sendFrame(frame) {
      if (!this.connected) return false;
      this._socket.send(JSON.stringify(frame));
      return true;
    }

    /**
     * Send a frame and settle with the reply that carries its id: resolved with the reply's
     * payload, rejected with a WSGatewayError for an error frame, a timeout, a close, or when
     * the socket is not open.
     */
    request(channel, payload, options) {
      const timeout = options && options.timeout !== undefined ? options.timeout : this.options.requestTimeout;
      return new Promise((resolve, reject) => {
        if (!this.connected) {
          reject(new WSGatewayError("not_connected", "Not connected to the server."));
          return;
        }
        const id = this._nextId++;
        const pending = new PendingRequest(resolve, reject);
        this._pending.set(id, pending);
        pending.startTimeout(timeout, () => this._pending.delete(id));
        this.send(channel, payload, id);
      });
    }
  }

  WSGateway.defaults = Object.assign(
    {
      url: "/ws/",
      autoConnect: true,
      minDelay: 500,
      maxDelay: 30000,
      requestTimeout: 10000,
      pingInterval: 25000,
      pingTimeout: 10000,
      /** Offered in Sec-WebSocket-Protocol; [] offers none (a server before wsgateway.v1 had a name). */
      protocols: [SUBPROTOCOL],
      WebSocket: global.WebSocket,
    },
    scriptConfig(),
  );
  Object.assign(WSGateway, {
    STATES,
    Error: WSGatewayError,
    RULES,
    RECONNECT,
    RECONNECT_RANGES,
    reconnectRule,
    CLOSE_UNAUTHORIZED,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_GONE,
    CLOSE_SERVICE_UNAVAILABLE,
    CLOSE_RECONNECT,
    SUBPROTOCOL,
    safeUrl,
  });

  // -- built-in services ---------------------------------------------------------------

  /**
   * A built-in helper: a channel and local state that follows the server. The reply to one of
   * its actions carries the same state as the push that follows it, so `_apply` takes both, and the
   * helper is right as soon as the action's Promise resolves, before the push arrives.
   */
  class Service {
    constructor(gateway, name) {
      this.gateway = gateway;
      this.channel = gateway.channel(name);
      this.channel.on((payload) => this._receive(payload));
    }

    /** A frame the server sent by itself (a connect frame or a push); replies go to `_apply` alone. */
    _receive(payload) {
      this._apply(payload);
    }

    _act(action, data) {
      return this.channel.action(action, data).then((reply) => {
        this._apply(reply);
        return reply;
      });
    }
  }

  /**
   * The "notifications" channel: the counts, the notifications themselves (each new one handed to
   * the page once, in order), and every change of their states (read, seen, archived, deleted,
   * snoozed and back), applied once, in order, the same in every tab.
   *
   * One cursor over the user's one sequence (docs/protocol.md, "States and changes"): a new
   * notification's `seq` and each change's `version` are numbers of it. `seq` here is the latest
   * number applied, every one below it applied too. A push whose first number is the cursor plus one
   * is applied; at or below the cursor it is one already applied (a notification saved again goes to
   * onUpdate); further on means pushes were missed (a reconnect, a layer outage), so it waits in a
   * buffer while `sync` fetches what lies between. Whatever route a number takes (push, sync page),
   * the cursor lets it through once. Against a server that numbers no changes (its connect frame has
   * no `counts`), the cursor follows `seq` alone and `sync` asks for new notifications only, as before.
   */
  class Notifications extends Service {
    constructor(gateway) {
      super(gateway, "notifications");
      this.unread = 0;
      this.category = null;
      /** `{unread, unseen, archived, badge}` from the server, or null from a server that sends none. */
      this.counts = null;
      this.last = null;
      /** The cursor: the latest number applied, all below it applied too; null before the first connect. */
      this.seq = null;
      /** The highest number known to exist: above the cursor, the page is behind. */
      this._latest = null;
      /** number -> [item, kind, catchUp] for what came past a gap, until the gap is filled. */
      this._buffer = new Map();
      this._syncing = false;
      /** Whether the server numbers changes (its connect frame has `counts`): then `sync` asks for them. */
      this._changes = false;
      /**
       * id -> the notification as last known (content and states), the most recently touched last;
       * at most MAX_KEPT. What a change that carries states alone is merged into, and what tells a
       * change already applied (its `version`) from a newer one.
       */
      this._copy = new Map();
      /**
       * New notifications are those numbered past `_floor` (the cursor when the page was last caught
       * up) and not in `_handed`: a catch-up may meet one twice (its row changed between two pages).
       */
      this._floor = null;
      this._handed = new Set();
      /** What the catch-up under way handed over, for onCatchUp once it ends. */
      this._caughtUp = [];
      this._userId = null;
      this._change = new Listeners();
      this._notification = new Listeners();
      this._update = new Listeners();
      this._catchUp = new Listeners();
      this._stateChange = new Listeners();
      this._reset = new Listeners();
      gateway.on(STATE_EVENT, (state, info) => {
        if (state === STATES.OPEN) this._opened(info.user);
      });
    }

    /** handler({unread, category, counts}) after every frame that carries the unread state. */
    onChange(handler) {
      return this._change.add(handler);
    }

    /**
     * handler(notification, {catchUp}) once for each new notification, in the order they were
     * created; catchUp is true when it came from a catch-up rather than its own push. One deleted or
     * snoozed before this page heard of it is not handed over (a snoozed one comes back as a change).
     */
    onNotification(handler) {
      return this._notification.add(handler);
    }

    /** handler(notification) when one the page already has is saved again (edited, e.g. in the admin). */
    onUpdate(handler) {
      return this._update.add(handler);
    }

    /** handler(notifications), oldest first, after a catch-up handed over some that were not pushed live. */
    onCatchUp(handler) {
      return this._catchUp.add(handler);
    }

    /**
     * handler(notification, {change, catchUp, previous}) once for each change of a notification the
     * page was handed before (read, unread, seen, archived, unarchived, deleted, snoozed, unsnoozed,
     * and grouped: another notification of its group updated its text, `count` and `actors`),
     * in order: `notification` is the one the copy holds with the change applied (its content too
     * when the page had it, or when the change carries it), `previous` the copy before (or null).
     * A catch-up that found several changes of one notification gives its state now, once.
     */
    onNotificationChange(handler) {
      return this._stateChange.add(handler);
    }

    /**
     * handler({unread, category, counts}) when the server could not replay the changes since the
     * cursor (pruning took rows changed since): what the page shows may be stale; list() again.
     */
    onReset(handler) {
      return this._reset.add(handler);
    }

    /** The notification as last known (from a push, a sync or a list page), or null. */
    get(id) {
      const known = this._copy.get(id);
      return known ? Object.assign({}, known) : null;
    }

    // -- frames ----------------------------------------------------------------------

    _receive(payload) {
      if (!isObject(payload)) return;
      this._follow(payload);
      if (isObject(payload.last)) {
        this._take(payload.last, "last", false);
        this._sync();
      } else if (Array.isArray(payload.changes)) {
        for (const item of payload.changes) if (hasSeq(item)) this._take(item, "change", false);
        this._sync();
      } else if (Number.isInteger(payload.seq) && payload.seq >= 0) {
        this._connected(payload);
      }
      this._changed();
    }

    /** A reply (an action, a sync page): the unread state alone. */
    _apply(payload) {
      if (!isObject(payload)) return;
      this._follow(payload);
      this._changed();
    }

    _follow(payload) {
      if (typeof payload.unread === "number") this.unread = payload.unread;
      if (isObject(payload.counts)) this.counts = Object.assign({}, payload.counts);
      const last = payload.last;
      if (last) this.last = last;
      if ("category" in payload && !(last && last.is_read)) this.category = payload.category;
      if (this.unread === 0) this.category = null;
    }

    _changed() {
      this._change.emit(this._state());
    }

    /** {unread, category}, and `counts` from a server that sends them. */
    _state() {
      const state = { unread: this.unread, category: this.category };
      if (this.counts) state.counts = Object.assign({}, this.counts);
      return state;
    }

    /** The cursor is one user's: a hello for another user (a login in another tab) starts it over. */
    _opened(user) {
      const id = user ? user.id : null;
      if (this._userId !== null && id !== this._userId) {
        this._restart(null);
        this._copy.clear();
      }
      this._userId = id;
    }

    /**
     * A connect frame: the first of the page, after a reconnect, or after a resync (then perhaps
     * with `missed`, the new notifications the server knows this socket did not get).
     */
    _connected(payload) {
      this._changes = isObject(payload.counts);
      // `missed` lists new notifications only; where changes are numbered the sync brings them and
      // the changes around them alike, in one order.
      const missed = !this._changes && Array.isArray(payload.missed) ? payload.missed.filter(hasSeq) : [];
      if (this.seq === null || payload.seq < this.seq) {
        // The first connect starts at the server's latest: history is list()'s to show, not a flood
        // of onNotification. A latest below the cursor means the server's count started over (a
        // restored database), and the old cursor would take each new notification for an edit.
        this._restart(missed.length ? Math.min(payload.seq, missed[0].seq - 1) : payload.seq);
      }
      for (const notification of missed) this._take(notification, "last", true);
      // Its `has_more` needs no look of its own: the frame's seq is then past the last missed one,
      // and the sync below fetches the rest.
      this._saw(payload.seq);
      this._sync();
    }

    // -- the cursor ------------------------------------------------------------------

    _restart(cursor) {
      this.seq = cursor;
      this._latest = cursor;
      this._buffer.clear();
      this._floor = cursor;
      this._handed.clear();
    }

    _saw(number) {
      if (this._latest === null || number > this._latest) this._latest = number;
    }

    /**
     * A pushed (or `missed`) notification ("last") or change ("change"): applied, an edit of one
     * the page has, or kept until the gap before it is filled.
     */
    _take(item, kind, catchUp) {
      if (!hasSeq(item)) {
        // A server without sequence numbers: every push is handed over as it comes, as before.
        this._notification.emit(item, { catchUp });
        return;
      }
      const number = numberOf(item);
      // No connect frame yet (its snapshot failed): the page starts here.
      if (this.seq === null) this._restart(number - 1);
      this._saw(number);
      if (number <= this.seq) {
        // Applied already. A `last` at or below the cursor is that notification saved again (a save
        // keeps its number); a `missed` one is only the server not knowing what a sync brought.
        if (kind === "last" && !catchUp) {
          this._remember(item);
          this._update.emit(item);
        }
      } else if (number === this.seq + 1) this._hand(item, kind, catchUp);
      else this._keep(number, item, kind, catchUp);
    }

    _keep(number, item, kind, catchUp) {
      this._buffer.set(number, [item, kind, catchUp]);
      // Forget them rather than grow without end: `_latest` remembers they exist, so a sync fetches them.
      if (this._buffer.size > MAX_BUFFERED) this._buffer.clear();
    }

    /** Apply one and move the cursor to it, then whatever waits right after it. */
    _hand(item, kind, catchUp) {
      this._advance(numberOf(item));
      this._applyItem(item, kind, catchUp);
      for (let next = this._buffer.get(this.seq + 1); next; next = this._buffer.get(this.seq + 1)) {
        this._advance(this.seq + 1);
        this._applyItem(next[0], next[1], next[2]);
      }
      this._settle();
    }

    /** The cursor moves; what waits at or below it has been applied, or is older than what was. */
    _advance(number) {
      this.seq = number;
      for (const waiting of this._buffer.keys()) if (waiting <= number) this._buffer.delete(waiting);
    }

    /** Caught up (nothing waits, no sync runs): what is numbered past here is new. */
    _settle() {
      if (this._syncing || this._buffer.size || this._latest > this.seq) return;
      this._floor = this.seq;
      this._handed.clear();
    }

    /**
     * One notification, new or changed, whose number is the cursor's (or, from a sync page, the
     * latest of its row): handed over once as new, else as a change, else (a save) as an update.
     */
    _applyItem(item, kind, catchUp) {
      const previous = this._copy.get(item.id) || null;
      if (previous && numberOf(previous) > numberOf(item)) return; // the copy is newer already
      const fresh = this._floor !== null && item.seq > this._floor && !this._handed.has(item.id);
      const known = this._remember(item);
      if (fresh) {
        if (this._handed.size >= MAX_HANDED) this._handed.clear();
        this._handed.add(item.id);
        if (!hidden(known)) this._emitNew(known, catchUp);
      } else if (kind === "last") {
        // A `last` past the cursor that is not new: a save of one numbered before the page began.
        if (!catchUp) this._update.emit(known);
      } else if (!previous || numberOf(previous) <= numberOf(item)) {
        // The same number again only when a list() page brought the changed row before its push:
        // said once more, as the state it already is, so that what follows changes (toasts) do.
        this._stateChange.emit(Object.assign({}, known), {
          change: typeof item.change === "string" ? item.change : null,
          catchUp,
          previous: previous ? Object.assign({}, previous) : null,
        });
      }
    }

    /**
     * Merge what an item says into the copy (a change may carry states alone); the merged one. A
     * `grouped` change carries the whole notification, newer in every part: it replaces the copy, so
     * that nothing of the older content (a `trimmed` page's mark) outlives it.
     */
    _remember(item) {
      const previous = this._copy.get(item.id);
      if (previous && numberOf(previous) > numberOf(item)) return previous;
      const known = item.change === "grouped" ? Object.assign({}, item) : Object.assign({}, previous, item);
      this._copy.delete(item.id);
      this._copy.set(item.id, known);
      if (this._copy.size > MAX_KEPT) this._copy.delete(this._copy.keys().next().value);
      return known;
    }

    _emitNew(notification, catchUp) {
      if (catchUp) this._caughtUp.push(notification);
      this._notification.emit(notification, { catchUp });
    }

    // -- catching up -----------------------------------------------------------------

    /**
     * Sync from the cursor when the server has numbers the page lacks, one sync at a time:
     * the one running looks again when it ends, so pushes that race it start none of their own.
     */
    _sync() {
      if (this._syncing) return;
      if (this.seq === null || this._latest <= this.seq || this.gateway.state !== STATES.OPEN) {
        // Caught up, or offline (then the next connect frame syncs).
        this._caughtUpEnd();
        return;
      }
      this._syncing = true;
      this._syncPages().then(
        () => {
          this._syncing = false;
          this._settle();
          this._sync(); // pushes during the sync may have shown more
        },
        (error) => {
          this._syncing = false;
          if (error.code === "closed" || error.code === "not_connected") {
            // The socket went mid-sync. Its successor's connect frame syncs again; if that frame has
            // already come (and found this sync still running), sync now.
            this._sync();
            return;
          }
          // The server refused or did not answer: the next connect frame, or the next push past
          // the cursor, tries again; retrying here could loop against a server that always refuses.
          this.gateway._reportError(error);
          this._caughtUpEnd();
        },
      );
    }

    /** `sync` page after page from the cursor, each applied as it comes. */
    async _syncPages() {
      // Everything known to exist now was stored before this request left, so the pages list it
      // unless it has been deleted since: past the last page the cursor may skip what they left out.
      const covered = this._latest;
      const changes = this._changes;
      let since = this.seq;
      let page;
      for (;;) {
        page = await this._syncPage(since, changes);
        if (isObject(page) && page.reset === true) {
          this._resetTo(page);
          return;
        }
        const key = changes && isObject(page) && Array.isArray(page.changes) ? "changes" : "notifications";
        const found = isObject(page) && Array.isArray(page[key]) ? page[key].filter(hasSeq) : [];
        for (const item of found) {
          // At or below the cursor: a push that raced the sync applied it already. Past the cursor by
          // more than one: the numbers between are rows deleted, or changed again later in the order.
          if (numberOf(item) > this.seq) this._hand(item, key === "changes" ? "change" : "last", true);
        }
        if (isObject(page) && Number.isInteger(page.seq)) this._saw(page.seq);
        this._apply(page);
        if (!(isObject(page) && page.has_more)) break;
        const next = found.length ? numberOf(found[found.length - 1]) : since;
        if (next <= since) {
          // Asking again would get the same page for ever.
          throw new WSGatewayError("bad_reply", `A sync page after seq ${since} said has_more but did not move on.`);
        }
        since = next;
      }
      // The last page of changes holds every number up to its `seq` (the server reads the latest
      // first): nothing below it is left for a push to bring.
      const end = changes && isObject(page) && Number.isInteger(page.seq) ? Math.max(covered, page.seq) : covered;
      if (end > this.seq) this._advance(end);
      const next = this._buffer.get(this.seq + 1);
      if (next) this._hand(next[0], next[1], next[2]);
    }

    async _syncPage(since, changes) {
      const data = { since, limit: SYNC_LIMIT };
      if (changes) data.changes = true;
      for (let attempt = 1; ; attempt += 1) {
        try {
          return await this.channel.action("sync", data);
        } catch (error) {
          if (error.code !== "rate_limited" || attempt >= SYNC_RETRIES) throw error;
          await new Promise((resolve) => setTimeout(resolve, SYNC_RETRY_DELAY * attempt));
        }
      }
    }

    /** The server could not replay the changes since the cursor: start over from its latest. */
    _resetTo(page) {
      this._restart(Number.isInteger(page.seq) ? page.seq : this._latest);
      this._copy.clear();
      this._apply(page);
      this._reset.emit(this._state());
    }

    _caughtUpEnd() {
      if (!this._caughtUp.length) return;
      const handed = this._caughtUp;
      this._caughtUp = [];
      this._catchUp.emit(handed);
    }

    // -- actions ---------------------------------------------------------------------

    /**
     * Newest first: resolves with {notifications, has_more, unread, category, counts}; `view` is
     * "all" (the inbox), "unread" or "archived". Each notification is in the newest state the page
     * knows (a change pushed while the page was on its way is not undone). Reading a page changes
     * nothing, so it fires no onChange (a page can reload its list from onChange).
     */
    list(options) {
      const data = {};
      const given = options || {};
      if (given.before !== undefined) data.before = given.before;
      if (given.limit !== undefined) data.limit = given.limit;
      if (given.view !== undefined) data.view = given.view;
      if (given.unreadOnly !== undefined) data.unread_only = given.unreadOnly;
      return this.channel.action("list", data).then((page) => {
        if (isObject(page) && Array.isArray(page.notifications)) {
          page.notifications = page.notifications.map((n) =>
            isObject(n) && Number.isInteger(n.id) ? Object.assign({}, this._remember(n)) : n,
          );
        }
        return page;
      });
    }

    /** Mark notifications read by id; resolves with {unread, category, counts}. */
    markRead(ids) {
      return this._act("mark_read", idList(ids));
    }

    markUnread(ids) {
      return this._act("mark_unread", idList(ids));
    }

    /** Shown to the user (the badge may count unseen ones: counts.badge). */
    markSeen(ids) {
      return this._act("mark_seen", idList(ids));
    }

    archive(ids) {
      return this._act("archive", idList(ids));
    }

    unarchive(ids) {
      return this._act("unarchive", idList(ids));
    }

    /** Deleted by the user: gone from every view, in every tab. */
    delete(ids) {
      return this._act("delete", idList(ids));
    }

    /** Hidden until `until` (a Date, or an ISO 8601 string with its offset), then back as new. */
    snooze(ids, until) {
      const when = until instanceof Date ? until.toISOString() : until;
      return this._act("snooze", { ids: idList(ids), until: when });
    }

    unsnooze(ids) {
      return this._act("unsnooze", idList(ids));
    }

    /** Every unread one; resolves with the last reply, its `changed` the sum of all of them. */
    markAllRead() {
      return this._bulk("mark_all_read");
    }

    markAllSeen() {
      return this._bulk("mark_all_seen");
    }

    /** Archives every read one. */
    archiveAllRead() {
      return this._bulk("archive_all_read");
    }

    /** A bulk action changes a bounded number of rows per call: ask again while it says `has_more`. */
    async _bulk(action) {
      let changed = 0;
      for (let call = 1; ; call += 1) {
        const reply = await this._act(action, null);
        if (isObject(reply) && typeof reply.changed === "number") changed += reply.changed;
        if (!(isObject(reply) && reply.has_more === true) || call >= MAX_BULK_CALLS) {
          return isObject(reply) && typeof reply.changed === "number" ? Object.assign({}, reply, { changed }) : reply;
        }
      }
    }
  }

  /** What a notification or a change is numbered in the user's sequence: its `version`, else its `seq`. */
  function numberOf(item) {
    return Number.isInteger(item.version) ? item.version : item.seq;
  }

  /** Not in any view: deleted, snoozed, or past its `expires_at` (the server counts it out then). */
  function hidden(notification) {
    if (notification.deleted === true) return true;
    if (typeof notification.snoozed_until === "string" && notification.snoozed_until !== "") return true;
    const expires = typeof notification.expires_at === "string" ? Date.parse(notification.expires_at) : NaN;
    return Number.isFinite(expires) && expires <= Date.now();
  }

  function idList(ids) {
    return Array.isArray(ids) ? ids : [ids];
  }

  WSGateway.addService("notifications", (gateway) => new Notifications(gateway));

  /** The "clipboard" channel: the user's clipboard, the same in every tab. */
  class Clipboard extends Service {
    constructor(gateway) {
      super(gateway, "clipboard");
      /** [{id, data, created}] or [{id, model, pk, label, created}], oldest first. */
      this.entries = [];
      this._change = new Listeners();
    }

    /** handler(entries) whenever the clipboard changes, here or in another tab. */
    onChange(handler) {
      return this._change.add(handler);
    }

    /**
     * A connect frame (and a resync) carries the whole clipboard; a reply or a push carries a change:
     * {added: [entries]} and {removed: [ids]}, applied to the local copy, which stays in id order.
     */
    _apply(payload) {
      if (!isObject(payload)) return;
      if (Array.isArray(payload.clipboard)) {
        this.entries = payload.clipboard;
      } else {
        const removed = new Set(Array.isArray(payload.removed) ? payload.removed : []);
        const added = Array.isArray(payload.added) ? payload.added.filter(isObject) : [];
        if (!removed.size && !added.length) return;
        const kept = this.entries.filter((entry) => !removed.has(entry.id));
        // Idempotent: an entry the copy has already (after a resync that crossed its push) is not doubled.
        const known = new Set(kept.map((entry) => entry.id));
        this.entries = kept.concat(added.filter((entry) => !known.has(entry.id))).sort((a, b) => a.id - b.id);
      }
      this._change.emit(this.entries);
    }

    /** Store any JSON value. */
    add(data) {
      return this._act("clipboard_add", data);
    }

    /** Add references to objects: load("app_label.model", [pk, ...]); the reply lists "refused" ids. */
    load(model, ids) {
      return this._act("clipboard_load", { model, ids: Array.isArray(ids) ? ids : [ids] });
    }

    remove(id) {
      return this._act("clipboard_remove", id);
    }

    flush() {
      return this._act("clipboard_flush", null);
    }
  }

  WSGateway.addService("clipboard", (gateway) => new Clipboard(gateway));

  /**
   * The "presence" channel, for green dots (opt-in on the server: docs/connections.md). The page's
   * watched ids are kept here and watched again on each new socket, which starts watching nothing;
   * `online` holds the latest state of each that the server answered for.
   */
  class Presence extends Service {
    constructor(gateway) {
      super(gateway, "presence");
      /** id (a string) -> true or false. */
      this.online = new Map();
      this._watched = new Set();
      this._change = new Listeners();
      gateway.on(STATE_EVENT, (state, info) => {
        if (state === STATES.OPEN && this._watched.size && info.services.includes("presence")) {
          this._act("watch", { users: [...this._watched] }).catch(() => {});
        }
      });
    }

    /** handler(id, online) whenever a watched user's state is known anew. */
    onChange(handler) {
      return this._change.add(handler);
    }

    isOnline(id) {
      return this.online.get(String(id)) === true;
    }

    /** Watch more users (ids as the server's primary keys); the reply gives their states and the refused. */
    watch(ids) {
      const users = idList(ids).map(String);
      const added = users.filter((id) => !this._watched.has(id));
      added.forEach((id) => this._watched.add(id));
      return this._act("watch", { users }).catch((error) => {
        // Refused by the server: none of it is watched. Not sent or not answered (not connected, the
        // socket closed, a timeout): kept, and watched when the next socket opens.
        if (!["not_connected", "closed", "timeout"].includes(error.code)) {
          added.forEach((id) => this._watched.delete(id));
        }
        throw error;
      });
    }

    /** Stop watching `ids`, or everyone without them. */
    unwatch(ids) {
      const users = ids === undefined ? null : idList(ids).map(String);
      for (const id of users || [...this._watched]) {
        this._watched.delete(id);
        this.online.delete(id);
      }
      return this._act("unwatch", users === null ? null : { users });
    }

    /** A watch's reply and a resync carry {users: {id: online}}; a push {user, online}. */
    _apply(payload) {
      if (!isObject(payload)) return;
      const states = typeof payload.user === "string" ? { [payload.user]: payload.online } : payload.users;
      if (isObject(states)) {
        for (const [id, online] of Object.entries(states)) {
          // A push on its way while the page unwatched the user is dropped.
          if (!this._watched.has(id)) continue;
          this.online.set(id, online === true);
          this._change.emit(id, online === true);
        }
      }
      for (const id of Array.isArray(payload.refused) ? payload.refused : []) this._watched.delete(id);
    }
  }

  WSGateway.addService("presence", (gateway) => new Presence(gateway));

  global.WSGateway = WSGateway;
  global.WSGatewayError = WSGatewayError;
  global[LOADED] = true;
})(typeof window !== "undefined" ? window : globalThis);
