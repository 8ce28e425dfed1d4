// The job page's metrics: one line chart per numeric key against _step, drawn as SVG by chart.js
// (no chart library: nothing outside the page can be reached). Steps come from the page's JSON
// endpoint, all of them at first, then the new ones about every two seconds until the job ends.
// Keys and values come from the job, so they only ever reach the page as text nodes and attributes.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var ENDED_STATES = ["finished", "failed", "canceled"];
  var chart = window.launchbay.chart;
  // More points than this are thinned to the lowest and highest of each slice, keeping the shape.
  var MAX_POINTS = 800;

  var box = document.getElementById("metrics");
  if (!box) {
    return;
  }
  var status = document.getElementById("metrics-status");
  var empty = document.getElementById("metrics-empty");
  var series = {};
  var order = [];
  var figures = {};
  var lastId = "";

  function finite(value) {
    return typeof value === "number" && isFinite(value);
  }

  function add(steps) {
    steps.forEach(function (entry) {
      if (!finite(entry._step)) {
        return;
      }
      Object.keys(entry).forEach(function (key) {
        if (key.charAt(0) === "_" || !finite(entry[key])) {
          return;  // reserved keys, and strings, booleans, null, "NaN": not on a chart
        }
        if (!series[key]) {
          series[key] = [];
          order.push(key);
        }
        series[key].push([entry._step, entry[key]]);
      });
    });
  }

  function thin(points) {
    if (points.length <= MAX_POINTS) {
      return points;
    }
    var out = [];
    var slice = points.length / (MAX_POINTS / 2);
    for (var start = 0; start < points.length; start += slice) {
      var part = points.slice(Math.floor(start), Math.floor(start + slice));
      var low = part[0], high = part[0];
      part.forEach(function (p) {
        if (p[1] < low[1]) { low = p; }
        if (p[1] > high[1]) { high = p; }
      });
      out.push(low[0] <= high[0] ? low : high);
      if (low !== high) {
        out.push(low[0] <= high[0] ? high : low);
      }
    }
    return out;
  }

  function draw(svg, points) {
    chart.draw(svg, { x: { kind: "linear", name: "step" }, series: [{ kind: "line", points: thin(points) }] });
  }

  function figureFor(key) {
    if (figures[key]) {
      return figures[key];
    }
    figures[key] = chart.figure(box, key, key + " against step");
    figures[key].drawn = 0;
    return figures[key];
  }

  function render() {
    order.forEach(function (key) {
      var points = series[key];
      var shown = figureFor(key);
      if (shown.drawn === points.length) {
        return;
      }
      draw(shown.svg, points);
      shown.drawn = points.length;
      shown.figure.setAttribute("data-points", String(points.length));
      var newest = points[points.length - 1];
      shown.last.textContent = chart.label(newest[1]) + " at step " + newest[0];
    });
    if (empty) {
      empty.hidden = order.length > 0;
    }
  }

  function handle(data) {
    add(data.steps);
    lastId = data.last_id || lastId;
    render();
    if (data.truncated) {
      status.textContent = "capped by the agent: " + data.truncated;
    }
    if (data.more) {
      window.setTimeout(poll, 0);
    } else if (ENDED_STATES.indexOf(data.state) >= 0) {
      status.textContent = data.truncated ? status.textContent : "ended";
    } else {
      status.textContent = data.truncated ? status.textContent : "following…";
      window.setTimeout(poll, POLL_MS);
    }
  }

  function poll() {
    window.launchbay.poll(box.dataset.url + (lastId ? "?after=" + encodeURIComponent(lastId) : ""), handle, status, poll);
  }

  poll();
})();
