// The run page's event stream (webapp/runs/stream.py), through the htmx SSE extension.
// The browser resumes a dropped stream by itself, sending the last event id; but when the
// extension has to open a new connection (after an error), it reuses the sse-connect URL. So
// that one resumes too, the URL's last_event_id follows every event received. (The extension
// fires htmx:sseBeforeMessage for every event an element takes, the charts' included.)
"use strict";

(function () {
  document.addEventListener("htmx:sseBeforeMessage", (event) => {
    const stream = event.target.closest("[sse-connect]");
    const id = event.detail && event.detail.lastEventId;
    if (!stream || !id || stream.dataset.lastEventId === id) return;
    const url = new URL(stream.getAttribute("sse-connect"), window.location.href);
    url.searchParams.set("last_event_id", id);
    stream.setAttribute("sse-connect", url.pathname + url.search);
    stream.dataset.lastEventId = id;
  });
  // "end" (the run finished) closes the stream for good; tests and styles can see it.
  document.addEventListener("htmx:sseClose", (event) => {
    event.target.dataset.streamClosed = "true";
  });
})();
