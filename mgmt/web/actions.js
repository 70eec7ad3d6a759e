// Cairn dashboard: the actions (create, grow, map, unmap, remove a volume),
// each through its confirmation dialog, and the page's click handler (which
// hands the snapshot actions to snapshots.js).
// Loaded before app.js, which wires them up in init(); they call the API
// and the helpers of app.js when they run.
'use strict';

// ---------- actions ----------

// The confirmation step of every action: title, body (HTML), the button's
// label and style, the call to make; back, when set, returns to the form.
function confirmAction({title, body, ok = 'Confirm', danger = false, run, back = null, done}) {
  const dlg = $('#dlg-confirm');
  setText($('#confirm-title'), title);
  $('#confirm-body').innerHTML = body;
  const err = $('#confirm-error');
  err.hidden = true;
  err.textContent = '';
  const okb = $('#confirm-ok');
  okb.textContent = ok;
  okb.className = 'btn ' + (danger ? 'danger' : 'primary');
  okb.disabled = false;
  const bk = $('#confirm-back');
  bk.hidden = !back;
  bk.onclick = back ? () => { dlg.close(); back(); } : null;
  $('#form-confirm').onsubmit = async (e) => {
    e.preventDefault();
    okb.disabled = true;
    const label = okb.textContent;
    okb.textContent = 'Working…';
    try {
      await run();
      dlg.close();
      toast(done);
      pollNow();
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
      okb.textContent = label;
      okb.disabled = false;
    }
  };
  dlg.showModal();
  okb.focus();
}

function volumeByName(name) {
  return ((state.status && state.status.volumes) || []).find((v) => v.name === name);
}

function sizeHint(input, hint) {
  const n = parseSize(input.value);
  hint.textContent = input.value.trim() === '' ? 'bytes, or a number with K, M, G, T, P (powers of 1024)'
    : n != null ? `= ${fmtBytes(n)} (${n.toLocaleString('en-US')} bytes)` : 'the MDM will check this size';
}

function openCreate() {
  const f = $('#form-create');
  f.reset();
  const pools = (state.status && state.status.pools) || [];
  $('#create-pool').innerHTML = pools.map((p) => `<option value="${esc(p.name)}">${esc(p.name)} (${p.copies} copies, ${esc(fmtBytes(p.free))} free)</option>`).join('') ||
    '<option value="">(no pool)</option>';
  sizeHint($('#create-size'), $('#create-size-hint'));
  $('#dlg-create').showModal();
  $('#create-name').focus();
}

function submitCreate(e) {
  e.preventDefault();
  const name = $('#create-name').value.trim();
  const sizeText = $('#create-size').value.trim();
  const pool = $('#create-pool').value;
  const thick = $('#create-thick').checked;
  $('#dlg-create').close();
  const n = parseSize(sizeText);
  const body = {name, size: /^\d+$/.test(sizeText) ? Number(sizeText) : sizeText, thick};
  if (pool) body.pool = pool;
  confirmAction({
    title: 'Create volume',
    body: `<p>Create volume <b>${esc(name)}</b> of <b>${esc(n != null ? fmtBytes(n) : sizeText)}</b> in pool <b>${esc(pool || 'default')}</b>, ${thick ? '<b>thick</b> (its whole size is reserved now)' : 'thin'}?</p>`,
    ok: 'Create volume',
    back: () => $('#dlg-create').showModal(),
    run: () => api('POST', 'volumes', body),
    done: `Volume ${name} created`,
  });
}

function openGrow(name) {
  const v = volumeByName(name);
  if (!v) return;
  $('#form-grow').reset();
  $('#form-grow').dataset.volume = name;
  setText($('#grow-name'), name);
  setText($('#grow-current'), `${fmtBytes(v.size)} (${v.size.toLocaleString('en-US')} bytes)`);
  sizeHint($('#grow-size'), $('#grow-size-hint'));
  $('#dlg-grow').showModal();
  $('#grow-size').focus();
}

