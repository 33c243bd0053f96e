// coppice devtools + portal: plain browser JavaScript, no dependencies, no build step.
//
// Auth: the key typed in the login form lives in sessionStorage ('coppice.key'); REST calls send it
// as `Authorization: Bearer`, WebSockets as the subprotocol `coppice.key.<key>` next to the
// endpoint's own (`coppice.devtools.v1`, `coppice.exec.v1`). Nothing is rendered with innerHTML.

const KEY_STORE = 'coppice.key';
const LOG_MAX = 500;
const GONE_AFTER_MS = 4000;
const TREE_MAX_SANDBOXES = 300;

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem(KEY_STORE),
  /** sessionId -> node */
  nodes: new Map(),
  rootId: null,
  filter: '',
  selected: null,
  ws: null,
  wsRetry: 0,
  sandboxes: [],
  templates: [],
  consoleTarget: null,
  exec: null,
  logCount: 0,
};

// ---------- small DOM helpers ----------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function setStatus(id, text, isError = false) {
  const p = $(id);
  p.textContent = text;
  p.classList.toggle('error', isError);
}

function shortTime(ts) {
  const d = new Date(ts);
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function relTime(iso) {
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (!Number.isFinite(s)) return '';
  const a = Math.abs(s);
  const txt = a < 90 ? `${a}s` : a < 5400 ? `${Math.round(a / 60)}m` : `${Math.round(a / 3600)}h`;
  return s >= 0 ? `in ${txt}` : `${txt} ago`;
}

// ---------- auth + REST ----------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error ?? `http_${status}`;
  }
}

async function api(method, path, body, extra = {}) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...extra.headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (extra.raw && res.ok) return res;
  const text = await res.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = { message: text };
  }
  if (res.status === 401) {
    signOut('The gateway refused the key (401).');
    throw new ApiError(401, parsed);
  }
  if (!res.ok) throw new ApiError(res.status, parsed);
  return parsed;
}

function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

async function signIn(key) {
  state.key = key;
  const res = await fetch('/devtools/tree?compact=1', { headers: { authorization: `Bearer ${key}` } });
  if (res.status === 401) {
    state.key = null;
    throw new Error('Invalid API key.');
  }
  if (!res.ok) throw new Error(`Gateway answered ${res.status}.`);
  sessionStorage.setItem(KEY_STORE, key);
  showApp();
}

function signOut(message = '') {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close();
    state.ws = null;
  }
  state.exec?.close();
  $('app').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  setConn('offline', false);
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  connectInspector();
  refreshPortal();
}

// ---------- devtools: the inspection stream ----------

function setConn(text, on) {
  const c = $('conn');
  c.textContent = text;
  c.classList.toggle('off', !on);
  c.classList.toggle('on', on);
}

function connectInspector() {
  if (!state.key) return;
  const ws = new WebSocket(wsUrl('/devtools/ws'), ['coppice.devtools.v1', `coppice.key.${state.key}`]);
  state.ws = ws;
  setConn('connecting…', false);
  ws.onopen = () => {
    state.wsRetry = 0;
    setConn('live', true);
    if (state.filter) ws.send(JSON.stringify({ type: 'filter', sandbox: state.filter }));
  };
  ws.onmessage = (m) => onInspect(JSON.parse(m.data));
  ws.onclose = () => {
    state.ws = null;
    setConn('offline', false);
    if (!state.key) return;
    // The handshake's status is hidden from scripts: check the key over REST before retrying.
    const delay = Math.min(10_000, 500 * 2 ** state.wsRetry++);
    setTimeout(() => api('GET', '/devtools/tree?compact=1').then(() => state.key && connectInspector(), () => state.key && connectInspector()), delay);
  };
}

function onInspect(msg) {
  switch (msg.type) {
    case 'hello':
    case 'tree':
      loadTree(msg.tree);
      break;
    case 'actor':
      addNode(msg.actor);
      if (msg.actor.kind === 'sandbox') schedulePortal();
      break;
    case 'snapshot':
      onSnapshot(msg);
      break;
    case 'event':
      logEvent(msg);
      break;
    case 'dropped':
      $('log-dropped').textContent = `fell behind: ${msg.count} messages skipped (tree reloaded)`;
      break;
    case 'error':
      console.warn('devtools:', msg.message);
      break;
  }
}

