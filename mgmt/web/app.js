// Cairn dashboard: polls the MDM's REST API (GET api/v1/status) and draws
// the cluster; the actions call the same API, with the token of auth.js.
// No framework, no build step, nothing fetched from any other host. The API
// owns every rule and every error message; the page only shows them.
'use strict';

const POLL_MS = 1000;          // one status a second
const HISTORY_MS = 120 * 1000; // points kept for the charts (2 minutes)

const state = {
  status: null,        // the last status that arrived
  lastOk: 0,           // Date.now() of that status
  error: null,         // why the last poll failed, or null
  history: new Map(),  // volume name -> [{t, ri, wi, rb, wb, rl, wl}]
  total: [],           // the same, summed over volumes
  selected: null,      // volume shown in the detail charts
  peak: {rebuild: 0, rebalance: 0}, // largest bytes_left of the running job
  jobs: {rebuild: [], rebalance: []}, // [{t, left}] of the running job, for its rate
  filter: '',
};

// ---------- formatting ----------

const esc = (s) => String(s ?? '').replace(/[&<>"']/g,
  (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));

function fmtBytes(n) {
  if (n == null || !isFinite(n)) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(Math.round(v)) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return (n < 0 ? '-' : '') + s.replace(/\.0+$|(\.\d*[1-9])0+$/, '$1') + ' ' + u[i];
}

const fmtRate = (n) => (n == null ? '—' : fmtBytes(n) + '/s');

function fmtCount(n) {
  if (n == null || !isFinite(n)) return '—';
  if (n < 1000) return String(Math.round(n));
  const u = ['k', 'M', 'G'];
  let i = -1;
  let v = n;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return (v >= 100 ? v.toFixed(0) : v.toFixed(1)).replace(/\.0$/, '') + u[i];
}

const fmtIops = (n) => (n == null ? '—' : fmtCount(n) + ' IOPS');

function fmtLatency(us) {
  if (us == null || !isFinite(us)) return '—';
  if (us === 0) return '0';
  if (us < 1000) return (us < 10 ? us.toFixed(1) : Math.round(us)) + ' µs';
  const trimz = (x) => x.replace(/\.?0+$/, '');
  if (us < 1e6) return trimz((us / 1000).toFixed(us < 1e4 ? 2 : 1)) + ' ms';
  return trimz((us / 1e6).toFixed(2)) + ' s';
}

function fmtDuration(s) {
  if (s == null || !isFinite(s) || s < 0) return '—';
  s = Math.round(s);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + String(Math.floor(s / 60) % 60).padStart(2, '0') + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor(s / 3600) % 24 + ' h';
}

function fmtAgo(ms) {
  if (ms == null || !isFinite(ms)) return '—';
  if (ms < 1000) return ms + ' ms ago';
  return fmtDuration(ms / 1000) + ' ago';
}

const pct = (a, b) => (b > 0 ? Math.max(0, Math.min(100, (100 * a) / b)) : 0);
const fmtPct = (a, b) => (b > 0 ? pct(a, b).toFixed(pct(a, b) < 10 ? 1 : 0) + '%' : '—');

// A size as the API will read it, for the confirmation only (the API
// validates): bytes, or a number with K, M, G, T, P (powers of 1024).
function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text || '');
  if (!m) return null;
  return Math.round(parseFloat(m[1]) * 1024 ** ' kmgtp'.indexOf(m[2].toLowerCase() || ' '));
}

// ---------- DOM helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

// Replace el's contents only when they change, so that a table that did
// not change keeps its elements (focus, hover, a click in flight).
function setHTML(el, html) {
  if (el && el._html !== html) {
    el.innerHTML = html;
    el._html = html;
  }
}

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

// Disables a control that changes the cluster, for a monitor token.
const roAttr = () => (auth.readOnly() ? ' disabled title="read-only: signed in with a monitor token"' : '');

const badge = (text, kind) => `<span class="badge ${esc(kind)}">${esc(text)}</span>`;

const STATE_KIND = {up: 'ok', down: 'bad', maintenance: 'info', draining: 'purple', removed: 'muted'};
const stateBadge = (s) => badge(s || 'unknown', STATE_KIND[s] || 'muted');
const HEALTH_KIND = {ok: 'ok', degraded: 'warn', error: 'bad'};
// A health as ok, degraded or error. A pool's is worded for people ("ok",
// "DEGRADED (rebuilding)", "DATA UNAVAILABLE (...)", "OUT OF SPACE (...)"):
// anything but ok or degraded is an error.
function healthWord(h) {
  const w = String(h || 'ok').toLowerCase();
  return w === 'ok' ? 'ok' : w.startsWith('degraded') ? 'degraded' : 'error';
}
const healthKind = (h) => HEALTH_KIND[healthWord(h)];

