// A page's live stream (SSE) is closed while its tab is hidden and opened again when the tab is shown
// (the server sends the current state first): browsers allow six HTTP/1.1 connections per server, so
// six tabs holding streams open would leave the seventh page waiting.
(function () {
  "use strict";
  function toggle(hidden) {
    var from = hidden ? "sse-connect" : "data-sse-paused";
    var to = hidden ? "data-sse-paused" : "sse-connect";
    document.querySelectorAll("[" + from + "]").forEach(function (element) {
      var copy = element.cloneNode(true);
      copy.setAttribute(to, copy.getAttribute(from));
      copy.removeAttribute(from);
      // htmx cleans the old element up (its stream closes) and processes the new one (a stream opens)
      htmx.swap(element, copy.outerHTML, { swapStyle: "outerHTML" });
    });
  }
  document.addEventListener("visibilitychange", function () {
    toggle(document.visibilityState === "hidden");
  });
})();
