/*!
 * wsgateway.js: the browser client of wsgateway.
 *
 * Plain JavaScript for current browsers: no build step, no dependencies.
 * Load it with {% load wsgateway %}{% wsgateway_script %}, which also tells it the endpoint.
 * The API is documented in docs/client.md.
 */
(function (global) {
  "use strict";

  // -- constants -----------------------------------------------------------------------

  /** Close code the server uses for "log in first": never reconnect after it. */
  const CLOSE_UNAUTHORIZED = 4401;
  /** Close code this client uses when it gives up on a socket that stopped answering pings. */
  const CLOSE_PING_TIMEOUT = 4000;
  const GATEWAY = "gateway";
  /** Event names of `gw.on()` that are not channels. */
  const STATE_EVENT = "state";
  const ERROR_EVENT = "error";

  /**
   * Every value of `gw.state`, in one place: pages compare with `WSGateway.STATES.OPEN` rather
   * than a string of their own, and freezing keeps a page from changing what the client compares with.
   */
  const STATES = Object.freeze({
    CONNECTING: "connecting",
    OPEN: "open",
    CLOSED: "closed",
    UNAUTHORIZED: "unauthorized",
  });

  // -- helpers -------------------------------------------------------------------------

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

  /** Absolute ws:// or wss:// URL for `url`, which may be relative to the page ("/ws/"). */
  function resolveUrl(url) {
    const base = global.location ? global.location.href : undefined;
    const resolved = new URL(url, base);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    else if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  }

  /** What {% wsgateway_script %} put on the script tag that loaded this file. */
  function scriptConfig() {
    const script = global.document && global.document.currentScript;
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
  }

  // -- socket --------------------------------------------------------------------------

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
      /** Failed attempts since the last successful connect; drives the backoff. */
      this.attempt = 0;

      this._socket = null;
      // Apart from the channels, so that a site's service may be called "state" or "error".
      this._events = new Map([
        [STATE_EVENT, new Listeners()],
        [ERROR_EVENT, new Listeners()],
      ]);
      this._channels = new Map();
      this._pending = new Map();
      this._nextId = 1;
      this._retryTimer = null;
      this._pingTimer = null;
      this._stopped = false;
      this._authError = null;

      this.notifications = new Notifications(this);
      this.clipboard = new Clipboard(this);

      if (global.addEventListener) {
        // Back online: retry now rather than at the end of a long backoff.
        global.addEventListener("online", () => {
          if (this._retryTimer !== null) this.connect();
        });
      }
      if (this.options.autoConnect) {
        // Later in this task, so that handlers added right after `new` see every event.
        queueMicrotask(() => {
          if (this.state === STATES.CLOSED && !this._stopped && this._socket === null) this.connect();
        });
      }
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
      this._clearRetry();
      if (this._socket !== null) return this;
      this._authError = null;
      this._setState(STATES.CONNECTING, { attempt: this.attempt });
      let socket;
      try {
        socket = new this.options.WebSocket(this.url);
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
      this._clearRetry();
      this._abandon(code || 1000, reason || "closed by the client");
      return this;
    }

    get connected() {
      return this._socket !== null && this._socket.readyState === 1;
    }

    /** Milliseconds before the next attempt: full jitter over an exponentially growing cap. */
    backoff(attempt) {
      const cap = Math.min(this.options.maxDelay, this.options.minDelay * 2 ** attempt);
      return Math.random() * cap;
    }

    _abandon(code, reason) {
      const socket = this._socket;
      if (socket === null) {
        // Nothing open: stop a pending retry from looking like one.
        if (this.state !== STATES.UNAUTHORIZED) this._setState(STATES.CLOSED, { code, reason, reconnectIn: null });
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
      for (const [id, pending] of this._pending) {
        clearTimeout(pending.timer);
        pending.reject(new WSGatewayError("closed", "The connection closed before the reply arrived."));
        this._pending.delete(id);
      }
      const info = { code: event.code, reason: event.reason || "", wasClean: !!event.wasClean };
      if (event.code === CLOSE_UNAUTHORIZED) {
        const error = this._authError || { code: "unauthorized", message: "Log in to connect." };
        this._setState(STATES.UNAUTHORIZED, Object.assign(info, { error }));
        return;
      }
      if (this._stopped) {
        this._setState(STATES.CLOSED, Object.assign(info, { reconnectIn: null }));
        return;
      }
      const delay = this.backoff(this.attempt);
      this.attempt += 1;
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        this.connect();
      }, delay);
      this._setState(STATES.CLOSED, Object.assign(info, { reconnectIn: delay, attempt: this.attempt }));
    }

    _clearRetry() {
      if (this._retryTimer !== null) clearTimeout(this._retryTimer);
      this._retryTimer = null;
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
      if (frame === null || this._settle(frame)) return;
      if (frame.error) {
        if (frame.channel === GATEWAY) this._authError = frame.error; // the reason of a 4401 that follows
        this._events.get(ERROR_EVENT).emit(frameError(frame), frame);
        return;
      }
      if (frame.channel === GATEWAY) this._hello(frame.payload);
      const channel = this._channels.get(frame.channel);
      if (channel) channel._listeners.emit(frame.payload, frame);
    }

    /** Settle the request this frame answers; false when no request is waiting for it. */
    _settle(frame) {
      const pending = frame.id !== undefined && frame.id !== null ? this._pending.get(frame.id) : undefined;
      if (!pending) return false;
      this._pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.error) pending.reject(frameError(frame));
      else pending.resolve(frame.payload);
      return true;
    }

    /** The server's hello opens the client: the socket is authenticated, the on-connect frames follow. */
    _hello(payload) {
      if (!payload || !payload.user) return;
      this.user = payload.user;
      this.services = Array.isArray(payload.services) ? payload.services : [];
      this.attempt = 0;
      this._startPing();
      this._setState(STATES.OPEN, { user: this.user, services: this.services });
    }

    /** Send a frame without waiting for a reply. False when the socket is not open. */
    send(channel, payload, id) {
      if (!this.connected) return false;
      const frame = { channel, payload };
      if (id !== undefined && id !== null) frame.id = id;
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
        const timer =
          timeout > 0
            ? setTimeout(() => {
                this._pending.delete(id);
                reject(new WSGatewayError("timeout", `No reply within ${timeout} ms.`));
              }, timeout)
            : null;
        this._pending.set(id, { resolve, reject, timer });
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
      WebSocket: global.WebSocket,
    },
    scriptConfig(),
  );
  WSGateway.STATES = STATES;
  WSGateway.Error = WSGatewayError;
  WSGateway.CLOSE_UNAUTHORIZED = CLOSE_UNAUTHORIZED;

  // -- built-in services ---------------------------------------------------------------

  /**
   * A built-in helper: a channel and local state that follows the server. The reply to one of
   * its actions carries the same state as the push that follows it, so `_apply` takes both, and the
   * helper is right as soon as the action's Promise resolves, before the push arrives.
   */
  class Service {
    constructor(gateway, name) {
      this.channel = gateway.channel(name);
      this.channel.on((payload) => this._apply(payload));
    }

    _act(action, data) {
      return this.channel.action(action, data).then((reply) => {
        this._apply(reply);
        return reply;
      });
    }
  }

  /** The "notifications" channel: unread count, newest unread category, list, read state. */
  class Notifications extends Service {
    constructor(gateway) {
      super(gateway, "notifications");
      this.unread = 0;
      this.category = null;
      this.last = null;
      this._change = new Listeners();
      this._notification = new Listeners();
    }

    /** handler({unread, category}) after every frame that carries the unread state. */
    onChange(handler) {
      return this._change.add(handler);
    }

    /** handler(notification) for each notification the server pushes (created, or saved again). */
    onNotification(handler) {
      return this._notification.add(handler);
    }

    _apply(payload) {
      if (!payload || typeof payload !== "object") return;
      if (typeof payload.unread === "number") this.unread = payload.unread;
      const last = payload.last;
      if (last) this.last = last;
      if ("category" in payload && !(last && last.is_read)) this.category = payload.category;
      if (this.unread === 0) this.category = null;
      if (last) this._notification.emit(last);
      this._change.emit({ unread: this.unread, category: this.category });
    }

    /**
     * Newest first: resolves with {notifications, has_more, unread, category}. Reading a page
     * changes nothing, so it fires no onChange (a page can reload its list from onChange).
     */
    list(options) {
      const data = {};
      const given = options || {};
      if (given.before !== undefined) data.before = given.before;
      if (given.limit !== undefined) data.limit = given.limit;
      if (given.unreadOnly !== undefined) data.unread_only = given.unreadOnly;
      return this.channel.action("list", data);
    }

    /** Mark notifications read by id; resolves with {unread, category}. */
    markRead(ids) {
      return this._act("mark_read", Array.isArray(ids) ? ids : [ids]);
    }

    markAllRead() {
      return this._act("mark_all_read", null);
    }
  }

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

    _apply(payload) {
      if (!payload || !Array.isArray(payload.clipboard)) return;
      this.entries = payload.clipboard;
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

  global.WSGateway = WSGateway;
  global.WSGatewayError = WSGatewayError;
})(typeof window !== "undefined" ? window : globalThis);
