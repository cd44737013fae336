// The chassis console: a small app over the public API (`/v1`), with no dependencies.
//
// The token comes in the login URL's fragment (`/#token=…`, or `?token=` from older servers),
// moves to sessionStorage, and leaves the address bar at once. It is sent only as
// `Authorization: Bearer`: streams are read with fetch, never EventSource, so it is never in a
// URL a server or proxy could log. Every view draws from the API alone; the server enforces
// roles, the console only hides what a role may not do.
'use strict';

const TOKEN_KEY = 'chassis.token';
const ROLES = ['viewer', 'operator', 'approver', 'admin'];
const TERMINAL = new Set(['run_completed', 'run_failed', 'run_cancelled']);
const PAGE = 50;

const state = { token: null, me: null, view: null };

// ---------------------------------------------------------------- login

function takeToken() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
  const query = new URLSearchParams(location.search);
  const token = fragment.get('token') || query.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    query.delete('token');
    const rest = query.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + '#/runs');
  }
  state.token = sessionStorage.getItem(TOKEN_KEY);
}

function can(role) {
  return !!state.me && ROLES.indexOf(state.me.role) >= ROLES.indexOf(role);
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body, signal) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
  });
  const text = await response.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch { value = { detail: text }; }
  if (response.status === 401) {
    signOut('The token was refused (revoked, or never made). Paste a live one.');
    throw new ApiError(401, value);
  }
  if (!response.ok) throw new ApiError(response.status, value);
  return value;
}

const get = (path, signal) => api('GET', path, undefined, signal);
const post = (path, body) => api('POST', path, body);
const enc = encodeURIComponent;

// Follows a run's stream from `after`, reconnecting with Last-Event-ID, until its terminal
// event or `signal` aborts. `onEvent(record)` for journaled events, `onDelta(delta)` for live
// pieces of a model answer.
async function follow(runId, after, signal, onEvent, onDelta) {
  let last = after;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(`/v1/runs/${enc(runId)}/stream`, {
        headers: {
          Authorization: `Bearer ${state.token}`,
          Accept: 'text/event-stream',
          'Last-Event-ID': String(last),
        },
        signal,
        cache: 'no-store',
      });
      if (response.status === 401 || response.status === 404) return;
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      delay = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = 'message';
          let id = null;
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') kind = text;
            else if (field === 'id') id = text;
            else if (field === 'data') data.push(text);
          }
          if (!data.length) continue;
          let payload;
          try { payload = JSON.parse(data.join('\n')); } catch { continue; }
          if (kind === 'event') {
            if (id !== null) last = Number(id);
            onEvent(payload);
            if (TERMINAL.has(payload.kind)) return;
          } else if (kind === 'delta') {
            onDelta(payload);
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- DOM and formats

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (key === 'style') Object.assign(el.style, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

function when(ms) {
  if (ms === null || ms === undefined) return '';
  return timeFormat.format(new Date(Number(ms)));
}

function timeEl(ms, text) {
  if (ms === null || ms === undefined) return '';
  return h('time', { datetime: new Date(Number(ms)).toISOString(), title: `${when(ms)} (${zone})` },
    text === undefined ? when(ms) : text);
}

function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  ms = Math.max(0, Number(ms));
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  const part = (n, unit) => (n ? ` ${n} ${unit}` : '');
  if (m < 60) return `${m} min${part(Math.floor(s % 60), 's')}`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h${part(m % 60, 'min')}`;
  return `${Math.floor(hours / 24)} d${part(hours % 24, 'h')}`;
}

function age(ms) {
  return `${duration(Date.now() - Number(ms))} ago`;
}

function money(usd) {
  if (usd === null || usd === undefined) return '–';
  if (usd === 0) return '$0';
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

const percent = (rate) => `${(100 * (rate || 0)).toFixed(0)}%`;
const number = (n) => Number(n || 0).toLocaleString();

function versionText(run) {
  const short = (run.version || '').slice(0, 8);
  return run.version_label ? `${run.version_label} (${short})` : short;
}

function pretty(value) {
  if (typeof value === 'string') {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

function codeBlock(value, label) {
  return h('pre', { class: 'code', 'aria-label': label || null, tabindex: '0' }, pretty(value));
}

function badge(status) {
  return h('span', { class: `badge s-${status}` }, status);
}

let toastTimer = null;
function toast(message, bad) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = bad ? 'show bad' : 'show';
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = ''; }, 4000);
}

function problemText(e) {
  if (e instanceof ApiError) {
    const field = e.problem.field ? ` (${e.problem.field})` : '';
    return `${e.status}: ${e.message}${field}`;
  }
  return String(e && e.message ? e.message : e);
}

// Runs `task` every `ms` while the page is visible, never two at once; returns a stop function.
function every(ms, task) {
  let stopped = false;
  let running = false;
  const tick = async () => {
    if (stopped || running || document.hidden) return;
    running = true;
    try { await task(); } catch (e) { /* shown by the task */ } finally { running = false; }
  };
  const timer = setInterval(tick, ms);
  return () => { stopped = true; clearInterval(timer); };
}

// ---------------------------------------------------------------- JSON Schema (a subset)

// Checks `value` against `schema` (the keywords tool schemas use: types, enum, const, numbers'
// and strings' bounds, pattern, items, required, properties, additionalProperties, the
// combinators and local $refs). Returns [{path, message}], empty when valid. The server checks
// again; this only spares a round trip.
function validate(schema, value, root = schema, path = '') {
  const errors = [];
  const at = path || '/';
  if (schema === true || schema === undefined || schema === null) return errors;
  if (schema === false) return [{ path: at, message: 'no value is allowed here' }];
  if (schema.$ref && schema.$ref.startsWith('#')) {
    const target = schema.$ref.slice(1).split('/').filter(Boolean)
      .reduce((node, part) => (node ? node[part.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), root);
    errors.push(...validate(target, value, root, path));
  }
  const actual = typeOf(value);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const fits = types.some((t) => t === actual || (t === 'number' && actual === 'integer'));
    if (!fits) return [...errors, { path: at, message: `must be ${types.map(article).join(' or ')}, not ${article(actual)}` }];
  }
  if (schema.enum && !schema.enum.some((v) => same(v, value))) {
    errors.push({ path: at, message: `must be one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}` });
  }
  if ('const' in schema && !same(schema.const, value)) {
    errors.push({ path: at, message: `must be ${JSON.stringify(schema.const)}` });
  }
  if (actual === 'number' || actual === 'integer') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) errors.push({ path: at, message: `must be ≥ ${schema.minimum}` });
    if (typeof schema.maximum === 'number' && value > schema.maximum) errors.push({ path: at, message: `must be ≤ ${schema.maximum}` });
    if (typeof schema.exclusiveMinimum === 'number' && value <= schema.exclusiveMinimum) errors.push({ path: at, message: `must be > ${schema.exclusiveMinimum}` });
    if (typeof schema.exclusiveMaximum === 'number' && value >= schema.exclusiveMaximum) errors.push({ path: at, message: `must be < ${schema.exclusiveMaximum}` });
    if (typeof schema.multipleOf === 'number' && Math.abs(value / schema.multipleOf - Math.round(value / schema.multipleOf)) > 1e-9) {
      errors.push({ path: at, message: `must be a multiple of ${schema.multipleOf}` });
    }
  }
  if (actual === 'string') {
    const length = [...value].length;
    if (typeof schema.minLength === 'number' && length < schema.minLength) errors.push({ path: at, message: `must be at least ${schema.minLength} characters` });
    if (typeof schema.maxLength === 'number' && length > schema.maxLength) errors.push({ path: at, message: `must be at most ${schema.maxLength} characters` });
    if (typeof schema.pattern === 'string') {
      let re = null;
      try { re = new RegExp(schema.pattern, 'u'); } catch { /* the server judges */ }
      if (re && !re.test(value)) errors.push({ path: at, message: `must match ${schema.pattern}` });
    }
  }
  if (actual === 'array') {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) errors.push({ path: at, message: `must have at least ${schema.minItems} item(s)` });
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) errors.push({ path: at, message: `must have at most ${schema.maxItems} item(s)` });
    if (schema.uniqueItems && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) errors.push({ path: at, message: 'items must be unique' });
    const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : Array.isArray(schema.items) ? schema.items : [];
    value.forEach((item, i) => {
      const sub = i < prefix.length ? prefix[i] : Array.isArray(schema.items) ? schema.additionalItems : schema.items;
      if (sub !== undefined) errors.push(...validate(sub, item, root, `${path}/${i}`));
    });
  }
  if (actual === 'object') {
    for (const name of schema.required || []) {
      if (!(name in value)) errors.push({ path: `${path}/${name}`, message: 'is required' });
    }
    const properties = schema.properties || {};
    const patterns = Object.entries(schema.patternProperties || {});
    for (const [name, item] of Object.entries(value)) {
      const where = `${path}/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      let known = false;
      if (name in properties) { known = true; errors.push(...validate(properties[name], item, root, where)); }
      for (const [pattern, sub] of patterns) {
        let re = null;
        try { re = new RegExp(pattern, 'u'); } catch { /* ignore */ }
        if (re && re.test(name)) { known = true; errors.push(...validate(sub, item, root, where)); }
      }
      if (!known && schema.additionalProperties !== undefined) {
        if (schema.additionalProperties === false) errors.push({ path: where, message: 'is not an argument of this tool' });
        else errors.push(...validate(schema.additionalProperties, item, root, where));
      }
    }
    const count = Object.keys(value).length;
    if (typeof schema.minProperties === 'number' && count < schema.minProperties) errors.push({ path: at, message: `must have at least ${schema.minProperties} field(s)` });
    if (typeof schema.maxProperties === 'number' && count > schema.maxProperties) errors.push({ path: at, message: `must have at most ${schema.maxProperties} field(s)` });
  }
  for (const sub of schema.allOf || []) errors.push(...validate(sub, value, root, path));
  if (schema.anyOf && !schema.anyOf.some((sub) => validate(sub, value, root, path).length === 0)) {
    errors.push({ path: at, message: 'matches none of the allowed forms (anyOf)' });
  }
  if (schema.oneOf) {
    const fits = schema.oneOf.filter((sub) => validate(sub, value, root, path).length === 0).length;
    if (fits !== 1) errors.push({ path: at, message: `must match exactly one allowed form (oneOf), matches ${fits}` });
  }
  if (schema.not && validate(schema.not, value, root, path).length === 0) errors.push({ path: at, message: 'matches a form that is not allowed' });
  if (schema.if !== undefined) {
    const branch = validate(schema.if, value, root, path).length === 0 ? schema.then : schema.else;
    if (branch !== undefined) errors.push(...validate(branch, value, root, path));
  }
  return errors;
}

function typeOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function article(type) {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function same(a, b) {
  return canonical(a) === canonical(b);
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------- routing

function route() {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
}

function render() {
  if (state.view && state.view.stop) state.view.stop();
  state.view = null;
  const main = document.getElementById('main');
  main.replaceChildren();
  if (!state.token) {
    main.append(loginView());
    return;
  }
  const { parts, query } = route();
  const section = parts[0] || 'runs';
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  let view;
  if (section === 'runs' && parts[1]) view = runView(parts[1]);
  else if (section === 'inbox') view = inboxView();
  else if (section === 'stats') view = statsView();
  else view = runsView(query);
  state.view = view;
  main.append(view.el);
}

function loginView() {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, placeholder: 'chs_…' });
  const note = h('p', { class: 'muted', id: 'login-note' }, state.loginNote || 'Open the URL `chassis serve` printed, or paste a token (`chassis tokens create`).');
  return h('section', { class: 'login' },
    h('h1', {}, 'Sign in'),
    note,
    h('form', {
      onsubmit: (e) => {
        e.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        start();
      },
    },
    h('label', { for: 'token' }, 'Token'), input, h('button', { type: 'submit' }, 'Sign in')));
}

function signOut(note) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  state.loginNote = note;
  document.getElementById('who').replaceChildren();
  render();
}

// ---------------------------------------------------------------- runs

function runsView(query) {
  const controller = new AbortController();
  const filters = {
    status: query.get('status') || '',
    agent: query.get('agent') || '',
    version: query.get('version') || '',
    tag: query.get('tag') || '',
  };
  const cursors = [null];
  let page = 0;
  const body = h('tbody', {}, h('tr', {}, h('td', { colspan: '8', class: 'muted' }, 'Loading…')));
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  const older = h('button', { type: 'button', disabled: true, onclick: () => { page += 1; load(); } }, 'Older →');
  const newer = h('button', { type: 'button', disabled: true, onclick: () => { page = Math.max(0, page - 1); load(); } }, '← Newer');
  const agentsList = h('datalist', { id: 'agents-list' });

  const field = (name, label, control) => h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), control);
  const statusSelect = h('select', { id: 'f-status', name: 'status' },
    ['', 'queued', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled']
      .map((s) => h('option', { value: s, selected: s === filters.status }, s || 'any')));
  const agentInput = h('input', { id: 'f-agent', name: 'agent', list: 'agents-list', value: filters.agent, autocomplete: 'off' });
  const versionInput = h('input', { id: 'f-version', name: 'version', value: filters.version, placeholder: 'label or fingerprint', autocomplete: 'off' });
  const tagInput = h('input', { id: 'f-tag', name: 'tag', value: filters.tag, placeholder: 'KEY=VALUE', autocomplete: 'off' });
  const filterForm = h('form', {
    class: 'filters',
    'aria-label': 'Filter runs',
    onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, el] of [['status', statusSelect], ['agent', agentInput], ['version', versionInput], ['tag', tagInput]]) {
        if (el.value.trim()) q.set(k, el.value.trim());
      }
      const text = q.toString();
      location.hash = `#/runs${text ? '?' + text : ''}`;
    },
  },
  field('status', 'Status', statusSelect), field('agent', 'Agent', agentInput),
  field('version', 'Version', versionInput), field('tag', 'Tag', tagInput),
  h('button', { type: 'submit' }, 'Filter'),
  (filters.status || filters.agent || filters.version || filters.tag)
    ? h('a', { href: '#/runs', class: 'clear' }, 'Clear') : null);
  statusSelect.addEventListener('change', () => filterForm.requestSubmit());

  const idInput = h('input', { id: 'f-id', type: 'search', placeholder: 'run id', autocomplete: 'off', required: true });
  const searchNote = h('span', { class: 'error', role: 'alert' });
  const search = h('form', {
    class: 'search',
    role: 'search',
    onsubmit: async (e) => {
      e.preventDefault();
      searchNote.textContent = '';
      const id = idInput.value.trim();
      try {
        await get(`/v1/runs/${enc(id)}`, controller.signal);
        location.hash = `#/runs/${enc(id)}`;
      } catch (err) {
        searchNote.textContent = err.status === 404 ? `no run ${id}` : problemText(err);
      }
    },
  }, h('label', { for: 'f-id' }, 'Find a run by id'), idInput, h('button', { type: 'submit' }, 'Open'), searchNote);

  const startForm = can('operator') ? newRunForm(agentsList) : null;

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (cursors[page]) q.set('cursor', cursors[page]);
    try {
      const list = await get(`/v1/runs?${q}`, controller.signal);
      cursors[page + 1] = list.next || null;
      older.disabled = !list.next;
      newer.disabled = page === 0;
      status.textContent = list.runs.length
        ? `Page ${page + 1}: ${list.runs.length} run(s)${list.next ? '' : ' (the last page)'}; refreshed ${clockFormat.format(new Date())}`
        : 'No runs match.';
      // A refresh must not take the keyboard focus away from a row someone is on.
      if (!body.contains(document.activeElement) || !list.runs.length) body.replaceChildren(...list.runs.map(runRow));
    } catch (e) {
      if (!controller.signal.aborted) status.textContent = `Cannot list runs: ${problemText(e)}`;
    }
  }

  get('/v1/agents', controller.signal).then((agents) => {
    agentsList.replaceChildren(...agents.map((a) => h('option', { value: a.name })));
    if (startForm) startForm.setAgents(agents);
  }).catch(() => {});
  load();
  const stop = every(3000, load);

  const el = h('section', { class: 'runs' },
    h('div', { class: 'heading' }, h('h1', {}, 'Runs'), search),
    startForm ? startForm.el : null,
    filterForm, agentsList,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'runs-table' },
        h('caption', { class: 'sr-only' }, 'Runs, newest first'),
        h('thead', {}, h('tr', {}, ['Run', 'Status', 'Agent', 'Version', 'Input', 'Steps', 'Cost', 'Age'].map((c) => h('th', { scope: 'col' }, c)))),
        body)),
    h('div', { class: 'pager' }, newer, status, older));
  return { el, stop: () => { stop(); controller.abort(); } };
}

