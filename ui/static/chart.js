// The charts of the job page (metrics against step) and the sweep page (the metric against each
// parameter, and over the trials), drawn as SVG by this file: no chart library, since nothing outside
// the page can be reached. Every text that comes from a job or sweep reaches the chart as a text
// node or an attribute, never as markup.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var W = 420, H = 190, LEFT = 56, RIGHT = 12, TOP = 10, BOTTOM = 26;
  // A padded axis leaves this share of its range free at each end, so no point sits on the frame.
  var PAD = 0.06;
  var CATEGORY_CHARS = 14;
  var MAX_CATEGORY_TICKS = 8;

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

  function svg(description) {
    return node("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": description });
  }

  // The lowest and highest value, with room around a lone value and, when padded, at both ends.
  function extent(values, pad) {
    var low = Math.min.apply(null, values), high = Math.max.apply(null, values);
    if (low === high) {
      var room = Math.abs(low) * 0.1 || 1;
      return [low - room, high + room];
    }
    var extra = pad ? (high - low) * PAD : 0;
    return [low - extra, high + extra];
  }

  // The x axis as positions on the plot (log10 of the value on a log axis) and the ticks to label.
  function xAxis(spec, pad, xs) {
    var kind = spec.kind || "linear";
    if (kind === "category") {
      var n = spec.categories.length;
      var every = Math.ceil(n / MAX_CATEGORY_TICKS);
      var ticks = spec.categories.map(function (name, i) {
        var text = name.length > CATEGORY_CHARS ? name.slice(0, CATEGORY_CHARS - 1) + "…" : name;
        return [i, text, "middle"];
      }).filter(function (tick, i) { return i % every === 0; });
      return { at: function (i) { return i; }, ends: [-0.5, n - 0.5], ticks: ticks };
    }
    var at = kind === "log" ? Math.log10 : function (v) { return v; };
    var ends = extent(xs.map(at), pad);
    if (kind === "log") {
      var decades = [];
      for (var k = Math.ceil(ends[0]); k <= Math.floor(ends[1]); k++) {
        decades.push([k, k < -3 || k > 4 ? "1e" + k : label(Math.pow(10, k)), "middle"]);
      }
      return { at: at, ends: ends, ticks: decades };
    }
    var low = Math.min.apply(null, xs), high = Math.max.apply(null, xs);
    var first = (spec.name ? spec.name + " " : "") + label(low);
    if (low === high) {
      return { at: at, ends: ends, ticks: [[low, first, "middle"]] };
    }
    var ticks = [[low, first, pad ? "middle" : "start"], [high, label(high), pad ? "middle" : "end"]];
    return { at: at, ends: ends, ticks: ticks };
  }

  function frame(target, spec, points) {
    var axis = xAxis(spec.x, spec.pad, points.map(function (p) { return p[0]; }));
    var yEnds = extent(points.map(function (p) { return p[1]; }), spec.pad);
    var place = function (at) { return LEFT + (at - axis.ends[0]) / (axis.ends[1] - axis.ends[0]) * (W - LEFT - RIGHT); };
    var x = function (value) { return place(axis.at(value)); };
    var y = function (value) { return TOP + (yEnds[1] - value) / (yEnds[1] - yEnds[0]) * (H - TOP - BOTTOM); };
    [yEnds[0], (yEnds[0] + yEnds[1]) / 2, yEnds[1]].forEach(function (tick) {
      target.appendChild(node("line", { x1: LEFT, x2: W - RIGHT, y1: y(tick), y2: y(tick), "class": "grid" }));
      target.appendChild(node("text", { x: LEFT - 6, y: y(tick) + 4, "text-anchor": "end", "class": "tick" }, label(tick)));
    });
    axis.ticks.forEach(function (tick) {
      target.appendChild(node("text", { x: place(tick[0]), y: H - 8, "text-anchor": tick[2], "class": "tick" }, tick[1]));
    });
    return { x: x, y: y };
  }

  function dot(target, scale, point, className, title) {
    var circle = node("circle", { cx: scale.x(point[0]), cy: scale.y(point[1]), r: 3.5, "class": className || "dot" });
    if (title) {
      circle.appendChild(node("title", {}, title));
    }
    target.appendChild(circle);
  }

  function line(target, scale, points, className) {
    if (points.length === 1) {
      dot(target, scale, points[0], "dot");
      return;
    }
    var d = points.map(function (p, i) {
      return (i ? "L" : "M") + scale.x(p[0]).toFixed(1) + " " + scale.y(p[1]).toFixed(1);
    }).join("");
    target.appendChild(node("path", { d: d, "class": className || "line" }));
  }

  // spec: {x: {kind: "linear" | "log" | "category", name, categories}, pad, series: [{kind: "line" | "dots",
  // points: [[x, y], ...], className, classes, titles}]}; on a category axis x is the index in categories.
  // A padded chart (the scatters) leaves room around its points; a line chart runs edge to edge.
  function draw(target, spec) {
    while (target.firstChild) {
      target.removeChild(target.firstChild);
    }
    var all = [];
    spec.series.forEach(function (s) { all = all.concat(s.points); });
    if (!all.length) {
      return;
    }
    var scale = frame(target, spec, all);
    spec.series.forEach(function (s) {
      if (s.kind === "line") {
        line(target, scale, s.points, s.className);
        return;
      }
      s.points.forEach(function (p, i) {
        dot(target, scale, p, s.classes ? s.classes[i] : s.className, s.titles ? s.titles[i] : "");
      });
    });
  }

  // A chart's box in container: a caption with its key (and a short text at the right), then the SVG.
  function figure(container, key, description) {
    var box = document.createElement("figure");
    box.className = "chart";
    box.setAttribute("data-key", key);
    var caption = document.createElement("figcaption");
    var name = document.createElement("span");
    name.className = "chart-key";
    name.textContent = key;
    var aside = document.createElement("span");
    aside.className = "chart-last";
    caption.appendChild(name);
    caption.appendChild(aside);
    var drawing = svg(description);
    box.appendChild(caption);
    box.appendChild(drawing);
    container.appendChild(box);
    return { figure: box, last: aside, svg: drawing };
  }

  window.launchbay = window.launchbay || {};
  window.launchbay.chart = { draw: draw, figure: figure, label: label };
})();
