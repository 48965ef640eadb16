/* gitxp ui: the page. Hash routes:
 *   #/                   runs table          #/run/ID        one experiment
 *   #/compare/ID,ID,...  curves overlaid     #/sweep/ID      a parent's children
 *
 * Every string from the store is untrusted (pulled stores): it only ever
 * reaches the page as a text node or an attribute value set here; there is
 * no innerHTML and no handler built from data.
 */
"use strict";

const ROW_H = 28;
const LIVE_MS = 1500;
const $main = () => document.getElementById("main");
const state = {
  rows: [], total: 0, where: "", whereError: "", sort: { key: "created", desc: true },
  selected: new Set(), columns: null, grouped: true, collapsed: new Set(), cursor: 0,
  timer: null, loaded: false,
};

/* ---------------------------------------------------------------- helpers */

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "checked" || k === "value" || k === "hidden" || k === "disabled") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
  }
  return el;
}

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: "bad response (" + r.status + ")" }; }
  if (!r.ok) { const err = new Error(body && body.error ? body.error : "HTTP " + r.status); err.status = r.status; throw err; }
  return body;
}

const fmt = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : typeof v === "boolean" ? String(v) : Charts.fmt(v));
const short = (id) => String(id).split("-").pop().slice(0, 8);
const runLink = (id) => "#/run/" + encodeURIComponent(id);
const when = (s) => (s ? String(s).replace("T", " ").replace(/\.\d+Z$|Z$/, "").slice(0, 16) : "–");

function flatten(obj, prefix, out) {
  if (obj && typeof obj === "object" && !Array.isArray(obj) && Object.keys(obj).length) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? prefix + "." + k : k, out);
  } else if (prefix) out[prefix] = obj;
  return out;
}

/* A row's value for a column key: params.a.b, metrics.NAME.last|min|max, summary.*, tags.*, base fields */
function cell(r, key) {
  if (key.startsWith("metrics.")) {
    const dot = key.lastIndexOf(".");
    const m = r.metrics && r.metrics[key.slice(8, dot)];
    return m && typeof m === "object" ? m[key.slice(dot + 1)] : undefined;
  }
  const i = key.indexOf(".");
  if (i < 0) return r[key];
  const flat = r["_" + key.slice(0, i)] || (r["_" + key.slice(0, i)] = flatten(r[key.slice(0, i)], "", {}));
  return flat[key.slice(i + 1)];
}

function statusBadge(s) { return h("span", { class: "status st-" + (/^[a-z]+$/.test(s) ? s : "other"), text: s || "?" }); }

function setLive(text) { document.getElementById("live").textContent = text; }

function stopTimer() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

/* ---------------------------------------------------------------- routing */

function route() {
  stopTimer();
  const hash = location.hash || "#/";
  const [, view, arg] = hash.match(/^#\/([a-z]*)\/?(.*)$/) || [null, "", ""];
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === (view || "runs")));
  const dec = (s) => { try { return decodeURIComponent(s); } catch (e) { return s; } };
  if (view === "run" && arg) return showRun(dec(arg));
  if (view === "compare") return showCompare(arg ? arg.split(",").map(dec).filter(Boolean) : [...state.selected]);
  if (view === "sweep" && arg) return showSweep(dec(arg));
  return showRuns();
}

function failure(err) {
  $main().replaceChildren(h("div", { class: "error", role: "alert", text: String(err.message || err) }), h("p", {}, h("a", { href: "#/", text: "back to the runs" })));
}

/* ---------------------------------------------------------------- runs table */

async function loadRows() {
  const q = state.where ? "?where=" + encodeURIComponent(state.where) : "";
  const data = await api("/api/experiments" + q);
  state.rows = data.experiments;
  state.total = data.total;
  state.loaded = true;
}

function allColumns() {
  const seen = new Map();
  const add = (k, group) => { if (!seen.has(k)) seen.set(k, group); };
  for (const r of state.rows.length > 5000 ? state.rows.slice(0, 5000) : state.rows) {
    for (const k of Object.keys(flatten(r.params, "", {}))) add("params." + k, "params");
    for (const k of Object.keys(r.metrics || {})) for (const s of ["last", "min", "max"]) add(`metrics.${k}.${s}`, "metrics");
    for (const k of Object.keys(flatten(r.summary, "", {}))) add("summary." + k, "summary");
    for (const k of Object.keys(flatten(r.tags, "", {}))) add("tags." + k, "tags");
  }
  return [["created", "base"], ["duration_s", "base"], ["id", "base"], ...seen.entries()];
}

function defaultColumns() {
  const cols = ["status", "created", "duration_s"];
  const all = allColumns().map(([k]) => k);
  cols.push(...all.filter((k) => k.startsWith("params.")).slice(0, 6));
  cols.push(...all.filter((k) => k.startsWith("metrics.") && k.endsWith(".last")).slice(0, 4));
  return cols;
}

