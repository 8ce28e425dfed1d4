// The job page's metrics: one line chart per numeric key against _step, drawn as SVG by this file
// (no chart library: nothing outside the page can be reached). Steps come from the page's JSON
// endpoint, all of them at first, then the new ones about every two seconds until the job ends.
// Keys and values come from the job, so they only ever reach the page as text nodes and attributes.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var RETRY_MS = 4000;
  var ENDED_STATES = ["finished", "failed", "canceled"];
  var SVG = "http://www.w3.org/2000/svg";
  var W = 420, H = 190, LEFT = 56, RIGHT = 12, TOP = 10, BOTTOM = 26;
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

  function label(value) {
    if (value === 0) {
      return "0";
    }
    var size = Math.abs(value);
    if (size >= 1e5 || size < 1e-3) {
      return value.toExponential(2);
    }
    return String(Number(value.toPrecision(4)));
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

  function node(name, attrs, text) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) {
      element.setAttribute(key, attrs[key]);
    });
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  function bounds(points) {
    var x0 = points[0][0], x1 = points[0][0], y0 = points[0][1], y1 = points[0][1];
    points.forEach(function (p) {
      x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]);
      y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
    });
    if (y0 === y1) {
      var pad = Math.abs(y0) * 0.1 || 1;
      y0 -= pad; y1 += pad;
    }
    return { x0: x0, x1: x1 === x0 ? x0 + 1 : x1, y0: y0, y1: y1 };
  }

  function draw(svg, points) {
    while (svg.firstChild) {
      svg.removeChild(svg.firstChild);
    }
    var b = bounds(points);
    var x = function (step) { return LEFT + (step - b.x0) / (b.x1 - b.x0) * (W - LEFT - RIGHT); };
    var y = function (value) { return TOP + (b.y1 - value) / (b.y1 - b.y0) * (H - TOP - BOTTOM); };
    [b.y0, (b.y0 + b.y1) / 2, b.y1].forEach(function (tick) {
      svg.appendChild(node("line", { x1: LEFT, x2: W - RIGHT, y1: y(tick), y2: y(tick), "class": "grid" }));
      svg.appendChild(node("text", { x: LEFT - 6, y: y(tick) + 4, "text-anchor": "end", "class": "tick" }, label(tick)));
    });
    svg.appendChild(node("text", { x: LEFT, y: H - 8, "class": "tick" }, "step " + label(b.x0)));
    svg.appendChild(node("text", { x: W - RIGHT, y: H - 8, "text-anchor": "end", "class": "tick" }, label(b.x1)));
    var shown = thin(points);
    if (shown.length === 1) {
      svg.appendChild(node("circle", { cx: x(shown[0][0]), cy: y(shown[0][1]), r: 3, "class": "dot" }));
      return;
    }
    var d = shown.map(function (p, i) {
      return (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1);
    }).join("");
    svg.appendChild(node("path", { d: d, "class": "line" }));
  }

  function figureFor(key) {
    if (figures[key]) {
      return figures[key];
    }
    var figure = document.createElement("figure");
    figure.className = "chart";
    figure.setAttribute("data-key", key);
    var caption = document.createElement("figcaption");
    var name = document.createElement("span");
    name.className = "chart-key";
    name.textContent = key;
    var last = document.createElement("span");
    last.className = "chart-last";
    caption.appendChild(name);
    caption.appendChild(last);
    var svg = node("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": key + " against step" });
    figure.appendChild(caption);
    figure.appendChild(svg);
    box.appendChild(figure);
    figures[key] = { figure: figure, last: last, svg: svg, drawn: 0 };
    return figures[key];
  }

  function render() {
    order.forEach(function (key) {
      var points = series[key];
      var chart = figureFor(key);
      if (chart.drawn === points.length) {
        return;
      }
      draw(chart.svg, points);
      chart.drawn = points.length;
      chart.figure.setAttribute("data-points", String(points.length));
      var newest = points[points.length - 1];
      chart.last.textContent = label(newest[1]) + " at step " + newest[0];
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
    var url = box.dataset.url + (lastId ? "?after=" + encodeURIComponent(lastId) : "");
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
        window.setTimeout(poll, RETRY_MS);
      });
  }

  poll();
})();