function runRow(run) {
  const link = h('a', { href: `#/runs/${enc(run.run_id)}`, class: 'mono' }, run.run_id);
  return h('tr', { 'data-run': run.run_id },
    h('td', { 'data-label': 'Run' }, link),
    h('td', { 'data-label': 'Status' }, badge(run.queued ? 'queued' : run.status)),
    h('td', { 'data-label': 'Agent' }, run.agent),
    h('td', { 'data-label': 'Version', class: 'mono', title: run.version }, versionText(run)),
    h('td', { 'data-label': 'Input', class: 'clip', title: run.input }, run.input),
    h('td', { 'data-label': 'Steps', class: 'num' }, String(run.usage.steps)),
    h('td', { 'data-label': 'Cost', class: 'num' }, money(run.usage.cost_usd)),
    h('td', { 'data-label': 'Age' }, timeEl(run.created_ms, age(run.created_ms))));
}

function newRunForm() {
  const agent = h('select', { id: 'n-agent', required: true });
  const input = h('input', { id: 'n-input', required: true, autocomplete: 'off' });
  const note = h('span', { class: 'error', role: 'alert' });
  const el = h('details', { class: 'start' }, h('summary', {}, 'Start a run'),
    h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        note.textContent = '';
        try {
          const created = await post('/v1/runs', { agent: agent.value, input: input.value });
          location.hash = `#/runs/${enc(created.run_id)}`;
        } catch (err) {
          note.textContent = problemText(err);
        }
      },
    },
    h('div', { class: 'field' }, h('label', { for: 'n-agent' }, 'Agent'), agent),
    h('div', { class: 'field grow' }, h('label', { for: 'n-input' }, 'Input'), input),
    h('button', { type: 'submit' }, 'Start'), note));
  return {
    el,
    setAgents: (agents) => agent.replaceChildren(...agents.map((a) => h('option', { value: a.name }, a.name))),
  };
}

// ---------------------------------------------------------------- a run

function runView(runId) {
  const controller = new AbortController();
  const header = h('div', { class: 'run-header' }, h('p', { class: 'muted' }, 'Loading…'));
  const conversation = h('ol', { class: 'conversation', 'aria-label': 'Conversation' });
  const live = h('li', { class: 'msg assistant live', hidden: true, 'aria-live': 'polite' });
  const streamState = h('span', { class: 'muted' });
  const waterfall = h('div', { class: 'waterfall' }, h('p', { class: 'muted' }, 'Loading…'));
  const context = { calls: new Map(), runId };
  let run = null;
  let lastSeq = 0;
  let liveStep = null;

  const refreshRun = debounce(async () => {
    try {
      run = await get(`/v1/runs/${enc(runId)}`, controller.signal);
      header.replaceChildren(runHeader(run, refreshRun));
    } catch (e) {
      if (!controller.signal.aborted) header.replaceChildren(h('p', { class: 'error' }, problemText(e)));
    }
  }, 250);
  const refreshTrace = debounce(async () => {
    try {
      const trace = await get(`/v1/runs/${enc(runId)}/trace`, controller.signal);
      waterfall.replaceChildren(drawWaterfall(trace));
    } catch (e) {
      if (!controller.signal.aborted) waterfall.replaceChildren(h('p', { class: 'error' }, problemText(e)));
    }
  }, 600);

  function add(record) {
    if (record.seq <= lastSeq) return;
    lastSeq = record.seq;
    if (record.kind === 'model_responded' || record.kind === 'model_failed') clearLive();
    const item = eventItem(record, context);
    if (item) conversation.insertBefore(item, live);
  }

  function clearLive() {
    liveStep = null;
    live.hidden = true;
    live.replaceChildren();
  }

  function delta(d) {
    if (d.kind === 'abandon') { clearLive(); return; }
    if (liveStep !== d.step) {
      liveStep = d.step;
      live.replaceChildren(h('div', { class: 'meta' }, `step ${d.step} · answering…`), h('div', { class: 'text' }));
      live.hidden = false;
    }
    const text = live.querySelector('.text');
    if (d.kind === 'text') text.append(d.text || '');
    else if (d.kind === 'tool_call') text.append(h('div', { class: 'mono' }, `→ ${d.name}(`));
    else if (d.kind === 'tool_args') text.append(h('span', { class: 'mono' }, d.text || ''));
  }

  async function load() {
    refreshRun();
    refreshTrace();
    try {
      for (;;) {
        const page = await get(`/v1/runs/${enc(runId)}/events?after=${lastSeq}&limit=1000`, controller.signal);
        page.events.forEach(add);
        if (page.ended) { streamState.textContent = 'The run has ended.'; return; }
        if (page.events.length < 1000) break;
      }
      streamState.textContent = 'Live.';
      streamState.classList.add('live-dot');
      await follow(runId, lastSeq, controller.signal, (record) => {
        add(record);
        refreshRun();
        refreshTrace();
      }, delta);
      if (!controller.signal.aborted) {
        streamState.textContent = 'The run has ended.';
        streamState.classList.remove('live-dot');
        refreshRun();
        refreshTrace();
      }
    } catch (e) {
      if (!controller.signal.aborted) conversation.append(h('li', { class: 'note bad' }, problemText(e)));
    }
  }
  conversation.append(live);
  load();

  const el = h('section', { class: 'run' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, '← Runs')),
    header,
    h('div', { class: 'run-body' },
      h('section', { class: 'panel', 'aria-labelledby': 'conv-h' },
        h('h2', { id: 'conv-h' }, 'Conversation ', streamState), conversation),
      h('section', { class: 'panel', 'aria-labelledby': 'trace-h' },
        h('h2', { id: 'trace-h' }, 'Waterfall'), waterfall)));
  return { el, stop: () => controller.abort() };
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