function loadTree(tree) {
  state.nodes.clear();
  const walk = (n) => {
    const { children, ...rest } = n;
    state.nodes.set(n.sessionId, { ...rest, children: new Set((children ?? []).map((c) => c.sessionId)) });
    for (const c of children ?? []) walk(c);
  };
  walk(tree.root);
  state.rootId = tree.root.sessionId;
  setLifecycle(tree.lifecycle);
  scheduleRender();
}

function addNode(actor) {
  const existing = state.nodes.get(actor.sessionId);
  const node = { ...actor, children: existing?.children ?? new Set(), context: existing?.context ?? actor.context };
  state.nodes.set(actor.sessionId, node);
  if (actor.parent) state.nodes.get(actor.parent)?.children.add(actor.sessionId);
  scheduleRender();
}

function onSnapshot(msg) {
  let node = state.nodes.get(msg.actor);
  if (!node) return;
  const before = node.state;
  node.status = msg.status;
  node.value = msg.value;
  node.state = msg.state;
  if (msg.context !== undefined) node.context = msg.context;
  if (node.sessionId === state.rootId) setLifecycle(msg.state);
  if (node.kind !== 'effect' && before !== msg.state && $('log-snapshots').checked) {
    appendLog(msg.ts, msg.sandbox, labelOf(node), `→ ${msg.state ?? msg.status}`, '', 'transition');
  }
  if (msg.status !== 'active') {
    // Finished or stopped actors linger a moment, greyed, then leave the tree.
    setTimeout(() => removeNode(msg.actor), node.kind === 'effect' ? 500 : GONE_AFTER_MS);
  }
  if (node.kind === 'sandbox' && before !== msg.state) schedulePortal();
  if (state.selected === node.sessionId) showDetails();
  scheduleRender();
}

function removeNode(sessionId) {
  const node = state.nodes.get(sessionId);
  if (!node || node.status === 'active') return;
  for (const c of node.children) removeNode(c);
  state.nodes.delete(sessionId);
  if (node.parent) state.nodes.get(node.parent)?.children.delete(sessionId);
  scheduleRender();
}

function setLifecycle(l) {
  const p = $('lifecycle');
  p.textContent = l ?? '—';
  p.className = `pill ${l === 'serving' ? 'on' : 'warn'}`;
}

function labelOf(node) {
  if (!node) return '?';
  if (node.kind === 'effect') return `${node.src ?? node.id}`;
  return node.systemId ?? node.id;
}

// ---------- tree rendering ----------

let renderTimer = null;
function scheduleRender() {
  if (renderTimer) return;
  renderTimer = setTimeout(() => {
    renderTimer = null;
    renderTree();
  }, 80);
}

function visible(node) {
  if (node.kind === 'effect' && !$('show-effects').checked) return false;
  if (state.filter) {
    if (node.kind === 'sandbox' || node.kind === 'process' || (node.kind === 'effect' && node.sandbox)) return node.sandbox === state.filter;
    if (node.kind === 'shard') return [...node.children].some((c) => state.nodes.get(c)?.sandbox === state.filter);
    return node.kind === 'gateway';
  }
  if (node.kind === 'shard' && node.children.size === 0 && !$('show-empty').checked) return false;
  return true;
}

