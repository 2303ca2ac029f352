/*!
 * wsgateway.js: the browser client of wsgateway.
 *
 * Plain JavaScript for current browsers: no build step, no dependencies.
 * Load it with {% load wsgateway %}{% wsgateway_script %}, which also tells it the endpoint.
 * The API is documented in docs/client.md.
 */
(function (global) {
  "use strict";

  /** Close code the server uses for "log in first": never reconnect after it. */
  const CLOSE_UNAUTHORIZED = 4401;
  /** Close code this client uses when it gives up on a socket that stopped answering pings. */
  const CLOSE_PING_TIMEOUT = 4000;
  const GATEWAY = "gateway";
  /** Event names of `on()` that are not channels. */
  const STATE_EVENT = "state";
  const ERROR_EVENT = "error";

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

  class WSGateway {
    /**
     * @param {object} [options] see WSGateway.defaults; `url` may be relative to the page.
     */
    constructor(options) {
      this.options = Object.assign({}, WSGateway.defaults, options || {});
      this.url = resolveUrl(this.options.url);
      /** "connecting", "open", "closed" or "unauthorized". */
      this.state = "closed";
      /** The server's hello: {id, username} and the channels it serves, once open. */
      this.user = null;
      this.services = [];
      /** Failed attempts since the last successful connect; drives the backoff. */
      this.attempt = 0;

      this._socket = null;
      this._listeners = new Map();
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
          if (this.state === "closed" && !this._stopped && this._socket === null) this.connect();
        });
      }
    }

    // -- events ----------------------------------------------------------------------

    /**
     * `on(channel, handler)`: handler(payload, frame) for each frame the server sends on
     * `channel` by itself (on-connect frames and pushes; replies go to `request`).
     * `on("state", handler)`: handler(state, info) on each change of `state`.
     * `on("error", handler)`: handler(error, frame) for error frames no request is waiting for.
     * Returns a function that removes the handler.
     */
    on(name, handler) {
      if (!this._listeners.has(name)) this._listeners.set(name, new Listeners());
      return this._listeners.get(name).add(handler);
    }

    off(name, handler) {
      const listeners = this._listeners.get(name);
      if (listeners) listeners.remove(handler);
    }

    _emit(name, ...args) {
      const listeners = this._listeners.get(name);
      if (listeners) listeners.emit(...args);
    }

    _setState(state, info) {
      this.state = state;
      this._emit(STATE_EVENT, state, info || {});
    }

    // -- connection ------------------------------------------------------------------

    /** Open the socket (again); also the way to retry after "unauthorized", e.g. after a login. */
    connect() {
      this._stopped = false;
      this._clearRetry();
      if (this._socket !== null) return this;
      this._authError = null;
      this._setState("connecting", { attempt: this.attempt });
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
        if (this.state !== "unauthorized") this._setState("closed", { code, reason, reconnectIn: null });
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
        this._setState("unauthorized", Object.assign(info, { error }));
        return;
      }
      if (this._stopped) {
        this._setState("closed", Object.assign(info, { reconnectIn: null }));
        return;
      }
      const delay = this.backoff(this.attempt);
      this.attempt += 1;
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        this.connect();
      }, delay);
      this._setState("closed", Object.assign(info, { reconnectIn: delay, attempt: this.attempt }));
    }

    _clearRetry() {
      if (this._retryTimer !== null) clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }

    _startPing() {
      this._stopPing();
      if (!(this.options.pingInterval > 0)) return;
      this._pingTimer = setInterval(() => {
        this.request(GATEWAY, { action: "ping" }, { timeout: this.options.pingTimeout }).catch((error) => {
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
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (error) {
        return;
      }
      if (frame === null || typeof frame !== "object") return;
      const pending = frame.id !== undefined && frame.id !== null ? this._pending.get(frame.id) : undefined;
      if (pending) {
        this._pending.delete(frame.id);
        clearTimeout(pending.timer);
        if (frame.error) pending.reject(new WSGatewayError(frame.error.code, frame.error.message, frame));
        else pending.resolve(frame.payload);
        return;
      }
      if (frame.error) {
        if (frame.channel === GATEWAY) this._authError = frame.error; // the reason of a 4401 that follows
        this._emit(ERROR_EVENT, new WSGatewayError(frame.error.code, frame.error.message, frame), frame);
        return;
      }
      const payload = frame.payload;
      if (frame.channel === GATEWAY && payload && payload.user) {
        this.user = payload.user;
        this.services = Array.isArray(payload.services) ? payload.services : [];
        this.attempt = 0;
        this._startPing();
        this._setState("open", { user: this.user, services: this.services });
      }
      this._emit(frame.channel, payload, frame);
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
  WSGateway.Error = WSGatewayError;
  WSGateway.CLOSE_UNAUTHORIZED = CLOSE_UNAUTHORIZED;

  /** The "notifications" channel: unread count, newest unread category, list, read state. */
  class Notifications {
    constructor(gateway) {
      this.gateway = gateway;
      this.channel = "notifications";
      this.unread = 0;
      this.category = null;
      this.last = null;
      this._change = new Listeners();
      this._notification = new Listeners();
      gateway.on(this.channel, (payload) => this._update(payload));
    }

    /** handler({unread, category}) after every frame that carries the unread state. */
    onChange(handler) {
      return this._change.add(handler);
    }

    /** handler(notification) for each notification the server pushes (created, or saved again). */
    onNotification(handler) {
      return this._notification.add(handler);
    }

    _update(payload) {
      if (!payload || typeof payload !== "object") return;
      if (typeof payload.unread === "number") this.unread = payload.unread;
      const last = payload.last;
      if (last) this.last = last;
      if ("category" in payload && !(last && last.is_read)) this.category = payload.category;
      if (this.unread === 0) this.category = null;
      if (last) this._notification.emit(last);
      this._change.emit({ unread: this.unread, category: this.category });
    }

    _action(action, data) {
      return this.gateway.request(this.channel, { action, data }).then((reply) => {
        this._update({ unread: reply.unread, category: reply.category });
        return reply;
      });
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
      return this.gateway.request(this.channel, { action: "list", data });
    }

    /** Mark notifications read by id; resolves with {unread, category}. */
    markRead(ids) {
      return this._action("mark_read", Array.isArray(ids) ? ids : [ids]);
    }

    markAllRead() {
      return this._action("mark_all_read", null);
    }
  }

  /** The "clipboard" channel: the user's clipboard, the same in every tab. */
  class Clipboard {
    constructor(gateway) {
      this.gateway = gateway;
      this.channel = "clipboard";
      /** [{id, data, created}] or [{id, model, pk, label, created}], oldest first. */
      this.entries = [];
      this._change = new Listeners();
      gateway.on(this.channel, (payload) => this._set(payload));
    }

    /** handler(entries) whenever the clipboard changes, here or in another tab. */
    onChange(handler) {
      return this._change.add(handler);
    }

    _set(payload) {
      if (!payload || !Array.isArray(payload.clipboard)) return;
      this.entries = payload.clipboard;
      this._change.emit(this.entries);
    }

    _action(action, data) {
      return this.gateway.request(this.channel, { action, data }).then((reply) => {
        this._set(reply);
        return reply;
      });
    }

    /** Store any JSON value. */
    add(data) {
      return this._action("clipboard_add", data);
    }

    /** Add references to objects: load("app_label.model", [pk, ...]); the reply lists "refused" ids. */
    load(model, ids) {
      return this._action("clipboard_load", { model, ids: Array.isArray(ids) ? ids : [ids] });
    }

    remove(id) {
      return this._action("clipboard_remove", id);
    }

    flush() {
      return this._action("clipboard_flush", null);
    }
  }

  global.WSGateway = WSGateway;
  global.WSGatewayError = WSGatewayError;
})(typeof window !== "undefined" ? window : globalThis);