function runHeader(run, refresh) {
  const limits = run.limits || {};
  const u = run.usage;
  const tokens = u.input_tokens + u.output_tokens;
  const tokenLimit = limits.max_total_tokens
    ?? (limits.max_input_tokens !== undefined && limits.max_output_tokens !== undefined
      ? limits.max_input_tokens + limits.max_output_tokens : undefined);
  const bars = h('div', { class: 'bars' },
    bar('Steps', u.steps, limits.max_steps, number),
    bar('Tokens', tokens, tokenLimit, number, `${number(u.input_tokens)} in, ${number(u.output_tokens)} out`),
    bar('Cost', u.cost_usd, limits.max_cost_usd, money, u.unpriced_calls ? `${u.unpriced_calls} call(s) of unknown price` : null),
    bar('Time', u.wall_ms, limits.max_wall_time, duration));
  const status = run.queued ? 'queued' : run.status;
  const ended = ['completed', 'failed', 'cancelled'].includes(run.status);
  const actions = h('div', { class: 'actions' });
  if (can('operator') && !ended) {
    const reason = h('input', { id: 'cancel-reason', required: true, placeholder: 'why', autocomplete: 'off' });
    const note = h('span', { class: 'error', role: 'alert' });
    actions.append(h('form', {
      class: 'inline',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const done = await post(`/v1/runs/${enc(run.run_id)}/cancel`, { reason: reason.value });
          toast(done.status === 'cancelled' ? 'Cancelled.' : 'Cancelling: the driver stops it at its next safe point.');
          refresh();
        } catch (err) { note.textContent = problemText(err); }
      },
    }, h('label', { for: 'cancel-reason' }, 'Cancel reason'), reason, h('button', { type: 'submit', class: 'danger' }, 'Cancel run'), note));
  }
  if (can('operator') && (run.status === 'paused' || (run.status === 'waiting' && run.waiting && ['interrupted', 'ready', 'paused', 'parked'].includes(run.waiting.kind)))) {
    const note = h('span', { class: 'error', role: 'alert' });
    actions.append(h('button', {
      type: 'button',
      onclick: async () => {
        try {
          await post(`/v1/runs/${enc(run.run_id)}/resume`, {});
          toast('Resumed: a worker continues it.');
          refresh();
        } catch (err) { note.textContent = problemText(err); }
      },
    }, 'Resume run'), note);
  }
  if (run.waiting && ['approval', 'outcome_unknown', 'limit'].includes(run.waiting.kind)) {
    actions.append(h('a', { href: '#/inbox', class: 'button' }, 'Decide in the inbox'));
  }
  return h('div', {},
    h('h1', { class: 'mono run-id' }, run.run_id),
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Status'), h('dd', { id: 'run-status' }, badge(status))),
      h('div', {}, h('dt', {}, 'Agent'), h('dd', {}, run.agent)),
      h('div', {}, h('dt', {}, 'Version'), h('dd', { class: 'mono', title: run.version }, versionText(run))),
      h('div', {}, h('dt', {}, 'Created'), h('dd', {}, timeEl(run.created_ms))),
      h('div', {}, h('dt', {}, 'Updated'), h('dd', {}, timeEl(run.updated_ms, age(run.updated_ms)))),
      run.driver ? h('div', {}, h('dt', {}, 'Driven by'), h('dd', { class: 'mono' }, run.driver)) : null,
      Object.keys(run.tags || {}).length
        ? h('div', {}, h('dt', {}, 'Tags'), h('dd', {}, Object.entries(run.tags).map(([k, v]) => h('a', { class: 'tag', href: `#/runs?tag=${enc(`${k}=${v}`)}` }, `${k}=${v}`))))
        : null),
    run.waiting ? h('p', { class: 'waiting' }, `Waiting (${run.waiting.kind})${run.waiting.reason ? ': ' + run.waiting.reason : ''}`,
      run.waiting.wakes_at_ms ? [' · wakes ', timeEl(run.waiting.wakes_at_ms)] : null) : null,
    run.reason && !run.waiting ? h('p', { class: run.status === 'failed' ? 'error' : 'muted' }, run.reason) : null,
    run.output ? h('div', { class: 'output' }, h('h2', {}, 'Answer'), h('p', { class: 'text' }, run.output)) : null,
    bars, actions);
}

function bar(label, value, limit, format, detail) {
  const has = typeof limit === 'number' && limit > 0;
  const share = has ? Math.min(1, value / limit) : 0;
  const level = share >= 1 ? 'full' : share >= 0.8 ? 'high' : '';
  return h('div', { class: 'bar' },
    h('div', { class: 'bar-label' }, h('span', {}, label), h('span', { class: 'num' }, `${format(value)}${has ? ' / ' + format(limit) : ' (no limit)'}`)),
    h('div', {
      class: `track ${level}`,
      role: 'meter',
      'aria-label': label,
      'aria-valuemin': '0',
      'aria-valuemax': has ? String(limit) : null,
      'aria-valuenow': String(value),
      'aria-valuetext': `${format(value)}${has ? ' of ' + format(limit) : ''}`,
    }, h('div', { class: 'fill', style: { width: `${100 * share}%` } })),
    detail ? h('div', { class: 'muted small' }, detail) : null);
}

// Conversation items, one per journaled event worth showing.
function eventItem(e, context) {
  const at = e.at_ms;
  const meta = (...parts) => h('div', { class: 'meta' }, parts.filter(Boolean).flatMap((p, i) => (i ? [' · ', p] : [p])));
  const note = (cls, ...children) => h('li', { class: `note ${cls}`, 'data-kind': e.kind }, ...children);
  switch (e.kind) {
    case 'run_started':
      return h('li', { class: 'msg user', 'data-kind': e.kind },
        meta('input', timeEl(at), `${e.agent} on ${e.model}${e.fallbacks && e.fallbacks.length ? ' (then ' + e.fallbacks.join(', ') + ')' : ''}`),
        h('div', { class: 'text' }, e.input),
        h('details', {}, h('summary', {}, 'System prompt and tools'),
          h('pre', { class: 'code' }, e.system),
          h('ul', {}, (e.tools || []).map((t) => h('li', {}, h('b', {}, t.name), ` (${t.risk}) `, t.description || '')))));
    case 'model_requested':
      return null;
    case 'model_responded': {
      const m = e.message || {};
      const calls = (m.tool_calls || []).map((c, i) => {
        context.calls.set(`${e.step}.${i}`, c.name);
        return h('div', { class: 'call' }, h('div', { class: 'call-name' }, `→ ${c.name}`), codeBlock(c.arguments, `arguments of ${c.name}`));
      });
      const usage = e.usage || {};
      return h('li', { class: 'msg assistant', 'data-kind': e.kind },
        meta(`step ${e.step}`, e.model, `${number(usage.input_tokens)} in / ${number(usage.output_tokens)} out tokens`, duration(e.latency_ms), e.cost_usd !== undefined ? money(e.cost_usd) : null),
        m.content ? h('div', { class: 'text' }, m.content) : null,
        calls);
    }
    case 'model_attempt_failed':
      return note('warn', `Step ${e.step}: ${e.model} attempt ${e.attempt} failed: ${e.error}`, e.delay_ms !== undefined ? ` (retry in ${duration(e.delay_ms)})` : '');
    case 'model_circuit_open':
      return note('warn', `Step ${e.step}: ${e.model} skipped, its circuit breaker is open`);
    case 'model_fallback':
      return note('warn', `Step ${e.step}: fell back from ${e.from} to ${e.to}: ${e.reason}`);
    case 'model_failed':
      return note('bad', `Step ${e.step}: the model call failed${e.unavailable ? ' (every model unavailable: the run parks)' : ''}: ${e.error}`);
    case 'model_switched':
      return note('warn', `Switched to ${e.model} for the rest of the run: ${e.reason}`);
    case 'tool_refused':
      return note('bad', `Call ${e.call_id} to ${e.name} refused before running: ${e.error}`);
    case 'tool_started':
      context.calls.set(e.call_id, e.name);
      return h('li', { class: 'tool', 'data-kind': e.kind },
        meta(`call ${e.call_id}`, `${e.name} runs`, e.risk, h('span', { class: 'mono', title: 'idempotency key' }, e.idempotency_key)),
        codeBlock(e.args, `arguments of ${e.name}`));
    case 'tool_finished':
      return h('li', { class: `tool result ${e.ok ? 'ok' : 'bad'}`, 'data-kind': e.kind },
        meta(`call ${e.call_id}`, `${context.calls.get(e.call_id) || 'tool'} ${e.ok ? 'returned' : 'failed'}`, duration(e.latency_ms)),
        codeBlock(e.content, 'result'));
    case 'tool_attempt_failed':
      return note('warn', `Call ${e.call_id} attempt ${e.attempt} failed: ${e.error} (retry in ${duration(e.delay_ms)})`);
    case 'approval_requested':
      return h('li', { class: 'decision pending', 'data-kind': e.kind },
        meta(`call ${e.call_id}`, 'waits for approval', timeEl(e.at_ms), e.expires_at_ms ? ['times out ', timeEl(e.expires_at_ms)] : null),
        h('div', {}, h('b', {}, e.tool), ` (${e.risk})`),
        codeBlock(e.args, `arguments of ${e.tool}`));
    case 'approval_decided':
      return h('li', { class: `decision ${e.approved ? 'ok' : 'bad'}`, 'data-kind': e.kind },
        meta(`call ${e.call_id}`, timeEl(e.at_ms)),
        h('div', {}, h('b', {}, e.approved ? (e.args ? 'Approved with edited arguments' : 'Approved') : 'Rejected'), ` by ${e.by}`,
          e.reason ? [': ', h('q', {}, e.reason)] : null),
        e.args ? codeBlock(e.args, 'edited arguments') : null,
        e.note ? h('div', { class: 'muted' }, `Note: ${e.note}`) : null);
    case 'approval_escalated':
      return note('warn', `Call ${e.call_id}: nobody decided in time; escalated `, timeEl(e.at_ms));
    case 'tool_outcome_unknown':
      return note('bad', `Call ${e.call_id} to ${e.name} started but never finished: a human must say what happened`);
    case 'outcome_resolved':
      return note('ok', `Call ${e.call_id} settled as ${e.resolution} by ${e.by} `, timeEl(e.at_ms), e.content ? `: ${e.content}` : '', e.note ? ` (note: ${e.note})` : '');
    case 'limit_reached':
      return note('warn', `Limit ${e.limit} reached: used ${e.used}, the next call could reach ${e.projected}, limit ${e.value}; action: ${e.action}`);
    case 'limit_raised':
      return note('ok', `${e.limit} raised to ${e.value} by ${e.by}`);
    case 'limit_rejected':
      return note('bad', `${e.limit} not raised by ${e.by} `, timeEl(e.at_ms), `: ${e.reason}`);
    case 'cancel_requested':
      return note('bad', `Cancel asked by ${e.by} `, timeEl(e.at_ms), `: ${e.reason}`);
    case 'resume_requested':
      return note('ok', `Resume asked by ${e.by} `, timeEl(e.at_ms));
    case 'run_waiting':
      return note('wait', 'Waiting: ', e.reason, ' ', timeEl(e.at_ms));
    case 'run_paused':
      return note('wait', 'Paused: ', e.reason, ' ', timeEl(e.at_ms));
    case 'run_resumed':
      return note('ok', 'Resumed ', timeEl(e.at_ms));
    case 'run_completed':
      return h('li', { class: 'msg final', 'data-kind': e.kind }, meta('answer', timeEl(at)), h('div', { class: 'text' }, e.output));
    case 'run_failed':
      return note('bad end', 'Failed: ', e.error);
    case 'run_cancelled':
      return note('bad end', `Cancelled by ${e.by} `, timeEl(e.at_ms), `: ${e.reason}`);
    default:
      return note('', e.kind);
  }
}

