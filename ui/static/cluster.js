// The cluster page: fetch the agents and pending jobs again every few seconds and swap them in.
// The server renders (and escapes) the fragment; meters get their width here, since the page's
// content security policy allows no inline styles.
(function () {
  "use strict";
  var REFRESH_MS = 2000;
  var RETRY_MS = 4000;
  var live = document.getElementById("cluster-live");
  if (!live) {
    return;
  }
  var status = document.getElementById("cluster-status");

  function sizeMeters() {
    var fills = live.querySelectorAll(".meter-fill");
    for (var i = 0; i < fills.length; i++) {
      var pct = Math.max(0, Math.min(100, Number(fills[i].dataset.pct) || 0));
      fills[i].style.width = pct + "%";
    }
  }

  function refresh() {
    fetch(live.dataset.url, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        sizeMeters();
        status.textContent = "live · updated " + new Date().toLocaleTimeString();
        window.setTimeout(refresh, REFRESH_MS);
      })
      .catch(function () {
        status.textContent = "reconnecting…";
        window.setTimeout(refresh, RETRY_MS);
      });
  }

  sizeMeters();
  window.setTimeout(refresh, REFRESH_MS);
})();
