// Cairn dashboard: the Snapshots view (docs/snapshots.md) and its actions:
// take a snapshot of a volume, remove one, revert a volume to one, clone
// one into a new volume; and the clones (clone of which snapshot, flatten
// progress, Flatten), which also show on the volumes' rows. The snapshots come from GET api/v1/snapshots, asked
// with each status poll while this view is shown (app.js's poll()); the
// clones from the volumes of the status. Loaded before app.js, like
// actions.js; every rule and message is the API's.
'use strict';

const snaps = {
  list: null,   // the last GET snapshots, or null before the first
  error: null,  // why the last one failed, or null
};

// One poll's GET snapshots; its failure is shown in the view, not thrown.
async function pollSnapshots() {
  try {
    snaps.list = await api('GET', 'snapshots');
    snaps.error = null;
  } catch (e) {
    snaps.error = e;
  }
}

// VOL@NAME in a URL path: each part encoded, the '@' as it is.
const snapPath = (vol, name) => 'snapshots/' + encodeURIComponent(vol) + '@' + encodeURIComponent(name);

const fmtCreated = (iso) => {
  const d = new Date(iso);
  return isNaN(d) ? String(iso || '—') : d.toLocaleString();
};

// What a volume's row says of its snapshots and of the snapshot it is a
// clone of (only volumes with snapshots, or clones, have these fields).
function lineageNote(v) {
  const parts = [];
  if (v.clone_of) {
    parts.push(`<span class="clone-of" data-clone-of="${esc(v.clone_of)}">clone of <b>${esc(v.clone_of)}</b></span>`);
  }
  if (v.flattening) {
    const p = Math.round(100 * (+v.flatten_progress || 0));
    parts.push(`<span class="flatten" data-progress="${p}">flattening ${p}%</span>`);
  }
  if (v.snapshots > 0) {
    parts.push(`<a href="#snapshots" class="snap-count" data-snapshots="${v.snapshots}">${v.snapshots} snapshot${v.snapshots === 1 ? '' : 's'}</a>`);
  }
  return parts.length ? `<div class="lineage small muted">${parts.join(' · ')}</div>` : '';
}