function drawWaterfall(trace) {
  const rows = [];
  const walk = (nodes, depth) => {
    for (const node of nodes || []) {
      rows.push({ node, depth });
      walk(node.children, depth + 1);
    }
  };
  walk(trace.nodes, 0);
  const total = Math.max(1, trace.duration_ms, ...rows.map((r) => r.node.start_ms + (r.node.duration_ms || 0)));
  const list = h('ol', { class: 'wf', 'aria-label': 'Steps in time' }, rows.map(({ node, depth }) => {
    const left = (100 * node.start_ms) / total;
    const width = node.duration_ms ? Math.max(0.5, (100 * node.duration_ms) / total) : 0.5;
    const state = node.ok === false ? 'bad' : node.kind;
    return h('li', { class: `wf-row k-${node.kind}` },
      h('span', { class: 'wf-title', style: { paddingLeft: `${Math.min(depth, 4) * 0.8}rem` }, title: node.title }, node.title),
      h('span', { class: 'wf-track' }, h('span', { class: `wf-bar ${state}`, style: { left: `${left}%`, width: `${Math.min(width, 100 - left)}%` } })),
      h('span', { class: 'wf-dur num' }, node.duration_ms !== undefined ? duration(node.duration_ms) : `+${duration(node.start_ms)}`));
  }));
  return h('div', {},
    h('p', { class: 'muted' }, `${duration(trace.duration_ms)} in all, of which ${duration(trace.waiting_ms)} waiting · ${trace.steps} step(s), ${trace.tool_calls} tool call(s)`),
    rows.length ? list : h('p', { class: 'muted' }, 'Nothing yet.'));
}

// ---------------------------------------------------------------- the inbox

function inboxView() {
  const controller = new AbortController();
  const cards = new Map();
  const list = h('ol', { class: 'inbox', 'aria-label': 'Waiting for a human, oldest first' });
  const status = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Loading…');
  let selected = 0;

  async function load() {
    let items;
    try {
      items = await get('/v1/approvals', controller.signal);
    } catch (e) {
      if (!controller.signal.aborted) status.textContent = `Cannot read the inbox: ${problemText(e)}`;
      return;
    }
    const keys = new Set();
    let added = 0;
    for (const item of items) {
      const key = `${item.run_id}/${item.call_id}/${item.kind}`;
      keys.add(key);
      if (!cards.has(key)) {
        cards.set(key, inboxCard(item, () => { cards.get(key)?.el.remove(); cards.delete(key); load(); }));
        added += 1;
      } else {
        cards.get(key).update(item);
      }
    }
    for (const [key, card] of cards) {
      if (!keys.has(key)) { card.el.remove(); cards.delete(key); }
    }
    list.replaceChildren(...items.map((item) => cards.get(`${item.run_id}/${item.call_id}/${item.kind}`).el));
    status.textContent = items.length
      ? `${items.length} item(s) waiting${added && added !== items.length ? `; ${added} new` : ''}. Updated ${clockFormat.format(new Date())}.`
      : 'Nothing waits for a human.';
    setCount(items.length);
    select(Math.min(selected, Math.max(0, items.length - 1)), false);
  }

  function select(index, focus = true) {
    const els = [...list.children];
    els.forEach((el, i) => el.classList.toggle('selected', i === index));
    selected = index;
    if (focus && els[index]) {
      els[index].focus();
      els[index].scrollIntoView({ block: 'nearest' });
    }
  }

  function onKey(e) {
    if (e.target.closest('input, textarea, select, [contenteditable]') || e.ctrlKey || e.metaKey || e.altKey) return;
    const els = [...list.children];
    if (!els.length) return;
    const card = [...cards.values()].find((c) => c.el === els[selected]);
    if (e.key === 'j') { select(Math.min(els.length - 1, selected + 1)); e.preventDefault(); }
    else if (e.key === 'k') { select(Math.max(0, selected - 1)); e.preventDefault(); }
    else if (card && e.key === 'a') { card.shortcut('approve'); e.preventDefault(); }
    else if (card && e.key === 'r') { card.shortcut('reject'); e.preventDefault(); }
    else if (card && e.key === 'e') { card.shortcut('edit'); e.preventDefault(); }
  }
  document.addEventListener('keydown', onKey);
  list.addEventListener('focusin', (e) => {
    const index = [...list.children].indexOf(e.target.closest('.card'));
    if (index >= 0 && index !== selected) select(index, false);
  });
  const ticker = setInterval(() => { for (const card of cards.values()) card.tick(); }, 1000);

  load();
  const stop = every(2000, load);
  const el = h('section', { class: 'inbox-view' },
    h('div', { class: 'heading' }, h('h1', {}, 'Inbox'),
      h('p', { class: 'muted keys' }, can('approver')
        ? ['Keys: ', h('kbd', {}, 'j'), '/', h('kbd', {}, 'k'), ' next/previous, ', h('kbd', {}, 'a'), ' approve, ', h('kbd', {}, 'e'), ' edit, ', h('kbd', {}, 'r'), ' reject']
        : `You are signed in as a ${state.me ? state.me.role : 'viewer'}: decisions need an approver token.`)),
    status, list);
  return {
    el,
    stop: () => { stop(); clearInterval(ticker); controller.abort(); document.removeEventListener('keydown', onKey); },
  };
}

