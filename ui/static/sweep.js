// The sweep page's charts, drawn by chart.js from the page's JSON endpoint: the metric against each
// parameter (a scatter each: a log axis when the values are positive and span two decades or more,
// evenly spaced labels when they are not all numbers) and the metric over trial order with the best
// so far. While the sweep is open the page asks again about every two seconds: a new trial, a
// trial's new state or a new best trial reloads the page (the server renders its table and header);
// the values a running trial logs are written into its row here. Sweep data reaches the page only
// as text nodes and attributes.
(function () {
  "use strict";
  var POLL_MS = 2000;
  var ENDED_STATES = ["finished", "stopped"];
  var ORDER_KEY = "trial order";
  var chart = window.launchbay.chart;
  var box = document.getElementById("sweep-charts");
  if (!box) {
    return;
  }
  var status = document.getElementById("sweep-status");
  var empty = document.getElementById("sweep-charts-empty");
  var bestBox = document.getElementById("sweep-best");
  var figures = {};

  function finite(value) {
    return typeof value === "number" && isFinite(value);
  }

  // A trial's point: its value once complete, else the last value it logged (running or pruned).
  function metricOf(trial) {
    if (finite(trial.value)) {
      return trial.value;
    }
    return trial.last && finite(trial.last.value) ? trial.last.value : null;
  }

  function valueText(trial) {
    var value = metricOf(trial);
    if (value === null) {
      return "-";
    }
    var text = String(Number(value.toPrecision(6)));
    return finite(trial.value) ? text : text + " @ step " + trial.last.step;
  }

  // Filled: complete; hollow: ended without a value (pruned, failed); light: still running.
  function dotClass(trial, bestId) {
    var name = finite(trial.value) ? "dot" : (trial.ended ? "dot hollow" : "dot live");
    return trial.job_id === bestId ? name + " best" : name;
  }

  function paramText(value) {
    if (value === undefined || value === null) {
      return "-";
    }
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  // The x axis for one parameter's values, and where each value sits on it.
  function axisFor(values) {
    if (values.every(finite)) {
      var low = Math.min.apply(null, values), high = Math.max.apply(null, values);
      return { x: { kind: low > 0 && high / low >= 100 ? "log" : "linear" }, xs: values };
    }
    var texts = values.map(paramText);
    var categories = texts.filter(function (text, i) { return texts.indexOf(text) === i; }).sort();
    return {
      x: { kind: "category", categories: categories },
      xs: texts.map(function (text) { return categories.indexOf(text); }),
    };
  }

  function show(key, description, spec, aside) {
    if (!figures[key]) {
      figures[key] = chart.figure(box, key, description);
    }
    var shown = figures[key];
    spec.pad = true;
    chart.draw(shown.svg, spec);
    shown.figure.setAttribute("data-points", String(spec.series[spec.series.length - 1].points.length));
    shown.last.textContent = aside;
  }

  function dots(trials, xs, data) {
    var bestId = data.best ? data.best.job_id : "";
    return {
      kind: "dots",
      points: trials.map(function (trial, i) { return [xs[i], metricOf(trial)]; }),
      classes: trials.map(function (trial) { return dotClass(trial, bestId); }),
      titles: trials.map(function (trial) {
        return "trial " + trial.number + " · " + trial.label + " · " + data.metric.name + " " + valueText(trial);
      }),
    };
  }

  // Each complete trial's value as the best so far, a step at each new best.
  function bestSoFar(trials, goal) {
    var points = [], best = null;
    trials.forEach(function (trial) {
      if (!finite(trial.value)) {
        return;
      }
      if (best === null || (goal === "maximize" ? trial.value > best : trial.value < best)) {
        if (best !== null) {
          points.push([trial.number, best]);
        }
        best = trial.value;
      }
      points.push([trial.number, best]);
    });
    return { kind: "line", points: points, className: "line best-line" };
  }

  function render(data) {
    var trials = data.trials.filter(function (trial) { return metricOf(trial) !== null; });
    empty.hidden = trials.length > 0;
    if (!trials.length) {
      return;
    }
    data.parameters.forEach(function (name) {
      var axis = axisFor(trials.map(function (trial) { return trial.params[name]; }));
      var note = axis.x.kind === "log" ? "log scale" : "";
      show(name, data.metric.name + " against " + name, { x: axis.x, series: [dots(trials, axis.xs, data)] }, note);
    });
    var numbers = trials.map(function (trial) { return trial.number; });
    var order = { x: { kind: "linear", name: "trial" }, series: [bestSoFar(data.trials, data.metric.goal), dots(trials, numbers, data)] };
    show(ORDER_KEY, data.metric.name + " by trial number", order, "line: best so far (" + data.metric.goal + ")");
  }

  // True when the server-rendered part of the page no longer matches: then it is loaded again.
  function changed(data) {
    var rows = document.querySelectorAll("#trials tbody tr");
    if (data.state !== box.dataset.state || (data.best ? data.best.job_id : "") !== bestBox.dataset.job) {
      return true;
    }
    return rows.length !== data.trials.length || data.trials.some(function (trial, i) {
      return rows[i].dataset.number !== String(trial.number) || rows[i].dataset.label !== trial.label;
    });
  }

  function handle(data) {
    if (changed(data)) {
      window.location.reload();
      return;
    }
    var cells = document.querySelectorAll("#trials tbody .trial-value");
    data.trials.forEach(function (trial, i) {
      cells[i].textContent = valueText(trial);
    });
    render(data);
    if (ENDED_STATES.indexOf(data.state) >= 0) {
      status.textContent = "";
      return;
    }
    status.textContent = "following…";
    window.setTimeout(poll, POLL_MS);
  }

  function poll() {
    window.launchbay.poll(box.dataset.url, handle, status, poll);
  }

  poll();
})();
