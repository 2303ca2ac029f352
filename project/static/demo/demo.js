// The demo page: everything on it is driven by one WSGateway socket.
(function () {
  "use strict";

  const gw = new WSGateway();
  window.gateway = gw; // for the browser console
  const { CONNECTING, OPEN, CLOSED, UNAUTHORIZED, GONE } = WSGateway.STATES;

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  /** el("li", {class: "x", dataset: {id: 1}}, child, "text") */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const ICONS = {
    debug: '<circle cx="12" cy="12" r="3"/><path d="M12 2v3M12 19v3M2 12h3M19 12h3"/>',
    info: '<circle cx="12" cy="12" r="10"/><path d="M12 16v-4M12 8h.01"/>',
    success: '<circle cx="12" cy="12" r="10"/><path d="m8 12 3 3 5-6"/>',
    warning: '<path d="M10.29 3.86 1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z"/><path d="M12 9v4M12 17h.01"/>',
    error: '<circle cx="12" cy="12" r="10"/><path d="m15 9-6 6M9 9l6 6"/>',
    close: '<path d="M18 6 6 18M6 6l12 12"/>',
    text: '<path d="M4 7V4h16v3M9 20h6M12 4v16"/>',
    file: '<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z"/><path d="M14 2v6h6"/>',
  };

  function icon(name) {
    const span = el("span", { class: "icon-wrap" });
    span.innerHTML =
      '<svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" ' +
      'stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">' +
      (ICONS[name] || ICONS.info) +
      "</svg>";
    return span;
  }

  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  function ago(iso) {
    if (!iso) return "";
    const seconds = (Date.parse(iso) - Date.now()) / 1000;
    const elapsed = -seconds;
    if (elapsed < 45) return "just now";
    if (elapsed < 3600) return relative.format(Math.round(seconds / 60), "minute");
    if (elapsed < 86400) return relative.format(Math.round(seconds / 3600), "hour");
    if (elapsed < 7 * 86400) return relative.format(Math.round(seconds / 86400), "day");
    return new Date(iso).toLocaleDateString();
  }

  function timeElement(iso) {
    return el("time", { datetime: iso, title: iso ? new Date(iso).toLocaleString() : "", text: ago(iso) });
  }

  setInterval(() => {
    for (const node of $$("time[datetime]")) node.textContent = ago(node.getAttribute("datetime"));
  }, 30000);

  // -- connection state ---------------------------------------------------------------

  const connection = $("#connection");
  const retryNow = $("#retry-now");
  retryNow.addEventListener("click", () => gw.connect());

  gw.on("state", (state, info) => {
    document.body.dataset.gwState = state;
    connection.dataset.state = state;
    let text = "Live";
    if (state === CONNECTING) text = gw.attempt > 0 ? "Reconnecting…" : "Connecting…";
    else if (state === CLOSED && info.maintenance) {
      // The server's reason, and when this tab comes back by itself (wsgateway.js waits retry_after).
      const seconds = Math.ceil(info.maintenance.reconnectIn / 1000);
      text = `Maintenance: ${info.maintenance.reason} · back in ${seconds} s`;
    } else if (state === CLOSED) text = info.reconnectIn === null ? "Disconnected" : "Offline · reconnecting";
    else if (state === UNAUTHORIZED) text = "Signed out";
    else if (state === GONE) text = `Unavailable: ${info.error.message}`;
    connection.dataset.maintenance = state === CLOSED && info.maintenance ? "on" : "";
    $(".connection-text", connection).textContent = text;
    connection.title = text; // the text is hidden on narrow screens
    retryNow.hidden = !(state === CLOSED && info.reconnectIn !== null && info.reconnectIn > 1500);
    for (const button of $$("[data-needs-socket]")) button.disabled = state !== OPEN;
    $("#notify-button").disabled = state === UNAUTHORIZED; // a plain POST, but it needs the session
    const signedOut = $("#signed-out");
    signedOut.hidden = state !== UNAUTHORIZED;
    if (state === UNAUTHORIZED) {
      $("#signed-out-reason").textContent =
        info.error && info.error.code === "logged_out" ? "You logged out in another tab." : "Your session has ended.";
    }
    if (state === OPEN) reloadList();
  });

  // -- notifications: bell, list, toasts ----------------------------------------------

  const badge = $("#bell-badge");
  const bell = $("#bell");
  const list = $("#notification-list");
  let shown = [];
  let hasMore = false;
  /** Ids of the notifications a catch-up brought (they arrived while this tab was offline), marked in the list. */
  const missed = new Set();

  gw.notifications.onChange(({ unread, category }) => {
    badge.hidden = unread === 0;
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.className = "badge badge--" + (category || "info");
    bell.setAttribute("aria-label", unread ? `Notifications, ${unread} unread` : "Notifications");
    document.title = (unread ? `(${unread}) ` : "") + "Inbox · wsgateway demo";
    $("#inbox-summary").textContent = unread
      ? `${unread} unread notification${unread === 1 ? "" : "s"}`
      : "No unread notifications";
    $("#mark-all-read").classList.toggle("is-quiet", unread === 0);
    reloadList(); // read state may have changed in another tab
  });

  // Each new notification comes once and in order, live or after a reconnect: newest goes on top.
  gw.notifications.onNotification((notification, { catchUp }) => {
    if (!shown.some((item) => item.id === notification.id)) {
      shown.unshift(notification);
      renderList();
    }
    // What a catch-up brings is summed up in one note (below), not a toast each.
    if (!catchUp && !notification.is_read) toast(notification);
  });

  // Saved again (e.g. edited in the admin): the row changes in place, without a toast.
  gw.notifications.onUpdate((notification) => {
    const index = shown.findIndex((item) => item.id === notification.id);
    if (index < 0) return;
    shown[index] = notification;
    renderList();
  });

  // -- what arrived while offline ------------------------------------------------------

  const catchUpNote = $("#catch-up-note");
  let caughtUp = 0;

  gw.notifications.onCatchUp((notifications) => {
    caughtUp += notifications.length;
    for (const notification of notifications) missed.add(notification.id);
    $(".catch-up-text", catchUpNote).textContent =
      `${caughtUp} notification${caughtUp === 1 ? "" : "s"} arrived while you were offline`;
    catchUpNote.hidden = false;
    logEvent("sync", `caught up: ${notifications.length} missed notification${notifications.length === 1 ? "" : "s"}`);
    renderList();
    reloadList(); // their read state: another tab may have marked them read meanwhile
  });

  $("#catch-up-dismiss").addEventListener("click", () => {
    catchUpNote.hidden = true;
    caughtUp = 0;
    missed.clear();
    renderList();
  });

  let reloadTimer = null;
  function reloadList() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => {
      const limit = Math.min(100, Math.max(20, shown.length));
      gw.notifications
        .list({ limit })
        .then((page) => {
          shown = page.notifications;
          hasMore = page.has_more;
          renderList();
        })
        .catch(() => {}); // offline: the next "open" reloads
    }, 80);
  }

  $("#load-more").addEventListener("click", () => {
    const oldest = shown[shown.length - 1];
    gw.notifications
      .list({ before: oldest ? oldest.id : undefined, limit: 20 })
      .then((page) => {
        shown = shown.concat(page.notifications.filter((item) => !shown.some((old) => old.id === item.id)));
        hasMore = page.has_more;
        renderList();
      })
      .catch(showError);
  });

  function actionLinks(notification) {
    const actions = Array.isArray(notification.actions) ? notification.actions : [];
    if (!actions.length) return null;
    return el(
      "div",
      { class: "actions" },
      actions.map((action) => {
        // Only http(s) and relative URLs become links: a javascript: URL would run on a click.
        const href = WSGateway.safeUrl(action.url);
        return href
          ? el("a", { href, class: "action-link", text: action.label })
          : el("span", { class: "action-link is-disabled", text: action.label });
      }),
    );
  }

  function meta(notification) {
    const info = notification.metainfo || {};
    return el(
      "div",
      { class: "meta" },
      timeElement(info.createdDatetime),
      info.createdUser ? el("span", { text: `from ${info.createdUser}` }) : el("span", { text: "from the system" }),
    );
  }

  function renderList() {
    list.replaceChildren(
      ...shown.map((notification) =>
        el(
          "li",
          {
            class:
              "notification notification--" +
              notification.category +
              (notification.is_read ? "" : " is-unread") +
              (missed.has(notification.id) ? " is-missed" : ""),
            dataset: { id: notification.id, category: notification.category },
          },
          el("span", { class: "notification-icon" }, icon(notification.category)),
          el(
            "div",
            { class: "notification-body" },
            el("p", { class: "notification-message", text: notification.label }),
            el(
              "div",
              { class: "notification-footer" },
              meta(notification),
              missed.has(notification.id) ? el("span", { class: "pill pill--missed", text: "While offline" }) : null,
              actionLinks(notification),
            ),
          ),
          notification.is_read
            ? el("span", { class: "read-mark", title: "Read" }, "Read")
            : el("button", {
                type: "button",
                class: "button button--small button--ghost mark-read",
                "data-needs-socket": true,
                disabled: gw.state !== OPEN,
                text: "Mark read",
                onclick: () => gw.notifications.markRead([notification.id]).catch(showError),
              }),
        ),
      ),
    );
    $("#inbox-empty").hidden = shown.length > 0;
    $("#load-more-row").hidden = !hasMore;
  }

  $("#mark-all-read").addEventListener("click", () => gw.notifications.markAllRead().catch(showError));

  const toasts = $("#toasts");
  function toast(notification, options) {
    const category = notification.category || "info";
    const node = el(
      "div",
      { class: "toast toast--" + category, role: category === "error" ? "alert" : "status", dataset: { id: notification.id ?? "" } },
      el("span", { class: "toast-icon" }, icon(category)),
      el(
        "div",
        { class: "toast-body" },
        el("p", { class: "toast-message", text: notification.label }),
        notification.metainfo ? meta(notification) : null,
        actionLinks(notification),
      ),
      el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => dismiss() }, icon("close")),
    );
    let timer = null;
    const arm = () => (timer = setTimeout(dismiss, (options && options.duration) || 8000));
    function dismiss() {
      clearTimeout(timer);
      node.classList.add("is-leaving");
      setTimeout(() => node.remove(), 200);
    }
    node.addEventListener("mouseenter", () => clearTimeout(timer));
    node.addEventListener("mouseleave", arm);
    toasts.prepend(node);
    while (toasts.children.length > 3) toasts.lastElementChild.remove();
    arm();
  }

  function showError(error) {
    const offline = error && (error.code === "not_connected" || error.code === "closed");
    toast({
      category: "error",
      label: offline ? "You are offline; try again in a moment." : (error && error.message) || String(error),
    });
  }

  // -- "Notify me": a Django view calls notify() ------------------------------------------

  const notifyForm = $("#notify-form");
  for (const preset of $$(".presets .chip")) {
    preset.addEventListener("click", () => {
      $("#notify-message").value = preset.dataset.message;
      $(`input[name=category][value=${preset.dataset.category}]`, notifyForm).checked = true;
    });
  }
  notifyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = $("#notify-button");
    const body = new FormData(notifyForm);
    button.disabled = true;
    fetch(notifyForm.action, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken"), Accept: "application/json" },
      credentials: "same-origin",
    })
      .then((response) => {
        if (!(response.headers.get("Content-Type") || "").includes("json")) {
          // A redirect to the login page: the session is gone.
          throw new Error("Your session has ended: sign in again.");
        }
        return response.json().then((data) => {
          if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
          return data;
        });
      })
      .then(() => {
        const input = $("#notify-message");
        if (input.value === body.get("message")) input.value = ""; // unless typed over meanwhile
        button.classList.add("is-done");
        setTimeout(() => button.classList.remove("is-done"), 1200);
      })
      .catch(showError)
      .finally(() => {
        button.disabled = gw.state === UNAUTHORIZED;
      });
  });

  // -- "Ask my other tabs": a Django view asks this user's sockets, and a tab answers -----------

  /** This tab, so that it declines the question it asks itself. */
  const TAB = Math.random().toString(36).slice(2);
  const OPENED = Date.now();
  gw.channel("demo").handle("where", (data) => {
    if (data && data.asker === TAB) {
      throw Object.assign(new Error("This is the tab that asks."), { code: "asking_tab" });
    }
    logEvent("request", "request: another tab asked which page this one has open");
    return {
      title: document.title,
      path: location.pathname + location.search + location.hash,
      visible: document.visibilityState === "visible",
      openFor: Math.round((Date.now() - OPENED) / 1000),
      draft: $("#notify-message").value,
    };
  });
  const askForm = $("#ask-form");
  askForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = new FormData(askForm);
    body.set("tab", TAB);
    const output = $("#ask-answer");
    output.textContent = "Asking…";
    fetch(askForm.action, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken"), Accept: "application/json" },
      credentials: "same-origin",
    })
      .then((response) => response.json())
      .then((data) => {
        const answer = data.answer;
        if (answer) {
          const where = answer.visible ? "in front" : "in the background";
          const draft = answer.draft ? `, with “${answer.draft}” typed` : "";
          output.textContent = `A tab ${where} has ${answer.path} open (“${answer.title}”, for ${answer.openFor} s${draft}).`;
        } else {
          output.textContent = data.code === "asking_tab" ? "No other tab of yours is open." : data.error || data.message;
        }
      })
      .catch(showError);
  });

  // -- clipboard --------------------------------------------------------------------------

  const clipboardList = $("#clipboard-list");

  gw.clipboard.onChange((entries) => {
    clipboardList.replaceChildren(
      ...entries
        .slice()
        .reverse()
        .map((entry) => {
          const reference = Boolean(entry.model);
          const text = reference ? entry.label : typeof entry.data === "string" ? entry.data : JSON.stringify(entry.data);
          return el(
            "li",
            { class: "clip" + (reference ? " clip--reference" : ""), dataset: { id: entry.id } },
            el("span", { class: "clip-icon" }, icon(reference ? "file" : "text")),
            el(
              "div",
              { class: "clip-body" },
              el("span", { class: "clip-text", text }),
              el(
                "span",
                { class: "clip-meta" },
                reference ? `${entry.model} #${entry.pk} · ` : "Text · ",
                timeElement(entry.created),
              ),
            ),
            el(
              "button",
              {
                type: "button",
                class: "icon-button clip-remove",
                "data-needs-socket": true,
                disabled: gw.state !== OPEN,
                "aria-label": `Remove ${text}`,
                title: "Remove",
                onclick: () => gw.clipboard.remove(entry.id).catch(showError),
              },
              icon("close"),
            ),
          );
        }),
    );
    $("#clipboard-empty").hidden = entries.length > 0;
    $("#clipboard-summary").textContent = entries.length
      ? `${entries.length} item${entries.length === 1 ? "" : "s"}, the same in every tab you have open.`
      : "The same in every tab you have open.";
    const copied = new Set(entries.filter((entry) => entry.model === "demo.document").map((entry) => String(entry.pk)));
    for (const row of $$(".document")) $(".document-copied", row).hidden = !copied.has(row.dataset.pk);
  });

  $("#clipboard-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#clipboard-text");
    const text = input.value.trim();
    if (!text) {
      input.focus();
      return;
    }
    gw.clipboard
      .add(text)
      .then(() => {
        if (input.value.trim() === text) input.value = "";
      })
      .catch(showError);
  });

  $("#clipboard-flush").addEventListener("click", () => gw.clipboard.flush().catch(showError));

  function copyDocuments(pks) {
    gw.clipboard
      .load("demo.document", pks)
      .then((reply) => {
        for (const refused of reply.refused || []) {
          toast({ category: "warning", label: `Document ${refused.id} was not copied: ${refused.message}` });
        }
      })
      .catch(showError);
  }

  for (const row of $$(".document")) {
    $(".document-copy", row).addEventListener("click", () => copyDocuments([Number(row.dataset.pk)]));
  }
  $("#copy-all").addEventListener("click", () => copyDocuments($$(".document").map((row) => Number(row.dataset.pk))));

  // -- the connection card: what the socket does ---------------------------------------

  $("#endpoint").textContent = gw.url;
  const activity = $("#activity-log");
  const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  function logEvent(kind, text) {
    activity.prepend(
      el(
        "li",
        { class: "activity-item activity-item--" + kind },
        el("time", { class: "activity-time", text: clock.format(new Date()) }),
        el("span", { class: "activity-kind", text: kind }),
        el("span", { class: "activity-text", text }),
      ),
    );
    while (activity.children.length > 6) activity.lastElementChild.remove();
  }

  gw.on("state", (state, info) => {
    if (state === OPEN) {
      $("#socket-user").textContent = `${info.user.username} (id ${info.user.id})`;
      $("#socket-services").textContent = info.services.join(", ");
      logEvent("open", "Authenticated by the session cookie");
    } else if (state === CLOSED) {
      const retry = info.reconnectIn === null ? "" : `; retrying in ${(info.reconnectIn / 1000).toFixed(1)} s`;
      logEvent("closed", `Close code ${info.code}${retry}`);
    } else if (state === UNAUTHORIZED) {
      logEvent("unauthorized", `${info.error.code}: not reconnecting`);
    } else {
      logEvent("connecting", gw.attempt ? `Attempt ${gw.attempt + 1}` : gw.url);
    }
  });
  // The first frame of each service after "open" is its on-connect snapshot; later ones are pushes.
  let snapshots = new Set();
  gw.on("gateway", (payload) => {
    if (payload && payload.services) snapshots = new Set(payload.services);
  });
  function frameKind(channel) {
    return snapshots.delete(channel) ? "snapshot" : "push";
  }
  gw.on("notifications", (payload) => {
    const kind = frameKind("notifications");
    if (payload.last) logEvent(kind, `notifications: ${payload.last.category} “${payload.last.label}”`);
    else logEvent(kind, `notifications: ${payload.unread} unread`);
  });
  const entries = (count) => `${count} entr${count === 1 ? "y" : "ies"}`;
  gw.on("clipboard", (payload) => {
    // The snapshot is the whole clipboard; a push is a change: entries added, or ids removed.
    const kind = frameKind("clipboard");
    if (payload.clipboard) logEvent(kind, `clipboard: ${entries(payload.clipboard.length)}`);
    else if (payload.added) logEvent(kind, `clipboard: ${entries(payload.added.length)} added`);
    else if (payload.removed) logEvent(kind, `clipboard: ${entries(payload.removed.length)} removed`);
  });
  gw.on("error", (error) => logEvent("error", `${error.code}: ${error.message}`));
})();
