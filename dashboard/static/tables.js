// llama-metrics dashboard: what the page's tables share (dashboard.js, clients.js, energy.js),
// loaded before them. Every value that comes from data is set with textContent.
"use strict";

window.llamaTables = (function () {
  function cell(text, cls) {
    const td = document.createElement("td");
    if (text !== undefined && text !== null) td.textContent = String(text);
    if (cls) td.className = cls;
    return td;
  }
  function nameCell(name) { // long names elide; the whole name is on hover
    const td = cell(null, "name");
    const span = document.createElement("span");
    span.textContent = name;
    span.title = name;
    td.appendChild(span);
    return td;
  }
  // Replaces the table's body with a row per item of rows; cells(row) gives a row's cells, each
  // a <td> or a value for one. Every cell is labelled with its column's heading (the card layout
  // on narrow screens shows it). No rows: one cell across the table saying `empty`.
  function fill(table, rows, cells, empty) {
    const labels = [...table.tHead.rows[0].cells].map((c) => c.textContent);
    const body = document.createElement("tbody");
    if (!rows.length) {
      const td = cell(empty, "empty");
      td.colSpan = labels.length;
      body.insertRow().appendChild(td);
    }
    for (const row of rows) {
      const tr = body.insertRow();
      cells(row).forEach((value, i) => {
        const td = value instanceof Node ? value : cell(value);
        td.dataset.label = labels[i];
        tr.appendChild(td);
      });
    }
    table.replaceChild(body, table.tBodies[0]);
    return body;
  }
  return { cell, nameCell, fill };
})();
