// The job page's live log: ask for the entries after the last one shown, about once a second,
// until the job's log ends. Lines are added as text nodes, never as HTML.
(function () {
  "use strict";
  var POLL_MS = 1000;
  var ENDED_STATES = ["finished", "failed", "canceled"];
  var log = document.getElementById("log");
  if (!log) {
    return;
  }
  var status = document.getElementById("log-status");
  var lastId = log.dataset.lastId || "";
  var shownState = log.dataset.state;

  function append(lines) {
    if (!lines.length) {
      return;
    }
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(document.createTextNode(lines.join("\n") + "\n"));
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function handle(data) {
    status.textContent = "following…";
    append(data.lines);
    lastId = data.last_id || lastId;
    if (data.state !== shownState) {
      // State, agent, GPUs and timestamps all change with it: show the page anew.
      window.location.reload();
      return;
    }
    if (data.eof || (ENDED_STATES.indexOf(data.state) >= 0 && !data.more)) {
      status.textContent = "ended";
      return;
    }
    window.setTimeout(poll, data.more ? 0 : POLL_MS);
  }

  function poll() {
    window.launchbay.poll(log.dataset.url + (lastId ? "?after=" + encodeURIComponent(lastId) : ""), handle, status, poll);
  }

  log.scrollTop = log.scrollHeight;
  if (log.dataset.ended !== "true") {
    poll();
  }
})();
