// Cairn dashboard: signing in. Every call of the REST API needs a bearer
// token of the MDM's --http-tokens file (this page's own files do not, and
// hold no cluster data). The page asks for a token, keeps it in
// sessionStorage (this tab only; gone when the tab closes) and app.js's
// api() sends it with every call. A monitor token may only read: the page
// then disables every control that would change the cluster (the API
// refuses such calls anyway, with 403). A 401 at any time (the file was
// changed, the MDM restarted with other tokens) signs the page out.
'use strict';

const auth = {
  KEY: 'cairn-token',
  NOTE: 'cairn-signin-note', // a message for the form, across the reload of a sign-out
  role: null,                // 'admin' or 'monitor' once signed in
  ready: null,               // starts the page once signed in

  token() { return sessionStorage.getItem(this.KEY); },
  readOnly() { return this.role !== 'admin'; },
  headers() {
    const t = this.token();
    return t ? {Authorization: 'Bearer ' + t} : {};
  },

  // The role of token (GET api/v1/whoami), or an Error with the API's
  // message and .status (401: not a token of this MDM).
  async whoami(token) {
    let r;
    try {
      r = await fetch('api/v1/whoami', {cache: 'no-store', headers: {Authorization: 'Bearer ' + token}});
    } catch (e) {
      throw new Error('the MDM does not answer (' + e.message + ')');
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok || !data || !data.role) {
      const err = new Error(data && data.error ? data.error : `the MDM answered ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return data.role;
  },

  // With this tab's token if the MDM still takes it, else the form.
  async start(ready) {
    this.ready = ready;
    document.getElementById('form-signin').addEventListener('submit', (e) => this.submit(e));
    document.getElementById('signout').addEventListener('click', (e) => {
      e.preventDefault();
      this.signOut('Signed out.');
    });
    const note = sessionStorage.getItem(this.NOTE);
    sessionStorage.removeItem(this.NOTE);
    const t = this.token();
    if (!t) {
      this.showForm(note, false);
      return;
    }
    try {
      this.enter(await this.whoami(t));
    } catch (e) {
      if (e.status === 401) this.signOut('The MDM no longer accepts this token (401 Unauthorized): sign in again.');
      else this.showForm(e.message, true);
    }
  },

  showForm(msg, isError) {
    document.body.classList.remove('signed-in');
    document.getElementById('signin').hidden = false;
    const m = document.getElementById('signin-error');
    m.textContent = msg || '';
    m.hidden = !msg;
    m.classList.toggle('note', !isError);
    const input = document.getElementById('signin-token');
    if (isError && this.token()) input.value = this.token(); // retry with it
    input.focus();
  },

  async submit(e) {
    e.preventDefault();
    const input = document.getElementById('signin-token');
    const button = document.getElementById('signin-submit');
    const token = input.value.trim();
    if (!token) {
      this.showForm('Paste a token: a line of the MDM\'s --http-tokens file, without "admin" or "monitor".', true);
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      const role = await this.whoami(token);
      sessionStorage.setItem(this.KEY, token);
      input.value = '';
      this.enter(role);
    } catch (ex) {
      sessionStorage.removeItem(this.KEY);
      this.showForm(ex.status === 401
        ? 'The MDM does not accept this token (401 Unauthorized). Use a token of its --http-tokens file.'
        : ex.message, true);
    } finally {
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  },

  enter(role) {
    this.role = role;
    document.getElementById('signin').hidden = true;
    document.body.classList.add('signed-in');
    document.body.classList.toggle('read-only', this.readOnly());
    document.getElementById('who-role').textContent = this.readOnly() ? 'monitor · read-only' : 'admin';
    const create = document.getElementById('btn-create');
    create.disabled = this.readOnly();
    create.title = this.readOnly() ? 'read-only: signed in with a monitor token' : '';
    const ready = this.ready;
    this.ready = null;
    if (ready) ready();
  },

  // Forget the token and reload: nothing of the cluster stays on the page.
  signOut(note) {
    sessionStorage.removeItem(this.KEY);
    if (note) sessionStorage.setItem(this.NOTE, note);
    location.reload();
  },

  // A call was answered 401.
  refused() {
    if (this.role) this.signOut('The MDM refused the token (401 Unauthorized): sign in again.');
  },
};
