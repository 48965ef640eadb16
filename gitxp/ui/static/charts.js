/* gitxp ui: small SVG charts (line charts and parallel coordinates).
 *
 * No library and nothing fetched: paths are built from numbers only, labels
 * are text nodes, colours come from CSS classes (c0..c9) so both themes work
 * under a Content-Security-Policy without inline styles.
 */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (parent) parent.appendChild(el);
    return el;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace("e+", "e");
    return String(Number(v.toPrecision(4)));
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return fmt(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0");
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  }

  function fmtClock(t) {
    const d = new Date(t * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  /* "nice" tick values covering [lo, hi] */
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const span = hi - lo;
    const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
    const err = span / count / step0;
    const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return out;
  }

  /* Exponential moving average with debiasing, as TensorBoard smooths. */
  function smooth(ys, weight) {
    if (!weight) return ys;
    const out = new Array(ys.length);
    let last = 0, n = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (y === null || !Number.isFinite(y)) { out[i] = y; continue; }
      last = last * weight + (1 - weight) * y;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  /* Line chart.
   * opts: {series: [{label, cls, x: [], y: []}], xKind: "step"|"wall"|"relative",
   *        logY, title, height}
   * Returns the <figure>; the SVG paths carry data-series (index) for tests.
   */
  function line(container, opts) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    container.appendChild(fig); // measured in place: the grid cell decides the width
    const W = Math.max(260, Math.floor(fig.clientWidth - 8 || 480));
    const H = opts.height || 220;
    const M = { l: 56, r: 12, t: 8, b: 26 };
    if (opts.title) {
      const cap = document.createElement("figcaption");
      cap.textContent = opts.title;
      fig.appendChild(cap);
    }
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" }, fig);
    root.setAttribute("aria-label", (opts.title || "chart") + " over " + (opts.xKind || "step"));
    const logY = !!opts.logY;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    const series = opts.series.map((s) => {
      const pts = [];
      for (let i = 0; i < s.x.length; i++) {
        const x = s.x[i], y = s.y[i];
        if (x === null || y === null || !Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (logY && y <= 0) continue;
        pts.push([x, logY ? Math.log10(y) : y]);
      }
      for (const [x, y] of pts) {
        if (x < x0) x0 = x; if (x > x1) x1 = x;
        if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
      return { ...s, pts };
    });
    if (!Number.isFinite(x0)) {
      svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted" }, root).textContent = "no finite values";
      return fig;
    }
    if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
    if (y1 === y0) { const d = Math.abs(y0) * 0.05 || 0.5; y0 -= d; y1 += d; }
    const pad = (y1 - y0) * 0.04; y0 -= pad; y1 += pad;
    const sx = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
    const sy = (y) => H - M.b - ((y - y0) / (y1 - y0)) * (H - M.t - M.b);
    const grid = svg("g", { class: "grid" }, root);
    const axis = svg("g", { class: "axis" }, root);
    for (const t of ticks(y0, y1, 5)) {
      const y = sy(t);
      svg("line", { x1: M.l, x2: W - M.r, y1: y, y2: y }, grid);
      svg("text", { x: M.l - 6, y: y + 4, "text-anchor": "end" }, axis).textContent = logY ? fmt(Math.pow(10, t)) : fmt(t);
    }
    const xk = opts.xKind || "step";
    const xfmt = xk === "wall" ? fmtClock : xk === "relative" ? fmtDuration : fmt;
    for (const t of ticks(x0, x1, Math.max(2, Math.floor(W / 110)))) {
      const x = sx(t);
      svg("line", { x1: x, x2: x, y1: M.t, y2: H - M.b }, grid);
      svg("text", { x: x, y: H - 8, "text-anchor": "middle" }, axis).textContent = xfmt(t);
    }
    svg("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, class: "frame" }, root);
    const lines = svg("g", { class: "lines" }, root);
    series.forEach((s, i) => {
      if (!s.pts.length) return;
      let d = "";
      for (let k = 0; k < s.pts.length; k++) d += (k ? "L" : "M") + sx(s.pts[k][0]).toFixed(1) + " " + sy(s.pts[k][1]).toFixed(1);
      if (s.pts.length === 1) d += "h0.01";
      svg("path", { d, class: "series " + (s.cls || "c" + (i % 10)), "data-series": i }, lines);
    });
    // hover: a rule and the nearest value of every series
    const rule = svg("line", { class: "rule", y1: M.t, y2: H - M.b, x1: -10, x2: -10 }, root);
    const tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    fig.appendChild(tip);
    root.addEventListener("mousemove", (ev) => {
      const box = root.getBoundingClientRect();
      const px = ev.clientX - box.left;
      if (px < M.l || px > W - M.r) { tip.hidden = true; return; }
      const xv = x0 + ((px - M.l) / (W - M.l - M.r)) * (x1 - x0);
      rule.setAttribute("x1", px); rule.setAttribute("x2", px);
      tip.replaceChildren();
      const head = document.createElement("div");
      head.textContent = xk + " " + xfmt(xv);
      tip.appendChild(head);
      series.forEach((s, i) => {
        if (!s.pts.length) return;
        let lo = 0, hi = s.pts.length - 1;
        while (lo < hi) { const mid = (lo + hi) >> 1; if (s.pts[mid][0] < xv) lo = mid + 1; else hi = mid; }
        if (lo > 0 && Math.abs(s.pts[lo - 1][0] - xv) < Math.abs(s.pts[lo][0] - xv)) lo--;
        const row = document.createElement("div");
        const sw = document.createElement("span");
        sw.className = "swatch " + (s.cls || "c" + (i % 10));
        row.appendChild(sw);
        row.appendChild(document.createTextNode(" " + (s.label || "") + ": " + fmt(logY ? Math.pow(10, s.pts[lo][1]) : s.pts[lo][1])));
        tip.appendChild(row);
      });
      tip.hidden = false;
      const left = Math.min(px + 12, W - 160);
      tip.style.left = left + "px";
      tip.style.top = "24px";
    });
    root.addEventListener("mouseleave", () => { tip.hidden = true; rule.setAttribute("x1", -10); rule.setAttribute("x2", -10); });
    return fig;
  }

  /* Parallel coordinates.
   * axes: [{key, label, values: [] (per item, number|string|null), metric?: bool}]
   * items: [{id, label}]; onBrush(filters) gets {key: [lo, hi] | Set(categories)}.
   * Lines are coloured along the last axis (the metric).
   */
  function parallel(container, axes, items, onBrush, brushes) {
    const W = Math.max(480, Math.floor(container.clientWidth || 800));
    const H = 340;
    const M = { l: 40, r: 60, t: 28, b: 20 };
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "parcoords", role: "img" });
    root.setAttribute("aria-label", "parallel coordinates over " + axes.map((a) => a.label).join(", "));
    const step = axes.length > 1 ? (W - M.l - M.r) / (axes.length - 1) : 0;
    const scales = axes.map((a) => {
      const nums = a.values.filter((v) => typeof v === "number" && Number.isFinite(v));
      const numeric = nums.length > 0 && nums.length === a.values.filter((v) => v !== null && v !== undefined).length;
      if (numeric) {
        let lo = Math.min(...nums), hi = Math.max(...nums);
        const log = !a.metric && lo > 0 && hi / lo >= 100;
        const f = (v) => (log ? Math.log10(v) : v);
        let a0 = f(lo), a1 = f(hi);
        if (a1 === a0) { a0 -= 0.5; a1 += 0.5; }
        const pos = (v) => (typeof v === "number" && Number.isFinite(v) ? H - M.b - ((f(v) - a0) / (a1 - a0)) * (H - M.t - M.b) : null);
        const inv = (y) => { const t = a0 + ((H - M.b - y) / (H - M.t - M.b)) * (a1 - a0); return log ? Math.pow(10, t) : t; };
        return { numeric: true, pos, inv, ticks: [lo, hi], log };
      }
      const cats = [...new Set(a.values.filter((v) => v !== null && v !== undefined).map(String))].sort();
      const pos = (v) => { const i = cats.indexOf(String(v)); return v === null || v === undefined || i < 0 ? null : cats.length === 1 ? (H - M.b + M.t) / 2 : H - M.b - (i / (cats.length - 1)) * (H - M.t - M.b); };
      return { numeric: false, pos, cats };
    });
    const metric = scales[scales.length - 1];
    const mvals = axes[axes.length - 1].values.filter((v) => typeof v === "number" && Number.isFinite(v));
    const mlo = Math.min(...mvals), mhi = Math.max(...mvals);
    const lines = svg("g", { class: "pc-lines" }, root);
    const paths = items.map((it, i) => {
      let d = "";
      let pen = false;
      axes.forEach((a, k) => {
        const y = scales[k].pos(a.values[i]);
        if (y === null) { pen = false; return; }
        d += (pen ? "L" : "M") + (M.l + k * step).toFixed(1) + " " + y.toFixed(1);
        pen = true;
      });
      const mv = axes[axes.length - 1].values[i];
      const band = typeof mv === "number" && Number.isFinite(mv) && mhi > mlo ? Math.min(9, Math.floor(((mv - mlo) / (mhi - mlo)) * 10)) : 0;
      const p = svg("path", { d: d || "M0 0", class: "pc-line g" + band, "data-id": it.id }, lines);
      const t = svg("title", {}, p);
      t.textContent = it.label;
      return p;
    });
    const state = brushes || {};
    function apply() {
      const keep = items.map((_, i) => axes.every((a, k) => {
        const b = state[a.key];
        if (!b) return true;
        const y = scales[k].pos(a.values[i]);
        return y !== null && y >= b[0] - 4 && y <= b[1] + 4; // a few pixels of slack: the end of an axis is easy to miss
      }));
      paths.forEach((p, i) => p.classList.toggle("dim", !keep[i]));
      onBrush(items.filter((_, i) => keep[i]).map((it) => it.id), state);
    }
    axes.forEach((a, k) => {
      const x = M.l + k * step;
      const g = svg("g", { class: "pc-axis", tabindex: 0, "data-key": a.key }, root);
      svg("line", { x1: x, x2: x, y1: M.t, y2: H - M.b }, g);
      const label = svg("text", { x: x, y: 14, "text-anchor": k === 0 ? "start" : k === axes.length - 1 ? "end" : "middle", class: "pc-label" }, g);
      label.textContent = a.label;
      const sc = scales[k];
      const marks = sc.numeric ? sc.ticks : sc.cats.slice(0, 12);
      for (const m of marks) {
        const y = sc.pos(m);
        if (y === null) continue;
        svg("text", { x: x + 4, y: y + 4, class: "pc-tick" }, g).textContent = sc.numeric ? fmt(m) : String(m);
      }
      const brush = svg("rect", { x: x - 8, width: 16, y: 0, height: 0, class: "pc-brush" }, g);
      const hit = svg("rect", { x: x - 10, width: 20, y: M.t, height: H - M.t - M.b, class: "pc-hit" }, g);
      if (state[a.key]) { brush.setAttribute("y", state[a.key][0]); brush.setAttribute("height", state[a.key][1] - state[a.key][0]); }
      let start = null;
      const ypos = (ev) => { const box = root.getBoundingClientRect(); return Math.max(M.t, Math.min(H - M.b, (ev.clientY - box.top) * (H / box.height))); };
      hit.addEventListener("pointerdown", (ev) => { start = ypos(ev); hit.setPointerCapture(ev.pointerId); });
      hit.addEventListener("pointermove", (ev) => {
        if (start === null) return;
        const y = ypos(ev);
        brush.setAttribute("y", Math.min(start, y));
        brush.setAttribute("height", Math.abs(y - start));
      });
      hit.addEventListener("pointerup", (ev) => {
        if (start === null) return;
        const y = ypos(ev);
        if (Math.abs(y - start) < 3) { delete state[a.key]; brush.setAttribute("height", 0); }
        else state[a.key] = [Math.min(start, y), Math.max(start, y)];
        start = null;
        apply();
      });
      // keyboard: Delete clears this axis's brush; ArrowUp/ArrowDown keep the upper/lower half
      g.addEventListener("keydown", (ev) => {
        const cur = state[a.key] || [M.t, H - M.b];
        const mid = (cur[0] + cur[1]) / 2;
        if (ev.key === "Delete" || ev.key === "Backspace" || ev.key === "Escape") delete state[a.key];
        else if (ev.key === "ArrowUp") state[a.key] = [cur[0], mid];
        else if (ev.key === "ArrowDown") state[a.key] = [mid, cur[1]];
        else return;
        ev.preventDefault();
        const b = state[a.key];
        brush.setAttribute("y", b ? b[0] : 0);
        brush.setAttribute("height", b ? b[1] - b[0] : 0);
        apply();
      });
    });
    container.appendChild(root);
    apply();
    return root;
  }

  return { line, parallel, smooth, fmt, fmtDuration, fmtClock, ticks };
})();
