// llama-metrics dashboard: draws the JSON API and the websocket's snapshots.
// Every value that comes from data is set with textContent, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const WINDOWS = body.dataset.windows.split(",");
  const PUSH = Number(body.dataset.pushInterval) || 1;
  const THRESHOLDS = JSON.parse(body.dataset.thresholds || "{}");
  const LIVE_POINTS = 300;
  const PAGE = 12; // recent requests shown before "Show more"
  const PALETTE = ["#2f6fd6", "#d9822b", "#2a9d5b", "#c23b52", "#7b53c1", "#3aa5b5"];
  // One colour per model on the whole page, live and history alike, in the order first seen;
  // "other" (the rest) is grey.
  const modelColours = {};
  function modelColour(name) {
    if (name === "other") return "#8a8f98";
    if (!(name in modelColours)) modelColours[name] = PALETTE[Object.keys(modelColours).length % PALETTE.length];
    return modelColours[name];
  }
  const STATE_TEXT = { ok: "✓ ok", warn: "▲ warning", critical: "✖ critical" };

  // -- formatting ------------------------------------------------------------------------
  const isNum = (v) => typeof v === "number" && isFinite(v);
  function fmtNumber(v, digits) {
    if (!isNum(v)) return "–";
    if (Math.abs(v) >= 1000) return v.toLocaleString("en", { maximumFractionDigits: 0 });
    return v.toFixed(digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits);
  }
  function fmtSeconds(v) {
    if (!isNum(v)) return "–";
    if (v === 0) return "0 s";
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 1 : 0) + " ms";
    return v.toFixed(v < 10 ? 2 : 1) + " s";
  }
  function fmtSpan(seconds) { // "15 s", "1 min", "2 h", "1 day": step and window text
    if (!isNum(seconds)) return "–";
    const units = [[86400, "day"], [3600, "h"], [60, "min"], [1, "s"]];
    for (const [size, name] of units) {
      if (seconds >= size && seconds % size === 0) {
        const n = seconds / size;
        return n + " " + (name === "day" && n !== 1 ? "days" : name);
      }
    }
    return Math.round(seconds) + " s";
  }
  function fmtBytes(v) {
    if (!isNum(v)) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return v.toFixed(i ? 1 : 0) + " " + units[i];
  }
  const FORMATS = {
    rate: (v) => fmtNumber(v),
    seconds: fmtSeconds,
    ratio: (v) => (isNum(v) ? (v * 100).toFixed(1) + " %" : "–"),
    percent: (v) => (isNum(v) ? v.toFixed(0) + " %" : "–"),
    count: (v) => (isNum(v) ? v.toFixed(v % 1 ? 1 : 0) : "–"),
  };
  const pad = (n) => String(n).padStart(2, "0");
  function fmtClock(epoch, seconds) {
    if (!isNum(epoch)) return "–";
    const d = new Date(epoch * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + (seconds === false ? "" : ":" + pad(d.getSeconds()));
  }
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // Time ticks read by the span of the axis: seconds for minutes, hours for a day, days beyond.
  function timeTicks(u, vals) {
    const span = u.scales.x.max - u.scales.x.min;
    return vals.map((v) => {
      const d = new Date(v * 1000);
      if (span <= 600) return fmtClock(v);
      if (span <= 2 * 86400) return fmtClock(v, false);
      return d.getDate() + " " + MONTHS[d.getMonth()];
    });
  }

  // -- DOM helpers (text only) -------------------------------------------------------------
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  const { nameCell, fill: fillTable } = window.llamaTables; // static/tables.js
  function setStatus(id, state, text) {
    const item = document.getElementById(id);
    item.className = state;
    item.querySelector("span").textContent = text;
  }

  // -- charts ------------------------------------------------------------------------------
  const axisNumber = (v) => (Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : String(+v.toFixed(3)));
  // series: [key, label]; byModel: the point's per-model map drawn as one series a model.
  const CHARTS = [
    { id: "requests", title: "Requests per second", unit: "req/s", fmt: FORMATS.rate, axis: axisNumber,
      series: [["requests_per_second", "requests/s"]], empty: "no requests" },
    { id: "tokens", title: "Tokens per second", unit: "tokens/s", fmt: FORMATS.rate,
      axis: axisNumber, byModel: "tokens_by_model",
      series: [["generated_tokens_per_second", "generated"], ["prompt_tokens_per_second", "prompt"]],
      empty: "no tokens generated" },
    { id: "ttft", title: "Time to first token p95", unit: "s", fmt: fmtSeconds, axis: fmtSeconds,
      byModel: "ttft_p95_by_model", series: [["ttft_p95", "all models"]], empty: "no streamed answers" },
    { id: "latency", title: "Latency (streamed answers)", unit: "s", fmt: fmtSeconds, axis: fmtSeconds,
      series: [["ttft_p50", "TTFT p50"], ["ttft_p95", "TTFT p95"],
               ["duration_p50", "duration p50"], ["duration_p95", "duration p95"]],
      empty: "no streamed answers" },
    { id: "errors", title: "Error rate", unit: "%", fmt: FORMATS.ratio, axis: (v) => +(v * 100).toFixed(1) + "%",
      max: 1, floor: 0.05, series: [["error_rate", "errors"]], empty: "no requests" },
    { id: "load", title: "Active and queued requests (average)", unit: "requests", fmt: FORMATS.count,
      axis: axisNumber, series: [["active_requests", "active"], ["queue_depth", "queued"]],
      empty: "no requests" },
    { id: "resources", title: "Host and GPU", unit: "%", fmt: FORMATS.percent, axis: (v) => v + "%",
      max: 100, floor: 100, optional: true, // a series the source lacks (no GPU) is left out
      series: [["cpu_percent", "CPU"], ["memory_percent", "memory"],
               ["gpu_utilization_percent", "GPU"], ["gpu_memory_percent", "GPU memory"]],
      empty: "no host samples" },
  ];
  const charts = { live: {}, history: {} };

  function yRange(def, hi) {
    const top = isNum(hi) && hi > 0 ? hi * 1.1 : 0;
    const limited = def.max === undefined ? top : Math.min(top, def.max);
    return [0, Math.max(limited, def.floor || 1e-9, isNum(hi) && hi > 0 ? 0 : 1)];
  }
  const lastValue = (values) => {
    for (let i = values.length - 1; i >= 0; i--) if (isNum(values[i])) return values[i];
    return null;
  };
  // Points where a line cannot show them: a value with no value on either side.
  function isolated(u, si) {
    const ys = u.data[si];
    const out = [];
    for (let i = 0; i < ys.length; i++) {
      if (isNum(ys[i]) && !isNum(ys[i - 1]) && !isNum(ys[i + 1])) out.push(i);
    }
    return out; // an empty list: no points, the line shows the rest
  }

  // A chart for the series present: rebuilt when that set changes, absent ones never drawn.
  function drawChart(kind, def, ts, columns, emptyText) {
    const box = charts[kind][def.id].box;
    const keys = Object.keys(columns);
    const signature = keys.join("|");
    const hasData = keys.some((k) => columns[k].some(isNum));
    let state = charts[kind][def.id];
    box.querySelector(".chart-empty").hidden = hasData;
    box.querySelector(".chart-empty").textContent = emptyText;
    if (state.signature !== signature) {
      if (state.plot) state.plot.destroy();
      state.plot = null;
      state.signature = signature;
      if (!keys.length) return;
      const width = Math.max(260, box.clientWidth || 400);
      const opts = {
        width: width, height: 170,
        scales: { x: { time: true }, y: { range: (u, lo, hi) => yRange(def, hi) } },
        legend: { live: true },
        series: [{ value: (u, v, si, idx) => (idx == null ? "latest" : fmtClock(v)) }].concat(
          keys.map((key, i) => ({
            label: columns[key].label || key, width: 1.5,
            stroke: columns[key].model ? modelColour(key) : PALETTE[i % PALETTE.length],
            spanGaps: false, points: { show: true, size: 5, filter: isolated },
            value: (u, v, si, idx) => def.fmt(idx == null ? lastValue(u.data[si]) : v),
          }))),
        axes: [{ values: timeTicks, space: 60 },
               { size: 62, values: (u, vals) => vals.map((v) => def.axis(v)) }],
      };
      state.plot = new uPlot(opts, [ts].concat(keys.map((k) => columns[k])), box.querySelector(".plot"));
    } else if (state.plot) {
      state.plot.setData([ts].concat(keys.map((k) => columns[k])));
    }
    if (state.plot && state.plot.cursor.idx == null) state.plot.setLegend({ idx: null });
  }
  function makeCharts(kind, container) {
    for (const def of CHARTS) {
      const box = el("div", null, "chart");
      box.dataset.chart = def.id;
      box.appendChild(el("h3", def.title + " (" + def.unit + ")"));
      box.appendChild(el("p", "", "chart-empty"));
      box.appendChild(el("div", null, "plot"));
      container.appendChild(box);
      charts[kind][def.id] = { box: box, plot: null, signature: null };
    }
  }
  function labelled(values, label) { values.label = label; return values; }
  function modelled(values, model) { values.label = model; values.model = true; return values; }
  function resizeCharts() {
    for (const kind of ["live", "history"]) {
      for (const state of Object.values(charts[kind])) {
        const width = state.box.clientWidth;
        if (width && state.plot) state.plot.setSize({ width: width, height: 170 });
      }
    }
  }

  // -- live --------------------------------------------------------------------------------
  let points = [];
  let lastSnap = null;
  let lastUpdate = null; // when the last snapshot came (the page's clock)
  let stale = false;
  let modelsFromHistory = false;

  function liveColumns(def) {
    const columns = {};
    if (def.byModel) {
      // The busiest models over the chart's span; each point names its own top models.
      const totals = {};
      for (const p of points) for (const [m, v] of Object.entries(p[def.byModel] || {})) totals[m] = (totals[m] || 0) + (v || 0) + 1e-9;
      const models = Object.keys(totals).sort((a, b) => totals[b] - totals[a]).slice(0, 5);
      for (const m of models) columns[m] = modelled(points.map((p) => { const v = (p[def.byModel] || {})[m]; return isNum(v) ? v : null; }), m);
      if (models.length) return columns;
    }
    for (const [key, label] of def.series) {
      const values = points.map((p) => (isNum(p[key]) ? p[key] : null));
      // A series the source does not have (no GPU) is absent, not an empty line.
      if (values.some(isNum)) columns[key] = labelled(values, label);
    }
    if (!Object.keys(columns).length) {
      const [key, label] = def.series[0];
      columns[key] = labelled(points.map(() => null), label);
    }
    return columns;
  }
  function drawLive() {
    const ts = points.map((p) => p.ts);
    const minutes = Math.round(LIVE_POINTS * PUSH / 60);
    for (const def of CHARTS) drawChart("live", def, ts, liveColumns(def), def.empty + " in the last " + minutes + " min");
  }

  function tileWindow(tile, snap) {
    const kind = tile.dataset.window;
    if (kind === "now") return "now";
    if (kind === "latency") return "last " + fmtSpan((snap.latency || {}).window_seconds || 60);
    return "last " + fmtSpan(Math.round(snap.window_seconds || 0) || Number(body.dataset.rateWindow));
  }
  function renderTiles(snap) {
    const point = snap.point || {};
    const states = snap.states || {};
    const reachable = ((snap.sources || {}).proxy || {}).reachable !== false;
    for (const tile of document.querySelectorAll("#numbers .tile")) {
      const key = tile.dataset.key;
      const value = point[key];
      tile.querySelector(".value").textContent = FORMATS[tile.dataset.format](value);
      const stateText = tile.querySelector(".state");
      const state = states[key];
      let text, cls;
      if (!reachable) { text = "? no data: proxy unreachable"; cls = "unknown"; }
      else if (state) { text = STATE_TEXT[state]; cls = state; }
      else if (key in THRESHOLDS) { text = "no requests to judge"; cls = "unknown"; }
      else { text = ""; cls = "info"; }
      tile.dataset.state = cls;
      stateText.textContent = text;
      tile.querySelector(".window").textContent = tileWindow(tile, snap);
      if (tile.classList.contains("gpu")) tile.hidden = !((snap.gauges || {}).gpus || []).length;
    }
    const counts = (snap.latency || {}).counts;
    const note = document.getElementById("numbers-note");
    if (counts) {
      note.textContent = "Latency over the " + counts.streamed + " streamed answers of the last " +
        fmtSpan((snap.latency || {}).window_seconds || 60) + "; apart: " + counts.answer + " other answers, " +
        counts.metadata + " metadata calls, " + counts.proxy_error + " proxy errors, " +
        counts.ollama_error + " Ollama errors." + ((snap.latency || {}).sampled ? " (newest requests only)" : "");
    }
  }

  function renderStatus(snap) {
    const st = snap.status || {};
    const ollama = st.ollama || {};
    const proxy = st.proxy || {};
    const since = proxy.reachable ? "" : (((snap.sources || {}).proxy || {}).last_ok ? " since " + fmtClock(snap.sources.proxy.last_ok) : "");
    if (ollama.up === true) setStatus("status-ollama", "ok", "up" + (ollama.version ? ", " + ollama.version : ""));
    else if (ollama.up === false) setStatus("status-ollama", "bad", "down");
    else setStatus("status-ollama", "unknown", proxy.reachable ? "unknown" : "unknown (proxy unreachable)");
    const all = proxy.proxies || [];
    const up = all.filter((p) => p.reachable).length;
    const version = ollama.proxy_version ? ", " + ollama.proxy_version : "";
    if (all.length > 1 && up === all.length) setStatus("status-proxy", "ok", up + " proxies reachable" + version);
    else if (all.length > 1 && up > 0) setStatus("status-proxy", "warn", up + " of " + all.length + " proxies reachable; " + (proxy.error || "?"));
    else if (proxy.reachable) setStatus("status-proxy", "ok", "reachable" + version);
    else setStatus("status-proxy", "bad", "unreachable" + since + ": " + (proxy.error || "?"));
    const hd = st.healthd || {};
    const state = String(hd.status || "unknown");
    const cls = { ok: "ok", healthy: "ok", degraded: "warn", warning: "warn", unknown: "unknown" }[state] || "bad";
    setStatus("status-healthd", cls, state + (hd.detail ? " – " + hd.detail : ""));
  }

  function renderModels(rows, note) {
    document.getElementById("models-note").textContent = note;
    // Metadata calls name no model: they are no model's row.
    rows = rows.filter((r) => r.model && r.model !== "none");
    fillTable(document.getElementById("models-table"), rows, (r) => [
      nameCell(r.model), fmtNumber(r.requests, 0), fmtNumber(r.prompt_tokens, 0),
      fmtNumber(r.generated_tokens, 0), fmtNumber(r.tokens_per_second),
      fmtSeconds(r.ttft_p95), fmtNumber(r.errors, 0),
      // Only where the server reports cached prompt tokens (local Ollama does not).
      isNum(r.cache_hit_share) ? (r.cache_hit_share * 100).toFixed(0) + " %" : "–",
    ], "no requests " + note);
  }

  function renderLoaded(rows) {
    fillTable(document.getElementById("loaded-table"), rows, (r) => {
      const pct = isNum(r.vram_fraction) ? (r.vram_fraction * 100).toFixed(0) + " %" : "–";
      const placement = { gpu: "✓ fits in GPU memory", partial: "▲ spills to CPU", cpu: "▲ CPU only" }[r.placement] || "unknown";
      const place = el("td", placement, "placement-" + r.placement);
      return [nameCell(r.model), fmtBytes(r.size_bytes), fmtBytes(r.vram_bytes) + " (" + pct + ")", place,
              isNum(r.expires_at) ? fmtClock(r.expires_at, false) : "–"];
    }, "no model loaded");
  }

  // -- recent requests ---------------------------------------------------------------------
  const feed = { rows: [], shown: PAGE, open: null, seen: new Set(), primed: false };
  const feedKey = (r) => [r.started_at, r.model, r.endpoint, r.status, r.duration_s].join("|");
  function feedFilter(r) {
    const model = document.getElementById("feed-model").value;
    const status = document.getElementById("feed-status").value;
    if (model && r.model !== model) return false;
    const failed = Boolean(r.error_type) || r.status >= 400;
    return status === "" || (status === "errors" ? failed : !failed);
  }
  // A non-streamed answer has no first token (older proxies recorded its whole duration).
  const hasTtft = (r) => isNum(r.ttft_s) && r.stream !== false;
  const streamedTtft = (r) => (hasTtft(r) ? fmtSeconds(r.ttft_s) : "–");
  function timeline(r) {
    const td = el("td", null, "timeline");
    td.colSpan = 7;
    const parts = [
      ["queue", r.queue_wait_s], ["model load", r.load_duration_s],
      ["to first token", hasTtft(r) ? Math.max(0, r.ttft_s - (r.load_duration_s || 0)) : null],
      ["generation", hasTtft(r) ? Math.max(0, r.duration_s - r.ttft_s) : r.duration_s - (r.load_duration_s || 0)],
    ];
    const bar = el("div", null, "bar");
    const total = r.duration_s + (r.queue_wait_s || 0) || 1;
    parts.forEach(([name, v], i) => {
      if (!isNum(v) || v <= 0) return;
      const seg = el("span", null, "seg seg" + i);
      seg.style.width = Math.max(1, (100 * v) / total) + "%";
      seg.title = name + " " + fmtSeconds(v);
      bar.appendChild(seg);
    });
    td.appendChild(bar);
    const facts = el("dl");
    const add = (k, v) => { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", v)); };
    add("started", fmtClock(r.started_at));
    add("queue wait", fmtSeconds(r.queue_wait_s));
    add("model load", isNum(r.load_duration_s) ? fmtSeconds(r.load_duration_s) : "none");
    add("time to first token", hasTtft(r) ? fmtSeconds(r.ttft_s) : "not a streamed answer");
    add("generation", hasTtft(r) ? fmtSeconds(r.duration_s - r.ttft_s) : "–");
    add("duration", fmtSeconds(r.duration_s));
    add("tokens/s", fmtNumber(r.tokens_per_second));
    add("tokens in → out", (isNum(r.prompt_tokens) ? r.prompt_tokens : "–") + " → " + (isNum(r.generated_tokens) ? r.generated_tokens : "–"));
    add("priority", r.priority || "–");
    td.appendChild(facts);
    return td;
  }
  function renderFeed(rows) {
    if (rows) feed.rows = rows.slice().sort((a, b) => (b.started_at || 0) - (a.started_at || 0));
    const select = document.getElementById("feed-model");
    const models = [...new Set(feed.rows.map((r) => r.model))].sort();
    const current = [...select.options].slice(1).map((o) => o.value);
    if (models.join("\n") !== current.join("\n")) {
      const keep = select.value;
      select.replaceChildren(el("option", "all models"));
      select.options[0].value = "";
      for (const m of models) { const o = el("option", m); o.value = m; select.appendChild(o); }
      select.value = models.includes(keep) ? keep : "";
    }
    const matching = feed.rows.filter(feedFilter);
    const visible = matching.slice(0, feed.shown);
    const tbody = fillTable(document.getElementById("feed"), visible, (r) => {
      const failed = r.error_type || r.status >= 400;
      const status = el("td", (failed ? "✖ " : "") + r.status + (r.error_type ? " " + r.error_type : ""), failed ? "bad" : "");
      const tokens = (isNum(r.prompt_tokens) ? r.prompt_tokens : "–") + " → " +
        (isNum(r.generated_tokens) ? r.generated_tokens : "–");
      return [fmtClock(r.started_at), nameCell(r.model), r.endpoint, status, tokens,
              streamedTtft(r), fmtSeconds(r.duration_s)];
    }, feed.rows.length ? "no request matches" : "no requests yet");
    const shown = new Set();
    visible.forEach((r, i) => {
      const key = feedKey(r);
      const tr = tbody.rows[i];
      tr.tabIndex = 0;
      tr.dataset.key = key;
      tr.setAttribute("aria-expanded", String(feed.open === key));
      if (feed.primed && !feed.seen.has(key)) tr.classList.add("new");
      shown.add(key);
    });
    for (const r of visible) {
      if (feedKey(r) !== feed.open) continue;
      const tr = tbody.querySelector("tr[data-key='" + CSS.escape(feed.open) + "']");
      const detail = document.createElement("tr");
      detail.className = "detail";
      detail.appendChild(timeline(r));
      tr.after(detail);
    }
    feed.seen = new Set([...feed.seen, ...shown].slice(-500));
    feed.primed = true;
    const more = document.getElementById("feed-more");
    more.hidden = matching.length <= feed.shown;
    document.getElementById("feed-note").textContent = visible.length + " of " + matching.length +
      " (newest first by start time)";
  }
  function toggleRow(event) {
    const tr = event.target.closest("tr[data-key]");
    if (!tr) return;
    feed.open = feed.open === tr.dataset.key ? null : tr.dataset.key;
    renderFeed(null);
  }

  // -- live connection and staleness -------------------------------------------------------
  function renderSnapshot(snap) {
    lastSnap = snap;
    lastUpdate = Date.now() / 1000;
    setStale(false);
    renderStatus(snap);
    renderTiles(snap);
    renderLoaded(snap.loaded || []);
    renderFeed(snap.requests || []);
    if (!modelsFromHistory) renderModels(snap.models || [], "since the proxy started");
    drawLive();
  }
  // Without the live connection nothing on the page is current: say so on every value and
  // stop the status dots from claiming health.
  function setStale(on) {
    if (stale === on) return;
    stale = on;
    body.classList.toggle("stale", on);
    const banner = document.getElementById("stale-banner");
    banner.hidden = !on;
    if (!on) return;
    const at = lastUpdate ? fmtClock(lastUpdate) : "never";
    banner.textContent = "⚠ Live updates lost: the values below are as of " + at + ". Reconnecting…";
    for (const id of ["status-ollama", "status-proxy", "status-healthd"]) {
      const item = document.getElementById(id);
      item.className = "stale";
      item.querySelector("span").textContent = "as of " + at;
    }
    for (const tile of document.querySelectorAll("#numbers .tile")) {
      tile.dataset.state = "stale";
      tile.querySelector(".state").textContent = "⏸ stale, as of " + at;
    }
  }
  let socket = null;
  let retry = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws");
    socket.onopen = () => { retry = 1000; setStatus("status-page", "ok", "connected"); };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "hello") {
        points = msg.series.slice(-LIVE_POINTS);
        renderSnapshot(msg.snapshot);
      } else if (msg.type === "snapshot") {
        points.push(msg.data.point);
        if (points.length > LIVE_POINTS) points.shift();
        renderSnapshot(msg.data);
      }
    };
    socket.onclose = () => {
      setStatus("status-page", "bad", "disconnected, retrying");
      setStale(true);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  // A socket can stay open while its server hangs: silence for a few pushes is stale too.
  setInterval(() => {
    if (lastUpdate && Date.now() / 1000 - lastUpdate > Math.max(4 * PUSH, 5)) {
      setStatus("status-page", "bad", "no update since " + fmtClock(lastUpdate));
      setStale(true);
    }
  }, 1000);

  // -- history -----------------------------------------------------------------------------
  let currentWindow = body.dataset.defaultWindow;
  let historyTimer = null;
  // The busiest models first (the server picked them over the window), "other" last.
  function modelColumns(models, keep) {
    const total = (values) => values.reduce((sum, v) => sum + (isNum(v) ? v : 0), 0);
    const names = Object.keys(models).sort((a, b) =>
      (a === "other") - (b === "other") || total(models[b]) - total(models[a]) || (a < b ? -1 : 1));
    const columns = {};
    for (const m of names) columns[m] = modelled(models[m].slice(0, keep), m);
    return columns;
  }
  function historyColumns(def, data, keep, unavailable) {
    const models = def.byModel ? (data.by_model || {})[def.byModel] || {} : {};
    if (Object.keys(models).length) return modelColumns(models, keep);
    const s = data.series;
    const columns = {};
    for (const [key, label] of def.series) {
      if (!unavailable.has(key) && s[key]) columns[key] = labelled(s[key].slice(0, keep), label);
    }
    if (def.optional && Object.values(columns).some((v) => v.some(isNum))) {
      for (const key of Object.keys(columns)) if (!columns[key].some(isNum)) delete columns[key];
    }
    return columns;
  }
  async function loadHistory() {
    const error = document.getElementById("history-error");
    try {
      const response = await fetch("/api/history?window=" + encodeURIComponent(currentWindow));
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      error.hidden = true;
      setStatus("status-history", "ok", data.source);
      const s = data.series;
      let ts = s.ts;
      // The open bucket at the right edge holds part of a step: drawn, it reads as a drop.
      const keep = ts.length && ts[ts.length - 1] + data.step_seconds > data.until ? ts.length - 1 : ts.length;
      ts = ts.slice(0, keep);
      const unavailable = new Set(data.unavailable || []);
      for (const def of CHARTS) {
        const columns = historyColumns(def, data, keep, unavailable);
        const emptyText = unavailable.size && !Object.keys(columns).length
          ? (data.unavailable_reason || "not kept by " + data.source + " history")
          : def.empty + " in the last " + fmtSpan(data.until - data.since);
        drawChart("history", def, ts, columns, emptyText);
      }
      document.getElementById("history-note").textContent = "from " + data.source + ", one point per " + fmtSpan(data.step_seconds);
      modelsFromHistory = true;
      renderModels(data.models, "in the last " + fmtSpan(data.until - data.since));
    } catch (exc) {
      error.hidden = false;
      error.textContent = "History unavailable: " + exc.message;
      setStatus("status-history", "bad", "unreachable: " + exc.message);
      for (const def of CHARTS) drawChart("history", def, [], {}, "history unavailable");
      modelsFromHistory = false;
    }
  }
  function selectWindow(name) {
    currentWindow = name;
    for (const button of document.querySelectorAll("#windows button")) {
      button.setAttribute("aria-pressed", String(button.dataset.window === name));
    }
    clearInterval(historyTimer);
    loadHistory();
    historyTimer = setInterval(loadHistory, ["15m", "1h"].includes(name) ? 15000 : 60000);
  }

  // -- analysis ----------------------------------------------------------------------------
  async function loadAnalysis() {
    const list = document.getElementById("findings");
    try {
      const response = await fetch("/api/analysis");
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      document.getElementById("analysis-note").textContent = "from " + data.basis;
      list.replaceChildren();
      if (!data.findings.length) list.appendChild(el("li", "✓ Nothing to act on right now.", "none"));
      for (const f of data.findings) {
        const item = el("li", null, "finding " + f.severity);
        item.appendChild(el("strong", (f.severity === "critical" ? "✖ " : f.severity === "warning" ? "▲ " : "") + f.title));
        item.appendChild(el("p", f.detail));
        item.appendChild(el("p", f.action, "action"));
        list.appendChild(item);
      }
    } catch (exc) {
      list.replaceChildren(el("li", "Analysis unavailable: " + exc.message, "error"));
    }
  }

  async function writeNarrative() {
    const button = document.getElementById("narrative-button");
    const status = document.getElementById("narrative-status");
    const text = document.getElementById("narrative-text");
    button.disabled = true;
    text.textContent = "";
    status.textContent = "asking " + (body.dataset.narrativeModel || "the model") + "…";
    try {
      const response = await fetch("/api/narrative", { method: "POST" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const event = JSON.parse(buffered.slice(0, newline));
          buffered = buffered.slice(newline + 1);
          if (event.type === "chunk") text.textContent += event.text;
          else if (event.type === "start") status.textContent = "written by " + event.model + " on " + event.ollama_url;
          else if (event.type === "skipped") status.textContent = "Not written: " + event.reason;
          else if (event.type === "error") status.textContent = "Stopped: " + event.error;
        }
      }
    } catch (exc) {
      status.textContent = "Narrative unavailable: " + exc.message;
    } finally {
      button.disabled = false;
    }
  }

  // -- start -------------------------------------------------------------------------------
  const nav = document.getElementById("windows");
  for (const name of WINDOWS) {
    const button = el("button", name);
    button.type = "button";
    button.dataset.window = name;
    button.addEventListener("click", () => selectWindow(name));
    nav.appendChild(button);
  }
  document.getElementById("live-note").textContent =
    "last " + Math.round(LIVE_POINTS * PUSH / 60) + " min, one point per " + fmtSpan(PUSH);
  const narrativeButton = document.getElementById("narrative-button");
  if (body.dataset.narrativeModel) {
    narrativeButton.textContent = "Write a narrative with " + body.dataset.narrativeModel;
    narrativeButton.addEventListener("click", writeNarrative);
  } else {
    narrativeButton.disabled = true;
    document.getElementById("narrative-status").textContent = "narrative off (narrative_model is empty)";
  }
  document.getElementById("feed").addEventListener("click", toggleRow);
  document.getElementById("feed").addEventListener("keydown", (e) => { if (e.key === "Enter") toggleRow(e); });
  for (const id of ["feed-model", "feed-status"]) {
    document.getElementById(id).addEventListener("change", () => { feed.shown = PAGE; renderFeed(null); });
  }
  document.getElementById("feed-more").addEventListener("click", () => { feed.shown += PAGE * 2; renderFeed(null); });
  makeCharts("live", document.getElementById("live-charts"));
  makeCharts("history", document.getElementById("history-charts"));
  window.addEventListener("resize", resizeCharts);
  connect();
  selectWindow(currentWindow);
  loadAnalysis();
  setInterval(loadAnalysis, 10000);
  window.llamaDashboard = {
    charts: charts,
    get points() { return points; },
    get snapshot() { return lastSnap; },
    get stale() { return stale; },
  };
})();
