// One poll step shared by the pages that follow something live (the job's log and metrics, a sweep):
// fetch JSON from the page's own server and hand it to the page; when the server does not answer,
// say "reconnecting…" and try again a little later.
(function () {
  "use strict";
  var RETRY_MS = 3000;

  window.launchbay = window.launchbay || {};

  // Fetch url; give its JSON to handle, or on failure show "reconnecting…" in status and call again() after a pause.
  window.launchbay.poll = function (url, handle, status, again) {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(handle)
      .catch(function () {
        status.textContent = "reconnecting…";
        window.setTimeout(again, RETRY_MS);
      });
  };
})();