function setCount(n) {
  const el = document.getElementById('inbox-count');
  el.textContent = n ? String(n) : '';
}

function inboxCard(item, done) {
  const id = `c-${item.run_id}-${item.call_id}-${item.kind}`.replace(/[^a-zA-Z0-9_-]/g, '_');
  const waited = h('span');
  const timeout = h('span');
  const flags = h('span');
  const decide = can('approver');
  const operate = can('operator');
  const controls = h('div', { class: 'controls' });
  const problem = h('p', { class: 'error', role: 'alert', id: `${id}-problem` });
  let current = item;
  const open = { edit: null, reject: null };

  const send = async (path, body, message) => {
    problem.textContent = '';
    for (const b of controls.querySelectorAll('button')) b.disabled = true;
    try {
      await post(path, body);
      toast(message);
      done();
    } catch (e) {
      problem.textContent = problemText(e);
      for (const b of controls.querySelectorAll('button')) b.disabled = false;
      return false;
    }
    return true;
  };
  const callPath = `/v1/runs/${enc(item.run_id)}/calls/${enc(item.call_id)}`;

  if (item.kind === 'approval' && decide) {
    const approveButton = h('button', { type: 'button', class: 'primary', onclick: () => send(`${callPath}/approve`, {}, `Approved ${item.tool}.`) }, 'Approve');
    const editor = argsEditor(item, id, (args) => send(`${callPath}/approve`, { args }, `Approved ${item.tool} with edited arguments.`));
    const reject = reasonForm(`${id}-reject`, 'Reason for the model', 'Reject', (reason) => send(`${callPath}/reject`, { reason }, `Rejected ${item.tool}.`));
    open.edit = editor;
    open.reject = reject;
    controls.append(approveButton,
      h('button', { type: 'button', 'aria-expanded': 'false', onclick: (e) => { toggle(editor.el, e.currentTarget); editor.focus(); } }, 'Edit arguments'),
      h('button', { type: 'button', class: 'danger', 'aria-expanded': 'false', onclick: (e) => { toggle(reject.el, e.currentTarget); reject.focus(); } }, 'Reject…'),
      editor.el, reject.el);
  } else if (item.kind === 'outcome_unknown' && decide) {
    const result = h('input', { id: `${id}-result`, placeholder: 'what the tool returned', autocomplete: 'off' });
    const failed = reasonForm(`${id}-failed`, 'What went wrong (the model sees it)', 'Mark failed', (reason) => send(`${callPath}/resolve`, { outcome: 'failed', reason }, 'Marked failed.'));
    open.reject = failed;
    controls.append(
      h('form', {
        class: 'inline',
        onsubmit: (e) => { e.preventDefault(); send(`${callPath}/resolve`, { outcome: 'succeeded', result: result.value || undefined }, 'Marked succeeded.'); },
      }, h('label', { for: `${id}-result` }, 'Result'), result, h('button', { type: 'submit', class: 'primary' }, 'Mark succeeded')),
      h('button', { type: 'button', onclick: () => send(`${callPath}/resolve`, { outcome: 'retry' }, 'It runs again with the same key.') }, 'Run again (same key)'),
      h('button', { type: 'button', class: 'danger', 'aria-expanded': 'false', onclick: (e) => { toggle(failed.el, e.currentTarget); failed.focus(); } }, 'Mark failed…'),
      failed.el);
  } else if ((item.kind === 'limit' && decide) || (item.kind === 'paused' && operate)) {
    const limit = item.tool;
    const isDuration = limit === 'max_wall_time' || limit === 'max_park';
    const currentValue = item.args && typeof item.args.value === 'number' ? item.args.value : null;
    const value = h('input', {
      id: `${id}-raise`,
      required: true,
      autocomplete: 'off',
      value: currentValue === null ? '' : isDuration ? `${Math.ceil((currentValue * 2) / 60000)}m` : String(currentValue * 2),
      'aria-describedby': `${id}-raise-help`,
    });
    const path = item.kind === 'limit' ? `/v1/runs/${enc(item.run_id)}/limit/approve` : `/v1/runs/${enc(item.run_id)}/resume`;
    controls.append(h('form', {
      class: 'inline',
      onsubmit: (e) => {
        e.preventDefault();
        const raw = value.value.trim();
        const parsed = isDuration ? raw : Number(raw);
        if (!isDuration && !Number.isFinite(parsed)) { problem.textContent = `${limit} needs a number`; return; }
        send(path, { raise: { [limit]: parsed } }, `${limit} raised; the run continues.`);
      },
    }, h('label', { for: `${id}-raise` }, `New ${limit}`), value,
    h('span', { class: 'muted small', id: `${id}-raise-help` }, isDuration ? 'a duration, e.g. 30m' : `now ${currentValue}`),
    h('button', { type: 'submit', class: 'primary' }, 'Raise and continue')));
    if (item.kind === 'limit') {
      const refuse = reasonForm(`${id}-refuse`, 'Why (the run fails with it)', 'Refuse', (reason) => send(`/v1/runs/${enc(item.run_id)}/limit/reject`, { reason }, 'Refused: the run fails.'));
      open.reject = refuse;
      controls.append(h('button', { type: 'button', class: 'danger', 'aria-expanded': 'false', onclick: (e) => { toggle(refuse.el, e.currentTarget); refuse.focus(); } }, 'Refuse…'), refuse.el);
    }
  } else if ((item.kind === 'interrupted' || item.kind === 'ready') && operate) {
    controls.append(h('button', { type: 'button', class: 'primary', onclick: () => send(`/v1/runs/${enc(item.run_id)}/resume`, {}, 'Resumed.') }, 'Resume'));
  }

  const el = h('li', { class: `card k-${item.kind}`, tabindex: '0', 'aria-labelledby': `${id}-title`, 'data-run': item.run_id, 'data-call': item.call_id },
    h('div', { class: 'card-head' },
      h('h2', { id: `${id}-title` }, kindTitle(item)),
      item.risk ? h('span', { class: `risk r-${item.risk}` }, item.risk) : null,
      flags),
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', {}, 'Agent'), h('dd', {}, item.agent)),
      h('div', {}, h('dt', {}, 'Run'), h('dd', {}, h('a', { href: `#/runs/${enc(item.run_id)}`, class: 'mono' }, item.run_id))),
      h('div', {}, h('dt', {}, 'Call'), h('dd', { class: 'mono' }, item.call_id)),
      h('div', {}, h('dt', {}, 'Waited'), h('dd', {}, waited)),
      h('div', {}, h('dt', {}, 'Times out'), h('dd', {}, timeout)),
      item.idempotency_key ? h('div', {}, h('dt', {}, 'Idempotency key'), h('dd', { class: 'mono' }, item.idempotency_key)) : null),
    item.input ? h('div', { class: 'field-block' }, h('h3', {}, 'Input'), h('p', { class: 'text' }, item.input)) : null,
    item.reason ? h('div', { class: 'field-block' }, h('h3', {}, item.kind === 'approval' ? "The model's reason" : 'Why'), h('p', { class: 'text' }, item.reason)) : null,
    item.kind === 'approval' || item.kind === 'outcome_unknown'
      ? h('div', { class: 'field-block' }, h('h3', {}, 'Arguments'), codeBlock(item.args, `arguments of ${item.tool}`)) : null,
    item.context && item.context.length
      ? h('details', {}, h('summary', {}, `Last ${item.context.length} message(s)`), h('ol', { class: 'context' }, item.context.map((m) => h('li', {}, m)))) : null,
    controls, problem);

  function tick() {
    const now = Date.now();
    waited.replaceChildren(current.requested_at_ms ? timeEl(current.requested_at_ms, duration(now - current.requested_at_ms)) : '–');
    if (current.expires_at_ms) {
      const left = current.expires_at_ms - now;
      timeout.replaceChildren(timeEl(current.expires_at_ms, left > 0 ? `in ${duration(left)}` : `${duration(-left)} ago`));
    } else timeout.textContent = 'never';
    flags.replaceChildren(...[
      current.escalated ? h('span', { class: 'flag' }, 'escalated') : null,
      current.expired ? h('span', { class: 'flag' }, 'timed out') : null,
    ].filter(Boolean));
  }
  tick();
  return {
    el,
    tick,
    update: (next) => { current = next; tick(); },
    shortcut: (what) => {
      if (what === 'approve' && item.kind === 'approval' && decide) send(`${callPath}/approve`, {}, `Approved ${item.tool}.`);
      else if (what === 'reject' && open.reject) { open.reject.el.hidden = false; open.reject.focus(); }
      else if (what === 'edit' && open.edit) { open.edit.el.hidden = false; open.edit.focus(); }
    },
  };
}

