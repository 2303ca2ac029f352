/*
 * preferences.js: the notification preferences page (wsgateway/preferences.html), live.
 *
 * Without it the page is a form that saves on submit. With it each box and the digest are saved as
 * they change (POST to the API the form names in data-api), and a change made anywhere (another tab,
 * another device) is pushed on the "notifications" channel as {"preferences": {...}} and drawn here
 * without a reload. The socket is the page's WSGateway, in the global that data-gateway names (made
 * here if the page has none yet), so that the inbox in the header shares it.
 */
(function (global) {
  "use strict";

  const script = document.currentScript;
  const form = document.getElementById("wsgateway-preferences");
  const status = document.getElementById("wsgateway-preferences-status");
  if (!form || !global.WSGateway) return;

  const name = (script && script.dataset.gateway) || "wsgatewayPreferences";
  const gw = global[name] instanceof global.WSGateway ? global[name] : (global[name] = new global.WSGateway());
  const api = form.dataset.api;
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]");

  function say(text, code) {
    if (!status) return;
    status.textContent = text;
    if (code) status.dataset.code = code;
    else delete status.dataset.code;
  }

  /** Draw the preferences as the server has them: the API's reply, or a push. */
  function draw(state) {
    if (!state || !Array.isArray(state.kinds)) return;
    for (const kind of state.kinds) {
      if (!kind || typeof kind.channels !== "object") continue;
      for (const box of form.querySelectorAll("input[type=checkbox][data-kind]")) {
        if (box.dataset.kind !== kind.name) continue;
        const on = kind.channels[box.dataset.channel];
        if (typeof on === "boolean") box.checked = on;
      }
    }
    if (typeof state.digest === "string" && form.elements.digest) form.elements.digest.value = state.digest;
    form.dataset.drawn = String(Number(form.dataset.drawn || 0) + 1);
  }

  function call(method, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      if (csrf) headers["X-CSRFToken"] = csrf.value;
    }
    return fetch(api, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then((response) =>
      response.json().then((reply) => {
        if (!response.ok) {
          const failure = (reply && reply.error) || {};
          throw Object.assign(new Error(failure.message || response.statusText), { code: failure.code });
        }
        return reply;
      }),
    );
  }

  /** Save one change; on a refusal, say why and draw what the server has (nothing was stored). */
  function save(change) {
    say("");
    return call("POST", change)
      .then((reply) => {
        draw(reply);
        say(status ? status.dataset.saved || "" : "", null);
      })
      .catch((failure) => {
        say(failure.message, failure.code || "failed");
        return call("GET").then(draw, () => {});
      });
  }

  form.addEventListener("change", (event) => {
    const target = event.target;
    if (target.type === "checkbox" && target.dataset.kind) {
      save({ choices: { [target.dataset.kind]: { [target.dataset.channel]: target.checked } } });
    } else if (target.name === "digest") {
      save({ digest: target.value });
    }
  });
  // Every change is saved as it is made: the button would only save it again.
  form.addEventListener("submit", (event) => event.preventDefault());
  const button = document.getElementById("wsgateway-preferences-save");
  if (button) button.hidden = true;

  gw.channel("notifications").on((payload) => {
    if (payload && typeof payload === "object" && payload.preferences) draw(payload.preferences);
  });
  // A change made while the socket was down was pushed to no one here: read it again on a reconnect.
  let opened = false;
  gw.on("state", (state) => {
    if (state !== "open") return;
    if (opened) call("GET").then(draw, () => {});
    opened = true;
  });
})(typeof window !== "undefined" ? window : globalThis);