function columns() {
  if (!state.columns) {
    try { state.columns = JSON.parse(localStorage.getItem("gitxp.columns") || "null"); } catch (e) { state.columns = null; }
    if (!Array.isArray(state.columns) || !state.columns.length) state.columns = defaultColumns();
  }
  return state.columns;
}

function compare(a, b) {
  const na = a === null || a === undefined, nb = b === null || b === undefined;
  if (na || nb) return na && nb ? 0 : na ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function sortedRows(rows) {
  const { key, desc } = state.sort;
  const nulls = (v) => v === null || v === undefined;
  return rows.slice().sort((x, y) => {
    const a = cell(x, key), b = cell(y, key);
    if (nulls(a) || nulls(b)) return compare(a, b); // missing values last either way
    return desc ? compare(b, a) : compare(a, b);
  });
}

/* Display items: sweeps (parents with children) become a group line followed by their children. */
function displayItems() {
  const rows = sortedRows(state.rows);
  if (!state.grouped) return rows.map((r) => ({ r, depth: 0 }));
  const byId = new Map(state.rows.map((r) => [r.id, r]));
  const kids = new Map();
  for (const r of rows) if (r.parent && byId.has(r.parent)) (kids.get(r.parent) || kids.set(r.parent, []).get(r.parent)).push(r);
  const out = [];
  for (const r of rows) {
    if (r.parent && byId.has(r.parent)) continue;
    const children = kids.get(r.id);
    if (children) {
      out.push({ group: r, count: children.length });
      out.push({ r, depth: 0, parent: true });
      if (!state.collapsed.has(r.id)) for (const c of children) out.push({ r: c, depth: 1 });
    } else out.push({ r, depth: 0 });
  }
  return out;
}

const LABELS = { status: "status", created: "created", duration_s: "duration", id: "id" };
function colLabel(k) { return LABELS[k] || k.replace(/^metrics\.(.*)\.(last)$/, "$1").replace(/^metrics\./, "").replace(/^params\./, ""); }
function colTitle(k) { return k.startsWith("metrics.") ? "metric " + k.slice(8) : k; }

function cellNode(r, k) {
  const v = cell(r, k);
  if (k === "status") return statusBadge(r.status);
  if (k === "created") return h("span", { text: when(v) });
  if (k === "duration_s") return h("span", { text: Charts.fmtDuration(v) });
  if (k === "id") return h("code", { text: short(v) });
  return h("span", { class: typeof v === "number" ? "num" : "", text: fmt(v) });
}

async function showRuns() {
  const main = $main();
  if (!state.loaded) {
    main.replaceChildren(h("p", { class: "muted", text: "loading…" }));
    try { await loadRows(); } catch (e) { if (e.status === 400) { state.whereError = e.message; state.rows = []; state.loaded = true; } else return failure(e); }
  }
  renderRuns();
  const running = state.rows.filter((r) => r.status === "running").length;
  setLive(running ? `${running} running · live` : "");
  scheduleTableRefresh();
}

function renderRuns() {
  const main = $main();
  const where = h("input", { id: "where", type: "search", placeholder: 'filter, e.g. params.lr < 0.01 and metrics.acc >= 0.9', value: state.where, "aria-label": "filter with a --where expression", spellcheck: "false", autocomplete: "off" });
  const whereErr = h("div", { id: "where-error", class: "inline-error", role: "alert", text: state.whereError, hidden: !state.whereError });
  where.addEventListener("keydown", async (ev) => {
    if (ev.key !== "Enter") return;
    state.where = where.value.trim();
    try {
      await loadRows();
      state.whereError = "";
    } catch (e) {
      if (e.status !== 400) return failure(e);
      state.whereError = e.message;
    }
    renderRuns();
    document.getElementById("where").focus();
  });
  const count = h("span", { id: "count", class: "muted", text: `${state.rows.length} of ${state.total} experiments` + (state.selected.size ? `, ${state.selected.size} selected` : "") });
  const cmp = h("button", { id: "compare-btn", disabled: state.selected.size < 1, text: `Compare (${state.selected.size})`, onclick: () => { location.hash = "#/compare/" + [...state.selected].map(encodeURIComponent).join(","); } });
  const clear = h("button", { text: "Clear selection", disabled: !state.selected.size, onclick: () => { state.selected.clear(); renderRuns(); } });
  const group = h("label", {}, h("input", { type: "checkbox", checked: state.grouped, onchange: (ev) => { state.grouped = ev.target.checked; renderRuns(); } }), " group by sweep");
  const colBtn = h("button", { id: "columns-btn", "aria-expanded": "false", text: "Columns…" });
  const chooser = columnChooser();
  colBtn.addEventListener("click", () => { chooser.hidden = !chooser.hidden; colBtn.setAttribute("aria-expanded", String(!chooser.hidden)); if (!chooser.hidden) chooser.querySelector("input").focus(); });
  const bar = h("div", { class: "toolbar" }, h("div", { class: "where" }, where, whereErr), h("div", { class: "actions" }, count, group, colBtn, clear, cmp));
  main.replaceChildren(bar, chooser, runsGrid());
}

function columnChooser() {
  const box = h("div", { id: "columns", class: "chooser", hidden: true });
  const filter = h("input", { type: "search", placeholder: "find a column", "aria-label": "find a column" });
  const list = h("div", { class: "chooser-list" });
  const cols = columns();
  const draw = () => {
    const q = filter.value.toLowerCase();
    list.replaceChildren(...allColumns().filter(([k]) => !q || k.toLowerCase().includes(q)).slice(0, 400).map(([k, g]) =>
      h("label", { class: "g-" + g }, h("input", { type: "checkbox", checked: cols.includes(k), "data-key": k, onchange: (ev) => {
        const i = cols.indexOf(k);
        if (ev.target.checked && i < 0) cols.push(k); else if (!ev.target.checked && i >= 0) cols.splice(i, 1);
        localStorage.setItem("gitxp.columns", JSON.stringify(cols));
        const grid = document.getElementById("grid");
        grid.replaceWith(runsGrid());
      } }), " " + k)));
  };
  filter.addEventListener("input", draw);
  draw();
  box.append(filter, h("button", { text: "Defaults", onclick: () => { state.columns = null; localStorage.removeItem("gitxp.columns"); renderRuns(); } }), list);
  return box;
}

/* The virtualised grid: only the rows in view (plus a margin) exist in the DOM. */
function runsGrid() {
  const cols = columns();
  const items = displayItems();
  const template = ["2.2rem", "minmax(12rem, 2fr)", ...cols.map((k) => (k === "status" ? "7.5rem" : k === "created" ? "10.5rem" : "minmax(6rem, 1fr)"))].join(" ");
  const headCells = [h("div", { class: "cell sel", role: "columnheader" }, h("input", { type: "checkbox", "aria-label": "select all shown", checked: items.length > 0 && items.every((it) => !it.r || state.selected.has(it.r.id)), onchange: (ev) => {
    for (const it of items) if (it.r) ev.target.checked ? state.selected.add(it.r.id) : state.selected.delete(it.r.id);
    renderRuns();
  } }))];
  for (const k of ["name", ...cols]) {
    const active = state.sort.key === k;
    const b = h("button", { class: "sort" + (active ? " active" : ""), title: "sort by " + colTitle(k), text: colLabel(k) + (active ? (state.sort.desc ? " ▼" : " ▲") : "") });
    b.addEventListener("click", () => { state.sort = { key: k, desc: active ? !state.sort.desc : k === "created" }; const g = document.getElementById("grid"); g.replaceWith(runsGrid()); document.querySelector(`#grid .head button[title="${CSS.escape("sort by " + colTitle(k))}"]`)?.focus(); });
    headCells.push(h("div", { class: "cell", role: "columnheader", "aria-sort": active ? (state.sort.desc ? "descending" : "ascending") : "none" }, b));
  }
  const head = h("div", { class: "row head", role: "row" }, headCells);
  head.style.gridTemplateColumns = template;
  const spacer = h("div", { class: "spacer" });
  spacer.style.height = items.length * ROW_H + "px";
  const body = h("div", { class: "body", tabindex: 0, role: "rowgroup", "aria-label": "experiments; arrows move, Enter opens, Space selects" }, spacer);
  const grid = h("div", { id: "grid", class: "grid", role: "grid", "aria-rowcount": items.length }, head, body);
  if (!items.length) body.appendChild(h("p", { class: "muted empty", text: state.rows.length ? "" : "no experiments" + (state.where ? " match this filter" : " yet: run `gitxp start -- python train.py`") }));
  let drawn = [-1, -1];
  state.cursor = Math.min(state.cursor, Math.max(items.length - 1, 0));
  function draw(force) {
    const top = body.scrollTop, hgt = body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 10), last = Math.min(items.length, Math.ceil((top + hgt) / ROW_H) + 10);
    if (!force && first === drawn[0] && last === drawn[1]) return;
    drawn = [first, last];
    const rows = [];
    for (let i = first; i < last; i++) rows.push(rowNode(items[i], i, template, cols));
    spacer.replaceChildren(...rows);
  }
  body.addEventListener("scroll", () => draw(false), { passive: true });
  body.addEventListener("keydown", (ev) => {
    const page = Math.max(1, Math.floor(body.clientHeight / ROW_H) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, j: 1, k: -1 };
    let c = state.cursor;
    if (ev.key in moves) c += moves[ev.key];
    else if (ev.key === "Home") c = 0;
    else if (ev.key === "End") c = items.length - 1;
    else if (ev.key === "Enter" && items[c]) { const it = items[c]; location.hash = it.group ? "#/sweep/" + encodeURIComponent(it.group.id) : runLink(it.r.id); return; }
    else if (ev.key === " " && items[c] && items[c].r) { ev.preventDefault(); toggle(items[c].r.id); draw(true); return; }
    else return;
    ev.preventDefault();
    state.cursor = Math.max(0, Math.min(items.length - 1, c));
    const y = state.cursor * ROW_H;
    if (y < body.scrollTop) body.scrollTop = y;
    else if (y + ROW_H > body.scrollTop + body.clientHeight) body.scrollTop = y + ROW_H - body.clientHeight;
    draw(true);
  });
  grid._redraw = () => draw(true);
  requestAnimationFrame(() => draw(true));
  return grid;
}

