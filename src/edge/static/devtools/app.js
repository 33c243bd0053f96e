// coppice devtools + portal: plain browser JavaScript, no dependencies, no build step.
//
// Auth: the key typed in the login form lives in sessionStorage ('coppice.key'); REST calls send it
// as `Authorization: Bearer`, WebSockets as the subprotocol `coppice.key.<key>` next to the
// endpoint's own (`coppice.devtools.v1`, `coppice.exec.v1`). Nothing is rendered with innerHTML.

const KEY_STORE = 'coppice.key';
const LOG_MAX = 500;
const GONE_AFTER_MS = 4000;
const TREE_MAX_SANDBOXES = 300;
const SAMPLE_MS = 5000;
const SAMPLES_MAX = 60;

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
  snapshots: [],
  /** Chart samples: { t, byState: {state: n}, exec: {count, sum, buckets: [[le, n]]} | null } */
  samples: [],
  sampler: null,
  /** `${sandbox}:${processId}` -> the command, from EXEC events (for "exec finished" lines) */
  commands: new Map(),
  /** snapshotID -> the sandbox it was taken of, from SNAPSHOT events (a fork says where it came from) */
  snapshotOf: new Map(),
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
  stopSampler();
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
  startSampler();
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
  if (node.kind !== 'effect' && before !== msg.state) {
    if ($('log-snapshots').checked) appendLog('log-raw', msg.ts, msg.sandbox, labelOf(node), `→ ${msg.state ?? msg.status}`, '', 'transition');
    const w = snapshotWords(node, before, msg);
    if (w) appendLog('log', msg.ts, msg.sandbox, '', w.text, '', `word ${w.cls ?? ''}`);
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
  appendLog('log-raw', msg.ts, msg.sandbox, who, type, body, type.startsWith('xstate.') ? 'internal' : 'event');
  const w = eventWords(msg, target);
  if (w) appendLog('log', msg.ts, msg.sandbox, '', w.text, '', `word ${w.cls ?? ''}`);
}

// ---------- events in words ----------
// The stream speaks XState (events to actors, snapshots of actors). These two functions say what
// happened in the words a user would use; everything else (xstate.init, promise plumbing, shard
// bookkeeping) is left to the raw view.

/** A command as typed: `/bin/sh -c "ls /"` reads as `ls /`. */
function commandText(argv) {
  if (!Array.isArray(argv)) return '?';
  if (argv.length === 3 && /(^|\/)(ba)?sh$/.test(argv[0]) && argv[1] === '-c') return argv[2];
  return argv.join(' ');
}

