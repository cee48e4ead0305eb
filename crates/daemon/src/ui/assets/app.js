// oj web UI: live updates from /v1/events (EventSource), the live log of a
// job, the sign-in form and the action buttons. The page is drawn by the
// daemon; this script only changes text and attributes, always through
// textContent / dataset / hidden, never through markup.
'use strict';
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const LOG_MAX = 256 * 1024; // characters of log kept on the page
  const ROWS_MAX = 1000;

  function notice(message, bad) {
    const n = $('#notice');
    if (!n) return;
    n.textContent = message;
    n.dataset.kind = bad ? 'error' : 'ok';
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      return body.error || (resp.status + ' ' + resp.statusText);
    } catch (e) {
      return resp.status + ' ' + resp.statusText;
    }
  }

  function when(value) {
    if (!value) return '';
    const s = String(value).replace('T', ' ');
    const i = s.search(/[.Z+]/);
    return i >= 19 ? s.slice(0, i) : s;
  }

  function waitingText(job) {
    const w = job.waiting;
    if (!w) return '';
    return w.detail ? w.reason + ': ' + w.detail : (w.reason || '');
  }

  function text(v) {
    return v === null || v === undefined ? '' : String(v);
  }

  function setField(root, field, value) {
    $$('[data-f="' + field + '"]', root).forEach((el) => {
      el.textContent = value;
      if (field === 'state') el.dataset.state = value;
    });
  }

  function byId(id) {
    return $$('[data-id]').filter((el) => el.dataset.id === id);
  }

  // ---- jobs -------------------------------------------------------------

  function globMatch(glob, name) {
    const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return new RegExp('^' + re + '$').test(name);
  }

  function matchesFilters(table, job) {
    const f = table.dataset;
    if (f.filterStatus && job.state !== f.filterStatus) return false;
    if (f.filterQueue && (job.queue || 'default') !== f.filterQueue) return false;
    if (f.filterName && !globMatch(f.filterName, job.name || '')) return false;
    if (f.filterLabel) {
      const labels = job.labels || {};
      for (const kv of f.filterLabel.split(',')) {
        const i = kv.indexOf('=');
        if (i < 0 || labels[kv.slice(0, i)] !== kv.slice(i + 1)) return false;
      }
    }
    return true;
  }

  function labelsInto(cell, labels) {
    cell.replaceChildren();
    Object.keys(labels || {}).forEach((k) => {
      const span = document.createElement('span');
      span.className = 'label';
      span.textContent = k + '=' + labels[k];
      cell.append(span, ' ');
    });
  }

  function newRow(job) {
    const tr = document.createElement('tr');
    tr.dataset.id = job.id;
    const cell = (field) => {
      const td = document.createElement('td');
      if (field) td.dataset.f = field;
      tr.append(td);
      return td;
    };
    const a = document.createElement('a');
    a.href = '/ui/jobs/' + encodeURIComponent(job.id);
    const code = document.createElement('code');
    code.textContent = job.id;
    a.append(code);
    cell().append(a);
    cell('name').textContent = text(job.name);
    const st = cell();
    const badge = document.createElement('span');
    badge.className = 'state';
    badge.dataset.f = 'state';
    const small = document.createElement('small');
    small.className = 'waiting';
    small.dataset.f = 'waiting';
    st.append(badge, ' ', small);
    cell('queue').textContent = text(job.queue);
    labelsInto(cell('labels'), job.labels);
    cell('created_at').textContent = when(job.created_at);
    return tr;
  }

  function applyJob(job) {
    if (!job || !job.id) return;
    const table = $('#jobs');
    if (table && table.dataset.live === '1' && byId(job.id).length === 0 && matchesFilters(table, job)) {
      const body = $('tbody', table);
      body.prepend(newRow(job));
      while (body.rows.length > ROWS_MAX) body.deleteRow(-1);
      const none = $('#no-jobs');
      if (none) none.remove();
    }
    byId(job.id).forEach((root) => {
      setField(root, 'state', text(job.state));
      setField(root, 'waiting', waitingText(job));
      if (root.id !== 'job') return;
      // The job page.
      root.dataset.state = job.state;
      setField(root, 'error', text(job.error));
      setField(root, 'started_at', when(job.started_at));
      setField(root, 'ended_at', when(job.ended_at));
      $('#waiting-box').hidden = !job.waiting;
      $('#error-box').hidden = !job.error;
      const ended = job.state !== 'queued' && job.state !== 'running';
      const cancel = $('[data-action-box="cancel"]');
      if (cancel) cancel.hidden = ended;
      const release = $('[data-action-box="release"]');
      if (release) release.hidden = !(job.hold && job.state === 'queued');
      (job.steps || []).forEach((step, i) => {
        const row = $('#steps tr[data-step="' + i + '"]');
        if (!row) return;
        setField(row, 'state', text(step.state));
        setField(row, 'exit_code', text(step.exit_code));
      });
    });
  }

  // ---- queues and schedules ----------------------------------------------

  function applyPaused(root, paused, disabled) {
    const pause = $('[data-action-box="pause"]', root);
    const resume = $('[data-action-box="resume"]', root);
    if (pause) pause.hidden = paused;
    if (resume) resume.hidden = !paused;
    const label = disabled ? 'disabled' : paused ? 'paused' : ($('#queues') ? 'no' : 'active');
    setField(root, 'paused', label);
  }

  function applyQueue(q) {
    if (!q || !q.name) return;
    byId(q.name).forEach((row) => {
      ['max_concurrent', 'running', 'queued'].forEach((f) => setField(row, f, text(q[f])));
      applyPaused(row, !!q.paused, false);
    });
  }

  function applySchedule(s) {
    if (!s || !s.name) return;
    byId(s.name).forEach((row) => {
      setField(row, 'next_fire', when(s.next_fire));
      setField(row, 'last_fire', when(s.last_fire));
      const cell = $('[data-f="last_job"]', row);
      if (cell && s.last_job) {
        const a = document.createElement('a');
        a.href = '/ui/jobs/' + encodeURIComponent(s.last_job);
        const code = document.createElement('code');
        code.textContent = s.last_job;
        a.append(code);
        cell.replaceChildren(a);
      }
      applyPaused(row, !!s.paused, s.enabled === false);
    });
  }

  function applyStatus(st) {
    if (!st) return;
    const set = (id, v) => { const el = $(id); if (el && v !== undefined) el.textContent = text(v); };
    set('#h-version', st.version);
    set('#h-profile', st.profile);
    set('#h-instance', st.instance);
    if (st.leader !== undefined) set('#h-role', st.leader ? 'leader' : 'standby');
    const box = $('#h-draining-box');
    if (box && st.draining !== undefined) box.hidden = !st.draining;
  }

  // ---- live updates ----------------------------------------------------------

  function live() {
    const page = document.body.dataset.page;
    const indicator = $('#live');
    if (!window.EventSource || page === 'login' || page === 'missing' || !indicator) return;
    const article = $('#job');
    const url = article ? '/v1/events?job=' + encodeURIComponent(article.dataset.id) : '/v1/events';
    const es = new EventSource(url);
    let heard = false; // a reset before anything was heard: the page is fresh already
    const show = (state, label) => { indicator.dataset.state = state; indicator.textContent = label; };
    es.onopen = () => show('on', 'live');
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) show('off', 'offline');
      else show('wait', 'reconnecting');
    };
    const on = (name, apply) => es.addEventListener(name, (ev) => {
      heard = true;
      try { apply(JSON.parse(ev.data)); } catch (e) { /* not for this page */ }
    });
    on('job', applyJob);
    on('queue', applyQueue);
    on('schedule', applySchedule);
    on('status', applyStatus);
    es.addEventListener('reset', () => {
      if (!heard) { heard = true; return; }
      es.close();
      location.reload(); // too far behind: list afresh
    });
  }

  // ---- the log of a job ------------------------------------------------------

  async function followLog() {
    const pre = $('#log');
    if (!pre) return;
    let resp;
    try {
      resp = await fetch(pre.dataset.src, { credentials: 'same-origin' });
    } catch (e) {
      pre.dataset.state = 'error';
      pre.textContent = 'Cannot read the log: ' + e;
      return;
    }
    if (!resp.ok || !resp.body) {
      pre.dataset.state = 'error';
      pre.textContent = await errorText(resp);
      return;
    }
    pre.dataset.state = 'following';
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let kept = 0;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        pre.dataset.state = 'error';
        notice('The log stream broke off: ' + e, true);
        return;
      }
      if (chunk.done) break;
      const piece = decoder.decode(chunk.value, { stream: true });
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.append(document.createTextNode(piece));
      kept += piece.length;
      if (kept > LOG_MAX) {
        const all = pre.textContent;
        pre.textContent = all.slice(all.length - Math.floor(LOG_MAX / 2));
        kept = pre.textContent.length;
      }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    pre.dataset.state = 'ended';
  }

  // ---- sign in, sign out, actions -----------------------------------------

  function signIn() {
    const form = $('#login');
    if (!form) return;
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const out = $('#login-error');
      out.textContent = '';
      const token = $('#token').value.trim();
      let resp;
      try {
        resp = await fetch('/v1/session', {
          method: 'POST',
          headers: { Authorization: 'Bearer ' + token },
          credentials: 'same-origin',
        });
      } catch (e) {
        out.textContent = 'Cannot reach the daemon: ' + e;
        return;
      }
      if (resp.ok) location.reload();
      else out.textContent = resp.status === 401 ? 'That token is not valid for this daemon.' : await errorText(resp);
    });
  }

  function signOut() {
    const b = $('#signout');
    if (!b) return;
    b.addEventListener('click', async () => {
      await fetch('/v1/session', { method: 'DELETE', credentials: 'same-origin' });
      location.assign('/ui/');
    });
  }

  function actions() {
    document.addEventListener('click', async (ev) => {
      const b = ev.target.closest('button[data-path]');
      if (!b) return;
      b.disabled = true;
      try {
        const resp = await fetch(b.dataset.path, {
          method: b.dataset.method,
          headers: { 'Content-Type': 'application/json' },
          body: '{}',
          credentials: 'same-origin',
        });
        if (!resp.ok) {
          notice(b.textContent + ' failed: ' + await errorText(resp), true);
          return;
        }
        let body = null;
        try { body = await resp.json(); } catch (e) { body = null; }
        notice(b.textContent + ': done.');
        const path = b.dataset.path;
        if (body && body.id && (path.endsWith('/rerun') || path.endsWith('/run'))) {
          location.assign('/ui/jobs/' + encodeURIComponent(body.id));
        } else if (body && body.id && body.state) {
          applyJob(body);
        } else if (/\/(pause|resume)$/.test(path)) {
          const row = b.closest('[data-id]');
          if (row) applyPaused(row, path.endsWith('/pause'), false);
        }
      } catch (e) {
        notice(b.textContent + ' failed: ' + e, true);
      } finally {
        b.disabled = false;
      }
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    signIn();
    signOut();
    actions();
    live();
    followLog();
  });
})();
