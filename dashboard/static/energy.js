// llama-metrics dashboard: the energy section, from /api/energy for the window the history
// section shows. Without a GPU energy meter it says so in words and draws nothing else.
// Every value that comes from data is set with textContent.
"use strict";

(function () {
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const count = (v) => (isNum(v) ? Math.round(v).toLocaleString("en") : "–");
  function sig(v) { // three significant digits at most, no exponent
    const a = Math.abs(v);
    if (a >= 100) return Math.round(v).toLocaleString("en");
    if (a >= 10) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    if (a >= 0.01) return v.toFixed(3);
    return v === 0 ? "0" : v.toPrecision(2);
  }
  const watts = (v) => (isNum(v) ? sig(v) + " W" : "–");
  const perToken = (v) => (isNum(v) ? sig(v) + " J/token" : "–");
  function energy(joules, suffix) { // J below a watt-hour, then Wh, then kWh
    if (!isNum(joules)) return "–";
    const wh = joules / 3600;
    const tail = suffix || "";
    if (wh >= 1000) return sig(wh / 1000) + " kWh" + tail;
    if (wh >= 1 || tail) return sig(wh) + " Wh" + tail;
    return sig(joules) + " J";
  }
  const perDay = (joules) => energy(joules, "/day");
  const share = (part, whole) => (isNum(part) && whole > 0 ? Math.round((100 * part) / whole) + " %" : "–");
  function day(epoch) {
    const d = new Date(epoch * 1000);
    return d.toISOString().slice(0, 10);
  }
  const { cell, nameCell, fill } = window.llamaTables; // static/tables.js
  function tile(id, value, note) {
    const box = document.getElementById(id);
    box.querySelector(".value").textContent = value;
    if (note !== undefined) box.querySelector("small").textContent = note;
  }
  // One span of time: a bar of active (blue) and idle (grey), and its numbers in words.
  function split(what, active, idle, detail) {
    const li = document.createElement("li");
    li.appendChild(Object.assign(document.createElement("span"), { className: "what", textContent: what }));
    const bar = document.createElement("span");
    bar.className = "bar";
    const numbers = document.createElement("span");
    numbers.className = "numbers";
    const total = (active || 0) + (idle || 0);
    if (isNum(active) && isNum(idle) && total > 0) {
      for (const [cls, part] of [["active", active], ["idle", idle]]) {
        const seg = document.createElement("span");
        seg.className = cls;
        seg.style.width = ((100 * part) / total).toFixed(1) + "%";
        seg.title = cls + " " + energy(part);
        bar.appendChild(seg);
      }
      numbers.textContent = "active " + energy(active) + " (" + share(active, total) + "), idle " +
        energy(idle) + " (" + share(idle, total) + ")" + (detail ? " – " + detail : "");
    } else {
      numbers.className = "numbers empty";
      numbers.textContent = isNum(active) ? "active " + energy(active) + "; idle unknown" +
        (detail ? " – " + detail : "") : "no GPU energy measured";
    }
    li.appendChild(bar);
    li.appendChild(numbers);
    return li;
  }
  function windowName() {
    const pressed = document.querySelector("#windows button[aria-pressed='true']");
    return pressed ? pressed.dataset.window : document.body.dataset.defaultWindow;
  }
  function span(seconds) {
    if (!isNum(seconds) || seconds <= 0) return "–";
    if (seconds >= 86400) return +(seconds / 86400).toFixed(1) + " days";
    if (seconds >= 3600) return +(seconds / 3600).toFixed(1) + " h";
    if (seconds >= 60) return Math.round(seconds / 60) + " min";
    return Math.round(seconds) + " s";
  }

  function render(data, name) {
    const none = document.getElementById("energy-none");
    const body = document.getElementById("energy-body");
    const note = document.getElementById("energy-note");
    if (!data.metered) {
      // No meter: the words, and nothing that could read as an empty chart.
      none.textContent = data.note;
      none.hidden = false;
      body.hidden = true;
      note.textContent = "";
      return;
    }
    none.hidden = true;
    body.hidden = false;
    const live = data.live || {};
    const hist = data.history;
    const how = { counter: "NVML's energy counter", integrated: "NVML's power draw, integrated" };
    const sources = (live.sources || []).map((k) => how[k] || k);
    note.textContent = (sources.length ? "GPU energy from " + sources.join(" and ") + "; " : "") +
      "live since the proxy started, and in the last " + name + (hist ? " from the history file" : "") +
      (data.history_error ? " – history: " + data.history_error : "");
    const average = live.average;
    tile("energy-power", watts(live.power_w), live.metered ? "now" : "proxy not metering now");
    tile("energy-average", average ? watts(average.gpu_w) : "–", average
      ? "last " + span(average.seconds) + ": " + watts(average.active_w) + " active, " + watts(average.idle_w) + " idle"
      : "after half a minute of scrapes");
    const tokens = (live.models || []).reduce((sum, m) => sum + (m.generated_tokens || 0), 0);
    tile("energy-per-token", perToken(tokens > 0 ? live.active_j / tokens : null),
      "all models, since the proxy started");
    tile("energy-since", energy(live.gpu_j), isNum(live.gpu_j)
      ? share(live.active_j, live.gpu_j) + " of it active" : "proxy not metering now");
    tile("energy-per-day", hist && isNum(hist.wh_per_day) ? perDay(hist.wh_per_day * 3600) : "–", hist
      ? "at the rate of the last " + name + (hist.gpu_j !== null ? ", from power samples over " +
        span(hist.sampled_seconds) : ", requests only") : "no history window");

    const list = document.getElementById("energy-split");
    list.replaceChildren(split("since the proxy started", live.active_j, live.idle_j, "GPU energy counter"));
    if (hist) {
      const covered = hist.sampled_seconds > 0 ? "GPU total from power samples over " + span(hist.sampled_seconds) : "";
      list.appendChild(split("last " + name, hist.active_j, hist.idle_j, covered));
    }

    const byModel = {};
    for (const m of live.models || []) byModel[m.model] = { live: m };
    for (const m of (hist && hist.models) || []) (byModel[m.model] = byModel[m.model] || {}).window = m;
    const rows = Object.entries(byModel).map(([model, v]) => ({ model: model, live: v.live || {}, window: v.window || {} }));
    rows.sort((a, b) => (b.window.joules || 0) - (a.window.joules || 0) || (b.live.joules || 0) - (a.live.joules || 0));
    document.getElementById("energy-models-note").textContent = "window: last " + name;
    fill(document.getElementById("energy-models"), rows, (r) => [
      nameCell(r.model), cell(perToken(r.live.joules_per_token)), cell(perToken(r.window.joules_per_token)),
      cell(energy(r.window.joules)), cell(isNum(r.window.wh_per_day) ? perDay(r.window.wh_per_day * 3600) : "–"),
      cell(isNum(r.window.generated_tokens) ? count(r.window.generated_tokens) + " tokens" : "–"),
    ], "no model has used GPU energy yet");

    const clients = live.clients || [];
    document.getElementById("energy-clients-box").hidden = !clients.length;
    fill(document.getElementById("energy-clients"), clients, (c) => [
      nameCell(c.client || "unidentified"), cell(energy(c.joules)),
      cell(count(c.generated_tokens) + " tokens"), cell(perToken(c.joules_per_token)),
    ], "no client has used GPU energy yet");

    const days = (hist && hist.days) || []; // newest first
    document.getElementById("energy-days-note").textContent = "in the last " + name;
    fill(document.getElementById("energy-days"), days, (d) => [
      cell(day(d.day)), nameCell(d.model), cell(energy(d.joules)), cell(perToken(d.joules_per_token)),
      cell(count(d.requests) + " requests"),
    ], hist ? "no metered request in the last " + name : "no history window");
  }

  async function load() {
    const name = windowName();
    try {
      const response = await fetch("/api/energy?window=" + encodeURIComponent(name));
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      render(data, name);
    } catch (exc) {
      const none = document.getElementById("energy-none");
      none.textContent = "Energy unavailable: " + exc.message;
      none.hidden = false;
      document.getElementById("energy-body").hidden = true;
    }
  }
  document.getElementById("windows").addEventListener("click", (e) => {
    if (e.target.closest("button")) setTimeout(load, 0); // after the page marked the window
  });
  load();
  setInterval(load, 5000);
})();
