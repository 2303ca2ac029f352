/*!
 * inbox.js: <wsgateway-inbox>, the drop-in bell, inbox and toasts of wsgateway.
 *
 * Plain JavaScript (ES2020) for current browsers: no build step, no dependencies but wsgateway.js,
 * whose public API it uses (gw.notifications, gw.channel("notifications"), and gw.channel("messages") for
 * Django's messages, shown as toasts too). {% wsgateway_inbox %}
 * renders the element with its words in the page's language; a page that is not a Django template
 * writes <wsgateway-inbox> itself (docs/inbox.md). Strict-CSP safe: no inline script or style, every
 * node is built with the DOM API, and what varies (state, category, theme) is in attributes that
 * inbox.css selects on.
 *
 * Every state a notification has (read, seen, archived, deleted, snoozed) follows the change pushes
 * that gw.notifications hands over (onNotificationChange): an item is updated, added or taken out
 * where it is, in every tab, and after a catch-up too, without listing again.
 */
(function (global) {
  "use strict";

  const TAG = "wsgateway-inbox";
  /** The channel of Django's messages (wsgateway.messages.LiveMessagesMiddleware). */
  const MESSAGES = "messages";
  if (!global.customElements || global.customElements.get(TAG)) return;

  // -- words ---------------------------------------------------------------------------

  /**
   * English defaults. The template tag passes the page's translation as a JSON child
   * (<script type="application/json">, data the CSP does not run); a page without it overrides one
   * word with an attribute: `text-mark-all-read="..."` for `markAllRead`. `{count}`, `{label}`,
   * `{message}`, `{sender}`, `{actor}` and `{others}` are filled in.
   */
  const STRINGS = Object.freeze({
    bell: "Notifications",
    bellUnread: "Notifications, {count} unread",
    title: "Notifications",
    close: "Close",
    tabs: "Show",
    tabUnread: "Unread",
    tabAll: "All",
    tabArchived: "Archived",
    markAllRead: "Mark all read",
    markRead: "Mark read",
    markUnread: "Mark unread",
    archive: "Archive",
    unarchive: "Unarchive",
    delete: "Delete",
    snooze: "Snooze",
    snoozeHour: "For an hour",
    snoozeTomorrow: "Until tomorrow",
    from: "from {sender}",
    groupOther: "{actor} and 1 other",
    groupOthers: "{actor} and {others} others",
    groupCount: "{count} notifications",
    emptyUnread: "You're all caught up",
    emptyAll: "No notifications yet",
    emptyArchived: "Nothing archived",
    loading: "Loading…",
    showNewest: "Back to the newest",
    newNotification: "New notification: {label}",
    dismiss: "Dismiss",
    failed: "That did not work: {message}",
  });

  /** The levels of Django's messages the toasts have a look for (inbox.css, by `data-category`). */
  const LEVELS = new Set(["debug", "info", "success", "warning", "error"]);

  // -- the tables: a new state is a row here --------------------------------------------

  /** Shown by every view: not deleted, not snoozed, not past its `expires_at`. */
  function visible(n) {
    if (n.deleted === true || (typeof n.snoozed_until === "string" && n.snoozed_until)) return false;
    const expires = typeof n.expires_at === "string" ? Date.parse(n.expires_at) : NaN;
    return !(Number.isFinite(expires) && expires <= Date.now());
  }

  /**
   * The tabs, in order. `needs: "states"`: shown only when the server numbers states (its
   * notifications connect frame carries `counts`; docs/protocol.md, "States and changes").
   * `query`: the `list` action's filter. `holds(n)`: whether a notification belongs in this tab,
   * for one pushed live or changed elsewhere; `keeps(n)`, if given, whether an item shown stays
   * (one read in the Unread tab stays, marked read, until the tab is loaded again: it does not
   * jump away under the pointer).
   */
  const TABS = [
    {
      name: "unread",
      label: "tabUnread",
      empty: "emptyUnread",
      query: { unreadOnly: true },
      holds: (n) => visible(n) && !n.archived && !n.is_read,
      keeps: (n) => visible(n) && !n.archived,
    },
    { name: "all", label: "tabAll", empty: "emptyAll", query: {}, holds: (n) => visible(n) && !n.archived },
    {
      name: "archived",
      label: "tabArchived",
      empty: "emptyArchived",
      needs: "states",
      query: { view: "archived" },
      holds: (n) => visible(n) && !!n.archived,
    },
  ];

  /** The snooze menu's times, from now: an hour; tomorrow at 9 in the browser's time zone. */
  const SNOOZES = [
    { name: "hour", label: "snoozeHour", until: (now) => new Date(now.getTime() + 3600 * 1000) },
    {
      name: "tomorrow",
      label: "snoozeTomorrow",
      until: (now) => new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 9, 0, 0),
    },
  ];

  /**
   * An item's actions. `tabs`: where its button shows; `shows(n)`: for which notifications;
   * `run(inbox, n, choice)`: the protocol call (a Promise of the reply); `after`: the states the
   * item has once the server said yes (its change push says the same a moment later, here and in
   * every other tab); `needs`: as for TABS. The names are the protocol's actions. `menu`: a
   * disclosure of choices (the snooze times) instead of one button.
   */
  const ACTIONS = [
    {
      name: "mark_read",
      label: "markRead",
      tabs: ["unread", "all", "archived"],
      shows: (n) => !n.is_read,
      run: (inbox, n) => inbox.notifications.markRead([n.id]),
      after: { is_read: true, seen: true },
    },
    {
      name: "mark_unread",
      label: "markUnread",
      needs: "states",
      tabs: ["unread", "all", "archived"],
      shows: (n) => n.is_read,
      run: (inbox, n) => inbox.notifications.markUnread([n.id]),
      after: { is_read: false },
    },
    {
      name: "archive",
      label: "archive",
      needs: "states",
      tabs: ["unread", "all"],
      shows: () => true,
      run: (inbox, n) => inbox.notifications.archive([n.id]),
      after: { archived: true },
    },
    {
      name: "unarchive",
      label: "unarchive",
      needs: "states",
      tabs: ["archived"],
      shows: () => true,
      run: (inbox, n) => inbox.notifications.unarchive([n.id]),
      after: { archived: false },
    },
    {
      name: "snooze",
      label: "snooze",
      needs: "states",
      tabs: ["unread", "all"],
      shows: () => true,
      menu: SNOOZES,
      run: (inbox, n, choice) => inbox.notifications.snooze([n.id], choice.until(new Date())),
      after: { snoozed_until: "snoozed" },
    },
    {
      name: "delete",
      label: "delete",
      needs: "states",
      tabs: ["unread", "all", "archived"],
      shows: () => true,
      run: (inbox, n) => inbox.notifications.delete([n.id]),
      after: { deleted: true },
    },
  ];

  // -- bounds and defaults (each an attribute of the element) ----------------------------

  /** Notifications per `list` page (`page-size`, 1 to 100, the protocol's bound). */
  const PAGE_SIZE = 20;
  /** Items kept in the page at most (`max-items`): past it the far end is dropped. */
  const MAX_ITEMS = 100;
  /** ms a toast stays (`toast-timeout`), paused while the pointer or the focus is on it. */
  const TOAST_TIMEOUT = 6000;
  /** Toasts shown at once (`max-toasts`): a burst of pushes does not cover the page. */
  const MAX_TOASTS = 3;
  /** px from the list's end at which the next page is asked for. */
  const SCROLL_MARGIN = 80;
  /** Ids per `mark_seen` (the protocol's most), and ms to gather what the inbox shows into one. */
  const SEEN_BATCH = 100;
  const SEEN_DELAY = 200;
  const BADGE_MAX = 99;

  let instances = 0;

  // -- helpers -------------------------------------------------------------------------

  function node(tag, className, attributes, text) {
    const element = global.document.createElement(tag);
    if (className) element.className = className;
    for (const [name, value] of Object.entries(attributes || {})) element.setAttribute(name, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
  }

  function integerAttribute(element, name, fallback, min, max) {
    const value = Number.parseInt(element.getAttribute(name) || "", 10);
    return Number.isInteger(value) ? Math.min(max, Math.max(min, value)) : fallback;
  }

  /** The bell, drawn with SVG attributes (not style), so that no CSP rule is needed for it. */
  function bellIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = global.document.createElementNS(ns, "svg");
    for (const [name, value] of Object.entries({
      viewBox: "0 0 24 24",
      width: "22",
      height: "22",
      fill: "none",
      stroke: "currentColor",
      "stroke-width": "2",
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
      focusable: "false",
    })) {
      svg.setAttribute(name, value);
    }
    for (const d of ["M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9", "M13.7 21a2 2 0 0 1-3.4 0"]) {
      const path = global.document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }

  /**
   * How many notifications of its group a notification stands for (`notify(..., group=)`): 1 for one
   * alone, or from a server that groups nothing.
   */
  function countOf(n) {
    return Number.isInteger(n.count) && n.count > 1 ? n.count : 1;
  }

  /** The newest of a group's senders (`actors`, newest first), or null. */
  function newestActor(n) {
    const actor = Array.isArray(n.actors) ? n.actors[0] : null;
    return typeof actor === "string" && actor ? actor : null;
  }

  /** Who sent it (`notify(..., sender=)`: `metainfo.createdUser`), or null. */
  function senderOf(n) {
    const user = n.metainfo && n.metainfo.createdUser;
    return typeof user === "string" && user ? user : null;
  }

  function relativeTime(iso, locale) {
    const then = Date.parse(iso);
    if (!Number.isFinite(then)) return "";
    const seconds = Math.round((then - Date.now()) / 1000);
    const format = new Intl.RelativeTimeFormat(locale || undefined, { numeric: "auto" });
    for (const [unit, size] of [
      ["day", 86400],
      ["hour", 3600],
      ["minute", 60],
    ]) {
      if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
    }
    return format.format(0, "second");
  }

  // -- the element ---------------------------------------------------------------------

  class WSGatewayInbox extends HTMLElement {
    constructor() {
      super();
      this._built = false;
      this._gateway = null;
      this._unsubscribe = [];
      /** id -> {n, item}: what the list shows, newest first in the DOM. */
      this._items = new Map();
      /** id -> {element, timer}: a notification's id (a number), or "message-<n>" for one of Django's messages. */
      this._toasts = new Map();
      this._messages = 0;
      this._tab = TABS[0].name;
      /**
       * Whether the server numbers states (its connect frame carries `counts`): the archived tab and
       * the actions past "mark read" show only then; an older server has read and unread alone.
       */
      this._numbered = false;
      this._unread = 0;
      /** Ids the inbox showed and that are not seen yet: one `mark_seen` for all of them, soon. */
      this._unseen = new Set();
      this._seenTimer = null;
      /** Bumped on every reload: a page that arrives for an older list is dropped. */
      this._generation = 0;
      this._loading = false;
      this._hasMore = false;
      /** The newest items were dropped to keep the bound: live ones are not put on top then. */
      this._droppedTop = false;
    }

    // -- the gateway ---------------------------------------------------------------------

    /**
     * The WSGateway whose socket the inbox uses. A page that has one sets it (before or after the
     * element is defined), or names the global that holds it in the `gateway` attribute; else the
     * inbox makes its own once the page's scripts have run.
     */
    get gateway() {
      return this._gateway;
    }

    set gateway(gateway) {
      if (gateway === this._gateway) return;
      this._detach();
      this._gateway = gateway || null;
      if (this._gateway && this.isConnected) this._attach();
    }

    get notifications() {
      return this._gateway.notifications;
    }

    get channel() {
      return this._gateway.channel("notifications");
    }

    connectedCallback() {
      if (!this._built) this._build();
      // A page that set `gateway` before this class was defined set a plain property that hides ours.
      if (Object.prototype.hasOwnProperty.call(this, "gateway")) {
        const given = this.gateway;
        delete this.gateway;
        this.gateway = given;
        return;
      }
      if (this._gateway) {
        this._attach();
      } else {
        setTimeout(() => {
          if (this.isConnected && !this._gateway) this.gateway = this._pagesGateway() || new global.WSGateway();
        });
      }
    }

    /** The WSGateway in the global the `gateway` attribute names (`gateway="app.gw"` reads window.app.gw), if any. */
    _pagesGateway() {
      const path = this.getAttribute("gateway");
      if (!path) return null;
      let found = global;
      for (const name of path.split(".")) found = found == null ? undefined : found[name];
      return found instanceof global.WSGateway ? found : null;
    }

    disconnectedCallback() {
      this._detach();
      this._close(false);
    }

    _attach() {
      if (this._unsubscribe.length) return;
      const gw = this._gateway;
      const notifications = gw.notifications;
      this._unsubscribe.push(
        gw.on("state", (state) => this._stateChanged(state)),
        notifications.onChange((state) => this._unreadChanged(state)),
        notifications.onNotification((n, info) => this._arrived(n, info.catchUp)),
        notifications.onUpdate((n) => this._replace(n)),
        notifications.onNotificationChange((n, info) => this._changedState(n, info)),
        notifications.onReset(() => this.isOpen && this._reload(false)),
        this.channel.on((payload) => this._connectFrame(payload)),
        gw.channel(MESSAGES).on((payload) => this._siteMessages(payload)),
      );
      this._stateChanged(gw.state);
      this._numbered = !!notifications.counts;
      this._showTabs();
      this._unreadChanged({ unread: notifications.unread, counts: notifications.counts });
    }

    _detach() {
      for (const unsubscribe of this._unsubscribe) unsubscribe();
      this._unsubscribe = [];
    }

    // -- words ---------------------------------------------------------------------------

    _readStrings() {
      const strings = Object.assign({}, STRINGS);
      const data = this.querySelector(':scope > script[type="application/json"]');
      if (data) {
        try {
          const given = JSON.parse(data.textContent);
          for (const key of Object.keys(STRINGS)) if (typeof given[key] === "string") strings[key] = given[key];
        } catch (error) {
          // Bad JSON: the English defaults, rather than no inbox.
        }
      }
      for (const key of Object.keys(STRINGS)) {
        const attribute = "text-" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
        if (this.hasAttribute(attribute)) strings[key] = this.getAttribute(attribute);
      }
      return strings;
    }

    _t(key, values) {
      return values ? fill(this._strings[key], values) : this._strings[key];
    }

    // -- building ------------------------------------------------------------------------

    _build() {
      this._built = true;
      this._strings = this._readStrings();
      this._pageSize = integerAttribute(this, "page-size", PAGE_SIZE, 1, 100);
      // At least two pages, so that dropping one end never empties what the user looks at.
      this._maxItems = integerAttribute(this, "max-items", MAX_ITEMS, 2 * this._pageSize, 10000);
      this._toastTimeout = integerAttribute(this, "toast-timeout", TOAST_TIMEOUT, 0, 600000);
      this._maxToasts = integerAttribute(this, "max-toasts", MAX_TOASTS, 0, 20);
      const id = (this._id = `${TAG}-${++instances}`);
      const locale = this.closest("[lang]");
      this._locale = locale ? locale.getAttribute("lang") : undefined;

      this._bell = node("button", "wsgi-bell", {
        type: "button",
        "aria-haspopup": "dialog",
        "aria-expanded": "false",
        "aria-controls": `${id}-panel`,
        "aria-label": this._t("bell"),
      });
      this._badge = node("span", "wsgi-badge", { "aria-hidden": "true" });
      this._badge.hidden = true;
      this._bell.append(bellIcon(), this._badge);

      this._panel = node("div", "wsgi-panel", {
        id: `${id}-panel`,
        role: "dialog",
        "aria-modal": "true",
        "aria-labelledby": `${id}-title`,
      });
      this._panel.hidden = true;
      const head = node("div", "wsgi-head");
      const title = node("h2", "wsgi-title", { id: `${id}-title` }, this._t("title"));
      this._markAll = node("button", "wsgi-button wsgi-mark-all", { type: "button" }, this._t("markAllRead"));
      const close = node("button", "wsgi-button wsgi-close", { type: "button", "aria-label": this._t("close") }, "×");
      head.append(title, this._markAll, close);

      this._tablist = node("div", "wsgi-tabs", { role: "tablist", "aria-label": this._t("tabs") });
      this._tabButtons = new Map();
      for (const tab of TABS) {
        const button = node(
          "button",
          "wsgi-tab",
          { type: "button", role: "tab", id: `${id}-tab-${tab.name}`, "aria-controls": `${id}-tabpanel` },
          this._t(tab.label),
        );
        button.dataset.tab = tab.name;
        this._tabButtons.set(tab.name, button);
        this._tablist.append(button);
      }

      this._scroller = node("div", "wsgi-scroll", { role: "tabpanel", id: `${id}-tabpanel` });
      this._newest = node("button", "wsgi-button wsgi-newest", { type: "button" }, this._t("showNewest"));
      this._newest.hidden = true;
      this._list = node("ul", "wsgi-list");
      this._empty = node("p", "wsgi-empty");
      this._empty.hidden = true;
      this._status = node("p", "wsgi-status", {}, this._t("loading"));
      this._status.hidden = true;
      this._scroller.append(this._newest, this._list, this._empty, this._status);
      this._panel.append(head, this._tablist, this._scroller);

      this._toastBox = node("div", "wsgi-toasts");
      this._live = node("div", "wsgi-live", { role: "status", "aria-live": "polite" });

      this.append(this._bell, this._panel, this._toastBox, this._live);
      this._showTabs();

      this._bell.addEventListener("click", () => (this._panel.hidden ? this.open() : this._close(true)));
      this._bell.addEventListener("keydown", (event) => {
        if (event.key === "ArrowDown" && this._panel.hidden) {
          event.preventDefault();
          this.open();
        }
      });
      close.addEventListener("click", () => this._close(true));
      this._markAll.addEventListener("click", () => this._markAllRead());
      this._newest.addEventListener("click", () => this._reload(true));
      this._tablist.addEventListener("click", (event) => {
        const button = event.target.closest("[role=tab]");
        if (button) this._selectTab(button.dataset.tab, true);
      });
      this._tablist.addEventListener("keydown", (event) => this._tabKey(event));
      this._list.addEventListener("click", (event) => this._actionClicked(event));
      this._list.addEventListener("keydown", (event) => this._menuKey(event));
      this._list.addEventListener("keydown", (event) => this._itemKey(event));
      this._scroller.addEventListener("scroll", () => this._maybeLoadMore(), { passive: true });
      this._panel.addEventListener("keydown", (event) => this._panelKey(event));
      this._outside = (event) => {
        if (!this._panel.hidden && !this.contains(event.target)) this._close(false);
      };
      global.document.addEventListener("pointerdown", this._outside);
      global.document.addEventListener("visibilitychange", () => this._queueSeen());
    }

    // -- opening and closing -------------------------------------------------------------

    get isOpen() {
      return this._built && !this._panel.hidden;
    }

    open() {
      if (this.isOpen) return;
      this._panel.hidden = false;
      this._bell.setAttribute("aria-expanded", "true");
      this.setAttribute("open", "");
      this._align();
      this._selectTab(this._tab, false);
      this._tabButtons.get(this._tab).focus();
    }

    close() {
      this._close(true);
    }

    /** The panel hangs from the bell's right edge, or from its left one when it would leave the window there. */
    _align() {
      this._panel.classList.remove("wsgi-panel--start");
      if (this._panel.getBoundingClientRect().left < 0) this._panel.classList.add("wsgi-panel--start");
    }

    _close(refocus) {
      if (!this.isOpen) return;
      this._panel.hidden = true;
      this._bell.setAttribute("aria-expanded", "false");
      this.removeAttribute("open");
      if (refocus) this._bell.focus();
    }

    /** Escape closes; Tab and Shift+Tab go round the panel's controls and stay inside it. */
    _panelKey(event) {
      if (event.key === "Escape") {
        event.preventDefault();
        this._close(true);
        return;
      }
      if (event.key !== "Tab") return;
      const focusable = Array.from(
        this._panel.querySelectorAll('button:not([disabled]), a[href], [tabindex="0"]'),
      ).filter((element) => !element.closest("[hidden]") && element.tabIndex >= 0);
      if (!focusable.length) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      const active = global.document.activeElement;
      if (event.shiftKey && (active === first || !this._panel.contains(active))) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (active === last || !this._panel.contains(active))) {
        event.preventDefault();
        first.focus();
      }
    }

    // -- tabs ----------------------------------------------------------------------------

    _visibleTabs() {
      return TABS.filter((tab) => !tab.needs || this._numbered);
    }

    _showTabs() {
      const visible = new Set(this._visibleTabs().map((tab) => tab.name));
      for (const [name, button] of this._tabButtons) button.hidden = !visible.has(name);
      if (!visible.has(this._tab)) this._selectTab(TABS[0].name, false);
      else this._markSelected();
    }

    _markSelected() {
      for (const [name, button] of this._tabButtons) {
        const selected = name === this._tab;
        button.setAttribute("aria-selected", String(selected));
        button.tabIndex = selected ? 0 : -1;
      }
      this._scroller.setAttribute("aria-labelledby", `${this._id}-tab-${this._tab}`);
    }

    _selectTab(name, focus) {
      this._tab = name;
      this._markSelected();
      if (focus) this._tabButtons.get(name).focus();
      if (this.isOpen) this._reload(false);
    }

    /** Arrow keys, Home and End move between the tabs (and select, as the ARIA pattern does). */
    _tabKey(event) {
      const names = this._visibleTabs().map((tab) => tab.name);
      const at = names.indexOf(this._tab);
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: names.length - 1 }[event.key];
      if (to === undefined) {
        if (event.key === "ArrowDown") {
          event.preventDefault();
          this._focusItem(0);
        }
        return;
      }
      event.preventDefault();
      this._selectTab(names[(to + names.length) % names.length], true);
    }

    // -- the list ------------------------------------------------------------------------

    _tabRow() {
      return TABS.find((tab) => tab.name === this._tab);
    }

    /** Empty the list and load its first page (focus stays where it is). */
    _reload(focusFirst) {
      this._generation += 1;
      this._items.clear();
      this._list.replaceChildren();
      this._hasMore = true;
      this._droppedTop = false;
      this._newest.hidden = true;
      this._loading = false;
      this._loadPage(null).then(() => {
        if (focusFirst) this._focusItem(0);
      });
    }

    _maybeLoadMore() {
      const box = this._scroller;
      if (box.scrollTop + box.clientHeight >= box.scrollHeight - SCROLL_MARGIN) this._loadPage(this._lastId());
    }

    _lastId() {
      const last = this._list.lastElementChild;
      return last ? Number(last.dataset.id) : null;
    }

    _loadPage(before) {
      if (this._loading || !this._hasMore || !this._gateway) return Promise.resolve();
      const generation = this._generation;
      const tab = this._tabRow();
      const options = Object.assign({ limit: this._pageSize }, tab.query);
      if (before !== null) options.before = before;
      this._loading = true;
      this._status.hidden = false;
      // Through gw.notifications: each notification in the newest state this page knows, so that a
      // change pushed while the page was on its way is not undone by it.
      return this.notifications.list(options).then(
        (page) => {
          if (generation !== this._generation) return;
          this._loading = false;
          this._status.hidden = true;
          const found = page && Array.isArray(page.notifications) ? page.notifications : [];
          for (const n of found) if (!this._items.has(n.id) && tab.holds(n)) this._list.append(this._render(n));
          this._queueSeen();
          this._hasMore = !!(page && page.has_more) && found.length > 0;
          this._trimTop();
          this._showEmpty();
          // A short page leaves the end in view: no scroll will come to ask for the next one.
          this._maybeLoadMore();
        },
        (error) => {
          if (generation !== this._generation) return;
          this._loading = false;
          this._status.hidden = true;
          this._failed(error);
        },
      );
    }

    /** Past the bound, the newest items go (the user scrolled away from them): "back to the newest" brings them. */
    _trimTop() {
      let extra = this._items.size - this._maxItems;
      if (extra <= 0) return;
      const box = this._scroller;
      const before = box.scrollHeight;
      while (extra-- > 0) this._remove(Number(this._list.firstElementChild.dataset.id));
      // Keep what the user looks at in place.
      box.scrollTop -= before - box.scrollHeight;
      this._droppedTop = true;
      this._newest.hidden = false;
    }

    /** Past the bound, at the top: the oldest go, and scrolling down loads them again. */
    _trimBottom() {
      let extra = this._items.size - this._maxItems;
      if (extra <= 0) return;
      while (extra-- > 0) this._remove(Number(this._list.lastElementChild.dataset.id));
      this._hasMore = true;
    }

    _showEmpty() {
      const empty = this._items.size === 0 && !this._loading;
      this._empty.hidden = !empty;
      this._empty.textContent = this._t(this._tabRow().empty);
    }

    _render(n) {
      const item = node("li", "wsgi-item", { tabindex: "-1", "aria-labelledby": `${this._id}-n${n.id}` });
      item.dataset.id = String(n.id);
      this._items.set(n.id, { n, item });
      this._fillItem(item, n);
      return item;
    }

    _fillItem(item, n) {
      item.dataset.category = typeof n.category === "string" ? n.category : "";
      item.dataset.read = String(!!n.is_read);
      item.dataset.seen = String(n.seen !== false);
      item.dataset.count = String(countOf(n));
      const body = node("div", "wsgi-body");
      body.append(node("p", "wsgi-label", { id: `${this._id}-n${n.id}` }, String(n.label || "")));
      const meta = node("p", "wsgi-meta");
      const created = n.metainfo && n.metainfo.createdDatetime;
      if (created) meta.append(node("time", "wsgi-time", { datetime: created }, relativeTime(created, this._locale)));
      this._appendWho(meta, n);
      for (const action of Array.isArray(n.actions) ? n.actions : []) {
        const href = global.WSGateway.safeUrl(action.url);
        meta.append(href ? node("a", "wsgi-link", { href }, action.label) : node("span", "wsgi-link", {}, action.label));
      }
      body.append(meta);
      const buttons = node("div", "wsgi-actions");
      for (const action of this._actionsFor(n)) {
        const button = node("button", "wsgi-button wsgi-action", { type: "button" }, this._t(action.label));
        button.dataset.action = action.name;
        buttons.append(button);
        if (action.menu) buttons.append(this._menu(button, action, n));
      }
      item.replaceChildren(node("span", "wsgi-dot", { "aria-hidden": "true" }), body, buttons);
    }

    /**
     * A disclosure (not an ARIA menu: two buttons need no roving focus): the action's button says
     * whether its choices are shown, and they follow it in the tab order. Escape closes it.
     */
    _menu(button, action, n) {
      const menu = node("div", "wsgi-choices", { id: `${this._id}-${action.name}-${n.id}` });
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.setAttribute("aria-controls", menu.id);
      for (const choice of action.menu) {
        const item = node("button", "wsgi-button wsgi-choice", { type: "button" }, this._t(choice.label));
        item.dataset.action = action.name;
        item.dataset.choice = choice.name;
        menu.append(item);
      }
      return menu;
    }

    _actionsFor(n) {
      return ACTIONS.filter(
        (action) => (!action.needs || this._numbered) && action.tabs.includes(this._tab) && action.shows(n),
      );
    }

    /**
     * Fill an item again with its notification's state. A change may come while the user is on the
     * item (the seen its own inbox just sent, a read in another tab): an open snooze choice stays
     * open, and the focus goes back to the same control, or to the item if that control is gone.
     */
    _refresh(id) {
      const entry = this._items.get(id);
      if (!entry) return;
      const active = global.document.activeElement;
      const focused = entry.item.contains(active);
      const key = (button) => (button ? `${button.dataset.action}|${button.dataset.choice || ""}` : null);
      const focusedKey = focused && active.matches("button[data-action]") ? key(active) : null;
      const expanded = key(entry.item.querySelector('button[aria-expanded="true"]'));
      this._fillItem(entry.item, entry.n);
      const buttons = Array.from(entry.item.querySelectorAll("button[data-action]"));
      const reopened = buttons.find((button) => button.hasAttribute("aria-expanded") && key(button) === expanded);
      if (reopened) {
        reopened.setAttribute("aria-expanded", "true");
        this.querySelector(`#${reopened.getAttribute("aria-controls")}`).hidden = false;
      }
      if (!focused) return;
      const again = buttons.find((button) => key(button) === focusedKey);
      (again && !again.closest("[hidden]") ? again : entry.item).focus();
    }

    _remove(id) {
      const entry = this._items.get(id);
      if (!entry) return;
      entry.item.remove();
      this._items.delete(id);
    }

    /** Drop one item from the list (an action moved it out of this tab). */
    removeItem(id) {
      this._remove(id);
      this._showEmpty();
    }

    _focusItem(index) {
      const items = this._list.children;
      if (!items.length) return;
      const item = items[Math.max(0, Math.min(items.length - 1, index))];
      for (const other of items) other.tabIndex = other === item ? 0 : -1;
      item.focus();
    }

    /** ArrowUp and ArrowDown move between items, Home and End to the ends; Tab reaches an item's buttons. */
    _itemKey(event) {
      const item = event.target.closest(".wsgi-item");
      if (!item || event.defaultPrevented || !["ArrowDown", "ArrowUp", "Home", "End"].includes(event.key)) return;
      event.preventDefault();
      const index = Array.prototype.indexOf.call(this._list.children, item);
      const to = { ArrowDown: index + 1, ArrowUp: index - 1, Home: 0, End: this._list.children.length - 1 }[event.key];
      if (to < 0) {
        this._tabButtons.get(this._tab).focus();
        return;
      }
      this._focusItem(to);
      if (to >= this._list.children.length - 1) this._maybeLoadMore();
    }

    _actionClicked(event) {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const id = Number(button.closest(".wsgi-item").dataset.id);
      const action = ACTIONS.find((row) => row.name === button.dataset.action);
      const entry = this._items.get(id);
      if (!action || !entry) return;
      if (action.menu && !button.dataset.choice) {
        this._toggleMenu(button, button.getAttribute("aria-expanded") !== "true");
        return;
      }
      const choice = action.menu ? action.menu.find((row) => row.name === button.dataset.choice) : undefined;
      button.disabled = true;
      action.run(this, entry.n, choice).then(
        () => this._show(Object.assign({}, entry.n, action.after)),
        (error) => {
          button.disabled = false;
          this._failed(error);
        },
      );
    }

    _toggleMenu(button, open) {
      const menu = this.querySelector(`#${button.getAttribute("aria-controls")}`);
      if (!menu) return;
      button.setAttribute("aria-expanded", String(open));
      menu.hidden = !open;
      if (open) menu.querySelector("button").focus();
    }

    /** Escape in an open disclosure closes it (and not the inbox), the focus back on its button. */
    _menuKey(event) {
      const menu = event.target.closest(".wsgi-choices");
      if (event.key !== "Escape" || !menu) return;
      event.preventDefault();
      event.stopPropagation();
      const button = this.querySelector(`[aria-controls="${menu.id}"]`);
      this._toggleMenu(button, false);
      button.focus();
    }

    _markAllRead() {
      this._markAll.disabled = true;
      this.notifications.markAllRead().then(
        () => this._allRead(),
        (error) => {
          this._markAll.disabled = this._unread === 0;
          this._failed(error);
        },
      );
    }

    _failed(error) {
      this._announce(this._t("failed", { message: (error && error.message) || String(error) }));
    }

    // -- what the server says ------------------------------------------------------------

    _stateChanged(state) {
      this.dataset.state = state;
    }

    /**
     * The notifications connect frame (it carries `seq` and no `last`): a server that sends `counts`
     * numbers every state (docs/protocol.md, "States and changes"), so its tabs and actions show.
     */
    _connectFrame(payload) {
      if (!payload || payload.last || payload.changes || !Number.isInteger(payload.seq)) return;
      const numbered = !!payload.counts && typeof payload.counts === "object";
      if (numbered === this._numbered) return;
      this._numbered = numbered;
      this._showTabs();
      for (const id of this._items.keys()) this._refresh(id);
    }

    /** The badge is the server's `counts.badge` (unread or unseen, as the site says), else the unread count. */
    _unreadChanged(state) {
      const unread = state.unread;
      const counts = state.counts;
      const count = counts && typeof counts.badge === "number" ? counts.badge : unread;
      this._unread = unread;
      this._badge.hidden = count === 0;
      this._badge.textContent = count > BADGE_MAX ? `${BADGE_MAX}+` : String(count);
      this.dataset.unread = String(unread);
      this.dataset.badge = String(count);
      this._bell.setAttribute("aria-label", unread ? this._t("bellUnread", { count: unread }) : this._t("bell"));
      this._markAll.disabled = unread === 0;
      if (unread === 0) this._allRead();
    }

    /** Everything is read (here or in another tab): no item is unread, no toast stays. */
    _allRead() {
      for (const [id, entry] of this._items) {
        if (entry.n.is_read) continue;
        entry.n.is_read = true;
        this._show(entry.n);
      }
      // Django's messages were never unread: they stay their time.
      for (const id of Array.from(this._toasts.keys())) if (typeof id === "number") this._dismissToast(id);
    }

    /**
     * A change of a notification, here or in another tab, live or from a catch-up: its item is
     * updated, added or taken out where it is, and a toast goes when it is read or hidden. One that
     * comes back from a snooze is new again: a toast, as for a new one. One that another of its group
     * updated (`grouped`) is updated where it is, and so is its toast (or it gets one, if it had none).
     */
    _changedState(n, info) {
      const news = info.change === "unsnoozed" || info.change === "grouped";
      if (news && !info.catchUp && visible(n) && !n.is_read && !n.archived) this._toast(n);
      this._show(n);
    }

    /**
     * Show `n` (a notification in its newest state) where it belongs: in place when the list has
     * it and the tab holds it, out when the tab no longer does, in by id order when the tab holds it
     * and the list covers where it goes (one the page never had the content of is left to `list`).
     */
    _show(n) {
      const entry = this._items.get(n.id);
      if (!(visible(n) && !n.archived && !n.is_read)) this._dismissToast(n.id);
      const holds = this._tabRow().holds(n);
      if (entry) {
        entry.n = Object.assign({}, entry.n, n);
        const tab = this._tabRow();
        if ((tab.keeps || tab.holds)(entry.n)) {
          this._refresh(n.id);
          this._queueSeen(); // unseen again (new activity of its group) while the inbox shows it
        } else this._removeKeepingFocus(n.id);
      } else if (holds && this.isOpen && typeof n.label === "string") {
        const after = Array.from(this._list.children).find((item) => Number(item.dataset.id) < n.id);
        if (!after && (this._hasMore || this._droppedTop)) return; // past what is loaded: scrolling brings it
        if (after === this._list.firstElementChild && this._droppedTop) return;
        this._list.insertBefore(this._render(n), after || null);
        this._trimBottom();
        this._queueSeen();
      }
      this._showEmpty();
    }

    /** An item leaves the list; the focus, if it was inside, goes to its neighbour, not to the page. */
    _removeKeepingFocus(id) {
      const entry = this._items.get(id);
      if (!entry) return;
      const focused = entry.item.contains(global.document.activeElement);
      const neighbour = entry.item.nextElementSibling || entry.item.previousElementSibling;
      this._remove(id);
      if (!focused) return;
      if (neighbour) this._focusItem(Array.prototype.indexOf.call(this._list.children, neighbour));
      else this._tabButtons.get(this._tab).focus();
    }

    /**
     * What the open inbox shows, in a tab in view, is seen: its unseen ids, gathered for a moment, go in
     * one `mark_seen` (at most SEEN_BATCH; the rest on the next look). Not against a server without states.
     */
    _queueSeen() {
      // A tab in the background shows nothing: its open inbox marks seen when it is looked at again.
      if (!this.isOpen || !this._numbered || global.document.visibilityState === "hidden") return;
      for (const [id, entry] of this._items) if (entry.n.seen === false && this._unseen.size < SEEN_BATCH) this._unseen.add(id);
      if (!this._unseen.size || this._seenTimer !== null) return;
      this._seenTimer = setTimeout(() => {
        this._seenTimer = null;
        const ids = Array.from(this._unseen);
        this._unseen.clear();
        this.notifications.markSeen(ids).then(
          () => {
            for (const id of ids) {
              const entry = this._items.get(id);
              if (entry) entry.n.seen = true;
            }
          },
          () => {
            // One deleted meanwhile makes the whole call not_found; the next look asks again.
          },
        );
      }, SEEN_DELAY);
    }

    _arrived(n, catchUp) {
      if (!catchUp && !n.is_read && !n.archived) this._toast(n);
      if (!this.isOpen || this._droppedTop || this._items.has(n.id) || !this._tabRow().holds(n)) return;
      this._list.prepend(this._render(n));
      this._trimBottom();
      this._showEmpty();
      this._queueSeen();
    }

    /** A notification saved again: the new version where it is shown. */
    _replace(n) {
      const entry = this._items.get(n.id);
      if (!entry) return;
      entry.n = n;
      this._refresh(n.id);
      if (n.is_read) this._dismissToast(n.id);
    }

    // -- toasts --------------------------------------------------------------------------

    /**
     * A toast for `n`, one per notification: one of a group that has a toast already (another of the
     * group arrived: a `grouped` change) updates that toast's words and starts its time again, so a
     * burst of a group is one toast.
     */
    _toast(n) {
      this._announce(this._t("newNotification", { label: String(n.label || "") }));
      if (this._maxToasts === 0) return;
      const shown = this._toasts.get(n.id);
      if (shown) {
        this._fillToast(shown.element, n);
        if (shown.timer !== null) {
          // Not while the pointer or the focus is on it: leaving it starts the time again.
          shown.pause();
          shown.start();
        }
        return;
      }
      const toast = node("div", "wsgi-toast");
      toast.dataset.id = String(n.id);
      this._fillToast(toast, n);
      this._addToast(n.id, toast);
    }

    /**
     * Django's messages pushed on the "messages" channel, `{messages: [{level, tags, text}]}`: a toast
     * each, with its text as text (a message may hold HTML, which is shown, never run), announced as
     * a notification's is. An unknown level looks like "info".
     */
    _siteMessages(payload) {
      if (!payload || !Array.isArray(payload.messages)) return;
      for (const message of payload.messages) {
        if (!message || typeof message.text !== "string") continue;
        this._announce(message.text);
        if (this._maxToasts === 0) continue;
        const toast = node("div", "wsgi-toast wsgi-message");
        toast.dataset.category = LEVELS.has(message.level) ? message.level : "info";
        if (typeof message.tags === "string") toast.dataset.tags = message.tags;
        const body = node("div", "wsgi-body");
        body.append(node("p", "wsgi-label", {}, message.text));
        const dismiss = node("button", "wsgi-button wsgi-dismiss", { type: "button", "aria-label": this._t("dismiss") }, "×");
        toast.append(node("span", "wsgi-dot", { "aria-hidden": "true" }), body, dismiss);
        this._addToast(`message-${++this._messages}`, toast);
      }
    }

    /** Show `toast` under `id` for the toast time (paused while pointed at or focused), the oldest going past `max-toasts`. */
    _addToast(id, toast) {
      while (this._toasts.size >= this._maxToasts) this._dismissToast(this._toasts.keys().next().value);
      const entry = { element: toast, timer: null, start: null, pause: null };
      entry.start = () => {
        if (this._toastTimeout > 0) entry.timer = setTimeout(() => this._dismissToast(id), this._toastTimeout);
      };
      entry.pause = () => {
        clearTimeout(entry.timer);
        entry.timer = null;
      };
      // On the toast, not its button: an update builds the button again.
      toast.addEventListener("click", (event) => {
        if (event.target.closest(".wsgi-dismiss")) this._dismissToast(id);
      });
      toast.addEventListener("pointerenter", entry.pause);
      toast.addEventListener("pointerleave", entry.start);
      toast.addEventListener("focusin", entry.pause);
      toast.addEventListener("focusout", entry.start);
      this._toasts.set(id, entry);
      this._toastBox.append(toast);
      entry.start();
    }

    /** A toast's words: the label, who (the sender, or the group's newest and how many more), the first link. */
    _fillToast(toast, n) {
      toast.dataset.category = typeof n.category === "string" ? n.category : "";
      toast.dataset.count = String(countOf(n));
      const dismiss = node("button", "wsgi-button wsgi-dismiss", { type: "button", "aria-label": this._t("dismiss") }, "×");
      const body = node("div", "wsgi-body");
      body.append(node("p", "wsgi-label", {}, String(n.label || "")));
      const meta = node("p", "wsgi-meta");
      this._appendWho(meta, n);
      // The notification's first link, checked as the list's are.
      const link = (Array.isArray(n.actions) ? n.actions : []).find((action) => global.WSGateway.safeUrl(action.url));
      if (link) meta.append(node("a", "wsgi-link", { href: global.WSGateway.safeUrl(link.url) }, String(link.label)));
      if (meta.childNodes.length) body.append(meta);
      // The focus stays on the dismiss button when the words change under it.
      const focused = toast.contains(global.document.activeElement);
      toast.replaceChildren(node("span", "wsgi-dot", { "aria-hidden": "true" }), body, dismiss);
      if (focused) dismiss.focus();
    }

    /**
     * Who a notification is from: "from {sender}"; for one that stands for several of its group,
     * "{actor} and {others} others" (the newest sender, and how many more notifications), or
     * "{count} notifications" when no one sent them, with the count in a chip.
     */
    _appendWho(meta, n) {
      const count = countOf(n);
      if (count > 1) {
        const actor = newestActor(n);
        const others = count - 1;
        const words = actor
          ? this._t(others === 1 ? "groupOther" : "groupOthers", { actor, others })
          : this._t("groupCount", { count });
        meta.append(node("span", "wsgi-group", {}, words));
        meta.append(node("span", "wsgi-count", { "aria-hidden": "true" }, String(count)));
        return;
      }
      const sender = senderOf(n);
      if (sender) meta.append(node("span", "wsgi-sender", {}, this._t("from", { sender })));
    }

    _dismissToast(id) {
      const entry = this._toasts.get(id);
      if (!entry) return;
      clearTimeout(entry.timer);
      this._toasts.delete(id);
      entry.element.remove();
    }

    /** Polite: said after what the user is hearing now. Emptied first, so the same words are said again. */
    _announce(text) {
      this._live.textContent = "";
      setTimeout(() => (this._live.textContent = text), 50);
    }
  }

  WSGatewayInbox.TABS = TABS;
  WSGatewayInbox.ACTIONS = ACTIONS;
  WSGatewayInbox.STRINGS = STRINGS;
  global.WSGatewayInbox = WSGatewayInbox;
  global.customElements.define(TAG, WSGatewayInbox);
})(typeof window !== "undefined" ? window : globalThis);