function bar(fraction, kind = '', title = '') {
  const p = Math.max(0, Math.min(100, fraction * 100));
  return `<div class="bar ${kind}" title="${esc(title)}"><div style="width:${p.toFixed(2)}%"></div></div>`;
}

function fillKind(f) {
  return f >= 0.9 ? 'bad' : f >= 0.75 ? 'warn' : '';
}

function toast(text, kind = 'ok') {
  const t = document.createElement('div');
  t.className = 'toast ' + kind;
  t.textContent = text;
  $('#toasts').append(t);
  setTimeout(() => t.remove(), 5000);
}

// ---------- the API ----------

// The API's JSON, or an Error carrying its {"error": msg}.
async function api(method, path, body) {
  const opts = {method, cache: 'no-store', headers: auth.headers()};
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch('api/v1/' + path, opts);
  } catch (e) {
    throw new Error('the MDM does not answer (' + e.message + ')');
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (r.status === 401) auth.refused();
  if (!r.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : (text.trim() || r.statusText);
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return data;
}

async function poll() {
  clearTimeout(poll.timer);
  if (poll.busy) { poll.again = true; return; } // one request at a time
  poll.busy = true;
  try {
    const st = await api('GET', 'status');
    state.status = st;
    state.lastOk = Date.now();
    state.error = null;
    record(st, state.lastOk);
    if (currentView() === 'snapshots') await pollSnapshots(); // snapshots.js
  } catch (e) {
    state.error = e;
  }
  poll.busy = false;
  poll.timer = setTimeout(poll, poll.again ? 0 : POLL_MS); // before render: polling survives a bad status
  poll.again = false;
  render();
}

// After an action: now, or as soon as the poll in flight returns.
const pollNow = () => poll();

// ---------- history (charts) ----------

function sample(io, t) {
  io = io || {};
  return {t, ri: +io.read_iops || 0, wi: +io.write_iops || 0, rb: +io.read_bytes_per_sec || 0,
    wb: +io.write_bytes_per_sec || 0, rl: +io.read_latency_us || 0, wl: +io.write_latency_us || 0};
}

function trim(arr, t) {
  while (arr.length && arr[0].t < t - HISTORY_MS - 5000) arr.shift();
}

function record(st, t) {
  const tot = sample(null, t);
  let rw = 0; let ww = 0; // IOPS-weighted latency over volumes
  const seen = new Set();
  for (const v of st.volumes || []) {
    const s = sample(v.io, t);
    seen.add(v.name);
    if (!state.history.has(v.name)) state.history.set(v.name, []);
    const h = state.history.get(v.name);
    h.push(s);
    trim(h, t);
    tot.ri += s.ri; tot.wi += s.wi; tot.rb += s.rb; tot.wb += s.wb;
    rw += s.ri * s.rl; ww += s.wi * s.wl;
  }
  tot.rl = tot.ri ? rw / tot.ri : 0;
  tot.wl = tot.wi ? ww / tot.wi : 0;
  state.total.push(tot);
  trim(state.total, t);
  for (const name of [...state.history.keys()]) if (!seen.has(name)) state.history.delete(name);
  for (const k of ['rebuild', 'rebalance']) {
    const left = (st[k] && +st[k].bytes_left) || 0;
    state.peak[k] = left ? Math.max(state.peak[k], left) : 0;
    const j = state.jobs[k];
    if (!left) j.length = 0;
    else j.push({t, left});
    while (j.length && j[0].t < t - 15000) j.shift();
  }
}

// ---------- health ----------

// The banner: the API's health and the reasons behind it, from the status.
function health(st) {
  const reasons = [];
  let worst = 'ok';
  const raise = (h) => {
    const rank = {ok: 0, degraded: 1, error: 2};
    if ((rank[h] ?? 2) > rank[worst]) worst = h;
  };
  const sds = st.sds || [];
  const down = sds.filter((s) => s.state === 'down' || (!s.connected && s.state !== 'maintenance'));
  if (down.length) {
    raise('degraded');
    reasons.push(`${down.length === 1 ? 'SDS' : 'SDSs'} ${down.map((s) => s.name).join(', ')} down`);
  }
  const maint = sds.filter((s) => s.state === 'maintenance');
  if (maint.length) reasons.push(`${maint.map((s) => s.name).join(', ')} in maintenance`);
  const drain = sds.filter((s) => s.state === 'draining' || s.removing);
  if (drain.length) reasons.push(`${drain.map((s) => s.name).join(', ')} draining`);
  const failed = [];
  for (const s of sds) for (const d of s.devices || []) if (d.failed) failed.push(`${s.name}:${d.path}`);
  if (failed.length) {
    raise('degraded');
    reasons.push(`failed device${failed.length > 1 ? 's' : ''} ${failed.join(', ')}`);
  }
  for (const p of st.pools || []) {
    if (p.pgs_no_copy > 0) {
      raise('error');
      reasons.push(`pool ${p.name}: ${p.pgs_no_copy} PG${p.pgs_no_copy > 1 ? 's' : ''} with no copy (data unavailable)`);
    }
    if (p.pgs_degraded > 0) {
      raise('degraded');
      reasons.push(`pool ${p.name}: ${p.pgs_degraded} of ${p.pg_count} PGs degraded`);
    }
    if (p.full_devices > 0) {
      raise('degraded');
      reasons.push(`pool ${p.name}: ${p.full_devices} full device${p.full_devices > 1 ? 's' : ''}`);
    }
    if (p.enospc_errors > 0) {
      raise('degraded');
      reasons.push(`pool ${p.name}: ${p.enospc_errors} writes failed for lack of space`);
    }
    if (p.health && healthWord(p.health) !== 'ok') raise(healthWord(p.health));
  }
  const rb = st.rebuild || {};
  if (rb.bytes_left > 0 || rb.pg_copies_left > 0) {
    reasons.push(`rebuilding, ${fmtBytes(rb.bytes_left)} left` + (rb.eta_seconds > 0 ? `, ETA ${fmtDuration(rb.eta_seconds)}` : ''));
  }
  const h = st.health ? healthWord(st.health) : worst;
  if (h !== worst && !reasons.length) reasons.push(`the MDM reports ${h}`);
  if (h === 'ok') {
    const pgs = (st.pools || []).reduce((a, p) => a + (p.pg_count || 0), 0);
    const up = sds.filter((s) => s.state === 'up').length;
    reasons.unshift(`all ${pgs} PGs fully protected · ${up} of ${sds.length} SDSs up`);
  }
  return {health: h, reason: reasons.join(' · ')};
}

// ---------- render ----------

function render() {
  renderBanner();
  const st = state.status;
  if (!st) return;
  const view = currentView();
  renderMeta(st);
  if (view === 'overview') renderOverview(st);
  if (view === 'sds') renderSds(st);
  if (view === 'volumes') renderVolumes(st);
  if (view === 'snapshots') renderSnapshots(st);
  if (view === 'sdcs') renderSdcs(st);
  if (view === 'mdms') renderMdms(st);
}

function renderBanner() {
  const b = $('#banner');
  let h; let reason;
  if (state.error) {
    h = 'error';
    reason = `${state.error.message}` + (state.lastOk ? ` — showing the status of ${new Date(state.lastOk).toLocaleTimeString()}, retrying` : ', retrying');
  } else if (state.status) {
    ({health: h, reason} = health(state.status));
  } else {
    return;
  }
  b.dataset.health = h;
  setText($('.banner-state', b), {ok: 'Healthy', degraded: 'Degraded', error: 'Error'}[h] || h);
  setText($('.banner-reason', b), reason);
  document.title = `Cairn — ${h}`;
}

function renderMeta(st) {
  const leader = (st.mdms || []).find((m) => m.role === 'leader');
  const parts = [`cluster ${String(st.cluster_id || '').slice(0, 8)}`, `map v${st.map_version}`];
  if (leader) parts.push(`leader MDM ${leader.id}, term ${leader.term}`);
  parts.push(`updated ${new Date(state.lastOk).toLocaleTimeString()}`);
  const m = $('#meta');
  m.title = `cluster id ${st.cluster_id}\n${st.mdm || ''}`;
  setText(m, parts.join(' · '));
  $('body').classList.toggle('stale', !!state.error);
}

function card(label, value, sub, kind = '') {
  return `<div class="card ${kind}"><div class="card-label">${esc(label)}</div>` +
    `<div class="card-value">${value}</div><div class="card-sub">${sub}</div></div>`;
}

function renderOverview(st) {
  const sds = st.sds || [];
  const up = sds.filter((s) => s.state === 'up').length;
  const down = sds.filter((s) => s.state === 'down').length;
  const pools = st.pools || [];
  const used = pools.reduce((a, p) => a + (p.used || 0), 0);
  const usable = pools.reduce((a, p) => a + (p.usable_capacity || 0), 0);
  const prov = pools.reduce((a, p) => a + (p.provisioned || 0), 0);
  const vols = st.volumes || [];
  const sdcs = st.sdcs || [];
  const conn = sdcs.filter((s) => s.connected).length;
  const tot = state.total[state.total.length - 1] || sample(null, 0);
  const leader = (st.mdms || []).find((m) => m.role === 'leader');
  const h = health(st).health;
  const cards = [
    card('Health', esc({ok: 'Healthy', degraded: 'Degraded', error: 'Error'}[h] || h),
      `${pools.reduce((a, p) => a + (p.pgs_fully_protected || 0), 0)} / ${pools.reduce((a, p) => a + (p.pg_count || 0), 0)} PGs protected`,
      HEALTH_KIND[h] || ''),
    card('SDSs', `${up} <small>/ ${sds.length} up</small>`,
      down ? `<span class="t-bad">${down} down</span>` : `${sds.reduce((a, s) => a + (s.devices || []).length, 0)} devices`,
      down ? 'bad' : ''),
    card('Capacity', `${esc(fmtPct(used, usable))} <small>used</small>`, `${esc(fmtBytes(used))} of ${esc(fmtBytes(usable))} usable`,
      fillKind(usable ? used / usable : 0)),
    card('Volumes', String(vols.length), `${esc(fmtBytes(prov))} provisioned`),
    card('I/O', `${esc(fmtCount(tot.ri + tot.wi))} <small>IOPS</small>`,
      `${esc(fmtRate(tot.rb + tot.wb))}` + (tot.wi ? ` · w ${esc(fmtLatency(tot.wl))}` : '')),
    card('SDCs', `${conn} <small>/ ${sdcs.length} connected</small>`, `${(st.mappings || []).length} mappings`),
    card('MDM', leader ? `#${leader.id} <small>leader</small>` : '—',
      leader ? `term ${leader.term} · ${(st.mdms || []).length} MDM${(st.mdms || []).length > 1 ? 's' : ''}` : esc(st.mdm || '')),
  ];
  setHTML($('#summary'), cards.join(''));
  setHTML($('#pools'), pools.length ? pools.map(poolBlock).join('') : '<p class="empty">No storage pool yet.</p>');
  setHTML($('#progress'), progressBlock('Rebuild', 'rebuild', st.rebuild) + progressBlock('Rebalance', 'rebalance', st.rebalance));
  const t = state.lastOk;
  chart($('#chart-total-iops'), t, [
    {name: 'read', cls: 's-read', pts: state.total.map((s) => [s.t, s.ri])},
    {name: 'write', cls: 's-write', pts: state.total.map((s) => [s.t, s.wi])}], fmtCount, 'IOPS');
  chart($('#chart-total-bw'), t, [
    {name: 'read', cls: 's-read', pts: state.total.map((s) => [s.t, s.rb])},
    {name: 'write', cls: 's-write', pts: state.total.map((s) => [s.t, s.wb])}], fmtRate, '', 1024);
}

function poolBlock(p) {
  const usable = p.usable_capacity || 0;
  const limit = usable * ((p.overcommit_pct || 100) / 100);
  const pgs = p.pg_count || 0;
  const seg = (n, cls, label) => (n > 0 ? `<div class="${cls}" style="width:${pct(n, pgs).toFixed(2)}%" title="${n} ${label}"></div>` : '');
  const others = (p.pgs_degraded || 0) + (p.pgs_no_copy || 0);
  return `<div class="pool" data-pool="${esc(p.name)}">
  <div class="pool-head"><b>${esc(p.name)}</b>${badge(p.health || 'ok', healthKind(p.health))}
    <span class="muted">${p.copies} copies · ${pgs} PGs · extent ${esc(fmtBytes(p.extent_size))} · raw ${esc(fmtBytes(p.raw_capacity))}</span></div>
  <div class="metric"><span class="metric-label">Used</span>${bar(usable ? p.used / usable : 0, fillKind(usable ? p.used / usable : 0))}
    <span class="metric-value">${esc(fmtBytes(p.used))} of ${esc(fmtBytes(usable))} (${esc(fmtPct(p.used, usable))}) · ${esc(fmtBytes(p.free))} free</span></div>
  <div class="metric"><span class="metric-label">Provisioned</span>${bar(limit ? p.provisioned / limit : 0, p.provisioned > limit ? 'prov bad' : 'prov', 'of the overcommit limit')}
    <span class="metric-value">${esc(fmtBytes(p.provisioned))} (${esc(fmtBytes(p.thick_provisioned))} thick) of ${esc(fmtBytes(limit))} at ${p.overcommit_pct || 100}% overcommit</span></div>
  <div class="metric"><span class="metric-label">PGs</span><div class="bar seg">${seg(p.pgs_fully_protected, 's-ok', 'fully protected')}${seg(p.pgs_degraded, 's-warn', 'degraded')}${seg(p.pgs_no_copy, 's-bad', 'with no copy')}</div>
    <span class="metric-value">${p.pgs_fully_protected} protected${others ? ` · <span class="t-warn">${p.pgs_degraded} degraded</span>` : ''}${p.pgs_no_copy ? ` · <span class="t-bad">${p.pgs_no_copy} no copy</span>` : ''}${p.pgs_rebuilding ? ` · ${p.pgs_rebuilding} rebuilding` : ''}${p.pgs_moving ? ` · ${p.pgs_moving} moving` : ''}</span></div>
  ${p.full_devices || p.enospc_errors ? `<div class="t-bad small">${p.full_devices} full devices · ${p.enospc_errors} ENOSPC errors</div>` : ''}
</div>`;
}

function progressBlock(title, key, j) {
  j = j || {};
  const left = +j.bytes_left || 0;
  const copies = +j.pg_copies_left || 0;
  const active = left > 0 || copies > 0;
  // bytes_done may be absent: then the progress is measured against the
  // largest bytes_left this page saw since the job started.
  const done = j.bytes_done != null ? +j.bytes_done : Math.max(0, state.peak[key] - left);
  const total = done + left;
  const frac = active ? (total ? done / total : 0) : 1;
  // the API's rate, else the fall of bytes_left over the last 15 s
  const h = state.jobs[key];
  const measured = h.length > 1 && h[h.length - 1].t > h[0].t
    ? Math.max(0, (h[0].left - h[h.length - 1].left) / ((h[h.length - 1].t - h[0].t) / 1000)) : 0;
  const rate = j.rate > 0 ? +j.rate : measured;
  const eta = j.eta_seconds > 0 ? j.eta_seconds : (rate > 0 ? left / rate : null);
  return `<div class="job ${active ? 'active' : 'idle'}" data-job="${key}" data-bytes-left="${left}" data-rate="${Math.round(rate)}">
  <div class="job-head"><b>${title}</b>${active ? badge('running', 'warn') : badge('idle', 'muted')}
    <span class="muted">${active ? `${copies} PG cop${copies === 1 ? 'y' : 'ies'} left` : 'nothing to copy'}</span>
    <span class="spacer"></span><b class="job-pct">${active ? (frac * 100).toFixed(1) + '%' : ''}</b></div>
  ${bar(frac, active ? 'job-bar running' : 'job-bar')}
  <dl class="stats">
    <div><dt>Left</dt><dd>${esc(fmtBytes(left))}</dd></div>
    <div><dt>Done</dt><dd>${esc(fmtBytes(done))}</dd></div>
    <div><dt>Rate</dt><dd>${esc(active ? fmtRate(rate) : '—')}</dd></div>
    <div><dt>ETA</dt><dd>${esc(active && eta != null ? fmtDuration(eta) : '—')}</dd></div>
  </dl>
</div>`;
}

function renderSds(st) {
  const rows = [];
  const sds = st.sds || [];
  for (const s of sds) {
    const devs = s.devices || [];
    const cap = devs.reduce((a, d) => a + (d.capacity || 0), 0);
    const used = devs.reduce((a, d) => a + (d.used || 0), 0);
    const f = cap ? used / cap : 0;
    rows.push(`<tr class="sds-row state-${esc(s.state)}" data-sds="${esc(s.name)}" data-state="${esc(s.state)}">
  <td><b>${esc(s.name)}</b> <span class="muted">#${s.id}</span></td>
  <td class="sds-state">${stateBadge(s.state)}${s.removing ? ' ' + badge('removing', 'purple') : ''}</td>
  <td>${s.connected ? '<span class="dot ok"></span>yes' : '<span class="dot bad"></span>no'}</td>
  <td class="mono">${esc(s.addr)}</td>
  <td>${esc(s.fault_set || '—')}</td>
  <td class="num">${devs.length}</td>
  <td class="num">${esc(fmtBytes(cap))}</td>
  <td><div class="fill">${bar(f, fillKind(f))}<span>${esc(fmtPct(used, cap))}</span></div></td>
  <td class="num">${esc(fmtBytes(s.rebuild_bytes_sent))} / ${esc(fmtBytes(s.rebuild_bytes_received))}</td>
  <td class="num" data-live="hb" data-sds="${esc(s.name)}"></td>
</tr>`);
    for (const d of devs) {
      const df = d.capacity ? d.used / d.capacity : 0;
      const dstate = d.failed ? badge('failed', 'bad') : d.removing ? badge('removing', 'purple')
        : !s.connected ? badge('offline', 'muted') : badge('ok', 'ok');
      rows.push(`<tr class="dev-row" data-device="${esc(d.path)}" data-sds="${esc(s.name)}">
  <td class="indent mono path" colspan="2" title="device #${d.id}: ${esc(d.path)}"><bdi dir="ltr">${esc(d.path)}</bdi></td>
  <td>${dstate}</td>
  <td>pool ${esc(d.pool)}</td>
  <td class="muted nowrap">${esc(fmtCount(d.used_extents))} / ${esc(fmtCount(d.total_extents))} extents</td>
  <td></td>
  <td class="num">${esc(fmtBytes(d.capacity))}</td>
  <td><div class="fill">${bar(df, fillKind(df))}<span>${esc(fmtPct(d.used, d.capacity))}</span></div></td>
  <td class="num" colspan="2">${esc(fmtBytes(d.used))} used · ${esc(fmtBytes(d.free ?? (d.capacity - d.used)))} free</td>
</tr>`);
    }
  }
  const up = sds.filter((s) => s.state === 'up').length;
  setText($('#sds-hint'), `${up} of ${sds.length} up`);
  setHTML($('#sds-table'), sds.length ? `<table class="tbl" id="sds-list"><thead><tr>
  <th>SDS</th><th>State</th><th>Connected</th><th>Address</th><th>Fault set</th><th class="num">Devices</th>
  <th class="num">Capacity</th><th>Fill</th><th class="num" title="bytes this SDS sent and received for rebuilds">Rebuild sent / rcvd</th><th class="num">Last heartbeat</th>
</tr></thead><tbody>${rows.join('')}</tbody></table>` : '<p class="empty">No SDS has been added yet (cairn sds add).</p>');
  const byName = new Map(sds.map((s) => [s.name, s]));
  for (const td of $$('#sds-table td[data-live="hb"]')) {
    const s = byName.get(td.dataset.sds);
    if (s) {
      setText(td, fmtAgo(s.last_heartbeat_ms_ago));
      td.classList.toggle('t-bad', s.last_heartbeat_ms_ago > 3000);
    }
  }
  const fs = st.fault_sets || [];
  setHTML($('#faultsets'), fs.length ? `<table class="tbl"><thead><tr><th>Fault set</th><th class="num">SDSs</th><th class="num">Capacity</th><th>Members</th></tr></thead><tbody>${
    fs.map((f) => `<tr><td><b>${esc(f.name)}</b></td><td class="num">${f.sds_count}</td><td class="num">${esc(fmtBytes(f.capacity))}</td><td>${(f.sds || []).map((n) => `<span class="chip">${esc(n)}</span>`).join(' ')}</td></tr>`).join('')
  }</tbody></table>` : '<p class="empty">No fault set defined: each SDS is a fault set of its own.</p>');
}

// A mapping's access mode (docs/attach.md): read-only, shared, or the
// single-writer mapping of the volume's writer.
const accessMark = (v, m) => (m.read_only ? ' <b class="ro" title="read-only">RO</b>'
  : m.access === 'shared' ? ' <b class="acc" title="shared: any number of writers">shared</b>'
  : v.writer === m.sdc ? ' <b class="wr" title="single-writer: the volume\'s writer">writer</b>' : '');

function renderVolumes(st) {
  const vols = st.volumes || [];
  const sdcs = st.sdcs || [];
  if (state.selected && !vols.some((v) => v.name === state.selected)) state.selected = null;
  if (!state.selected && vols.length) {
    // the busiest volume, else the first
    const busy = vols.filter((v) => v.io && (v.io.read_iops + v.io.write_iops) > 0);
    state.selected = (busy[0] || vols[0]).name;
  }
  const f = state.filter.toLowerCase();
  const shown = vols.filter((v) => !f || v.name.toLowerCase().includes(f) || (v.pool || '').toLowerCase().includes(f));
  const prov = vols.reduce((a, v) => a + (v.size || 0), 0);
  setText($('#volumes-hint'), `${vols.length} volume${vols.length === 1 ? '' : 's'} · ${fmtBytes(prov)} provisioned`);
  const rows = shown.map((v) => {
    const maps = (v.mapped_to || []).map((m) => `<span class="chip map" data-sdc="${esc(m.sdc)}" data-access="${m.read_only ? 'read-only' : esc(m.access)}">${esc(m.sdc)}${accessMark(v, m)}` +
      `<button type="button" class="chip-x" data-action="unmap" data-volume="${esc(v.name)}" data-sdc="${esc(m.sdc)}" title="Unmap from ${esc(m.sdc)}"${roAttr()} aria-label="Unmap ${esc(v.name)} from ${esc(m.sdc)}">×</button></span>`).join(' ');
    const canMap = sdcs.some((s) => !(v.mapped_to || []).some((m) => m.sdc === s.name));
    return `<tr class="vol-row${v.name === state.selected ? ' selected' : ''}" data-volume="${esc(v.name)}" data-size="${v.size}">
  <td><button type="button" class="link" data-action="select" data-volume="${esc(v.name)}">${esc(v.name)}</button> <span class="muted">#${v.id}</span>${lineageNote(v)}</td>
  <td>${esc(v.pool)}</td>
  <td class="num vol-size">${esc(fmtBytes(v.size))}</td>
  <td>${v.thick ? badge('thick', 'info') : badge('thin', 'muted')}</td>
  <td class="writer" data-writer="${esc(v.writer)}">${v.writer ? `${esc(v.writer)} <span class="muted" title="writer generation">g${v.writer_generation}</span>` : '<span class="muted">none</span>'}</td>
  <td class="maps">${maps || '<span class="muted">not mapped</span>'}</td>
  <td class="spark-cell" data-live="spark" data-volume="${esc(v.name)}"></td>
  <td class="num" data-live="iops" data-volume="${esc(v.name)}"></td>
  <td class="num" data-live="lat" data-volume="${esc(v.name)}"></td>
  <td class="actions">
    <button type="button" class="btn small" data-action="grow" data-volume="${esc(v.name)}"${roAttr()}>Grow</button>
    <button type="button" class="btn small" data-action="map" data-volume="${esc(v.name)}"${canMap ? roAttr() : ' disabled title="mapped to every SDC"'}>Map</button>
    <button type="button" class="btn small danger" data-action="remove" data-volume="${esc(v.name)}"${roAttr()}>Remove</button>
  </td>
</tr>`;
  });
  setHTML($('#volumes-table'), vols.length ? `<table class="tbl" id="volume-list"><thead><tr>
  <th>Volume</th><th>Pool</th><th class="num">Size</th><th>Type</th><th>Writer</th><th>Mapped to</th><th>IOPS, 2 min</th>
  <th class="num">IOPS r / w</th><th class="num">Latency r / w</th><th class="actions">Actions</th>
</tr></thead><tbody>${rows.join('') || '<tr><td colspan="10" class="empty">No volume matches the filter.</td></tr>'}</tbody></table>`
    : '<p class="empty">No volume yet. Create one with the button above.</p>');
  const byName = new Map(vols.map((v) => [v.name, v]));
  for (const td of $$('#volumes-table td[data-live]')) {
    const v = byName.get(td.dataset.volume);
    if (!v) continue;
    const io = v.io || {};
    if (td.dataset.live === 'iops') setText(td, `${fmtCount(io.read_iops)} / ${fmtCount(io.write_iops)}`);
    const lat = (us, iops) => (iops > 0 ? fmtLatency(us) : '—');
    if (td.dataset.live === 'lat') setText(td, `${lat(io.read_latency_us, io.read_iops)} / ${lat(io.write_latency_us, io.write_iops)}`);
    if (td.dataset.live === 'spark') td.innerHTML = sparkline(state.history.get(v.name) || [], state.lastOk);
  }
  renderDetail();
}

function renderDetail() {
  const name = state.selected;
  const h = (name && state.history.get(name)) || [];
  const v = state.status && (state.status.volumes || []).find((x) => x.name === name);
  setText($('#detail-title'), name ? `Volume ${name}` : 'Volume I/O');
  setText($('#detail-hint'), v ? `${fmtBytes(v.size)} · pool ${v.pool} · ${v.thick ? 'thick' : 'thin'} · last 2 minutes, every ${POLL_MS / 1000} s` : 'select a volume above');
  $('#volume-detail').dataset.volume = name || '';
  const t = state.lastOk;
  chart($('#chart-vol-iops'), t, [
    {name: 'read', cls: 's-read', pts: h.map((s) => [s.t, s.ri])},
    {name: 'write', cls: 's-write', pts: h.map((s) => [s.t, s.wi])}], fmtCount, 'IOPS');
  chart($('#chart-vol-lat'), t, [
    {name: 'read', cls: 's-read', pts: h.map((s) => [s.t, s.rl])},
    {name: 'write', cls: 's-write', pts: h.map((s) => [s.t, s.wl])}], fmtLatency, '', 1000);
  chart($('#chart-vol-bw'), t, [
    {name: 'read', cls: 's-read', pts: h.map((s) => [s.t, s.rb])},
    {name: 'write', cls: 's-write', pts: h.map((s) => [s.t, s.wb])}], fmtRate, '', 1024);
}

function renderSdcs(st) {
  const sdcs = st.sdcs || [];
  const rows = sdcs.map((s) => {
    const conn = s.connected;
    const mv = s.map_version;
    const mapState = mv == null ? '—' : mv >= st.map_version ? `v${mv} <span class="muted">current</span>` : `v${mv} <span class="t-warn">behind v${st.map_version}</span>`;
    return `<tr data-sdc="${esc(s.name)}"><td><b>${esc(s.name)}</b> <span class="muted">#${s.id}</span></td>
  <td class="mono small">${esc(s.guid)}</td>
  <td>${conn == null ? '—' : conn ? '<span class="dot ok"></span>connected' : '<span class="dot bad"></span>disconnected'}</td>
  <td>${mapState}</td>
  <td class="num">${esc(fmtAgo(s.last_heartbeat_ms_ago))}</td>
  <td>${(s.volumes || []).map((n) => {
    const m = (st.mappings || []).find((x) => x.volume === n && x.sdc === s.name);
    return `<span class="chip">${esc(n)}${m && m.read_only ? ' <b class="ro">RO</b>' : ''}</span>`;
  }).join(' ') || '<span class="muted">none</span>'}</td></tr>`;
  });
  setHTML($('#sdcs-table'), sdcs.length ? `<table class="tbl" id="sdc-list"><thead><tr><th>SDC</th><th>GUID</th><th>Connection</th><th>Map</th><th class="num">Last heartbeat</th><th>Mapped volumes</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : '<p class="empty">No SDC has registered yet.</p>');
}

function renderMdms(st) {
  const mdms = st.mdms || [];
  const roleKind = {leader: 'ok', follower: 'muted', candidate: 'warn', spare: 'info'};
  setText($('#mdm-hint'), st.mdm || '');
  setHTML($('#mdms-table'), mdms.length ? `<table class="tbl" id="mdm-list"><thead><tr><th>MDM</th><th>Role</th><th>Raft address</th><th class="num">Term</th><th class="num">Commit index</th><th class="num">Applied index</th><th class="num">Lag</th></tr></thead><tbody>${
    mdms.map((m) => `<tr data-mdm="${m.id}"><td><b>#${m.id}</b>${m.self ? ' <span class="chip">serving this page</span>' : ''}</td>
  <td>${badge(m.role || 'unknown', roleKind[m.role] || 'muted')}</td><td class="mono">${esc(m.raft_addr)}</td>
  <td class="num">${m.term ?? '—'}</td><td class="num">${m.commit_index ?? '—'}</td><td class="num">${m.applied_index ?? '—'}</td>
  <td class="num">${m.commit_index != null && m.applied_index != null ? m.commit_index - m.applied_index : '—'}</td></tr>`).join('')
  }</tbody></table>` : `<p class="empty">${esc(st.mdm || 'No MDM listed.')}</p>`);
}

// ---------- navigation ----------

const VIEWS = ['overview', 'sds', 'volumes', 'snapshots', 'sdcs', 'mdms'];

function currentView() {
  const v = location.hash.replace(/^#/, '');
  return VIEWS.includes(v) ? v : 'overview';
}

function showView() {
  const v = currentView();
  for (const s of $$('.view')) s.hidden = s.dataset.view !== v;
  for (const a of $$('.tabs a')) a.classList.toggle('active', a.dataset.tab === v);
  for (const a of $$('.tabs a')) a.setAttribute('aria-current', a.dataset.tab === v ? 'page' : 'false');
  render();
  if (v === 'snapshots' && auth.role) pollNow(); // its list comes with the next poll

}

function init() {
  document.addEventListener('click', onClick);
  window.addEventListener('hashchange', showView);
  $('#form-create').addEventListener('submit', submitCreate);
  $('#form-grow').addEventListener('submit', submitGrow);
  $('#form-map').addEventListener('submit', submitMap);
  initSnapshots();
  $('#create-size').addEventListener('input', () => sizeHint($('#create-size'), $('#create-size-hint')));
  $('#grow-size').addEventListener('input', () => sizeHint($('#grow-size'), $('#grow-size-hint')));
  $('#volume-filter').addEventListener('input', (e) => { state.filter = e.target.value; render(); });
  window.addEventListener('resize', () => render());
  showView();
  auth.start(poll); // polling starts once signed in
}

init();
