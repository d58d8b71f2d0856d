// depot's dashboard: live updates of the page's main part over server-sent events. Pages work
// without this script; it only saves reloading.
"use strict";
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource) return;
  const path = location.pathname + location.search;
  let source = null;
  let pending = null;
  let shown = main.dataset.live;

  // What to keep across an update: the focused control (by its form's action and its name or
  // text) and the open <details> (by their data-key, else their position).
  function focusKey(element) {
    if (!element || !main.contains(element)) return null;
    const form = element.closest("form");
    return [form ? form.getAttribute("action") : "", element.name || "", element.textContent].join("|");
  }
  function apply(html) {
    const focused = focusKey(document.activeElement);
    const open = new Set();
    main.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.add(d.dataset.key || String(i)); });
    main.innerHTML = html;
    main.querySelectorAll("details").forEach(function (d, i) { if (open.has(d.dataset.key || String(i))) d.open = true; });
    if (focused) {
      const again = Array.from(main.querySelectorAll("button, a, input, select")).find(function (e) { return focusKey(e) === focused; });
      if (again) again.focus();
    }
    main.dataset.updated = String(Date.now());
  }
  function typing() {
    const active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }
  // An update that arrives while the user types waits until the field is left.
  main.addEventListener("focusout", function () {
    setTimeout(function () { if (pending !== null && !typing()) { apply(pending); pending = null; } }, 0);
  });

  function close() {
    if (source) { source.close(); source = null; }
  }
  function connect() {
    close();
    source = new EventSource("/ui/events?path=" + encodeURIComponent(path) + "&since=" + encodeURIComponent(shown || ""));
    source.addEventListener("main", function (event) {
      shown = event.lastEventId;
      if (typing()) { pending = event.data; return; }
      pending = null;
      apply(event.data);
    });
    // The server says it is done (signed out, the page's object is gone, shutting down).
    source.addEventListener("end", close);
    // A lost connection is retried by the browser itself; a refusal (no session any more, too
    // many live pages) closes the source, and the page stays as it is.
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) close();
    };
  }
  // Hidden or left pages let their connection go: a browser opens only a few to one host.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) close(); else if (!source) connect();
  });
  window.addEventListener("pagehide", close);
  window.addEventListener("pageshow", function (event) { if (event.persisted) connect(); });
  if (!document.hidden) connect();
})();