function submitGrow(e) {
  e.preventDefault();
  const name = $('#form-grow').dataset.volume;
  const v = volumeByName(name);
  const sizeText = $('#grow-size').value.trim();
  const n = parseSize(sizeText);
  $('#dlg-grow').close();
  confirmAction({
    title: 'Grow volume',
    body: `<p>Grow volume <b>${esc(name)}</b> from <b>${esc(v ? fmtBytes(v.size) : '?')}</b> to <b>${esc(n != null ? fmtBytes(n) : sizeText)}</b>?</p>` +
      '<p class="muted">A volume can grow but not shrink; the hosts that map it see the new size when they reconnect or re-read it.</p>',
    ok: 'Grow volume',
    back: () => $('#dlg-grow').showModal(),
    run: () => api('PATCH', 'volumes/' + encodeURIComponent(name), {size: /^\d+$/.test(sizeText) ? Number(sizeText) : sizeText}),
    done: `Volume ${name} grown`,
  });
}

function openMap(name) {
  const v = volumeByName(name);
  if (!v) return;
  $('#form-map').reset();
  $('#form-map').dataset.volume = name;
  setText($('#map-name'), name);
  const mapped = new Set((v.mapped_to || []).map((m) => m.sdc));
  const sdcs = ((state.status && state.status.sdcs) || []).filter((s) => !mapped.has(s.name));
  $('#map-sdc').innerHTML = sdcs.map((s) => `<option value="${esc(s.name)}">${esc(s.name)}${s.connected === false ? ' (disconnected)' : ''}</option>`).join('');
  $('#dlg-map').showModal();
}

function submitMap(e) {
  e.preventDefault();
  const volume = $('#form-map').dataset.volume;
  const sdc = $('#map-sdc').value;
  const ro = $('#map-ro').checked;
  $('#dlg-map').close();
  confirmAction({
    title: 'Map volume',
    body: `<p>Map volume <b>${esc(volume)}</b> to SDC <b>${esc(sdc)}</b> ${ro ? '<b>read-only</b>' : 'read-write'}?</p>` +
      `<p class="muted">The SDC then serves it as the NBD export <span class="mono">${esc(volume)}</span>.</p>`,
    ok: 'Map volume',
    back: () => $('#dlg-map').showModal(),
    run: () => api('POST', 'mappings', {volume, sdc, read_only: ro}),
    done: `Volume ${volume} mapped to ${sdc}`,
  });
}

function askUnmap(volume, sdc) {
  confirmAction({
    title: 'Unmap volume',
    body: `<p>Unmap volume <b>${esc(volume)}</b> from SDC <b>${esc(sdc)}</b>?</p><p class="muted">The host loses the export: anything using it gets I/O errors.</p>`,
    ok: 'Unmap',
    danger: true,
    run: () => api('DELETE', `mappings/${encodeURIComponent(volume)}/${encodeURIComponent(sdc)}`),
    done: `Volume ${volume} unmapped from ${sdc}`,
  });
}

function askRemove(name) {
  const v = volumeByName(name);
  confirmAction({
    title: 'Remove volume',
    body: `<p>Remove volume <b>${esc(name)}</b>${v ? ` (${esc(fmtBytes(v.size))}, pool ${esc(v.pool)})` : ''}?</p><p class="t-bad">Its data is lost. This cannot be undone.</p>`,
    ok: 'Remove volume',
    danger: true,
    run: () => api('DELETE', 'volumes/' + encodeURIComponent(name)),
    done: `Volume ${name} removed`,
  });
}

function onClick(e) {
  const closer = e.target.closest('[data-close]');
  if (closer) {
    closer.closest('dialog').close();
    return;
  }
  const b = e.target.closest('[data-action]');
  if (b) {
    const vol = b.dataset.volume;
    if (b.disabled || (auth.readOnly() && b.dataset.action !== 'select')) return;
    switch (b.dataset.action) {
      case 'create': openCreate(); break;
      case 'grow': openGrow(vol); break;
      case 'map': openMap(vol); break;
      case 'unmap': askUnmap(vol, b.dataset.sdc); break;
      case 'remove': askRemove(vol); break;
      case 'select': state.selected = vol; render(); break;
      default: snapshotAction(b); // snapshots.js
    }
    return;
  }
  const row = e.target.closest('tr.vol-row');
  if (row && !e.target.closest('button')) {
    state.selected = row.dataset.volume;
    render();
  }
}