function bytesText(n) {
  if (!Number.isFinite(n)) return '';
  return n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MB` : `${(n / 1024 ** 3).toFixed(1)} GB`;
}

function errorText(err) {
  return err?.message ?? err?.code ?? 'unknown error';
}

function eventWords(msg, target) {
  const e = msg.event;
  const sb = msg.sandbox;
  const t = e.type;
  if (t === 'SPAWN') {
    if (target?.kind !== 'gateway') return null; // the shard's copy of the same spawn
    const i = e.input ?? {};
    const snap = i.fromSnapshot?.snapshotID;
    // A fork is a start from a snapshot taken for it (and consumed by it).
    if (snap && i.fromSnapshot.consume && state.snapshotOf.has(snap)) return { text: `sandbox ${i.id ?? sb} forked from ${state.snapshotOf.get(snap)}` };
    const from = snap ? `snapshot ${snap}` : `template ${i.template}`;
    return i.pooled ? { text: `pool slot for ${i.template} starting (${i.id})` } : { text: `sandbox ${i.id ?? sb} starting from ${from}` };
  }
  if (t === 'SNAPSHOT' && e.snapshotID) {
    state.snapshotOf.set(e.snapshotID, sb);
    if (state.snapshotOf.size > 500) state.snapshotOf.delete(state.snapshotOf.keys().next().value);
    return null;
  }
  if (t === 'ADOPT') return { text: `sandbox ${sb} adopted after a restart` };
  if (t === 'EXEC') {
    const cmd = commandText(e.request?.argv);
    state.commands.set(`${sb}:${e.processId}`, cmd);
    if (state.commands.size > 2000) state.commands.delete(state.commands.keys().next().value);
    return { text: `exec started in ${sb}: ${cmd}` };
  }
  if (t === 'EXITED') {
    const pid = target?.id?.replace(/^proc:/, '');
    const cmd = state.commands.get(`${sb}:${pid}`) ?? commandText(target?.context?.request?.argv);
    state.commands.delete(`${sb}:${pid}`);
    const x = e.exit ?? {};
    const how = x.signal ? `killed by ${x.signal}` : `exit ${x.exitCode ?? '?'}`;
    return { text: `exec finished in ${sb}: ${cmd} → ${how}${x.reason ? ` (${x.reason})` : ''}`, cls: x.exitCode === 0 ? 'w-ok' : 'w-bad' };
  }
  if (t === 'SIGNAL' || t === 'SIGINT') {
    const to = target?.kind === 'process' ? `process ${target.id.replace(/^proc:/, '')}` : target ? labelOf(target) : 'a process';
    return { text: `${e.signal ?? 'SIGINT'} sent to ${to} in ${sb}` };
  }
  if (t === 'EXPIRE') return { text: `sandbox ${sb} timed out` };
  if (t === 'SET_TIMEOUT') return { text: `sandbox ${sb} now ends in ${Math.round((e.timeoutMs ?? 0) / 1000)} s` };
  if (t === 'CONNECT') return { text: `sandbox ${sb} connected (ends in ${Math.round((e.timeoutMs ?? 0) / 1000)} s)` };
  if (t === 'WARM') return { text: `pool ${poolName(target)} warming to ${e.count}` };
  if (t === 'PROGRESS') return { text: `pool ${poolName(target)}: ${e.line}` };
  if (t === 'RELOAD') return { text: 'templates rescanned' };
  if (t.startsWith('xstate.done.actor.')) {
    const out = e.output;
    if (target?.kind === 'sandbox' && out?.snapshotID && out.sizeBytes !== undefined) {
      return { text: `snapshot ${out.snapshotID} saved from ${out.sandboxID ?? sb} (${bytesText(out.sizeBytes)})`, cls: 'w-ok' };
    }
    if (out?.error && target?.kind === 'gateway') return { text: `create failed: ${errorText(out.error)}`, cls: 'w-bad' };
    return null;
  }
  if (t.startsWith('xstate.error.actor.')) {
    const what = state.nodes.get(msg.source)?.src ?? e.actorId ?? 'a step';
    return { text: `${what} failed${sb ? ` in ${sb}` : ''}: ${errorText(e.error)}`, cls: 'w-bad' };
  }
  // Requests whose outcome shows as a state change (said there), and plumbing.
  if (t.startsWith('xstate.') || ['CREATE', 'PAUSE', 'RESUME', 'SNAPSHOT', 'DESTROY', 'STDIN', 'CLOSE_STDIN', 'REFRESH', 'TAKE', 'CHECKOUT', 'EMPTY'].includes(t)) return null;
  return { text: `${t.toLowerCase().replace(/_/g, ' ')} → ${target ? labelOf(target) : msg.targetId}` };
}

function poolName(node) {
  return String(node?.systemId ?? node?.id ?? '?').replace(/^pool:/, '');
}

/** A state change in words, or null when it is plumbing or said elsewhere (exec start/finish). */
function snapshotWords(node, before, msg) {
  const s = msg.state;
  if (node.kind === 'sandbox') {
    const id = msg.sandbox ?? node.id;
    switch (s) {
      case 'ready':
        if (before === 'resuming') return { text: `sandbox ${id} resumed` };
        if (before === 'exec' || before === 'snapshotting' || before === 'ready') return null;
        return { text: `sandbox ${id} ready${node.context?.ip ? ` at ${node.context.ip}` : ''}`, cls: 'w-ok' };
      case 'paused':
        return { text: `sandbox ${id} paused` };
      case 'draining':
        return { text: `sandbox ${id} stopping` };
      case 'gone':
        return { text: `sandbox ${id} deleted` };
      case 'failed':
        return { text: `sandbox ${id} failed${node.context?.error ? `: ${errorText(node.context.error)}` : ''}`, cls: 'w-bad' };
      case 'exec': case 'provisioning': case 'checkout': case 'warm': case 'pausing': case 'resuming': case 'snapshotting': case 'standby':
        return null;
      default:
        return s ? { text: `sandbox ${id} ${s}` } : null;
    }
  }
  if (node.kind === 'gateway') return { text: `gateway ${s ?? msg.status}` };
  if (node.kind === 'pool') return { text: `pool ${poolName(node)} ${s ?? msg.status}` };
  return null;
}

const logs = { log: { pending: [], timer: null }, 'log-raw': { pending: [], timer: null } };

/** Log lines are added in batches (at most every 100 ms): a busy gateway must not freeze the page. */
function appendLog(list, ts, sandbox, who, what, body, cls) {
  if ($('log-pause').checked) return;
  const l = logs[list];
  if (list === 'log') state.logCount++;
  l.pending.push([ts, sandbox, who, what, body, cls]);
  if (l.pending.length > LOG_MAX) l.pending = l.pending.slice(-LOG_MAX);
  l.timer ??= setTimeout(() => flushLog(list), 100);
}

function flushLog(list) {
  const l = logs[list];
  l.timer = null;
  const ol = $(list);
  const items = l.pending.map((args) => logItem(...args)).reverse();
  l.pending = [];
  ol.prepend(...items);
  while (ol.childElementCount > LOG_MAX) ol.lastElementChild.remove();
  $('log-count').textContent = `${state.logCount} in words`;
}

function logItem(ts, sandbox, who, what, body, cls) {
  const li = el(
    'li',
    { class: cls, dataset: { sandbox: sandbox ?? '' } },
    el('time', { text: shortTime(ts) }),
    who ? el('span', { class: 'who', text: who }) : null,
    el('b', { text: what }),
    body ? el('code', { text: body }) : null,
  );
  if (state.filter && sandbox !== state.filter) li.hidden = true;
  return li;
}

function applyFilter(value) {
  state.filter = value;
  $('filter').value = value;
  for (const list of ['log', 'log-raw']) for (const li of $(list).children) li.hidden = !!value && li.dataset.sandbox !== value;
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
    // A snapshot store that cannot list must not blank the rest of the portal.
    const snapshots = api('GET', '/snapshots').catch((err) => (err.status === 401 ? Promise.reject(err) : err));
    const [templates, pools, sandboxes] = await Promise.all([api('GET', '/templates'), api('GET', '/pool'), api('GET', '/sandboxes')]);
    state.templates = templates;
    state.sandboxes = sandboxes;
    renderTemplates(templates);
    renderPools(pools);
    renderSandboxes(sandboxes);
    renderSnapshots(await snapshots);
    // The chart's legend says the count of now; its bars are the 5 s samples.
    state.liveCounts = countStates(sandboxes);
    drawCharts();
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
      const noSnaps = snaps ? undefined : `not supported on ${s.backend} backend v1`;
      const act = (action, label, fn, enabled, title, cls = 'quiet') =>
        el('button', { type: 'button', class: cls, text: label, disabled: !enabled, title, 'aria-label': `${action} ${s.sandboxID}`, dataset: { action }, onclick: fn });
      const running = s.state === 'running';
      return el(
        'tr',
        { dataset: { sandbox: s.sandboxID, state: s.state }, class: state.consoleTarget === s.sandboxID ? 'selected' : '' },
        el('td', {}, el('code', { text: s.sandboxID })),
        el('td', {}, `${s.templateID} `, el('span', { class: `badge b-${s.backend}`, text: s.backend })),
        el('td', {}, el('span', { class: `state s-${s.state}`, text: s.state })),
        el('td', { text: s.ip ?? '' }),
        el('td', { text: String(s.processes ?? '') }),
        el('td', { class: 'dim', text: relTime(s.endAt) }),
        el(
          'td',
          { class: 'actions' },
          act('run', 'run', () => chooseConsole(s.sandboxID), running, 'open this sandbox in the console'),
          // One of pause/resume: the sandbox is in one of the two states.
          s.state === 'paused'
            ? act('resume', 'resume', () => sandboxAction(s.sandboxID, 'resume'), true, 'resume')
            : act('pause', 'pause', () => sandboxAction(s.sandboxID, 'pause'), running, 'pause (freeze)'),
          act('snapshot', 'snap', () => sandboxAction(s.sandboxID, 'snapshot'), snaps, noSnaps ?? 'take a snapshot'),
          act('fork', 'fork', () => sandboxAction(s.sandboxID, 'fork'), snaps, noSnaps ?? 'snapshot and start a copy'),
          act('inspect', 'inspect', () => applyFilter(s.sandboxID), true, 'show only this sandbox in the tree and the events'),
          act('delete', 'delete', () => deleteSandbox(s), true, 'delete (asks first)', 'quiet danger-quiet'),
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

function renderSnapshots(list) {
  const tbody = $('snapshots').tBodies[0];
  if (!Array.isArray(list)) {
    setStatus('snapshot-status', `listing snapshots failed: ${list?.message ?? 'unknown error'}`, true);
    return;
  }
  state.snapshots = list;
  if ($('snapshot-status').textContent.startsWith('listing snapshots failed')) setStatus('snapshot-status', '');
  $('snapshot-count').textContent = `(${list.length})`;
  $('snapshots-empty').hidden = list.length > 0;
  $('snapshots').hidden = list.length === 0;
  const newest = [...list].sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
  tbody.replaceChildren(
    ...newest.map((n) =>
      el(
        'tr',
        { dataset: { snapshot: n.snapshotID } },
        el('td', {}, el('code', { text: n.snapshotID })),
        el('td', {}, el('code', { text: n.sandboxID })),
        el('td', {}, `${n.template} `, el('span', { class: `badge b-${n.backend}`, text: n.backend })),
        el('td', { text: bytesText(n.sizeBytes) }),
        el('td', { class: 'dim', title: n.createdAt, text: relTime(n.createdAt) }),
        el(
          'td',
          { class: 'actions' },
          el('button', { type: 'button', class: 'quiet', text: 'start', title: 'create a sandbox from this snapshot', dataset: { action: 'start' }, onclick: () => startFromSnapshot(n) }),
          el('button', { type: 'button', class: 'quiet danger-quiet', text: 'delete', title: 'delete (asks first)', dataset: { action: 'delete' }, onclick: () => deleteSnapshot(n) }),
        ),
      ),
    ),
  );
}

async function startFromSnapshot(n) {
  const timeout = Number($('create-timeout').value) || undefined;
  setStatus('snapshot-status', `starting a sandbox from ${n.snapshotID}…`);
  try {
    const s = await api('POST', '/sandboxes', { snapshotID: n.snapshotID, ...(timeout ? { timeout } : {}) });
    setStatus('snapshot-status', `started ${s.sandboxID} from ${n.snapshotID}`);
  } catch (err) {
    setStatus('snapshot-status', `start from ${n.snapshotID} failed: ${err.message}`, true);
  }
  await refreshPortal();
}

async function deleteSnapshot(n) {
  const ok = await confirmStep(`Delete snapshot ${n.snapshotID}?`, `Taken from sandbox ${n.sandboxID} (${n.template}, ${bytesText(n.sizeBytes)}). Sandboxes started from it keep running.`, 'Delete snapshot');
  if (!ok) {
    setStatus('snapshot-status', `kept ${n.snapshotID}`);
    return;
  }
  setStatus('snapshot-status', `deleting ${n.snapshotID}…`);
  try {
    await api('DELETE', `/snapshots/${encodeURIComponent(n.snapshotID)}`);
    setStatus('snapshot-status', `deleted ${n.snapshotID}`);
  } catch (err) {
    setStatus('snapshot-status', `delete ${n.snapshotID} failed: ${err.message}`, true);
  }
  await refreshPortal();
}

// ---------- confirmation: an in-page modal <dialog> (window.confirm would block the page) ----------

let confirmPending = null;
/** Resolves true on the OK button, false on Cancel, Escape or a second request. */
function confirmStep(title, text, okLabel) {
  confirmPending?.(false);
  const d = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    confirmPending = (answer) => {
      confirmPending = null;
      if (d.open) d.close();
      resolve(answer);
    };
    d.showModal();
    $('confirm-cancel').focus();
  });
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

async function deleteSandbox(s) {
  const id = s.sandboxID;
  const procs = s.processes ? ` Its ${s.processes} running process${s.processes === 1 ? '' : 'es'} are killed.` : '';
  const ok = await confirmStep(`Delete sandbox ${id}?`, `${s.templateID} on ${s.backend}, ${s.ip ?? 'no ip'}.${procs} Its filesystem is removed; snapshots taken from it stay.`, 'Delete sandbox');
  if (!ok) {
    setStatus('sandbox-status', `kept ${id}`);
    return;
  }
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

// ---------- live charts: sandboxes by state (GET /sandboxes), exec latency (GET /metrics) ----------

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** coppice_exec_seconds summed over its labels (backends): count, sum and cumulative buckets. */
function parseExecHistogram(text) {
  let count = 0;
  let sum = 0;
  const buckets = new Map();
  for (const line of text.split('\n')) {
    const m = /^coppice_exec_seconds_(bucket|sum|count)(?:\{([^}]*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (m[1] === 'sum') sum += v;
    else if (m[1] === 'count') count += v;
    else {
      const le = /le="([^"]+)"/.exec(m[2] ?? '')?.[1];
      if (le !== undefined) buckets.set(le, (buckets.get(le) ?? 0) + v);
    }
  }
  const sorted = [...buckets].map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n]).sort((a, b) => a[0] - b[0]);
  return { count, sum, buckets: sorted };
}

/** Exec latency between two samples: how many ran, their mean, and the bucket bound holding the 95th. */
function execInterval(prev, cur) {
  if (!prev?.exec || !cur?.exec) return null;
  const n = cur.exec.count - prev.exec.count;
  if (n <= 0) return { n: 0 };
  const before = new Map(prev.exec.buckets);
  let p95 = Infinity;
  for (const [le, total] of cur.exec.buckets) {
    if (total - (before.get(le) ?? 0) >= 0.95 * n) {
      p95 = le;
      break;
    }
  }
  return { n, meanMs: ((cur.exec.sum - prev.exec.sum) / n) * 1000, p95Ms: p95 * 1000 };
}

function msText(ms) {
  if (!Number.isFinite(ms)) return 'over the largest bucket';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

function countStates(list) {
  const c = { running: 0, paused: 0, other: 0 };
  for (const s of list) c[s.state === 'running' || s.state === 'paused' ? s.state : 'other']++;
  return c;
}

async function takeSample() {
  if (!state.key || document.hidden) return;
  const [sandboxes, metrics] = await Promise.all([
    api('GET', '/sandboxes').catch(() => null),
    api('GET', '/metrics', undefined, { raw: true }).then((r) => r.text(), (err) => ({ error: err.message })),
  ]);
  if (!state.key) return;
  const sample = { t: Date.now(), byState: sandboxes ? countStates(sandboxes) : null, exec: typeof metrics === 'string' ? parseExecHistogram(metrics) : null, error: metrics?.error };
  state.samples.push(sample);
  if (state.samples.length > SAMPLES_MAX) state.samples.shift();
  drawCharts();
}

function startSampler() {
  stopSampler();
  state.samples = [];
  state.liveCounts = null;
  takeSample();
  state.sampler = setInterval(takeSample, SAMPLE_MS);
}

function stopSampler() {
  clearInterval(state.sampler);
  state.sampler = null;
}

function legendItem(cls, text) {
  return el('span', {}, el('i', { class: cls }), text);
}

function drawCharts() {
  const W = 300;
  const H = 70;
  const slot = W / SAMPLES_MAX;
  const samples = state.samples;
  // Newest on the right edge.
  const x0 = W - samples.length * slot;

  const states = $('chart-states');
  const max = Math.max(1, ...samples.map((p) => (p.byState ? p.byState.running + p.byState.paused + p.byState.other : 0)));
  const bars = [];
  samples.forEach((p, i) => {
    if (!p.byState) return;
    let y = H;
    for (const k of ['running', 'paused', 'other']) {
      const h = (p.byState[k] / max) * (H - 4);
      if (h <= 0) continue;
      y -= h;
      bars.push(svg('rect', { class: `c-${k}`, x: (x0 + i * slot + 0.5).toFixed(2), y: y.toFixed(2), width: (slot - 1).toFixed(2), height: h.toFixed(2) }));
    }
  });
  states.replaceChildren(...bars);
  const last = state.liveCounts ?? [...samples].reverse().find((p) => p.byState)?.byState ?? { running: 0, paused: 0, other: 0 };
  Object.assign(states.dataset, { running: last.running, paused: last.paused, other: last.other, samples: samples.length });
  $('chart-states-legend').replaceChildren(
    legendItem('c-running', `running ${last.running}`),
    legendItem('c-paused', `paused ${last.paused}`),
    legendItem('c-other', `other ${last.other}`),
    el('span', { class: 'dim', text: `max ${max}` }),
  );

  const lat = $('chart-latency');
  const intervals = samples.map((p, i) => (i ? execInterval(samples[i - 1], p) : null));
  const seen = intervals.filter((v) => v?.n > 0);
  const top = Math.max(1, ...seen.map((v) => (Number.isFinite(v.p95Ms) ? v.p95Ms : v.meanMs)));
  const line = (key, cls) => {
    const pts = intervals
      .map((v, i) => (v?.n > 0 ? `${(x0 + (i + 0.5) * slot).toFixed(2)},${(H - 2 - (Math.min(Number.isFinite(v[key]) ? v[key] : top, top) / top) * (H - 6)).toFixed(2)}` : null))
      .filter(Boolean);
    if (pts.length === 1) pts.push(pts[0].replace(/^[\d.]+/, (x) => String(Number(x) + slot / 2)));
    return pts.length ? svg('polyline', { class: cls, points: pts.join(' ') }) : null;
  };
  lat.replaceChildren(...[line('p95Ms', 'c-p95'), line('meanMs', 'c-mean')].filter(Boolean));
  const execs = seen.reduce((a, v) => a + v.n, 0);
  const recent = [...intervals].reverse().find((v) => v?.n > 0);
  Object.assign(lat.dataset, { execs, samples: samples.length, mean: recent ? Math.round(recent.meanMs) : '' });
  const err = samples.at(-1)?.error;
  $('chart-latency-legend').replaceChildren(
    ...(err
      ? [el('span', { class: 'error', text: `metrics unavailable: ${err}` })]
      : recent
        ? [legendItem('c-mean', `mean ${msText(recent.meanMs)}`), legendItem('c-p95', `p95 ≤ ${msText(recent.p95Ms)}`), el('span', { class: 'dim', text: `${execs} execs` })]
        : [el('span', { class: 'dim', text: samples.length < 2 ? 'waiting for a second sample' : 'no execs yet (buffered exec only)' })]),
  );
  $('chart-note').textContent = `last ${Math.round((samples.length * SAMPLE_MS) / 60000) || '<1'} min, a sample every ${SAMPLE_MS / 1000} s`;
}

// ---------- console: a command over the exec WebSocket ----------

function chooseConsole(id) {
  state.consoleTarget = id;
  $('console-target').textContent = id ? `in ${id}` : "— pick a sandbox's run button";
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
$('confirm-ok').addEventListener('click', () => confirmPending?.(true));
$('confirm-cancel').addEventListener('click', () => confirmPending?.(false));
$('confirm').addEventListener('close', () => confirmPending?.(false));
$('create-form').addEventListener('submit', (e) => {
  e.preventDefault();
  createSandbox($('create-template').value);
});
$('reload-templates').addEventListener('click', async () => {
  try {
    const r = await api('POST', '/templates/reload');
    setStatus('templates-status', `rescanned: ${r.templates.length} templates${r.warnings.length ? `; ${r.warnings.join('; ')}` : ''}`);
  } catch (err) {
    setStatus('templates-status', `rescan failed: ${err.message}`, true);
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
$('log-raw-toggle').addEventListener('change', (e) => {
  $('log').hidden = e.target.checked;
  $('log-raw').hidden = !e.target.checked;
  $('side').classList.toggle('raw', e.target.checked);
});
$('log-clear').addEventListener('click', () => {
  $('log').replaceChildren();
  $('log-raw').replaceChildren();
  $('log-dropped').textContent = '';
});
// The stream triggers refreshes as sandboxes come and go; this catches what it cannot see (endAt, pools).
setInterval(() => state.key && !document.hidden && refreshPortal(), 10_000);

if (state.key) showApp();
else signOut();