function renderSnapshots(st) {
  const create = $('#btn-snap-create');
  const vols = st.volumes || [];
  create.disabled = auth.readOnly() || !vols.length;
  create.title = auth.readOnly() ? 'read-only: signed in with a monitor token' : vols.length ? '' : 'no volume to take a snapshot of';
  const list = snaps.list;
  const err = snaps.error ? `<p class="dlg-error" role="alert">${esc(snaps.error.message)}` +
    `${list ? ' — showing the last list, retrying' : ', retrying'}</p>` : '';
  if (!list) {
    setText($('#snapshots-hint'), '');
    setHTML($('#snapshots-table'), err || '<p class="empty">Loading the snapshots…</p>');
  } else {
    const byVol = new Map(vols.map((v) => [v.name, v]));
    const own = list.reduce((a, s) => a + (s.own || 0), 0);
    setText($('#snapshots-hint'), `${list.length} snapshot${list.length === 1 ? '' : 's'} · ${fmtBytes(own)} of their own`);
    const rows = list.map((s) => {
      const full = `${s.volume}@${s.name}`;
      const v = byVol.get(s.volume);
      const maps = (s.mapped_to || []).map((c) => `<span class="chip">${esc(c)} <b class="ro">RO</b></span>`).join(' ');
      const attrs = `data-volume="${esc(s.volume)}" data-snapshot="${esc(s.name)}"`;
      return `<tr class="snap-row" data-snap="${esc(full)}" data-size="${s.size}" data-written="${s.written}" data-own="${s.own}" data-created="${esc(s.created)}">
  <td><b class="mono">${esc(full)}</b> <span class="muted">#${s.id}</span>${s.group ? ` <span class="chip" title="taken in one cut with the group's other snapshots">group ${esc(s.group)}</span>` : ''}</td>
  <td class="num snap-size">${esc(fmtBytes(s.size))}</td>
  <td class="num snap-written">${esc(fmtBytes(s.written))}</td>
  <td class="num snap-own" title="what removing it frees (one copy's bytes)">${esc(fmtBytes(s.own))}</td>
  <td class="nowrap" title="${esc(s.created)}">${esc(fmtCreated(s.created))}</td>
  <td class="maps">${maps || '<span class="muted">not mapped</span>'}</td>
  <td class="actions">
    <button type="button" class="btn small" data-action="snap-clone" ${attrs}${roAttr()}>Clone</button>
    <button type="button" class="btn small danger" data-action="snap-revert" ${attrs}${v ? roAttr() : ' disabled'}>Revert volume</button>
    <button type="button" class="btn small danger" data-action="snap-remove" ${attrs}${roAttr()}>Remove</button>
  </td>
</tr>`;
    });
    setHTML($('#snapshots-table'), err + (list.length ? `<table class="tbl" id="snapshot-list"><thead><tr>
  <th>Snapshot</th><th class="num">Size</th><th class="num" title="the data of its own layer (one copy's)">Written</th>
  <th class="num" title="what removing it frees (one copy's bytes)">Own</th><th>Created</th><th>Mapped to</th><th class="actions">Actions</th>
</tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<p class="empty">No snapshot yet. Take one with the button above.</p>'));
  }
  const clones = vols.filter((v) => v.clone_of || v.flattening);
  setHTML($('#clones-table'), clones.length ? `<table class="tbl" id="clone-list"><thead><tr>
  <th>Volume</th><th>Clone of</th><th>Flatten</th><th class="actions">Actions</th></tr></thead><tbody>${clones.map((v) => {
    const p = +v.flatten_progress || 0;
    return `<tr class="clone-row" data-volume="${esc(v.name)}" data-clone-of="${esc(v.clone_of)}" data-flattening="${v.flattening ? 1 : 0}" data-progress="${p}">
  <td><b>${esc(v.name)}</b></td><td class="mono">${esc(v.clone_of || '—')}</td>
  <td>${v.flattening ? `<div class="fill">${bar(p, 'running')}<span class="flatten-pct">${esc((100 * p).toFixed(0))}%</span></div>`
    : '<span class="muted">not flattening: it shares the snapshot\'s data</span>'}</td>
  <td class="actions"><button type="button" class="btn small" data-action="snap-flatten" data-volume="${esc(v.name)}"${v.flattening ? ' disabled title="flattening"' : roAttr()}>Flatten</button></td></tr>`;
  }).join('')}</tbody></table>`
    : '<p class="empty">No volume is a clone: Clone on a snapshot\'s row makes one.</p>');
}

function openSnapCreate(volume) {
  const f = $('#form-snap');
  f.reset();
  const vols = (state.status && state.status.volumes) || [];
  $('#snap-volume').innerHTML = vols.map((v) => `<option value="${esc(v.name)}">${esc(v.name)} (${esc(fmtBytes(v.size))})</option>`).join('');
  if (volume) $('#snap-volume').value = volume;
  $('#dlg-snap').showModal();
  $('#snap-name').focus();
}

function submitSnapCreate(e) {
  e.preventDefault();
  const volume = $('#snap-volume').value;
  const name = $('#snap-name').value.trim();
  $('#dlg-snap').close();
  const v = volumeByName(volume);
  confirmAction({
    title: 'Take snapshot',
    body: `<p>Take snapshot <b>${esc(name)}</b> of volume <b>${esc(volume)}</b>${v ? ` (${esc(fmtBytes(v.size))})` : ''}?</p>` +
      '<p class="muted">Crash-consistent: it holds every write acknowledged before it. No data moves; writes pause for a moment during the cut.</p>',
    ok: 'Take snapshot',
    back: () => $('#dlg-snap').showModal(),
    run: () => api('POST', 'snapshots', {volume, name}),
    done: `Snapshot ${volume}@${name} taken`,
  });
}

function snapByName(volume, name) {
  return (snaps.list || []).find((s) => s.volume === volume && s.name === name);
}

function askSnapRemove(volume, name) {
  const s = snapByName(volume, name);
  confirmAction({
    title: 'Remove snapshot',
    body: `<p>Remove snapshot <b>${esc(volume)}@${esc(name)}</b>${s ? ` (${esc(fmtBytes(s.own))} of its own)` : ''}?</p>` +
      '<p class="muted">The volume keeps its data; what only this snapshot holds is freed as the SDSs merge it.</p>' +
      '<p class="t-bad">This cannot be undone.</p>',
    ok: 'Remove snapshot',
    danger: true,
    run: () => api('DELETE', snapPath(volume, name)),
    done: `Snapshot ${volume}@${name} removed`,
  });
}

function askSnapRevert(volume, name) {
  const v = volumeByName(volume);
  const rw = ((v && v.mapped_to) || []).filter((m) => !m.read_only).map((m) => m.sdc);
  confirmAction({
    title: 'Revert volume',
    body: `<p>Revert volume <b>${esc(volume)}</b> to snapshot <b>${esc(name)}</b>?</p>` +
      `<p class="t-bad">Everything written to ${esc(volume)} since ${esc(name)} was taken is lost.</p>` +
      '<p class="muted">The snapshot and the newer ones stay; the volume keeps its size.</p>' +
      (rw.length ? `<p class="t-warn">${esc(volume)} is mapped read-write to ${esc(rw.join(', '))}: the MDM refuses a revert until it is unmapped or mapped read-only.</p>` : ''),
    ok: 'Revert volume',
    danger: true,
    run: () => api('POST', `volumes/${encodeURIComponent(volume)}/revert`, {to: name}),
    done: `Volume ${volume} reverted to ${name}`,
  });
}

function openClone(volume, name) {
  $('#form-clone').reset();
  $('#form-clone').dataset.volume = volume;
  $('#form-clone').dataset.snapshot = name;
  setText($('#clone-snap'), `${volume}@${name}`);
  $('#dlg-clone').showModal();
  $('#clone-name').focus();
}

function submitClone(e) {
  e.preventDefault();
  const {volume, snapshot} = $('#form-clone').dataset;
  const name = $('#clone-name').value.trim();
  const s = snapByName(volume, snapshot);
  $('#dlg-clone').close();
  confirmAction({
    title: 'Clone snapshot',
    body: `<p>Clone snapshot <b>${esc(volume)}@${esc(snapshot)}</b> into a new volume <b>${esc(name)}</b>${s ? ` of ${esc(fmtBytes(s.size))}` : ''}?</p>` +
      `<p class="muted">It shares the snapshot's data until it is flattened: until then the snapshot cannot be removed.</p>`,
    ok: 'Clone',
    back: () => $('#dlg-clone').showModal(),
    run: () => api('POST', snapPath(volume, snapshot) + '/clone', {name}),
    done: `Volume ${name} cloned from ${volume}@${snapshot}`,
  });
}

function askFlatten(name) {
  const v = volumeByName(name);
  confirmAction({
    title: 'Flatten volume',
    body: `<p>Flatten volume <b>${esc(name)}</b>${v && v.clone_of ? `, a clone of <b>${esc(v.clone_of)}</b>` : ''}?</p>` +
      '<p class="muted">The SDSs copy into it what it still shares with the snapshot, in the background (64 MiB/s per SDS); the progress shows here. Then the snapshot can be removed.</p>',
    ok: 'Flatten',
    run: () => api('POST', `volumes/${encodeURIComponent(name)}/flatten`, {}),
    done: `Volume ${name} flattening`,
  });
}

// The actions of this view, for actions.js's onClick: true if b was one.
function snapshotAction(b) {
  const {volume, snapshot} = b.dataset;
  switch (b.dataset.action) {
    case 'snap-create': openSnapCreate(volume); return true;
    case 'snap-remove': askSnapRemove(volume, snapshot); return true;
    case 'snap-revert': askSnapRevert(volume, snapshot); return true;
    case 'snap-clone': openClone(volume, snapshot); return true;
    case 'snap-flatten': askFlatten(volume); return true;
  }
  return false;
}

function initSnapshots() {
  $('#form-snap').addEventListener('submit', submitSnapCreate);
  $('#form-clone').addEventListener('submit', submitClone);
}