function renderTree() {
  const root = state.nodes.get(state.rootId);
  const box = $('tree');
  const counts = { sandboxes: 0, processes: 0 };
  for (const n of state.nodes.values()) {
    if (n.kind === 'sandbox' && n.status === 'active') counts.sandboxes++;
    if (n.kind === 'process' && n.status === 'active') counts.processes++;
  }
  $('counts').textContent = `${state.nodes.size} actors · ${counts.sandboxes} sandboxes · ${counts.processes} processes`;
  if (!root) {
    box.replaceChildren(el('p', { class: 'dim', text: 'waiting for the tree…' }));
    return;
  }
  let sandboxesShown = 0;
  let sandboxesHidden = 0;
  const render = (node) => {
    let kids = [...node.children].map((c) => state.nodes.get(c)).filter((c) => c && visible(c));
    // Thousands of sandboxes make a tree nobody reads: show the first ones, point at the filter.
    kids = kids.filter((c) => {
      if (c.kind !== 'sandbox') return true;
      if (sandboxesShown < TREE_MAX_SANDBOXES) {
        sandboxesShown++;
        return true;
      }
      sandboxesHidden++;
      return false;
    });
    kids.sort((a, b) => order(a) - order(b) || a.id.localeCompare(b.id, undefined, { numeric: true }));
    const label = el(
      'span',
      { class: `node ${node.kind} ${node.status}${state.selected === node.sessionId ? ' selected' : ''}`, onclick: () => select(node.sessionId) },
      el('span', { class: `kind k-${node.kind}`, text: node.kind === 'effect' ? 'fx' : node.kind }),
      el('span', { class: 'name', text: labelOf(node) }),
      node.state ? el('span', { class: `state s-${node.state}`, text: node.state }) : null,
      node.status !== 'active' ? el('span', { class: 'status', text: node.status }) : null,
      node.kind === 'sandbox' && node.context?.ip ? el('span', { class: 'dim', text: node.context.ip }) : null,
      node.kind === 'process' && node.context?.request ? el('span', { class: 'dim argv', text: node.context.request.argv.join(' ') }) : null,
    );
    const li = el('li', {
      dataset: { actor: node.systemId ?? node.id, session: node.sessionId, kind: node.kind, state: node.state ?? '', status: node.status },
    }, label);
    if (kids.length) li.append(el('ul', {}, ...kids.map(render)));
    return li;
  };
  const tree = el('ul', { class: 'root' }, render(root));
  box.replaceChildren(tree);
  if (sandboxesHidden) box.append(el('p', { class: 'dim', text: `${sandboxesHidden} more sandboxes not drawn: pick one in the sandbox filter` }));
}

const ORDER = { registry: 0, pool: 1, shard: 2, sandbox: 3, process: 4, effect: 5 };
const order = (n) => ORDER[n.kind] ?? 9;

function select(sessionId) {
  state.selected = sessionId;
  showDetails();
  scheduleRender();
}

function showDetails() {
  const n = state.nodes.get(state.selected);
  const d = $('details');
  if (!n) {
    d.textContent = 'click an actor in the tree';
    return;
  }
  d.classList.remove('dim');
  const { children, ...rest } = n;
  d.textContent = JSON.stringify({ ...rest, children: children.size }, null, 2);
}

// ---------- event log ----------

function logEvent(msg) {
  const target = state.nodes.get(msg.target);
  const source = msg.source ? state.nodes.get(msg.source) : null;
  const { type, ...payload } = msg.event;
  const who = `${source ? labelOf(source) : 'edge'} → ${target ? labelOf(target) : msg.targetId}`;
  const body = Object.keys(payload).length ? JSON.stringify(payload) : '';
  appendLog(msg.ts, msg.sandbox, who, type, body, type.startsWith('xstate.') ? 'internal' : 'event');
}

let logPending = [];
let logTimer = null;

/** Log lines are added in batches (at most every 100 ms): a busy gateway must not freeze the page. */
function appendLog(ts, sandbox, who, what, body, cls) {
  if ($('log-pause').checked) return;
  state.logCount++;
  logPending.push([ts, sandbox, who, what, body, cls]);
  if (logPending.length > LOG_MAX) logPending = logPending.slice(-LOG_MAX);
  logTimer ??= setTimeout(flushLog, 100);
}

function flushLog() {
  logTimer = null;
  const ol = $('log');
  const items = logPending.map((args) => logItem(...args)).reverse();
  logPending = [];
  ol.prepend(...items);
  while (ol.childElementCount > LOG_MAX) ol.lastElementChild.remove();
  $('log-count').textContent = `${state.logCount} seen`;
}

