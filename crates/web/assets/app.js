// Waybill workbench: progressive enhancement only. Every page and action works without
// this file. It adds:
// - live refresh: when the number of held postings or open exceptions changes (server-
//   sent events from /live), the inbox and exception list reload themselves, unless the
//   person is typing in a form;
// - keyboard shortcuts: "/" focuses search; "g a" approvals, "g e" exceptions, "g o"
//   orders, "g s" stuck, "g d" dashboard, "g u" audit; "j"/"k" move through a list's
//   rows and Enter opens the current one.
(function () {
  "use strict";
  var section = document.body.getAttribute("data-section");
  var typing = function () {
    var a = document.activeElement;
    return a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT");
  };

  if (window.EventSource && (section === "Inbox" || section === "Exceptions") && document.getElementById("whoami")) {
    var last = null;
    var live = new EventSource("/live");
    live.addEventListener("counts", function (e) {
      var now = e.data;
      if (last !== null && now !== last && !typing() && /^\/(inbox|exceptions)$/.test(location.pathname)) {
        location.reload();
      }
      last = now;
    });
    window.addEventListener("beforeunload", function () { live.close(); });
  }

  var go = { a: "/inbox", e: "/exceptions", o: "/orders", s: "/stuck", d: "/dashboard", u: "/audit" };
  var pending = false;
  var current = -1;
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing()) return;
    if (pending) {
      pending = false;
      if (go[e.key]) { location.href = go[e.key]; e.preventDefault(); }
      return;
    }
    if (e.key === "g") { pending = true; return; }
    if (e.key === "/") {
      var q = document.getElementById("q");
      if (q) { q.focus(); e.preventDefault(); }
      return;
    }
    var rows = document.querySelectorAll("main table tbody tr");
    if (!rows.length) return;
    if (e.key === "j" || e.key === "k") {
      if (current >= 0 && rows[current]) rows[current].classList.remove("current");
      current = Math.max(0, Math.min(rows.length - 1, current + (e.key === "j" ? 1 : -1)));
      rows[current].classList.add("current");
      var link = rows[current].querySelector("a");
      if (link) link.focus();
      e.preventDefault();
    }
  });
})();
