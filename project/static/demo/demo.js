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
    close: '<path d="M18 6 6 18M6 6l12 12"/>',
    text: '<path d="M4 7V4h16v3M9 20h6M12 4v16"/>',
    file: '<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z"/><path d="M14 2v6h6"/>',
  };

  function icon(name) {
    const span = el("span", { class: "icon-wrap" });
    span.innerHTML =
      '<svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" ' +
      'stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">' +
      ICONS[name] +
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
  });

  // -- notifications: the inbox in the top bar shows them ---------------------------------

  // <wsgateway-inbox> (the {% wsgateway_inbox %} tag) is the bell, the list and the toasts, on this socket.
  // The page adds what is its own: the count in the tab's title, and the badge in the colour of the
  // newest unread notification's category (demo.css sets the inbox's custom property for it).
  const inbox = $("wsgateway-inbox");
  gw.notifications.onChange(({ unread, category }) => {
    document.title = (unread ? `(${unread}) ` : "") + "Inbox · wsgateway demo";
    inbox.dataset.badgeCategory = category || "info";
  });

  // -- what arrived while offline ------------------------------------------------------

  // The inbox lists what a catch-up brought without a toast each; this note says how many came.
  const catchUpNote = $("#catch-up-note");
  let caughtUp = 0;

  gw.notifications.onCatchUp((notifications) => {
    caughtUp += notifications.length;
    $(".catch-up-text", catchUpNote).textContent =
      `${caughtUp} notification${caughtUp === 1 ? "" : "s"} arrived while you were offline`;
    catchUpNote.hidden = false;
    logEvent("sync", `caught up: ${notifications.length} missed notification${notifications.length === 1 ? "" : "s"}`);
  });

  $("#catch-up-dismiss").addEventListener("click", () => {
    catchUpNote.hidden = true;
    caughtUp = 0;
  });

  // -- what went wrong with something the page did -----------------------------------------

  const pageError = $("#page-error");
  let pageErrorTimer = null;

  function showProblem(text) {
    $("#page-error-text").textContent = text;
    pageError.hidden = false;
    clearTimeout(pageErrorTimer);
    pageErrorTimer = setTimeout(() => (pageError.hidden = true), 8000);
  }

  function showError(error) {
    const offline = error && (error.code === "not_connected" || error.code === "closed");
    showProblem(offline ? "You are offline; try again in a moment." : (error && error.message) || String(error));
  }

  $("#page-error-dismiss").addEventListener("click", () => {
    clearTimeout(pageErrorTimer);
    pageError.hidden = true;
  });

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

  // -- Django's messages: a view adds one; fetch() puts it on the socket, a page load on the page ----------

  const messageForm = $("#message-form");
  messageForm.addEventListener("submit", (event) => {
    // "Send and reload" is a page load, as a form without JavaScript is: the next page shows the message.
    if (event.submitter && event.submitter.name === "reload") return;
    event.preventDefault();
    const body = new FormData(messageForm);
    fetch(messageForm.action, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken"), Accept: "application/json" },
      credentials: "same-origin",
    })
      .then((response) => {
        if (!response.ok) throw new Error(`The server answered ${response.status}.`);
        const input = $("#message-text");
        if (input.value === body.get("message")) input.value = "";
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
          showProblem(`Document ${refused.id} was not copied: ${refused.message}`);
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
    // Not presence: it sends no frame on connect.
    if (payload && payload.services) snapshots = new Set(payload.services.filter((name) => name !== "presence"));
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
  gw.on("presence", (payload) => {
    if (typeof payload.user === "string") logEvent("push", `presence: user ${payload.user} ${payload.online ? "online" : "offline"}`);
  });
  gw.on("error", (error) => logEvent("error", `${error.code}: ${error.message}`));

  // Who is online (the presence channel, when the site serves it): a dot for each person on the page.
  // Watched now: the helper sends the watch once the socket opens, and again after each reconnect.
  const people = $$("[data-presence]");
  gw.presence.onChange((id, online) => {
    for (const person of people.filter((item) => item.dataset.presence === id)) {
      person.dataset.online = String(online);
      $(".person-state", person).textContent = online ? "online" : "offline";
    }
  });
  if (people.length) gw.presence.watch(people.map((item) => item.dataset.presence)).catch(() => {});
})();
