// llama-metrics dashboard: draws the JSON API and the websocket's snapshots.
// Every value that comes from data is set with textContent, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const WINDOWS = body.dataset.windows.split(",");
  const LIVE_POINTS = 300;
  const PALETTE = ["#2f6fd6", "#d9822b", "#2a9d5b", "#c23b52", "#7b53c1", "#3aa5b5"];

  // -- formatting ------------------------------------------------------------------------
  const isNum = (v) => typeof v === "number" && isFinite(v);
  function fmtNumber(v, digits) {
    if (!isNum(v)) return "–";
    if (Math.abs(v) >= 1000) return v.toLocaleString(undefined, { maximumFractionDigits: 0 });
    return v.toFixed(digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits);
  }
  function fmtSeconds(v) {
    if (!isNum(v)) return "–";
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 1 : 0) + " ms";
    return v.toFixed(v < 10 ? 2 : 1) + " s";
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
  function fmtTime(epoch) {
    return isNum(epoch) ? new Date(epoch * 1000).toLocaleTimeString() : "–";
  }

  // -- DOM helpers (text only) -------------------------------------------------------------
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fillTable(table, rows, cells, empty) {
    const tbody = table.tBodies[0];
    const fresh = document.createElement("tbody");
    if (!rows.length) {
      const tr = fresh.insertRow();
      const td = el("td", empty, "empty");
      td.colSpan = table.tHead.rows[0].cells.length;
      tr.appendChild(td);
    }
    for (const row of rows) {
      const tr = fresh.insertRow();
      for (const cell of cells(row)) {
        tr.appendChild(typeof cell === "object" && cell !== null ? cell : el("td", cell));
      }
    }
    table.replaceChild(fresh, tbody);
    return fresh;
  }
  function setStatus(id, state, text) {
    const item = document.getElementById(id);
    item.className = state;
    item.querySelector("span").textContent = text;
  }

  // -- charts ------------------------------------------------------------------------------
  // axis: how tick labels read (shorter than legend values).
  const axisNumber = (v) => (Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : String(+v.toFixed(3)));
  const CHARTS = [
    { id: "requests", title: "Requests per second", fmt: FORMATS.rate, axis: axisNumber,
      series: [["requests_per_second", "requests/s"]] },
    { id: "tokens", title: "Tokens per second", fmt: FORMATS.rate, axis: axisNumber,
      series: [["generated_tokens_per_second", "generated"], ["prompt_tokens_per_second", "prompt"]] },
    { id: "latency", title: "Latency", fmt: fmtSeconds, axis: fmtSeconds,
      series: [["ttft_p50", "TTFT p50"], ["ttft_p95", "TTFT p95"],
               ["duration_p50", "duration p50"], ["duration_p95", "duration p95"]] },
    { id: "errors", title: "Error rate", fmt: FORMATS.ratio, axis: (v) => +(v * 100).toFixed(1) + "%",
      max: 1, floor: 0.05, series: [["error_rate", "errors"]] },
    { id: "load", title: "Active and queued requests (average)", fmt: FORMATS.count, axis: axisNumber,
      series: [["active_requests", "active"], ["queue_depth", "queued"]] },
    { id: "resources", title: "Host and GPU", fmt: FORMATS.percent, axis: (v) => v + "%",
      max: 100, floor: 100,
      series: [["cpu_percent", "CPU"], ["memory_percent", "memory"],
               ["gpu_utilization_percent", "GPU"], ["gpu_memory_percent", "GPU memory"]] },
  ];
  const charts = { live: {}, history: {} };

  // Every series is >= 0: start at 0, leave headroom, and keep an empty chart sensible.
  function yRange(def, hi) {
    const top = isNum(hi) && hi > 0 ? hi * 1.1 : 0;
    const limited = def.max === undefined ? top : Math.min(top, def.max);
    return [0, Math.max(limited, def.floor || 1e-9, isNum(hi) && hi > 0 ? 0 : 1)];
  }

  function makeCharts(kind, container) {
    for (const def of CHARTS) {
      const box = el("div", null, "chart");
      container.appendChild(box);
      const width = Math.max(280, box.clientWidth || 400);
      const opts = {
        title: def.title, width: width, height: 170,
        scales: { x: { time: true }, y: { range: (u, lo, hi) => yRange(def, hi) } },
        legend: { live: true },
        series: [{}].concat(def.series.map(([key, label], i) => ({
          label: label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
          value: (u, v) => def.fmt(v),
        }))),
        axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => def.axis(v)) }],
      };
      const empty = [[]].concat(def.series.map(() => []));
      charts[kind][def.id] = new uPlot(opts, empty, box);
    }
  }
  function drawCharts(kind, columns) {
    for (const def of CHARTS) {
      const data = [columns.ts].concat(def.series.map(([key]) => columns[key] || []));
      charts[kind][def.id].setData(data);
    }
  }
  function resizeCharts() {
    for (const kind of ["live", "history"]) {
      for (const chart of Object.values(charts[kind])) {
        const width = chart.root.parentNode.clientWidth;
        if (width) chart.setSize({ width: width, height: 170 });
      }
    }
  }

  // -- live --------------------------------------------------------------------------------
  const live = { ts: [] };
  for (const def of CHARTS) for (const [key] of def.series) live[key] = [];
  let seenFeed = new Set();
  let feedPrimed = false;
  let modelsFromHistory = false;

  function addPoint(point) {
    for (const key of Object.keys(live)) {
      live[key].push(key in point ? point[key] : null);
      if (live[key].length > LIVE_POINTS) live[key].shift();
    }
  }

  function renderStatus(snap) {
    const st = snap.status || {};
    const ollama = st.ollama || {};
    if (ollama.up === true) setStatus("status-ollama", "ok", "up" + (ollama.version ? ", " + ollama.version : ""));
    else if (ollama.up === false) setStatus("status-ollama", "bad", "down" + (ollama.version ? " (last seen " + ollama.version + ")" : ""));
    else setStatus("status-ollama", "unknown", "unknown");
    const proxy = st.proxy || {};
    const all = proxy.proxies || [];
    const up = all.filter((p) => p.reachable).length;
    const version = ollama.proxy_version ? ", " + ollama.proxy_version : "";
    if (all.length > 1 && up === all.length) setStatus("status-proxy", "ok", up + " proxies reachable" + version);
    else if (all.length > 1 && up > 0) setStatus("status-proxy", "warn", up + " of " + all.length + " proxies reachable; " + (proxy.error || "?"));
    else if (proxy.reachable) setStatus("status-proxy", "ok", "reachable" + version);
    else setStatus("status-proxy", "bad", "unreachable: " + (proxy.error || "?"));
    const hd = st.healthd || {};
    const state = String(hd.status || "unknown");
    const cls = { ok: "ok", healthy: "ok", degraded: "warn", warning: "warn", unknown: "unknown" }[state] || "bad";
    setStatus("status-healthd", cls, state + (hd.detail ? " – " + hd.detail : ""));
  }

  function renderTiles(point, gauges) {
    for (const tile of document.querySelectorAll("#numbers .tile")) {
      const key = tile.dataset.key;
      const value = point[key];
      tile.querySelector("span").textContent = FORMATS[tile.dataset.format](value);
      if (tile.classList.contains("gpu")) tile.hidden = !(gauges.gpus && gauges.gpus.length);
    }
  }

  function renderModels(rows, note) {
    document.getElementById("models-note").textContent = note;
    fillTable(document.getElementById("models-table"), rows, (r) => [
      r.model, fmtNumber(r.requests, 0), fmtNumber(r.prompt_tokens, 0),
      fmtNumber(r.generated_tokens, 0), fmtNumber(r.tokens_per_second),
      fmtSeconds(r.ttft_p95), fmtNumber(r.errors, 0),
    ], "no requests yet");
  }

  function renderLoaded(rows) {
    fillTable(document.getElementById("loaded-table"), rows, (r) => {
      const pct = isNum(r.vram_fraction) ? (r.vram_fraction * 100).toFixed(0) + " %" : "–";
      const placement = { gpu: "fits in GPU memory", partial: "spills to CPU", cpu: "CPU only" }[r.placement] || "unknown";
      const place = el("td", placement, "placement-" + r.placement);
      return [r.model, fmtBytes(r.size_bytes), fmtBytes(r.vram_bytes) + " (" + pct + ")", place,
              isNum(r.expires_at) ? new Date(r.expires_at * 1000).toLocaleString() : "–"];
    }, "no model loaded");
  }

  function feedKey(r) {
    return [r.started_at, r.model, r.endpoint, r.status, r.duration_s].join("|");
  }
  function renderFeed(rows) {
    const tbody = fillTable(document.getElementById("feed"), rows, (r) => {
      const status = el("td", r.status + (r.error_type ? " " + r.error_type : ""), r.error_type ? "bad" : "");
      const tokens = (isNum(r.prompt_tokens) ? r.prompt_tokens : "–") + " → " +
        (isNum(r.generated_tokens) ? r.generated_tokens : "–");
      return [fmtTime(r.started_at), r.model, r.endpoint, status, tokens,
              fmtSeconds(r.ttft_s), fmtSeconds(r.duration_s)];
    }, "no requests yet");
    // Only the rows shown now are remembered: the set stays as small as the feed.
    const shown = new Set();
    rows.forEach((r, i) => {
      const key = feedKey(r);
      if (feedPrimed && !seenFeed.has(key)) tbody.rows[i].classList.add("new");
      shown.add(key);
    });
    seenFeed = shown;
    feedPrimed = true;
  }

  function renderSnapshot(snap) {
    renderStatus(snap);
    renderTiles(snap.point || {}, snap.gauges || {});
    renderLoaded(snap.loaded || []);
    renderFeed(snap.requests || []);
    if (!modelsFromHistory) renderModels(snap.models || [], "since the proxy started");
    drawCharts("live", live);
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
        for (const key of Object.keys(live)) live[key].length = 0;
        for (const point of msg.series) addPoint(point);
        renderSnapshot(msg.snapshot);
      } else if (msg.type === "snapshot") {
        addPoint(msg.data.point);
        renderSnapshot(msg.data);
      }
    };
    socket.onclose = () => {
      setStatus("status-page", "bad", "disconnected, retrying");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  // -- history -----------------------------------------------------------------------------
  let currentWindow = body.dataset.defaultWindow;
  let historyTimer = null;
  async function loadHistory() {
    const error = document.getElementById("history-error");
    try {
      const response = await fetch("/api/history?window=" + encodeURIComponent(currentWindow));
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      error.hidden = true;
      drawCharts("history", data.series);
      const missing = data.unavailable && data.unavailable.length ? "; not in this source: " + data.unavailable.join(", ") : "";
      document.getElementById("history-note").textContent = "from " + data.source + ", one point per " + fmtSeconds(data.step_seconds) + missing;
      modelsFromHistory = true;
      renderModels(data.models, "last " + data.window + " (" + data.source + ")");
    } catch (exc) {
      error.hidden = false;
      error.textContent = "History unavailable: " + exc.message;
      drawCharts("history", { ts: [] });
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
      if (!data.findings.length) list.appendChild(el("li", "Nothing to act on right now.", "none"));
      for (const f of data.findings) {
        const item = el("li", null, "finding " + f.severity);
        item.appendChild(el("strong", f.title));
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
    "last " + Math.round(LIVE_POINTS * Number(body.dataset.pushInterval) / 60) + " min, every " + body.dataset.pushInterval + " s";
  const narrativeButton = document.getElementById("narrative-button");
  if (body.dataset.narrativeModel) {
    narrativeButton.textContent = "Write a narrative with " + body.dataset.narrativeModel;
    narrativeButton.addEventListener("click", writeNarrative);
  } else {
    narrativeButton.disabled = true;
    document.getElementById("narrative-status").textContent = "narrative off (narrative_model is empty)";
  }
  makeCharts("live", document.getElementById("live-charts"));
  makeCharts("history", document.getElementById("history-charts"));
  window.addEventListener("resize", resizeCharts);
  connect();
  selectWindow(currentWindow);
  loadAnalysis();
  setInterval(loadAnalysis, 10000);
  window.llamaDashboard = { charts: charts, live: live };
})();