function kindTitle(item) {
  switch (item.kind) {
    case 'approval': return `Approve ${item.tool}?`;
    case 'outcome_unknown': return `Did ${item.tool} happen?`;
    case 'limit': return `Raise ${item.tool}?`;
    case 'paused': return `Paused at ${item.tool}`;
    case 'interrupted': return 'Interrupted';
    case 'ready': return 'Decided, waiting for a worker';
    default: return item.kind;
  }
}

function toggle(el, button) {
  el.hidden = !el.hidden;
  button.setAttribute('aria-expanded', String(!el.hidden));
}

function reasonForm(id, label, action, submit) {
  const input = h('textarea', { id, required: true, rows: '2' });
  const el = h('form', {
    class: 'reason',
    hidden: true,
    onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) submit(input.value.trim()); },
  }, h('label', { for: id }, label), input, h('button', { type: 'submit', class: 'danger' }, action));
  return { el, focus: () => input.focus() };
}

// The arguments as JSON, checked against the tool's schema at every keystroke; the approve
// button stays disabled while they are not valid JSON or fail the schema.
function argsEditor(item, id, submit) {
  const errorsId = `${id}-args-errors`;
  const area = h('textarea', {
    id: `${id}-args`,
    class: 'code',
    rows: String(Math.min(16, pretty(item.args).split('\n').length + 1)),
    spellcheck: 'false',
    'aria-describedby': errorsId,
  });
  area.value = pretty(item.args);
  const errors = h('ul', { class: 'errors', id: errorsId, 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Approve with these arguments');
  const schemaNote = item.args_schema ? null : h('p', { class: 'muted small' }, 'The tool has no schema here; the server checks the arguments.');
  let parsed = item.args;
  function check() {
    const problems = [];
    try {
      parsed = JSON.parse(area.value);
      if (item.args_schema) problems.push(...validate(item.args_schema, parsed));
    } catch (e) {
      parsed = undefined;
      problems.push({ path: '', message: `not JSON: ${e.message}` });
    }
    errors.replaceChildren(...problems.map((p) => h('li', {}, p.path ? h('code', {}, p.path) : null, p.path ? ' ' : null, p.message)));
    area.setAttribute('aria-invalid', String(problems.length > 0));
    button.disabled = problems.length > 0;
    return problems.length === 0;
  }
  area.addEventListener('input', check);
  const el = h('form', {
    class: 'editor',
    hidden: true,
    novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      if (check()) submit(parsed);
    },
  }, h('label', { for: `${id}-args` }, `Arguments of ${item.tool} (JSON)`), area, errors, schemaNote, button);
  check();
  return { el, focus: () => area.focus() };
}

// ---------------------------------------------------------------- stats

function statsView() {
  let controller = new AbortController();
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const ranges = [['7', 'Last 7 days'], ['30', 'Last 30 days'], ['', 'All time']];
  const range = h('select', { id: 's-range' }, ranges.map(([v, label]) => h('option', { value: v, selected: v === '30' }, label)));
  const agent = h('input', { id: 's-agent', autocomplete: 'off', placeholder: 'all agents' });
  function load() {
    controller.abort();
    controller = new AbortController();
    const q = new URLSearchParams();
    if (range.value) q.set('since_ms', String(Date.now() - Number(range.value) * 86400000));
    if (agent.value.trim()) q.set('agent', agent.value.trim());
    body.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    get(`/v1/stats?${q}`, controller.signal).then((stats) => {
      body.replaceChildren(drawStats(stats));
    }).catch((e) => {
      if (!controller.signal.aborted) body.replaceChildren(h('p', { class: 'error' }, problemText(e)));
    });
  }
  range.addEventListener('change', load);
  load();
  const form = h('form', { class: 'filters', 'aria-label': 'Which runs', onsubmit: (e) => { e.preventDefault(); load(); } },
    h('div', { class: 'field' }, h('label', { for: 's-range' }, 'Runs created'), range),
    h('div', { class: 'field' }, h('label', { for: 's-agent' }, 'Agent'), agent),
    h('button', { type: 'submit' }, 'Show'));
  return { el: h('section', { class: 'stats' }, h('h1', {}, 'Stats'), form, body), stop: () => controller.abort() };
}

function drawStats(stats) {
  const rows = stats.by_version;
  if (!rows.length) return h('p', { class: 'muted' }, 'No runs yet.');
  const name = (r) => `${r.agent} ${(r.version || '').slice(0, 8)}`;
  const t = stats.total;
  return h('div', {},
    h('p', {}, `${number(t.runs)} run(s): ${percent(t.completion_rate)} completed, ${percent(t.error_rate)} failed, ${percent(t.escalation_rate)} asked a human; ${money(t.avg_cost_usd)} and ${duration(t.avg_wall_ms)} per run on average.`),
    h('div', { class: 'charts' },
      chartPanel('Completion, error and escalation rates by version', rateChart(rows, name)),
      chartPanel('Average cost per run', barChart(rows.map((r) => ({ label: name(r), value: r.avg_cost_usd })), money)),
      chartPanel('Average time per run', barChart(rows.map((r) => ({ label: name(r), value: r.avg_wall_ms })), duration)),
      ...overTime(stats, name)),
    h('h2', {}, 'By version'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'stats-table' },
      h('thead', {}, h('tr', {}, ['Agent', 'Version', 'Runs', 'Completed', 'Failed', 'Escalated', 'Avg cost', 'Avg time', 'Avg steps'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', {},
        h('td', { 'data-label': 'Agent' }, r.agent),
        h('td', { 'data-label': 'Version', class: 'mono' }, h('a', { href: `#/runs?agent=${enc(r.agent)}&version=${enc(r.version)}` }, (r.version || '').slice(0, 8))),
        h('td', { 'data-label': 'Runs', class: 'num' }, number(r.runs)),
        h('td', { 'data-label': 'Completed', class: 'num' }, percent(r.completion_rate)),
        h('td', { 'data-label': 'Failed', class: 'num' }, percent(r.error_rate)),
        h('td', { 'data-label': 'Escalated', class: 'num' }, percent(r.escalation_rate)),
        h('td', { 'data-label': 'Avg cost', class: 'num' }, money(r.avg_cost_usd)),
        h('td', { 'data-label': 'Avg time', class: 'num' }, duration(r.avg_wall_ms)),
        h('td', { 'data-label': 'Avg steps', class: 'num' }, r.avg_steps.toFixed(1))))))),
    stats.tools.length ? [
      h('h2', {}, 'Approvals by tool'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'stats-table' },
        h('thead', {}, h('tr', {}, ['Tool', 'Requested', 'Approved', 'Edited', 'Rejected'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, stats.tools.map((tool) => {
          const share = (n) => (tool.requested ? ` (${percent(n / tool.requested)})` : '');
          return h('tr', {},
            h('td', { 'data-label': 'Tool' }, tool.tool),
            h('td', { 'data-label': 'Requested', class: 'num' }, number(tool.requested)),
            h('td', { 'data-label': 'Approved', class: 'num' }, number(tool.approved) + share(tool.approved)),
            h('td', { 'data-label': 'Edited', class: 'num' }, number(tool.edited) + share(tool.edited)),
            h('td', { 'data-label': 'Rejected', class: 'num' }, number(tool.rejected) + share(tool.rejected)));
        })))),
    ] : null);
}

