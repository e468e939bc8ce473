// voiceedge status page: live updates, filter and sort. No framework; works offline.
// The daemon renders (and escapes) every fragment; this script only puts them in place.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const live = document.getElementById("live");
  const POLL_MS = 5000;
  let pollTimer = null;
  let source = null;
  let reopenTimer = null;

  function setLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
  }

  function fromHtml(html) {
    const t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  function replaceById(id, html) {
    const old = document.getElementById(id);
    const frag = fromHtml(html);
    const el = frag.firstElementChild;
    if (!el) return null;
    if (old) old.replaceWith(el);
    return el;
  }

  // ---- dashboard: filter and sort -------------------------------------------------------------
  const rows = document.getElementById("rows");
  const filter = document.getElementById("filter");
  const shown = document.getElementById("shown");
  let sortCol = -1;
  let sortDir = 1;
  let stuckFilter = null;

  function rowMatches(tr) {
    if (stuckFilter !== null && (tr.dataset.state !== "stuck" || tr.dataset.stuck !== String(stuckFilter))) return false;
    const q = filter ? filter.value.trim().toLowerCase() : "";
    if (!q) return true;
    const hay = (tr.textContent + " " + (tr.dataset.search || "")).toLowerCase();
    return q.split(/\s+/).every((w) => hay.includes(w));
  }

  function applyFilter() {
    if (!rows) return;
    let n = 0;
    const all = rows.children.length;
    for (const tr of rows.children) {
      const ok = rowMatches(tr);
      tr.hidden = !ok;
      if (ok) n++;
    }
    if (shown) shown.textContent = n === all ? all + " phones" : n + " of " + all + " phones";
    document.querySelectorAll(".chip").forEach((c) => c.classList.toggle("on", c.dataset.stuckStep === String(stuckFilter)));
  }

  function cellValue(tr, col) {
    const td = tr.children[col];
    return td ? (td.dataset.v !== undefined ? td.dataset.v : td.textContent) : "";
  }

  function applySort() {
    if (!rows || sortCol < 0) return;
    const list = Array.from(rows.children);
    list.sort((a, b) => {
      const va = cellValue(a, sortCol), vb = cellValue(b, sortCol);
      if (va === vb) return a.id < b.id ? -1 : 1;
      return (va < vb ? -1 : 1) * sortDir;
    });
    for (const tr of list) rows.appendChild(tr);
    document.querySelectorAll("#phones th[data-sort]").forEach((th) => {
      th.classList.toggle("asc", Number(th.dataset.sort) === sortCol && sortDir === 1);
      th.classList.toggle("desc", Number(th.dataset.sort) === sortCol && sortDir === -1);
    });
  }

  function saveView() {
    try {
      sessionStorage.setItem("ve-view", JSON.stringify({ q: filter ? filter.value : "", sortCol, sortDir, stuckFilter }));
    } catch (e) { /* storage may be off */ }
  }

  if (page === "dashboard") {
    try {
      const v = JSON.parse(sessionStorage.getItem("ve-view") || "{}");
      if (filter && typeof v.q === "string") filter.value = v.q;
      if (Number.isInteger(v.sortCol)) { sortCol = v.sortCol; sortDir = v.sortDir === -1 ? -1 : 1; }
      if (v.stuckFilter !== undefined) stuckFilter = v.stuckFilter;
    } catch (e) { /* ignore a damaged saved view */ }
    document.querySelectorAll("#phones th[data-sort]").forEach((th) => {
      th.addEventListener("click", () => {
        const c = Number(th.dataset.sort);
        sortDir = c === sortCol ? -sortDir : 1;
        sortCol = c;
        applySort();
        saveView();
      });
    });
    if (filter) filter.addEventListener("input", () => { applyFilter(); saveView(); });
    document.addEventListener("click", (ev) => {
      const chip = ev.target.closest && ev.target.closest(".chip");
      if (!chip) return;
      ev.preventDefault();
      const s = Number(chip.dataset.stuckStep);
      stuckFilter = stuckFilter === s ? null : s;
      applyFilter();
      saveView();
    });
    applySort();
    applyFilter();
  }

  // ---- live updates ---------------------------------------------------------------------------
  function putRow(mac, id, html) {
    if (!rows) return;
    const old = document.getElementById(id);
    const el = fromHtml(html).firstElementChild;
    if (!el) return;
    if (old) old.replaceWith(el);
    else rows.appendChild(el);
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
  }

  let resyncing = false;
  async function resync() {
    if (resyncing) return;
    resyncing = true;
    try {
      if (page === "dashboard") {
        const r = await fetch("/fragment/dashboard", { cache: "no-store" });
        if (!r.ok) throw new Error(r.status);
        const d = await r.json();
        if (rows) rows.replaceChildren(fromHtml(d.rows));
        replaceById("counters", d.counters);
        replaceById("ports", d.ports);
        const empty = document.getElementById("empty");
        if (empty && rows && rows.children.length) empty.remove();
        applySort();
        applyFilter();
      } else if (page === "phone") {
        const mac = document.body.dataset.mac;
        const r = await fetch("/phone/" + encodeURIComponent(mac) + "/fragment", { cache: "no-store" });
        if (!r.ok) throw new Error(r.status);
        replaceById("main", await r.text());
      }
    } catch (e) {
      /* the next poll or event tries again */
    } finally {
      resyncing = false;
    }
  }

  function startPolling() {
    if (pollTimer) return;
    setLive("polling", "stream cut: refreshing every " + POLL_MS / 1000 + " s");
    pollTimer = setInterval(resync, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (!window.EventSource) { startPolling(); return; }
    source = new EventSource(page === "phone" ? "/events?phone=" + encodeURIComponent(document.body.dataset.mac)
                                              : "/events");
    source.addEventListener("hello", () => {
      stopPolling();
      setLive("live", "live");
      resync();  // whatever happened between the page load (or the cut) and now
    });
    source.addEventListener("resync", resync);
    source.addEventListener("row", (ev) => {
      if (page !== "dashboard") return;
      const d = JSON.parse(ev.data);
      putRow(d.mac, d.id, d.html);
      applySort();
      applyFilter();
    });
    source.addEventListener("remove", (ev) => {
      if (page !== "dashboard") return;
      const d = JSON.parse(ev.data);
      const tr = rows && rows.querySelector('tr[data-mac="' + CSS.escape(d.mac) + '"]');
      if (tr) tr.remove();
      applyFilter();
    });
    source.addEventListener("counters", (ev) => {
      if (page === "dashboard") { replaceById("counters", JSON.parse(ev.data).html); applyFilter(); }
    });
    source.addEventListener("ports", (ev) => {
      if (page === "dashboard") replaceById("ports", JSON.parse(ev.data).html);
    });
    source.addEventListener("phone", (ev) => {
      if (page === "phone" && JSON.parse(ev.data).mac === document.body.dataset.mac) resync();
    });
    source.onerror = () => {
      startPolling();
      // The browser retries by itself unless the daemon refused the stream (then: try later).
      if (source.readyState === EventSource.CLOSED && !reopenTimer) {
        reopenTimer = setTimeout(() => { reopenTimer = null; connect(); }, 15000);
      }
    };
  }

  connect();
})();