function logItem(ts, sandbox, who, what, body, cls) {
  const li = el(
    'li',
    { class: cls, dataset: { sandbox: sandbox ?? '' } },
    el('time', { text: shortTime(ts) }),
    el('span', { class: 'who', text: who }),
    el('b', { text: what }),
    body ? el('code', { text: body }) : null,
  );
  if (state.filter && sandbox !== state.filter) li.hidden = true;
  return li;
}

function applyFilter(value) {
  state.filter = value;
  $('filter').value = value;
  for (const li of $('log').children) li.hidden = !!value && li.dataset.sandbox !== value;
  // The server sends only this sandbox's messages from now on, and a fresh (filtered) tree.
  if (state.ws?.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: 'filter', sandbox: value || null }));
  scheduleRender();
}

// ---------- portal ----------

let portalTimer = null;
function schedulePortal() {
  clearTimeout(portalTimer);
  portalTimer = setTimeout(refreshPortal, 250);
}

async function refreshPortal() {
  if (!state.key) return;
  try {
    const [templates, pools, sandboxes] = await Promise.all([api('GET', '/templates'), api('GET', '/pool'), api('GET', '/sandboxes')]);
    state.templates = templates;
    state.sandboxes = sandboxes;
    renderTemplates(templates);
    renderPools(pools);
    renderSandboxes(sandboxes);
  } catch (err) {
    if (err.status !== 401) setStatus('sandbox-status', `refresh failed: ${err.message}`, true);
  }
}

function renderTemplates(templates) {
  const tbody = $('templates').tBodies[0];
  tbody.replaceChildren(
    ...templates.map((t) =>
      el(
        'tr',
        { dataset: { template: t.name } },
        el('td', { text: t.name }),
        el('td', {}, el('span', { class: `badge b-${t.backend}`, text: t.backend })),
        el('td', { class: 'dim path', text: t.path }),
        el('td', {}, el('button', { type: 'button', class: 'quiet', text: 'create', onclick: () => createSandbox(t.name) })),
      ),
    ),
  );
  const sel = $('create-template');
  const current = sel.value;
  sel.replaceChildren(...templates.map((t) => el('option', { value: t.name, text: `${t.name} (${t.backend})` })));
  if (templates.some((t) => t.name === current)) sel.value = current;
}

function renderPools(pools) {
  const tbody = $('pools').tBodies[0];
  $('pools-empty').hidden = pools.length > 0;
  tbody.replaceChildren(
    ...pools.map((p) => {
      const count = el('input', { type: 'number', min: '0', value: String(Math.max(1, p.available)), class: 'count', 'aria-label': 'slots' });
      return el(
        'tr',
        { dataset: { pool: p.template } },
        el('td', { text: p.template }),
        el('td', {}, el('span', { class: `badge b-${p.backend}`, text: p.backend })),
        el('td', { text: p.state }),
        el('td', { text: String(p.available) }),
        el('td', { text: String(p.inUse) }),
        el('td', { class: 'dim', text: p.progress ?? p.error ?? '' }),
        el(
          'td',
          { class: 'actions' },
          count,
          el('button', { type: 'button', class: 'quiet', text: 'warm', onclick: () => warmPool(p.template, Number(count.value)) }),
          el('button', { type: 'button', class: 'quiet', text: 'drain', onclick: () => drainPool(p.template) }),
        ),
      );
    }),
  );
}

