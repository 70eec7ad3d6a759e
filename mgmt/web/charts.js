// Cairn dashboard: the charts, drawn as SVG from the history app.js keeps
// (a volume's sparkline, the time charts of the overview and of the
// selected volume). Loaded before app.js, whose helpers ($, esc, the
// formatters) these functions use when they are called.
'use strict';

// ---------- charts (SVG) ----------

// The top of a chart's axis: a round number (in binary units for bytes,
// base 1024) at or above v, so that its quarters are round too.
function niceMax(v, base = 1000) {
  if (!(v > 0)) return 0;
  if (base === 1024) {
    let u = 1;
    while (v / u >= 1024) u *= 1024;
    return niceMax(v / u) * u;
  }
  const step = 10 ** Math.floor(Math.log10(v / 4));
  for (const m of [1, 2, 2.5, 5, 10]) if (step * m * 4 >= v) return step * m * 4;
  return v;
}

function sparkline(h, now) {
  const W = 120; const H = 24;
  const pts = h.map((s) => [s.t, s.ri + s.wi]);
  const max = Math.max(1, ...pts.map((p) => p[1]));
  const x = (t) => W - ((now - t) / HISTORY_MS) * W;
  const y = (v) => H - 1 - (v / max) * (H - 3);
  const d = pts.filter((p) => p[0] >= now - HISTORY_MS).map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
  return `<svg class="spark" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" aria-hidden="true">${d ? `<path d="${d}"/>` : ''}</svg>`;
}

// Draw a time chart of series [{name, cls, pts: [[t, v]]}] over the last
// two minutes into el (an SVG redrawn on each poll, sized to el). The latest
// value of each series is also left in el.dataset (data-read, data-write),
// for the eye in the legend and for tests.
function chart(el, now, series, fmt, unit = '', base = 1000) {
  if (!el) return;
  for (const s of series) {
    const last = s.pts.length ? s.pts[s.pts.length - 1][1] : 0;
    el.dataset[s.name] = String(last);
  }
  el.dataset.points = String(series[0].pts.length);
  const width = el.clientWidth;
  if (!width) return; // hidden: drawn when shown
  el._chart = {now, series, fmt, unit};
  const W = width; const H = 170;
  const L = 66; const R = 10; const T = 8; const B = 22;
  const t0 = now - HISTORY_MS;
  let max = 0;
  for (const s of series) for (const p of s.pts) if (p[0] >= t0 && p[1] > max) max = p[1];
  const ymax = niceMax(max, base) || 1;
  const x = (t) => L + ((t - t0) / HISTORY_MS) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  let svg = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(el.dataset.title)}">`;
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    const yy = y(v).toFixed(1);
    svg += `<line class="grid" x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}"/>` +
      `<text class="axis" x="${L - 6}" y="${yy}" dy="0.32em" text-anchor="end">${esc(max === 0 && i ? '' : fmt(v))}</text>`;
  }
  for (let s = 0; s <= 120; s += 30) {
    const xx = x(now - s * 1000).toFixed(1);
    svg += `<text class="axis" x="${xx}" y="${H - 6}" text-anchor="${s === 0 ? 'end' : s === 120 ? 'start' : 'middle'}">${s === 0 ? 'now' : '−' + s + ' s'}</text>`;
  }
  for (const s of series) {
    const pts = s.pts.filter((p) => p[0] >= t0 - 2000);
    if (!pts.length) continue;
    const line = pts.map((p, i) => `${i ? 'L' : 'M'}${Math.max(L, x(p[0])).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    const x0 = Math.max(L, x(pts[0][0])).toFixed(1);
    const x1 = x(pts[pts.length - 1][0]).toFixed(1);
    svg += `<path class="area ${s.cls}" d="${line}L${x1},${y(0).toFixed(1)}L${x0},${y(0).toFixed(1)}Z"/>` +
      `<path class="line ${s.cls}" d="${line}"/>`;
  }
  svg += `<g class="cursor" hidden><line class="cursor-line" y1="${T}" y2="${H - B}"/><text class="cursor-text" y="${T + 12}"></text></g></svg>`;
  const legend = series.map((s) => {
    const last = s.pts.length ? s.pts[s.pts.length - 1][1] : 0;
    return `<span class="legend-item"><i class="key ${s.cls}"></i>${esc(s.name)} <b>${esc(fmt(last))}${unit ? ' ' + unit : ''}</b></span>`;
  }).join('');
  el.innerHTML = `<div class="chart-head"><span class="chart-title">${esc(el.dataset.title)}</span>${legend}</div>${svg}`;
  if (!el._hover) {
    el._hover = true;
    el.addEventListener('mousemove', (e) => hover(el, e));
    el.addEventListener('mouseleave', () => { const g = $('.cursor', el); if (g) g.setAttribute('hidden', ''); });
  }
}

// The crosshair: the values of the point nearest the mouse.
function hover(el, e) {
  const c = el._chart;
  const g = $('.cursor', el);
  if (!c || !g) return;
  const svg = $('svg', el);
  const W = svg.viewBox.baseVal.width;
  const L = 66; const R = 10;
  const px = e.clientX - svg.getBoundingClientRect().left;
  if (px < L || px > W - R) { g.setAttribute('hidden', ''); return; }
  const t = c.now - HISTORY_MS + ((px - L) / (W - L - R)) * HISTORY_MS;
  const pts = c.series[0].pts;
  if (!pts.length) return;
  let best = 0;
  for (let i = 1; i < pts.length; i++) if (Math.abs(pts[i][0] - t) < Math.abs(pts[best][0] - t)) best = i;
  const xx = L + ((pts[best][0] - (c.now - HISTORY_MS)) / HISTORY_MS) * (W - L - R);
  const ago = Math.round((c.now - pts[best][0]) / 1000);
  const text = `${ago ? '−' + ago + ' s' : 'now'}: ` + c.series.map((s) => `${s.name} ${c.fmt(s.pts[best] ? s.pts[best][1] : 0)}`).join(', ');
  g.removeAttribute('hidden');
  const line = $('.cursor-line', g);
  line.setAttribute('x1', xx); line.setAttribute('x2', xx);
  const tx = $('.cursor-text', g);
  tx.textContent = text;
  const right = xx > W / 2;
  tx.setAttribute('x', right ? xx - 6 : xx + 6);
  tx.setAttribute('text-anchor', right ? 'end' : 'start');
}