function toggle(id) {
  state.selected.has(id) ? state.selected.delete(id) : state.selected.add(id);
  const btn = document.getElementById("compare-btn");
  if (btn) { btn.disabled = state.selected.size < 1; btn.textContent = `Compare (${state.selected.size})`; }
  const count = document.getElementById("count");
  if (count) count.textContent = `${state.rows.length} of ${state.total} experiments` + (state.selected.size ? `, ${state.selected.size} selected` : "");
}

function rowNode(it, i, template, cols) {
  let node;
  if (it.group) {
    const g = it.group;
    const open = !state.collapsed.has(g.id);
    node = h("div", { class: "row group", role: "row" },
      h("button", { class: "twisty", "aria-expanded": String(open), "aria-label": (open ? "collapse " : "expand ") + "sweep", text: open ? "▾" : "▸", onclick: () => { open ? state.collapsed.add(g.id) : state.collapsed.delete(g.id); document.getElementById("grid").replaceWith(runsGrid()); } }),
      h("div", { class: "cell" }, "sweep ", h("strong", { text: g.name }), ` · ${it.count} runs · `, h("a", { href: "#/sweep/" + encodeURIComponent(g.id), text: "parallel coordinates" })));
  } else {
    const r = it.r;
    const name = h("div", { class: "cell name" + (it.depth ? " child" : "") }, h("a", { href: runLink(r.id), text: r.name || short(r.id), title: r.id }));
    node = h("div", { class: "row" + (state.selected.has(r.id) ? " selected" : "") + (r.status === "running" ? " running" : ""), role: "row", "data-id": r.id },
      h("div", { class: "cell sel" }, h("input", { type: "checkbox", "aria-label": "select " + (r.name || r.id), checked: state.selected.has(r.id), onchange: () => { toggle(r.id); node.classList.toggle("selected", state.selected.has(r.id)); } })),
      name, ...cols.map((k) => h("div", { class: "cell", title: colTitle(k) }, cellNode(r, k))));
  }
  node.style.gridTemplateColumns = template;
  node.style.top = i * ROW_H + "px";
  if (i === state.cursor) node.classList.add("cursor");
  return node;
}

