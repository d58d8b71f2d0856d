// depot's dashboard: live updates of the page's main part over server-sent events. Pages work
// without this script; it only saves reloading.
"use strict";
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource) return;
  const path = location.pathname + location.search;
  let source;
  function connect() {
    source = new EventSource("/ui/events?path=" + encodeURIComponent(path));
    source.addEventListener("main", function (event) {
      // Keep what the user is typing or has open: skip an update while a field has focus.
      const active = document.activeElement;
      if (active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return;
      const open = Array.from(main.querySelectorAll("details[open]")).map(d => d.textContent.slice(0, 80));
      main.innerHTML = event.data;
      main.querySelectorAll("details").forEach(d => {
        if (open.includes(d.textContent.slice(0, 80))) d.open = true;
      });
      main.dataset.updated = String(Date.now());
    });
    source.onerror = function () {
      // The session ended or the registry restarted: try again later, quietly.
      source.close();
      setTimeout(connect, 5000);
    };
  }
  // A page left for another (or kept in the back-forward cache) lets its connection go: a
  // browser opens only a few to one host, and a held one would stall the next page.
  window.addEventListener("pagehide", function () { if (source) source.close(); });
  window.addEventListener("pageshow", function (event) { if (event.persisted) connect(); });
  connect();
})();