function chartPanel(title, chart) {
  return h('figure', { class: 'chart' }, h('figcaption', {}, title), chart);
}

const SERIES = ['#1f77b4', '#2ca02c', '#d62728', '#9467bd', '#ff7f0e', '#17becf'];

function barChart(items, format) {
  const max = Math.max(...items.map((i) => i.value), 1e-12);
  const rowH = 22;
  const width = 400;
  const labelW = 150;
  const height = items.length * rowH + 4;
  return svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': items.map((i) => `${i.label}: ${format(i.value)}`).join('; ') },
    items.map((item, i) => {
      const w = ((width - labelW - 70) * item.value) / max;
      const y = i * rowH + 2;
      return svg('g', {},
        svg('text', { x: labelW - 6, y: y + 14, 'text-anchor': 'end', class: 'lbl' }, item.label),
        svg('rect', { x: labelW, y: y + 3, width: Math.max(1, w), height: rowH - 8, fill: SERIES[0], rx: 2 }),
        svg('text', { x: labelW + Math.max(1, w) + 4, y: y + 14, class: 'val' }, format(item.value)));
    }));
}

function rateChart(rows, name) {
  const measures = [['completion', 'completion_rate', SERIES[1]], ['error', 'error_rate', SERIES[2]], ['escalation', 'escalation_rate', SERIES[4]]];
  const groupH = 3 * 12 + 10;
  const width = 400;
  const labelW = 150;
  const height = rows.length * groupH + 22;
  return svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': rows.map((r) => `${name(r)}: ${measures.map(([label, key]) => `${label} ${percent(r[key])}`).join(', ')}`).join('; ') },
    rows.map((r, i) => svg('g', {},
      svg('text', { x: labelW - 6, y: i * groupH + 22, 'text-anchor': 'end', class: 'lbl' }, name(r)),
      measures.map(([, key, color], j) => {
        const w = (width - labelW - 50) * (r[key] || 0);
        const y = i * groupH + j * 12 + 4;
        return svg('g', {},
          svg('rect', { x: labelW, y, width: Math.max(1, w), height: 10, fill: color, rx: 1 }),
          svg('text', { x: labelW + Math.max(1, w) + 4, y: y + 9, class: 'val small' }, percent(r[key])));
      }))),
    measures.map(([label, , color], j) => svg('g', {},
      svg('rect', { x: labelW + j * 90, y: height - 14, width: 10, height: 10, fill: color }),
      svg('text', { x: labelW + j * 90 + 14, y: height - 5, class: 'val small' }, label))));
}

// Plots over time: per day once there are several days, else per hour over the last 48 hours
// (a project's first day), else none.
function overTime(stats, name) {
  const hours = (stats.by_hour || []).map((b) => ({ label: `${b.hour.slice(11)}h`, rows: b.rows }));
  const days = stats.by_day.map((b) => ({ label: b.day.slice(5), rows: b.rows }));
  const [buckets, per] = days.length > 1 ? [days, 'day'] : hours.length > 1 ? [hours, 'hour'] : [[], ''];
  if (!buckets.length) return [];
  return [
    chartPanel(`Completion rate per ${per} (UTC)`, dayChart(buckets, name, (r) => r.completion_rate, percent)),
    chartPanel(`Cost per run per ${per} (UTC)`, dayChart(buckets, name, (r) => r.avg_cost_usd, money)),
  ];
}

function dayChart(days, name, pick, format) {
  const keys = [...new Set(days.flatMap((d) => d.rows.map(name)))];
  const values = days.flatMap((d) => d.rows.map(pick));
  const max = Math.max(...values, 1e-12);
  const width = 400;
  const height = 180;
  const pad = { l: 50, r: 10, t: 10, b: 40 };
  const x = (i) => pad.l + ((width - pad.l - pad.r) * i) / Math.max(1, days.length - 1);
  const y = (v) => height - pad.b - ((height - pad.t - pad.b) * v) / max;
  return svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': keys.join(', ') },
    svg('line', { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: 'axis' }),
    svg('text', { x: pad.l - 4, y: y(max) + 4, 'text-anchor': 'end', class: 'val small' }, format(max)),
    svg('text', { x: pad.l - 4, y: height - pad.b, 'text-anchor': 'end', class: 'val small' }, format(0)),
    // At most about a dozen labels, so they do not overlap.
    days.map((d, i) => (i % Math.ceil(days.length / 12) === 0
      ? svg('text', { x: x(i), y: height - pad.b + 14, 'text-anchor': 'middle', class: 'val small' }, d.label)
      : null)),
    keys.map((key, k) => {
      const points = days.map((d, i) => {
        const row = d.rows.find((r) => name(r) === key);
        return row ? [x(i), y(pick(row))] : null;
      }).filter(Boolean);
      const color = SERIES[k % SERIES.length];
      return svg('g', {},
        svg('polyline', { points: points.map((p) => p.join(',')).join(' '), fill: 'none', stroke: color, 'stroke-width': 2 }),
        points.map(([px, py]) => svg('circle', { cx: px, cy: py, r: 3, fill: color })),
        svg('text', { x: pad.l + k * 120, y: height - 6, fill: color, class: 'val small' }, key));
    }));
}

// ---------------------------------------------------------------- start

async function start() {
  takeToken();
  if (!state.token) { render(); return; }
  document.getElementById('main').replaceChildren(h('p', { class: 'muted' }, 'Signing in…'));
  try {
    state.me = await get('/v1/me');
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      document.getElementById('main').replaceChildren(
        h('p', { class: 'error', role: 'alert' }, `Cannot reach the server: ${problemText(e)}`),
        h('button', { type: 'button', onclick: start }, 'Try again'));
    }
    return;
  }
  document.body.dataset.role = state.me.role;
  document.getElementById('who').replaceChildren(
    h('span', {}, `${state.me.name} (${state.me.role})`),
    h('span', { class: 'muted small' }, ` · times in ${zone} `),
    h('button', { type: 'button', class: 'link', onclick: () => signOut('Signed out.') }, 'Sign out'));
  render();
  pollCount();
}

// The inbox count in the navigation, on every page.
let countStop = null;
function pollCount() {
  if (countStop) countStop();
  const tick = async () => {
    if (!state.token) return;
    try { setCount((await get('/v1/approvals')).length); } catch { /* shown elsewhere */ }
  };
  // After the first view's own requests: the count must not slow the page being opened.
  setTimeout(tick, 1000);
  countStop = every(5000, tick);
}

window.addEventListener('hashchange', () => {
  if (/(^#|&)token=/.test(location.hash)) { start(); return; }
  if (state.me || !state.token) render();
});
document.addEventListener('DOMContentLoaded', start);