function renderSandboxes(list) {
  $('sandbox-count').textContent = `(${list.length})`;
  const tbody = $('sandboxes').tBodies[0];
  tbody.replaceChildren(
    ...list.map((s) => {
      // What the template's backend can do decides the buttons (GET /templates capabilities).
      const snaps = state.templates.find((t) => t.name === s.templateID)?.capabilities?.snapshots ?? true;
      const act = (label, fn, enabled = true, title) =>
        el('button', { type: 'button', class: 'quiet', text: label, disabled: !enabled, title, dataset: { action: label }, onclick: fn });
      return el(
        'tr',
        { dataset: { sandbox: s.sandboxID, state: s.state }, class: state.consoleTarget === s.sandboxID ? 'selected' : '' },
        el('td', {}, el('code', { text: s.sandboxID })),
        el('td', { text: s.templateID }),
        el('td', {}, el('span', { class: `badge b-${s.backend}`, text: s.backend })),
        el('td', {}, el('span', { class: `state s-${s.state}`, text: s.state })),
        el('td', { text: s.ip ?? '' }),
        el('td', { text: String(s.processes ?? '') }),
        el('td', { class: 'dim nowrap', text: relTime(s.endAt) }),
        el(
          'td',
          { class: 'actions' },
          act('run', () => chooseConsole(s.sandboxID), s.state === 'running'),
          act('pause', () => sandboxAction(s.sandboxID, 'pause'), s.state === 'running'),
          act('resume', () => sandboxAction(s.sandboxID, 'resume'), s.state === 'paused'),
          act('snapshot', () => sandboxAction(s.sandboxID, 'snapshot'), snaps, snaps ? '' : `not supported on ${s.backend} backend v1`),
          act('fork', () => sandboxAction(s.sandboxID, 'fork'), snaps, snaps ? '' : `not supported on ${s.backend} backend v1`),
          act('inspect', () => applyFilter(s.sandboxID)),
          act('delete', () => deleteSandbox(s.sandboxID)),
        ),
      );
    }),
  );
  const filter = $('filter');
  const current = state.filter;
  filter.replaceChildren(el('option', { value: '', text: 'all' }), ...list.map((s) => el('option', { value: s.sandboxID, text: `${s.sandboxID} (${s.templateID})` })));
  if (current && !list.some((s) => s.sandboxID === current)) filter.append(el('option', { value: current, text: `${current} (gone)` }));
  filter.value = current;
  if (state.consoleTarget && !list.some((s) => s.sandboxID === state.consoleTarget)) chooseConsole(null);
}

async function createSandbox(template) {
  const timeout = Number($('create-timeout').value) || undefined;
  setStatus('create-status', `creating a sandbox from ${template}…`);
  try {
    const s = await api('POST', '/sandboxes', { templateID: template, ...(timeout ? { timeout } : {}) });
    setStatus('create-status', `created ${s.sandboxID} (${s.backend}, ${s.ip ?? 'no ip'})`);
    chooseConsole(s.sandboxID);
    await refreshPortal();
  } catch (err) {
    setStatus('create-status', `create failed: ${err.message}`, true);
  }
}

async function sandboxAction(id, action) {
  setStatus('sandbox-status', `${action} ${id}…`);
  try {
    const r = await api('POST', `/sandboxes/${id}/${action}`);
    const extra = action === 'snapshot' ? ` → ${r.snapshotID}` : action === 'fork' ? ` → ${r.sandboxID}` : '';
    setStatus('sandbox-status', `${action} ${id}: done${extra}`);
  } catch (err) {
    setStatus('sandbox-status', `${action} ${id} failed: ${err.message}`, true);
  }
  await refreshPortal();
}

async function deleteSandbox(id) {
  setStatus('sandbox-status', `deleting ${id}…`);
  try {
    await api('DELETE', `/sandboxes/${id}`);
    setStatus('sandbox-status', `deleted ${id}`);
  } catch (err) {
    setStatus('sandbox-status', `delete ${id} failed: ${err.message}`, true);
  }
  await refreshPortal();
}

async function warmPool(template, count) {
  setStatus('pool-status', `warming ${template} to ${count}…`);
  try {
    const res = await api('POST', `/pool/${template}/warm`, { count }, { raw: true, headers: { accept: 'application/x-ndjson' } });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (line.progress) setStatus('pool-status', `${template}: ${line.progress}`);
        if (line.done) setStatus('pool-status', `${template}: ${line.done.available} available, ${line.done.inUse} in use`);
        if (line.error) setStatus('pool-status', `${template}: ${line.error.message}`, true);
      }
    }
  } catch (err) {
    setStatus('pool-status', `warm ${template} failed: ${err.message}`, true);
  }
  await refreshPortal();
}

async function drainPool(template) {
  setStatus('pool-status', `draining ${template}…`);
  try {
    const r = await api('POST', `/pool/${template}/drain`);
    setStatus('pool-status', `${template} drained: ${r.available} available, ${r.inUse} in use`);
  } catch (err) {
    setStatus('pool-status', `drain ${template} failed: ${err.message}`, true);
  }
  await refreshPortal();
}