/* Live: the newest window is polled; new or changed runs replace theirs in place. */
function scheduleTableRefresh() {
  stopTimer();
  state.timer = setTimeout(async () => {
    if (!location.hash.match(/^(#\/?)?$/)) return;
    try {
      const q = "?limit=50" + (state.where ? "&where=" + encodeURIComponent(state.where) : "");
      const data = await api("/api/experiments" + q);
      const byId = new Map(state.rows.map((r, i) => [r.id, i]));
      let changed = data.total !== state.total;
      for (const r of data.experiments) {
        const i = byId.get(r.id);
        if (i === undefined) { changed = true; continue; }
        const old = state.rows[i];
        if (old.status !== r.status || old.duration_s !== r.duration_s || JSON.stringify(old.metrics) !== JSON.stringify(r.metrics)) { state.rows[i] = r; changed = true; }
      }
      if (data.total !== state.total || data.experiments.some((r) => !byId.has(r.id))) await loadRows();
      const running = state.rows.filter((r) => r.status === "running").length;
      setLive(running ? `${running} running · live` : "");
      const grid = document.getElementById("grid");
      if (changed && grid) {
        const body = grid.querySelector(".body");
        const top = body.scrollTop, focused = document.activeElement === body;
        const g = runsGrid();
        grid.replaceWith(g);
        const nb = g.querySelector(".body");
        nb.scrollTop = top;
        if (focused) nb.focus();
        const count = document.getElementById("count");
        if (count) count.textContent = `${state.rows.length} of ${state.total} experiments` + (state.selected.size ? `, ${state.selected.size} selected` : "");
      }
    } catch (e) { setLive("offline?"); }
    scheduleTableRefresh();
  }, LIVE_MS);
}

/* ---------------------------------------------------------------- one experiment */

function kvTable(obj, cls) {
  const flat = flatten(obj || {}, "", {});
  const keys = Object.keys(flat);
  if (!keys.length) return h("p", { class: "muted", text: "none" });
  return h("table", { class: "kv " + (cls || "") }, h("tbody", {}, keys.map((k) => h("tr", {}, h("th", { text: k }), h("td", { text: fmt(flat[k]) })))));
}

function card(title, ...body) { return h("section", { class: "card" }, h("h2", { text: title }), ...body); }

function bytes(n) {
  if (typeof n !== "number") return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

async function showRun(ref) {
  const main = $main();
  main.replaceChildren(h("p", { class: "muted", text: "loading…" }));
  let d, m, hw;
  try {
    d = await api("/api/experiments/" + encodeURIComponent(ref));
    [m, hw] = await Promise.all([api(`/api/experiments/${encodeURIComponent(d.id)}/metrics`), d.has_hardware ? api(`/api/experiments/${encodeURIComponent(d.id)}/hardware`) : { series: [] }]);
  } catch (e) { return failure(e); }
  renderRun(d, m, hw);
  if (d.status === "running") {
    const tick = async () => {
      try {
        const d2 = await api("/api/experiments/" + encodeURIComponent(d.id));
        const [m2, hw2] = await Promise.all([api(`/api/experiments/${encodeURIComponent(d.id)}/metrics`), d2.has_hardware ? api(`/api/experiments/${encodeURIComponent(d.id)}/hardware`) : { series: [] }]);
        if (location.hash !== "#/run/" + encodeURIComponent(ref)) return;
        renderRun(d2, m2, hw2);
        setLive(d2.status === "running" ? "running · live" : "");
        if (d2.status === "running") state.timer = setTimeout(tick, LIVE_MS);
      } catch (e) {
        setLive("waiting for the store…");
        state.timer = setTimeout(tick, LIVE_MS);
      }
    };
    setLive("running · live");
    state.timer = setTimeout(tick, LIVE_MS);
  } else setLive("");
}

function renderRun(d, m, hw) {
  const main = $main();
  const scroll = window.scrollY;
  const src = d.source || {};
  const sel = state.selected.has(d.id);
  const head = h("div", { class: "run-head" },
    h("h1", {}, h("span", { class: "run-name", text: d.name || short(d.id) }), " ", statusBadge(d.status)),
    h("div", { class: "muted" }, h("code", { text: d.id }), " · created " + when(d.created) + " · " + Charts.fmtDuration(d.duration_s),
      d.parent ? h("span", {}, " · sweep ", h("a", { href: "#/sweep/" + encodeURIComponent(d.parent), text: short(d.parent) })) : null),
    h("div", { class: "actions" },
      h("button", { id: "select-run", text: sel ? "Selected for compare ✓" : "Select for compare", onclick: (ev) => { toggle(d.id); ev.target.textContent = state.selected.has(d.id) ? "Selected for compare ✓" : "Select for compare"; } }),
      h("a", { class: "button", href: "#/compare/" + [...new Set([...state.selected, d.id])].map(encodeURIComponent).join(","), text: "Compare with selection" })));
  const overview = h("table", { class: "kv" }, h("tbody", {},
    h("tr", {}, h("th", { text: "command" }), h("td", {}, h("code", { text: Array.isArray(d.command) ? d.command.join(" ") : fmt(d.command) }))),
    h("tr", {}, h("th", { text: "source" }), h("td", {}, h("code", { text: (src.branch || "(detached)") + " " + String(src.commit || "(no commit)").slice(0, 12) }), src.dirty ? h("span", { class: "dirty", text: " +dirty" }) : null)),
    h("tr", {}, h("th", { text: "exit code" }), h("td", { text: fmt(d.exit_code) })),
    h("tr", {}, h("th", { text: "host" }), h("td", { text: `${d.user || "?"}@${d.host || "?"} in ${d.cwd || "?"}` })),
    h("tr", {}, h("th", { text: "started / ended" }), h("td", { text: `${when(d.started)} → ${when(d.ended)}` }))));
  const blocks = [head];
  if (d.problems && d.problems.length) blocks.push(h("div", { class: "error", role: "alert" }, d.problems.map((p) => h("div", { text: p }))));
  if (d.error) blocks.push(h("div", { class: "error" }, h("strong", { text: "error: " }), typeof d.error === "object" ? `${d.error.type || ""}: ${d.error.message || ""}` : String(d.error)));
  blocks.push(h("div", { class: "cards" }, card("Overview", overview), card("Params", kvTable(d.params)), card("Summary", kvTable(d.summary)),
    card("Tags", kvTable(d.tags)), card("Notes", d.notes ? h("pre", { class: "notes", text: String(d.notes) }) : h("p", { class: "muted", text: "none" }))));
  // metrics: a table of last/min/max and one chart each
  const names = Object.keys(d.metrics || {});
  const mtable = h("table", { class: "grid-table" }, h("thead", {}, h("tr", {}, ["metric", "last", "min", "max", "count", "step"].map((t) => h("th", { text: t })))),
    h("tbody", {}, names.map((n) => { const s = d.metrics[n] || {}; return h("tr", {}, h("td", { text: n }), ...["last", "min", "max", "count", "last_step"].map((k) => h("td", { class: "num", text: fmt(s[k]) }))); })));
  const charts = h("div", { class: "charts", id: "metric-charts" });
  blocks.push(h("section", { class: "card wide" }, h("h2", { text: "Metrics" }), names.length ? mtable : h("p", { class: "muted", text: "no metrics logged" }), charts));
  const hwCharts = h("div", { class: "charts", id: "hardware-charts" });
  blocks.push(h("section", { class: "card wide" }, h("h2", { text: "Hardware" }), hw.series.length ? hwCharts : h("p", { class: "muted", text: "no hardware samples" })));
  const env = d.environment;
  blocks.push(h("div", { class: "cards" },
    card("Environment", env ? h("table", { class: "kv" }, h("tbody", {},
      h("tr", {}, h("th", { text: "python" }), h("td", { text: `${env.python.version || "?"} (${env.python.implementation || "?"})${env.python.virtualenv ? " venv" : ""}` })),
      h("tr", {}, h("th", { text: "platform" }), h("td", { text: fmt(env.platform) })),
      h("tr", {}, h("th", { text: "cpu" }), h("td", { text: fmt(env.cpu) })),
      h("tr", {}, h("th", { text: "memory" }), h("td", { text: bytes(env.memory_total_bytes) })),
      h("tr", {}, h("th", { text: "gpus" }), h("td", { text: env.gpus.length ? env.gpus.map((g) => `${g.name} (${bytes(g.memory_total_bytes)})`).join(", ") : "none" })),
      h("tr", {}, h("th", { text: "packages" }), h("td", { text: `${env.package_count} installed` })),
      env.packages.map((p) => h("tr", {}, h("th", { class: "sub", text: p.name }), h("td", { text: fmt(p.version) }))))) : h("p", { class: "muted", text: "not recorded" })),
    card("Inputs", d.inputs && d.inputs.length ? h("ul", {}, d.inputs.map((i) => h("li", { text: typeof i === "object" ? Object.entries(i).map(([k, v]) => `${k}: ${fmt(v)}`).join(" · ") : String(i) }))) : h("p", { class: "muted", text: "none" })),
    card("Artifacts", d.artifacts && d.artifacts.length ? h("table", { class: "grid-table" }, h("tbody", {}, d.artifacts.map((a) => h("tr", {}, h("td", {}, h("code", { text: a.path })), h("td", { class: "num", text: bytes(a.size) }), h("td", { text: a.encrypted ? "encrypted" : "" }))))) : h("p", { class: "muted", text: "none" })),
    d.alerts && d.alerts.length ? card("Alerts", h("ul", {}, d.alerts.map((a) => h("li", { text: typeof a === "object" ? JSON.stringify(a) : String(a) })))) : null));
  const out = d.output_tail;
  blocks.push(h("section", { class: "card wide" }, h("h2", { text: "Output" + (out && out.truncated ? ` (last ${bytes(out.text.length)} of ${bytes(out.bytes)})` : "") }), out ? h("pre", { class: "output", tabindex: 0, text: out.text }) : h("p", { class: "muted", text: "not captured" })));
  blocks.push(h("section", { class: "card wide" }, h("h2", { text: "Code diff against the source commit" }), codeDiff(d.code)));
  main.replaceChildren(...blocks);
  for (const s of m.series) Charts.line(charts, { title: s.name, series: [{ label: s.name, x: s.step, y: s.value, cls: "c0" }], xKind: "step" });
  const t0 = Math.min(...hw.series.map((s) => (s.timestamp.length ? s.timestamp[0] : Infinity)));
  for (const s of hw.series) Charts.line(hwCharts, { title: s.name, series: [{ label: s.name, x: s.timestamp.map((t) => t - t0), y: s.value, cls: "c1" }], xKind: "relative", height: 160 });
  window.scrollTo(0, scroll);
}

function codeDiff(code) {
  if (!code) return h("p", { class: "muted", text: "unavailable" });
  if (!code.available) return h("p", { class: "muted", text: code.why });
  if (!code.files.length) return h("p", { class: "muted", text: "no uncommitted changes: the code is the source commit's" });
  return h("div", {}, h("p", { class: "muted", text: code.stat + " (against " + String(code.base || "").slice(0, 12) + ")" }),
    code.files.map((f) => h("details", { class: "diff", open: code.files.length <= 8 },
      h("summary", {}, h("code", { text: f.path }), ` ${f.status} +${f.insertions} −${f.deletions}`),
      f.binary ? h("p", { class: "muted", text: "binary file" }) :
        h("pre", {}, f.lines.map((ln) => h("div", { class: ln.startsWith("@@") ? "hunk" : ln.startsWith("+") ? "add" : ln.startsWith("-") ? "del" : "", text: ln })), f.truncated ? h("div", { class: "muted", text: "… (cut)" }) : null))));
}

/* ---------------------------------------------------------------- compare */

const compareOpts = { x: "step", logY: false, smooth: 0, onlyDiff: false };

async function showCompare(ids) {
  const main = $main();
  if (!ids.length) { main.replaceChildren(h("p", { class: "muted", text: "Select runs in the table (checkboxes), then Compare." }), h("a", { href: "#/", text: "to the runs" })); return; }
  main.replaceChildren(h("p", { class: "muted", text: "loading…" }));
  let runs;
  const load = () => Promise.all(ids.map(async (id) => {
    const d = await api("/api/experiments/" + encodeURIComponent(id));
    const m = await api(`/api/experiments/${encodeURIComponent(d.id)}/metrics`);
    return { d, m };
  }));
  try { runs = await load(); } catch (e) { return failure(e); }
  renderCompare(runs);
  const live = () => {
    if (!runs.some((r) => r.d.status === "running")) { setLive(""); return; }
    setLive("live");
    state.timer = setTimeout(async () => {
      try { runs = await load(); } catch (e) { setLive("waiting…"); }
      if (location.hash.startsWith("#/compare")) { renderCompare(runs); live(); }
    }, LIVE_MS);
  };
  live();
}

function renderCompare(runs) {
  const main = $main();
  const scroll = window.scrollY;
  const xSel = h("select", { id: "x-axis", "aria-label": "x axis" }, ["step", "wall", "relative"].map((v) => h("option", { value: v, text: v === "wall" ? "wall time" : v === "relative" ? "relative time" : "step" })));
  xSel.value = compareOpts.x;
  xSel.addEventListener("change", () => { compareOpts.x = xSel.value; renderCompare(runs); });
  const logY = h("label", {}, h("input", { id: "log-y", type: "checkbox", checked: compareOpts.logY, onchange: (ev) => { compareOpts.logY = ev.target.checked; renderCompare(runs); } }), " log y");
  const sm = h("input", { id: "smoothing", type: "range", min: 0, max: 0.99, step: 0.01, value: compareOpts.smooth, "aria-label": "smoothing" });
  sm.addEventListener("change", () => { compareOpts.smooth = Number(sm.value); renderCompare(runs); });
  const legend = h("ul", { class: "legend" }, runs.map((r, i) => h("li", {}, h("span", { class: "swatch c" + (i % 10) }), h("a", { href: runLink(r.d.id), text: `${r.d.name} (${short(r.d.id)})` }), " ", statusBadge(r.d.status))));
  const bar = h("div", { class: "toolbar" }, h("div", { class: "actions" }, h("label", {}, "x axis ", xSel), logY, h("label", {}, "smoothing ", sm, h("span", { class: "muted", text: " " + compareOpts.smooth.toFixed(2) }))));
  const charts = h("div", { class: "charts", id: "compare-charts" });
  const names = [...new Set(runs.flatMap((r) => r.m.series.map((s) => s.name)))].sort();
  main.replaceChildren(h("h1", { text: `Compare ${runs.length} runs` }), legend, bar, charts, paramsTable(runs));
  for (const name of names) {
    const series = runs.map((r, i) => {
      const s = r.m.series.find((x) => x.name === name);
      if (!s) return { label: r.d.name, x: [], y: [], cls: "c" + (i % 10) };
      const t0 = s.timestamp.length ? s.timestamp[0] : 0;
      const x = compareOpts.x === "step" ? s.step : compareOpts.x === "wall" ? s.timestamp : s.timestamp.map((t) => t - t0);
      return { label: `${r.d.name} ${short(r.d.id)}`, x, y: Charts.smooth(s.value, compareOpts.smooth), cls: "c" + (i % 10) };
    });
    Charts.line(charts, { title: name, series, xKind: compareOpts.x, logY: compareOpts.logY });
  }
  if (!names.length) charts.appendChild(h("p", { class: "muted", text: "these runs logged no metrics" }));
  window.scrollTo(0, scroll);
}

function paramsTable(runs) {
  const flats = runs.map((r) => flatten(r.d.params, "", {}));
  const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort();
  const differs = (k) => new Set(flats.map((f) => JSON.stringify(f[k] === undefined ? null : f[k]))).size > 1;
  const only = h("label", {}, h("input", { type: "checkbox", checked: compareOpts.onlyDiff, onchange: (ev) => { compareOpts.onlyDiff = ev.target.checked; document.getElementById("params-compare").replaceWith(paramsTable(runs)); } }), " only differences");
  const shown = keys.filter((k) => !compareOpts.onlyDiff || differs(k));
  return h("section", { class: "card wide", id: "params-compare" }, h("h2", { text: "Params" }), only,
    h("table", { class: "grid-table" }, h("thead", {}, h("tr", {}, h("th", { text: "param" }), runs.map((r, i) => h("th", {}, h("span", { class: "swatch c" + (i % 10) }), " " + r.d.name + " " + short(r.d.id))))),
      h("tbody", {}, shown.map((k) => h("tr", { class: differs(k) ? "differs" : "" }, h("th", { text: k }), flats.map((f) => h("td", { text: fmt(f[k]) })))))));
}

/* ---------------------------------------------------------------- sweep */

const sweepOpts = { metric: null, brushes: {} };

async function showSweep(ref) {
  const main = $main();
  main.replaceChildren(h("p", { class: "muted", text: "loading…" }));
  let parent, kids;
  try {
    parent = await api("/api/experiments/" + encodeURIComponent(ref));
    // the children, whatever the runs table is filtered by (ids are [0-9a-f-] only: safe inside quotes)
    kids = (await api("/api/experiments?where=" + encodeURIComponent(`parent == "${parent.id}"`))).experiments;
  } catch (e) { return failure(e); }
  const metrics = [...new Set(kids.flatMap((k) => Object.keys(k.metrics || {})))].sort();
  if (!sweepOpts.metric || !metrics.includes(sweepOpts.metric)) sweepOpts.metric = metrics[0] || null;
  const flats = kids.map((k) => flatten(k.params, "", {}));
  const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort().filter((k) => new Set(flats.map((f) => JSON.stringify(f[k] ?? null))).size > 1);
  const mSel = h("select", { id: "sweep-metric", "aria-label": "metric" }, metrics.map((n) => h("option", { value: n, text: n })));
  if (sweepOpts.metric) mSel.value = sweepOpts.metric;
  mSel.addEventListener("change", () => { sweepOpts.metric = mSel.value; sweepOpts.brushes = {}; showSweep(ref); });
  const plot = h("div", { class: "parallel", id: "parallel" });
  const list = h("div", { id: "sweep-table" });
  main.replaceChildren(h("h1", {}, "Sweep ", h("span", { text: parent.name }), " ", statusBadge(parent.status)),
    h("p", { class: "muted", text: `${kids.length} runs · drag along an axis to filter (click it to clear; focus an axis and use ↑/↓/Delete)` }),
    h("div", { class: "toolbar" }, h("label", {}, "metric ", mSel)), plot, list);
  if (!kids.length) { plot.appendChild(h("p", { class: "muted", text: "no children in the store yet" })); return; }
  const axes = keys.map((k) => ({ key: "params." + k, label: k, values: flats.map((f) => (f[k] === undefined ? null : f[k])) }));
  if (sweepOpts.metric) axes.push({ key: "metric", label: sweepOpts.metric, metric: true, values: kids.map((k) => { const m = (k.metrics || {})[sweepOpts.metric]; return m && typeof m === "object" ? m.last : null; }) });
  if (!axes.length) { plot.appendChild(h("p", { class: "muted", text: "the children share every param and logged no metric" })); return; }
  const byId = new Map(kids.map((k) => [k.id, k]));
  Charts.parallel(plot, axes, kids.map((k) => ({ id: k.id, label: `${k.name} ${short(k.id)}` })), (keep) => {
    const rows = keep.map((id) => byId.get(id));
    list.replaceChildren(h("p", { class: "muted", id: "sweep-count", text: `${rows.length} of ${kids.length} runs shown` }),
      h("table", { class: "grid-table" }, h("thead", {}, h("tr", {}, h("th", { text: "" }), h("th", { text: "name" }), keys.map((k) => h("th", { text: k })), sweepOpts.metric ? h("th", { text: sweepOpts.metric }) : null)),
        h("tbody", {}, rows.map((r) => h("tr", {},
          h("td", {}, h("input", { type: "checkbox", "aria-label": "select " + r.name, checked: state.selected.has(r.id), onchange: () => toggle(r.id) })),
          h("td", {}, h("a", { href: runLink(r.id), text: `${r.name} ${short(r.id)}` })),
          keys.map((k) => h("td", { text: fmt(flatten(r.params, "", {})[k]) })),
          sweepOpts.metric ? h("td", { class: "num", text: fmt(cell(r, `metrics.${sweepOpts.metric}.last`)) }) : null)))));
  }, sweepOpts.brushes);
}

/* ---------------------------------------------------------------- start */

window.addEventListener("hashchange", route);
window.addEventListener("keydown", (ev) => {
  if (ev.target.closest && ev.target.closest("input, select, textarea")) return;
  if (ev.key === "/" && document.getElementById("where")) { ev.preventDefault(); document.getElementById("where").focus(); }
  else if (ev.key === "g") location.hash = "#/";
  else if (ev.key === "c" && state.selected.size) location.hash = "#/compare/" + [...state.selected].map(encodeURIComponent).join(",");
});
let resizeTimer = null;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { if (location.hash.startsWith("#/run/") || location.hash.startsWith("#/compare")) route(); }, 300); });
document.addEventListener("DOMContentLoaded", route);
