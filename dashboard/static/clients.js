// llama-metrics dashboard: the clients and users tables, from /api/clients for the window the
// history section shows. Every value that comes from data is set with textContent.
"use strict";

(function () {
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const count = (v) => (isNum(v) ? Math.round(v).toLocaleString("en") : "–");
  function seconds(v) {
    if (!isNum(v)) return "–";
    return v < 1 ? (v * 1000).toFixed(v < 0.01 ? 1 : 0) + " ms" : v.toFixed(v < 10 ? 2 : 1) + " s";
  }
  const { cell, nameCell, fill } = window.llamaTables; // static/tables.js
  function budgetCell(r) {
    if (!isNum(r.daily_token_budget)) return cell(count(r.used_today) + " tokens, no budget");
    const td = cell("", "budget");
    const share = r.used_today / r.daily_token_budget;
    const meter = document.createElement("span");
    meter.className = "meter" + (share >= 1 ? " full" : share >= 0.8 ? " high" : "");
    const bar = document.createElement("span");
    bar.style.width = Math.min(100, share * 100).toFixed(1) + "%";
    meter.appendChild(bar);
    td.appendChild(meter);
    td.appendChild(document.createTextNode(
      (share >= 1 ? "✖ " : "") + count(r.used_today) + " of " + count(r.daily_token_budget) +
      " (" + (share * 100).toFixed(0) + " %)"));
    return td;
  }
  function windowName() {
    const pressed = document.querySelector("#windows button[aria-pressed='true']");
    return pressed ? pressed.dataset.window : document.body.dataset.defaultWindow;
  }
  async function load() {
    const note = document.getElementById("clients-note");
    const table = document.getElementById("clients-table");
    const name = windowName();
    try {
      const response = await fetch("/api/clients?window=" + encodeURIComponent(name));
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      const renews = Math.round(data.renews_in_seconds / 3600);
      note.textContent = "in the last " + name + "; budgets per UTC day, renewed in " +
        (renews ? renews + " h" : "under an hour") + (data.note ? " – " + data.note : "");
      fill(table, data.clients, (r) => [
        nameCell(r.client), cell(count(r.requests)),
        cell(count(r.prompt_tokens) + " → " + count(r.generated_tokens)), cell(seconds(r.ttft_p95)),
        cell(count(r.errors), r.errors ? "bad" : ""), budgetCell(r),
      ], data.configured ? "no clients" : "no clients configured (security.clients_file)");
      document.getElementById("users").hidden = !data.users.length;
      fill(document.getElementById("users-table"), data.users, (r) => [
        nameCell(r.user), cell(r.client || "–"), cell(count(r.requests)), cell(count(r.tokens)),
        cell(seconds(r.ttft_p95)), cell(count(r.errors), r.errors ? "bad" : ""),
      ], "no users recorded");
    } catch (exc) {
      note.textContent = "";
      fill(table, [], () => [], "Clients unavailable: " + exc.message);
      document.getElementById("users").hidden = true;
    }
  }
  document.getElementById("windows").addEventListener("click", (e) => {
    if (e.target.closest("button")) setTimeout(load, 0); // after the page marked the window
  });
  load();
  setInterval(load, 30000);
})();
