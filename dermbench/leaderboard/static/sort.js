// Sortable leaderboard tables: click a column header to sort by it, click again to reverse.
// Cells carry their sort key in data-value; empty values always sort last.
"use strict";

(function () {
  function key(row, col) {
    const cell = row.cells[col];
    return cell && cell.dataset.value !== undefined ? cell.dataset.value : "";
  }

  function compare(kind, sign) {
    return function (a, b) {
      const va = a.value;
      const vb = b.value;
      if (va === "" || vb === "") {
        return (va === "") - (vb === "");
      }
      if (kind === "num") {
        const na = Number(va);
        const nb = Number(vb);
        if (Number.isNaN(na) || Number.isNaN(nb)) {
          return Number.isNaN(na) - Number.isNaN(nb);
        }
        return sign * (na - nb);
      }
      return sign * va.localeCompare(vb);
    };
  }

  function sortBy(table, th, col) {
    const kind = th.dataset.sort;
    const current = th.getAttribute("aria-sort");
    let dir;
    if (current === "ascending") {
      dir = "descending";
    } else if (current === "descending") {
      dir = "ascending";
    } else {
      dir = th.dataset.first || (kind === "num" ? "descending" : "ascending");
    }
    for (const other of table.tHead.rows[0].cells) {
      other.removeAttribute("aria-sort");
    }
    th.setAttribute("aria-sort", dir);
    const body = table.tBodies[0];
    const rows = Array.from(body.rows, function (row, i) {
      return { row: row, value: key(row, col), index: i };
    });
    const cmp = compare(kind, dir === "ascending" ? 1 : -1);
    rows.sort(function (a, b) {
      return cmp(a, b) || a.index - b.index;
    });
    for (const r of rows) {
      body.appendChild(r.row);
    }
  }

  function init() {
    for (const table of document.querySelectorAll("table.sortable")) {
      const headers = table.tHead.rows[0].cells;
      for (let col = 0; col < headers.length; col++) {
        const th = headers[col];
        const button = th.querySelector("button");
        if (button && th.dataset.sort) {
          button.addEventListener("click", function () {
            sortBy(table, th, col);
          });
        }
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