// ---------- console: a command over the exec WebSocket ----------

function chooseConsole(id) {
  state.consoleTarget = id;
  $('console-target').textContent = id ? `in ${id}` : '— select a sandbox';
  $('cmd').disabled = !id;
  $('run').disabled = !id;
  for (const tr of $('sandboxes').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.sandbox === id);
  if (id) $('cmd').focus();
}

function runCommand(cmd) {
  const id = state.consoleTarget;
  if (!id || !cmd) return;
  state.exec?.close();
  const out = $('exec-output');
  out.replaceChildren();
  setStatus('exec-status', 'starting…');
  const decoders = { 1: new TextDecoder(), 2: new TextDecoder() };
  const ws = new WebSocket(wsUrl(`/sandboxes/${id}/exec/ws`), ['coppice.exec.v1', `coppice.key.${state.key}`]);
  ws.binaryType = 'arraybuffer';
  state.exec = ws;
  let exited = false;
  ws.onopen = () => ws.send(JSON.stringify({ type: 'start', cmd }));
  ws.onmessage = (m) => {
    if (typeof m.data !== 'string') {
      const bytes = new Uint8Array(m.data);
      const tag = bytes[0];
      const text = decoders[tag === 2 ? 2 : 1].decode(bytes.subarray(1), { stream: true });
      if (text) out.append(el('span', { class: tag === 2 ? 'stderr' : 'stdout', text }));
      out.scrollTop = out.scrollHeight;
      return;
    }
    const msg = JSON.parse(m.data);
    if (msg.type === 'started') {
      setStatus('exec-status', `running (process ${msg.processID})…`);
      $('interrupt').disabled = false;
    } else if (msg.type === 'exit') {
      exited = true;
      const how = msg.reason ? ` (${msg.reason})` : msg.signal ? ` (signal ${msg.signal})` : '';
      setStatus('exec-status', `exited ${msg.exitCode ?? '—'}${how}`, msg.exitCode !== 0);
      out.dataset.exit = String(msg.exitCode);
    } else if (msg.type === 'error') {
      setStatus('exec-status', `${msg.error}: ${msg.message}`, true);
    }
  };
  ws.onclose = (e) => {
    $('interrupt').disabled = true;
    if (!exited && !$('exec-status').classList.contains('error')) setStatus('exec-status', `connection closed (${e.code})`, true);
    if (state.exec === ws) state.exec = null;
    schedulePortal();
  };
}

// ---------- wiring ----------

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const key = $('key').value.trim();
  $('login-error').textContent = '';
  try {
    await signIn(key);
    $('key').value = '';
  } catch (err) {
    $('login-error').textContent = err.message;
  }
});
$('logout').addEventListener('click', () => signOut());
$('create-form').addEventListener('submit', (e) => {
  e.preventDefault();
  createSandbox($('create-template').value);
});
$('reload-templates').addEventListener('click', async () => {
  try {
    const r = await api('POST', '/templates/reload');
    setStatus('create-status', `rescanned: ${r.templates.length} templates${r.warnings.length ? `; ${r.warnings.join('; ')}` : ''}`);
  } catch (err) {
    setStatus('create-status', `rescan failed: ${err.message}`, true);
  }
  refreshPortal();
});
$('exec-form').addEventListener('submit', (e) => {
  e.preventDefault();
  runCommand($('cmd').value);
});
$('interrupt').addEventListener('click', () => state.exec?.send(JSON.stringify({ type: 'signal', signal: 'SIGINT' })));
$('filter').addEventListener('change', (e) => applyFilter(e.target.value));
$('show-empty').addEventListener('change', scheduleRender);
$('show-effects').addEventListener('change', scheduleRender);
$('log-clear').addEventListener('click', () => {
  $('log').replaceChildren();
  $('log-dropped').textContent = '';
});
// The stream triggers refreshes as sandboxes come and go; this catches what it cannot see (endAt, pools).
setInterval(() => state.key && !document.hidden && refreshPortal(), 10_000);

if (state.key) showApp();
else signOut();
