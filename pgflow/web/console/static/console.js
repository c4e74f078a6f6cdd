// pgflow-sms console: live pages. Every page works without this script; with it, a page
// marked data-live polls /console/changes every second and, when something changed,
// fetches itself again and swaps its #live part (forms outside #live keep what you type).
(function () {
  "use strict";
  var main = document.getElementById("main");
  var status = document.getElementById("live-status");
  if (!main || main.getAttribute("data-live") !== "1" || !window.fetch) { return; }
  var cursor = null;
  var busy = false;
  var failures = 0;

  function redraw() {
    return fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Live": "1" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var current = document.getElementById("live");
        if (fresh && current) { current.replaceWith(document.importNode(fresh, true)); }
      });
  }

  function poll() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch("/console/changes", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected || r.status === 401 || r.status === 403) { window.location.reload(); throw new Error("signed out"); }
        if (!r.ok) { throw new Error(String(r.status)); }
        return r.json();
      })
      .then(function (data) {
        failures = 0;
        if (status) { status.textContent = "live"; }
        if (cursor !== null && data.cursor !== cursor) { cursor = data.cursor; return redraw(); }
        cursor = data.cursor;
      })
      .catch(function () { failures += 1; if (status) { status.textContent = failures > 3 ? "" : status.textContent; } })
      .then(function () { busy = false; });
  }

  poll();
  window.setInterval(poll, 1000);
  document.addEventListener("visibilitychange", poll);
})();
