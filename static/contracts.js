// The contracts page: the snapshot's age ticks, the table sorts and filters in the browser, and
// both survive the table being replaced by a new snapshot (pushed by SSE).
(function () {
  "use strict";
  var state = { sort: null, dir: 1, filter: "" };

  function fmtAge(s) {
    if (s < 60) return Math.floor(s) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function tick() {
    document.querySelectorAll("[data-built-at]").forEach(function (el) {
      if (!el.dataset.builtAt || el.id === "contracts-table") return;
      var age = (Date.now() - Date.parse(el.dataset.builtAt)) / 1000;
      el.textContent = fmtAge(Math.max(age, 0));
      el.classList.toggle("stale", age > parseFloat(el.dataset.ttl || "0"));
    });
  }

  function key(row, field, numeric) {
    var v = row.dataset[field] || "";
    return numeric ? parseFloat(v || "0") : v;
  }

  function apply() {
    var box = document.getElementById("contracts-table");
    if (!box) return;
    if (state.filter) box.dataset.filter = state.filter; else box.removeAttribute("data-filter");
    box.querySelectorAll("[data-filter]").forEach(function (b) {
      if (b.tagName === "BUTTON") b.classList.toggle("on", b.dataset.filter === state.filter);
    });
    var body = box.querySelector("tbody");
    if (!body) return;
    var shown = state.filter ? body.querySelectorAll('tr[data-status="' + state.filter + '"]').length : 1;
    box.classList.toggle("none-shown", shown === 0);
    box.querySelectorAll("th[data-sort]").forEach(function (th) {
      th.classList.remove("asc", "desc");
      if (th.dataset.sort === state.sort) th.classList.add(state.dir > 0 ? "asc" : "desc");
    });
    if (!state.sort) return;
    var th = box.querySelector('th[data-sort="' + state.sort + '"]');
    var numeric = th && th.dataset.num === "1";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, state.sort, numeric), y = key(b, state.sort, numeric);
      if (x < y) return -state.dir;
      if (x > y) return state.dir;
      return a.dataset.symbol < b.dataset.symbol ? -1 : 1;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
  }

  document.addEventListener("click", function (ev) {
    var t = ev.target;
    var th = t.closest && t.closest("#contracts-table th[data-sort]");
    if (th) {
      state.dir = state.sort === th.dataset.sort ? -state.dir : 1;
      state.sort = th.dataset.sort;
      apply();
      return;
    }
    var btn = t.closest && t.closest("#contracts-table button[data-filter]");
    if (btn) { state.filter = btn.dataset.filter; apply(); return; }
    var row = t.closest && t.closest("#contracts-table tbody tr");
    if (row) {
      document.querySelectorAll("#contracts-table tr.picked").forEach(function (r) { r.classList.remove("picked"); });
      row.classList.add("picked");
    }
  });

  document.addEventListener("change", function (ev) {
    var form = ev.target.closest && ev.target.closest("form.selectors");
    if (!form) return;
    if (ev.target.name === "exchange") {
      var known = JSON.parse(form.dataset.known || "{}");
      var select = form.querySelector('select[name="var"]');
      select.innerHTML = "";
      (known[ev.target.value] || []).forEach(function (v) {
        var o = document.createElement("option"); o.value = v; o.textContent = v; select.appendChild(o);
      });
    }
    form.submit();
  });

  document.addEventListener("htmx:afterSwap", function (ev) {
    var days = document.getElementById("contract-days");
    if (days && ev.target === days) days.scrollIntoView({ block: "nearest" });
  });
  ["htmx:afterSwap", "htmx:afterSettle", "htmx:sseMessage"].forEach(function (name) {
    document.addEventListener(name, function () { apply(); tick(); });
  });
  document.addEventListener("DOMContentLoaded", function () { apply(); tick(); });
  setInterval(tick, 1000);
})();
