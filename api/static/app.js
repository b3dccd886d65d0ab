// memsvc admin dashboard: plain JS over the public /v1 API, no build step, nothing from the internet.
// Memory text is untrusted: it only ever reaches the page through textContent / SVG text nodes.
'use strict';

const KINDS = ['episodic', 'semantic', 'procedural', 'profile'];
const TIERS = ['verbatim', 'summary', 'gist', 'archived'];
const KIND_COLORS = { episodic: '#4e79a7', semantic: '#f28e2b', procedural: '#59a14f', profile: '#b07aa1' };
// Mirrors memsvc/lifecycle/tiers.py: a memory's tier score is retention * (BASE + SPAN * importance),
// so a policy threshold on the score is a retention line at threshold / (BASE + SPAN * importance).
const IMPORTANCE_BASE = 0.75;
const IMPORTANCE_SPAN = 0.5;
const DAY = 86400;
const KEY_STORE = 'memsvc.apiKey';
const SVGNS = 'http://www.w3.org/2000/svg';

const state = {
  view: 'memories', features: new Set(), policy: null,
  mem: { cursor: null, filters: {}, selected: null },
  jobs: { cursor: null, timer: null, open: new Set() },
};

// ---- small DOM helpers --------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVGNS, tag);
  setAttrs(node, attrs);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.setAttribute('class', value);
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

const fmtNum = (x, digits = 3) => (typeof x === 'number' ? Number(x.toFixed(digits)).toString() : '');
const pct = (x) => (typeof x === 'number' ? `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%` : '');
const shortId = (id) => String(id).slice(0, 8);

function badge(text, cls) { return el('span', { class: `badge ${cls || ''} ${text}` }, text); }

function retentionBar(r) {
  const fill = el('span', { class: 'rbar-fill' });
  fill.style.width = `${Math.max(0, Math.min(1, r || 0)) * 100}%`;
  return el('span', { class: 'rbar', title: `retention ${pct(r)}` }, el('span', { class: 'rbar-track' }, fill), pct(r));
}

function formValues(form) {
  const out = {};
  for (const field of form.elements) {
    if (!field.name) continue;
    if (field.type === 'checkbox') out[field.name] = field.checked;
    else if (field.value.trim() !== '') out[field.name] = field.value.trim();
  }
  return out;
}

function showBanner(message, kind = 'error') {
  const banner = $('#banner');
  banner.textContent = message;
  banner.className = `banner ${kind}`;
  banner.hidden = !message;
}

// ---- API ----------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

const getKey = () => sessionStorage.getItem(KEY_STORE) || '';

async function api(method, path, { params, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  const headers = { Accept: 'application/json' };
  if (getKey()) headers.Authorization = `Bearer ${getKey()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'network', `cannot reach the server: ${err.message}`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.code || 'http_error', e.message || `${response.status} ${response.statusText}`);
  }
  return data;
}

// Which optional routes this server has (the lifecycle routes may be absent): read from its OpenAPI.
async function loadFeatures() {
  try {
    const spec = await api('GET', '/openapi.json');
    for (const [path, ops] of Object.entries(spec.paths || {})) {
      const generic = path.replace(/\{[^}]+\}/g, '{}');
      for (const method of Object.keys(ops)) state.features.add(`${method.toUpperCase()} ${generic}`);
    }
  } catch (err) {
    // Without the spec, assume everything exists and let each call report its own error.
    state.features = null;
  }
}

const has = (method, path) => state.features === null || state.features.has(`${method} ${path}`);

function reportError(err, where) {
  if (err instanceof ApiError && err.status === 401) {
    setKeyStatus('key rejected: ' + err.message, 'bad');
  }
  showBanner(`${where}: ${err.message}`);
}

// ---- key ----------------------------------------------------------------------------------------

function setKeyStatus(text, cls = '') {
  const status = $('#key-status');
  status.textContent = text;
  status.className = `status ${cls}`;
}

// The first-run hint (where the key is) shows until a key works.
const showFirstRun = (show) => { $('#first-run').hidden = !show; };

async function connect() {
  if (!getKey()) { setKeyStatus('no key', 'muted'); showFirstRun(true); return false; }
  try {
    const stats = await api('GET', '/v1/stats');
    setKeyStatus(`connected · ${stats.total} memories`, 'ok');
    showFirstRun(false);
    fillScopePickers(stats);
    showBanner('');
    return true;
  } catch (err) {
    const rejected = err.status === 401 || err.status === 403;
    setKeyStatus(rejected ? `key rejected: ${err.message}` : err.message, 'bad');
    showFirstRun(rejected);
    return false;
  }
}

function fillScopePickers(stats) {
  for (const name of ['user_id', 'agent_id', 'session_id']) {
    const list = clear($(`#dl-${name}`));
    for (const v of (stats.top_scopes && stats.top_scopes[name]) || []) {
      list.append(el('option', { value: v.value }, `${v.count} memories`));
    }
  }
}

// ---- views / routing ----------------------------------------------------------------------------

const VIEWS = {
  memories: () => (state.mem.loaded ? null : loadMemories(false)),
  tiers: () => loadTiers(),
  retention: () => { if ($('#ret-id').value.trim()) plotRetention(); else loadPolicy(); },
  jobs: () => loadJobs(false),
  playground: () => null,
};

function showView(name) {
  if (!VIEWS[name]) name = 'memories';
  state.view = name;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== `view-${name}`;
  for (const button of document.querySelectorAll('#nav button')) button.classList.toggle('active', button.dataset.view === name);
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  scheduleJobs();
  if (getKey()) VIEWS[name]();
}

// ---- memories -----------------------------------------------------------------------------------

async function loadMemories(more) {
  const tbody = $('#mem-table tbody');
  if (!more) { clear(tbody); state.mem.cursor = null; state.mem.filters = formValues($('#mem-filters')); }
  try {
    const page = await api('GET', '/v1/memories', { params: { ...state.mem.filters, cursor: more ? state.mem.cursor : null, limit: 50 } });
    state.mem.loaded = true;
    for (const m of page.items) tbody.append(memoryRow(m));
    state.mem.cursor = page.next_cursor;
    $('#mem-more').hidden = !page.next_cursor;
    $('#mem-count').textContent = `${tbody.rows.length} shown${page.next_cursor ? ', more available' : ''}`;
    if (!tbody.rows.length) tbody.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No memories match.')));
  } catch (err) { reportError(err, 'memories'); }
}

function memoryRow(m) {
  const scope = [m.user_id && `user ${m.user_id}`, m.agent_id && `agent ${m.agent_id}`, m.session_id && `session ${m.session_id}`]
    .filter(Boolean).join(' · ');
  return el('tr', { class: 'mem-row', dataset: { id: m.id, tier: m.tier, kind: m.kind }, onclick: () => openMemory(m.id) },
    el('td', { class: 'nowrap' }, fmtTime(m.recorded_at)),
    el('td', {}, badge(m.kind, 'kind')),
    el('td', {}, badge(m.tier, 'tier'), isSuperseded(m) ? [' ', badge('superseded', 'flag')] : null),
    el('td', { class: 'small' }, scope),
    el('td', { class: 'content' }, m.content),
    el('td', {}, retentionBar(m.retention)));
}

// Closed facts (superseded, or valid_to passed) stay queryable "as of" the past; the list marks them.
const isSuperseded = (m) => Boolean(m.superseded_by) || (m.valid_to && new Date(m.valid_to) <= new Date());

const RELATION_LABELS = {
  'derived_from out': 'derived from', 'derived_from in': 'source of',
  'supersedes out': 'supersedes', 'supersedes in': 'superseded by',
  'merged_into out': 'merged into', 'merged_into in': 'merged from',
};

async function openMemory(id) {
  if (state.view !== 'memories') showView('memories');
  state.mem.selected = id;
  for (const row of document.querySelectorAll('#mem-table tr.mem-row')) row.classList.toggle('selected', row.dataset.id === id);
  const pane = clear($('#mem-detail'));
  pane.append(el('p', { class: 'muted' }, 'Loading…'));
  try {
    const [m, lineage] = await Promise.all([
      api('GET', `/v1/memories/${encodeURIComponent(id)}`),
      api('GET', `/v1/memories/${encodeURIComponent(id)}/links`),
    ]);
    if (state.mem.selected !== id) return;
    clear(pane).append(memoryDetail(m, lineage));
  } catch (err) {
    clear(pane).append(el('p', { class: 'error' }, err.message));
  }
}

function memoryDetail(m, lineage) {
  const kv = (k, v) => [el('dt', {}, k), el('dd', {}, v)];
  const text = (label, value) => el('div', { class: 'textblock' }, el('h3', {}, label),
    value ? el('p', { class: 'memtext' }, value) : el('p', { class: 'muted' }, '(none yet)'));
  const links = el('ul', { id: 'lineage', class: 'lineage' });
  for (const link of lineage.links) {
    const label = RELATION_LABELS[`${link.relation} ${link.direction}`] || `${link.relation} (${link.direction})`;
    links.append(el('li', { class: 'link', dataset: { relation: link.relation, direction: link.direction, id: link.memory.id } },
      el('span', { class: 'rel' }, label), ' ',
      el('a', { href: `#memories`, onclick: (e) => { e.preventDefault(); openMemory(link.memory.id); } }, shortId(link.memory.id)),
      ' ', badge(link.memory.tier, 'tier'), ' ', el('span', { class: 'preview' }, link.memory.preview)));
  }
  if (!lineage.links.length) links.append(el('li', { class: 'muted' }, 'No lineage: not derived, superseded or merged.'));
  return el('div', { class: 'memory', dataset: { id: m.id } },
    el('div', { class: 'detail-head' }, badge(m.kind, 'kind'), ' ', badge(m.tier, 'tier'), ' ',
      el('code', { title: m.id }, m.id),
      el('button', { type: 'button', class: 'secondary small', onclick: () => { $('#ret-id').value = m.id; showView('retention'); } }, 'Retention curve')),
    text('Content', m.content), text('Summary', m.summary), text('Gist', m.gist),
    el('dl', { class: 'kv' },
      kv('retention now', retentionBar(m.retention)), kv('importance', fmtNum(m.importance)),
      kv('strength', fmtNum(m.strength)), kv('accessed', `${m.access_count}× · last ${fmtTime(m.last_accessed_at)}`),
      kv('occurred', fmtTime(m.occurred_at)), kv('recorded', fmtTime(m.recorded_at)),
      kv('valid', `${fmtTime(m.valid_from) || '−∞'} → ${fmtTime(m.valid_to) || 'now'}`),
      kv('scope', [m.user_id && `user ${m.user_id}`, m.agent_id && `agent ${m.agent_id}`, m.session_id && `session ${m.session_id}`].filter(Boolean).join(' · ') || '(tenant-wide)'),
      kv('tags', (m.tags || []).join(', ')),
      kv('metadata', Object.keys(m.metadata || {}).length ? JSON.stringify(m.metadata) : '')),
    el('h3', {}, 'Lineage'), links);
}

// ---- tiers --------------------------------------------------------------------------------------

async function loadTiers() {
  try {
    const stats = await api('GET', '/v1/stats', { params: formValues($('#tier-filters')) });
    drawTierChart(stats);
    drawTierTable(stats);
  } catch (err) { reportError(err, 'tiers'); }
}

function drawTierChart(stats) {
  const chart = clear($('#tier-chart'));
  const W = 720, H = 320, left = 56, right = 16, top = 18, bottom = 40;
  const tiers = Object.keys(stats.by_tier);
  const cell = {};
  for (const c of stats.by_tier_kind) cell[`${c.tier}|${c.kind}`] = c.count;
  const kinds = [...new Set([...KINDS, ...stats.by_tier_kind.map((c) => c.kind)])];
  const max = Math.max(1, ...tiers.map((t) => stats.by_tier[t]));
  const ticks = niceTicks(max);
  const ymax = ticks[ticks.length - 1];
  const y = (v) => top + (H - top - bottom) * (1 - v / ymax);
  for (const t of ticks) {
    chart.append(svg('line', { x1: left, x2: W - right, y1: y(t), y2: y(t), class: 'gridline' }));
    chart.append(svg('text', { x: left - 8, y: y(t) + 4, class: 'axis-label', 'text-anchor': 'end' }, t));
  }
  const slot = (W - left - right) / tiers.length;
  const barW = Math.min(90, slot * 0.6);
  tiers.forEach((tier, i) => {
    const x = left + slot * i + (slot - barW) / 2;
    const total = stats.by_tier[tier];
    const group = svg('g', { class: 'tier-bar', 'data-tier': tier, 'data-total': total });
    let acc = 0;
    for (const kind of kinds) {
      const count = cell[`${tier}|${kind}`] || 0;
      if (!count) continue;
      const rect = svg('rect', {
        class: 'bar', x, width: barW, y: y(acc + count), height: Math.max(0, y(acc) - y(acc + count)),
        fill: KIND_COLORS[kind] || '#999', 'data-tier': tier, 'data-kind': kind, 'data-count': count,
      });
      rect.append(svg('title', {}, `${tier} · ${kind}: ${count}`));
      group.append(rect);
      acc += count;
    }
    group.append(svg('text', { x: x + barW / 2, y: y(total) - 5, class: 'bar-total', 'text-anchor': 'middle' }, total));
    group.append(svg('text', { x: x + barW / 2, y: H - bottom + 18, class: 'axis-label tier-name', 'text-anchor': 'middle' }, tier));
    chart.append(group);
  });
  chart.append(svg('line', { x1: left, x2: W - right, y1: y(0), y2: y(0), class: 'axis' }));
  $('#tier-total').textContent = `· ${stats.total} in all`;
  const legend = clear($('#tier-legend'));
  for (const kind of kinds) {
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = KIND_COLORS[kind] || '#999';
    legend.append(el('span', { class: 'legend-item' }, swatch, `${kind} (${stats.by_kind[kind] || 0})`));
  }
}

function drawTierTable(stats) {
  const table = $('#tier-table');
  const kinds = Object.keys(stats.by_kind);
  const cell = {};
  for (const c of stats.by_tier_kind) cell[`${c.tier}|${c.kind}`] = c.count;
  clear(table.tHead).append(el('tr', {}, el('th', {}, 'tier'), kinds.map((k) => el('th', {}, k)), el('th', {}, 'total')));
  const body = clear(table.tBodies[0]);
  for (const tier of Object.keys(stats.by_tier)) {
    body.append(el('tr', { dataset: { tier } }, el('th', {}, tier), kinds.map((k) => el('td', {}, cell[`${tier}|${k}`] || 0)),
      el('td', { class: 'strong' }, stats.by_tier[tier])));
  }
  body.append(el('tr', { class: 'total' }, el('th', {}, 'total'), kinds.map((k) => el('td', {}, stats.by_kind[k])), el('td', { class: 'strong' }, stats.total)));
}

function niceTicks(max, count = 5) {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const stepInt = Math.max(1, Math.round(step));
  const ticks = [];
  for (let v = 0; v < max + stepInt; v += stepInt) ticks.push(v);
  return ticks;
}

// ---- retention ----------------------------------------------------------------------------------

async function loadPolicy() {
  const table = clear($('#policy-table tbody'));
  if (!has('GET', '/v1/policy')) {
    $('#policy-note').textContent = 'This server has no /v1/policy route yet; thresholds are not shown.';
    state.policy = null;
    return null;
  }
  try {
    const data = await api('GET', '/v1/policy');
    state.policy = data.policy || data;
    for (const [name, value] of Object.entries(state.policy)) {
      table.append(el('tr', { dataset: { field: name } }, el('th', {}, name), el('td', {}, value === null ? '—' : String(value))));
    }
    $('#policy-note').textContent = 'Tier thresholds apply to retention × (0.75 + 0.5 × importance); the chart draws them as retention lines for this memory.';
  } catch (err) {
    state.policy = null;
    $('#policy-note').textContent = `policy: ${err.message}`;
  }
  return state.policy;
}

// The curve route's exact shape is the lifecycle area's; accept the plausible ones: a list of
// [seconds, R] pairs or objects with a time field (seconds / days / ISO time) and a retention field.
function parseCurve(data) {
  const list = Array.isArray(data) ? data : (data.points || data.curve || data.samples || data.items || []);
  const secs = (p) => {
    for (const k of ['t_seconds', 'seconds', 'elapsed_seconds', 't']) if (typeof p[k] === 'number') return p[k];
    for (const k of ['t_days', 'days', 'day']) if (typeof p[k] === 'number') return p[k] * DAY;
    for (const k of ['at', 'time', 'timestamp']) if (p[k]) return new Date(p[k]).getTime() / 1000;
    return NaN;
  };
  const r = (p) => { for (const k of ['retention', 'r', 'R', 'value']) if (typeof p[k] === 'number') return p[k]; return NaN; };
  let pts = list.map((p) => (Array.isArray(p) ? [p[0], p[1]] : [secs(p), r(p)])).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
  if (pts.length && pts[0][0] > 1e9) pts = pts.map(([a, b]) => [a - pts[0][0], b]); // absolute times -> from the first
  return pts.map(([s, v]) => [s / DAY, v]);
}

async function plotRetention() {
  const id = $('#ret-id').value.trim();
  if (!id) return;
  const horizon = Number($('#ret-horizon').value);
  const [memory, policy] = await Promise.all([
    api('GET', `/v1/memories/${encodeURIComponent(id)}`).catch((err) => { reportError(err, 'retention'); return null; }),
    loadPolicy(),
  ]);
  if (!memory) return;
  showRetentionInfo(memory);
  const tau0Days = (policy && policy.tau0_days) || 30;
  let points = null;
  let note;
  if (has('GET', '/v1/memories/{}/retention')) {
    try {
      const data = await api('GET', `/v1/memories/${encodeURIComponent(id)}/retention`, {
        params: { horizon_days: horizon, points: 120 } });
      points = parseCurve(data);
      note = 'Curve from GET /v1/memories/{id}/retention (the server computes it with the same formula as the decay pass).';
    } catch (err) { note = `retention route: ${err.message}; `; }
  }
  if (!points || !points.length) {
    // Same formula as memsvc/lifecycle/retention.py, from the memory's own strength, starting now.
    const elapsed = Math.max(0, (Date.now() - new Date(memory.last_accessed_at).getTime()) / 1000);
    const denom = tau0Days * DAY * Math.max(memory.strength, 0.05);
    points = [];
    for (let i = 0; i <= 120; i += 1) {
      const t = (horizon * DAY * i) / 120;
      points.push([t / DAY, Math.exp(-Math.min(700, (elapsed + t) / denom))]);
    }
    note = (note || '') + `Computed in the browser from strength ${fmtNum(memory.strength)} and tau0 ${tau0Days} days: R = exp(-(t − last access) / (tau0 · strength)), from now.`;
  }
  const weight = IMPORTANCE_BASE + IMPORTANCE_SPAN * Math.min(1, Math.max(0, memory.importance));
  const hlines = [];
  if (policy) {
    for (const [name, cls] of [['summary_threshold', 'summary'], ['gist_threshold', 'gist'], ['archive_threshold', 'archived']]) {
      if (typeof policy[name] === 'number' && policy[name] / weight <= 1) hlines.push({ y: policy[name] / weight, label: `→ ${cls}`, cls });
    }
  }
  $('#ret-title').textContent = `· ${shortId(memory.id)} over ${horizon} days`;
  $('#ret-note').textContent = note;
  lineChart($('#ret-chart'), points, { xLabel: 'days', hlines });
}

function showRetentionInfo(m) {
  const dl = clear($('#ret-info'));
  const add = (k, v) => dl.append(el('dt', {}, k), el('dd', {}, v));
  add('content', el('span', { class: 'memtext clamp' }, m.content));
  add('tier', badge(m.tier, 'tier'));
  add('retention now', retentionBar(m.retention));
  add('importance', fmtNum(m.importance));
  add('strength', fmtNum(m.strength));
  add('last accessed', fmtTime(m.last_accessed_at));
}

function lineChart(chart, points, { xLabel, hlines = [] }) {
  clear(chart);
  const W = 720, H = 340, left = 52, right = 118, top = 14, bottom = 42;
  const xmax = Math.max(1e-9, ...points.map((p) => p[0]));
  const x = (v) => left + (W - left - right) * (v / xmax);
  const y = (v) => top + (H - top - bottom) * (1 - Math.max(0, Math.min(1, v)));
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg('line', { x1: left, x2: W - right, y1: y(t), y2: y(t), class: 'gridline' }));
    chart.append(svg('text', { x: left - 8, y: y(t) + 4, class: 'axis-label', 'text-anchor': 'end' }, t.toFixed(2)));
  }
  for (let i = 0; i <= 5; i += 1) {
    const v = (xmax * i) / 5;
    chart.append(svg('line', { x1: x(v), x2: x(v), y1: y(0), y2: y(0) + 5, class: 'axis' }));
    chart.append(svg('text', { x: x(v), y: y(0) + 18, class: 'axis-label', 'text-anchor': 'middle' }, fmtNum(v, v < 10 ? 1 : 0)));
  }
  chart.append(svg('text', { x: (left + W - right) / 2, y: H - 6, class: 'axis-title', 'text-anchor': 'middle' }, xLabel));
  chart.append(svg('line', { x1: left, x2: W - right, y1: y(0), y2: y(0), class: 'axis' }));
  chart.append(svg('line', { x1: left, x2: left, y1: y(0), y2: y(1), class: 'axis' }));
  for (const h of hlines) {
    chart.append(svg('line', { x1: left, x2: W - right, y1: y(h.y), y2: y(h.y), class: `threshold ${h.cls}`, 'data-threshold': h.cls }));
    chart.append(svg('text', { x: W - right + 4, y: y(h.y) + 4, class: `threshold-label ${h.cls}` }, `${h.label} ${h.y.toFixed(2)}`));
  }
  const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
  chart.append(svg('path', { d, class: 'curve', 'data-points': points.length }));
}

// ---- jobs ---------------------------------------------------------------------------------------

async function loadJobs(more) {
  const tbody = $('#jobs-table tbody');
  const unavailable = $('#jobs-unavailable');
  if (!has('GET', '/v1/jobs')) {
    unavailable.hidden = false;
    unavailable.textContent = 'This server has no /v1/jobs route (the lifecycle API is not installed).';
    $('#jobs-table').hidden = true;
    return;
  }
  unavailable.hidden = true;
  $('#jobs-table').hidden = false;
  try {
    const page = await api('GET', '/v1/jobs', { params: { ...formValues($('#jobs-filters')), cursor: more ? state.jobs.cursor : null, limit: 50 } });
    if (!more) clear(tbody);
    for (const job of page.items || []) tbody.append(...jobRows(job));
    state.jobs.cursor = page.next_cursor;
    $('#jobs-more').hidden = !page.next_cursor;
    $('#jobs-count').textContent = `${tbody.querySelectorAll('tr.job-row').length} shown`;
    $('#jobs-updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (!tbody.rows.length) tbody.append(el('tr', {}, el('td', { colspan: 10, class: 'muted' }, 'No jobs.')));
  } catch (err) { reportError(err, 'jobs'); }
}

function summarize(obj) {
  const entries = Object.entries(obj || {});
  return entries.filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ');
}

// One line for the row: the scalar fields, and how many items each list or object holds.
function resultLine(result) {
  return Object.entries(result || {}).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => {
    if (Array.isArray(v)) return `${k}: ${v.length}`;
    if (typeof v === 'object') return `${k}: {${Object.keys(v).length}}`;
    return `${k}: ${v}`;
  }).join(' · ');
}

// A job is a row, and (opened) a full-width row under it with everything it holds, pretty-printed in full.
function jobRows(job) {
  const open = state.jobs.open.has(job.id);
  const hasMore = Object.keys(job.result || {}).length || Object.keys(job.params || {}).length || job.error;
  const toggle = hasMore ? el('button', {
    type: 'button', class: 'secondary small expand', 'aria-expanded': String(open),
    onclick: () => { if (open) state.jobs.open.delete(job.id); else state.jobs.open.add(job.id); rerenderJob(job); },
  }, open ? 'hide' : 'details') : null;
  const row = el('tr', { class: 'job-row', dataset: { id: job.id, status: job.status, kind: job.kind } },
    el('td', {}, el('code', { title: job.id }, shortId(job.id))),
    el('td', {}, job.kind),
    el('td', {}, badge(job.status, 'status')),
    el('td', { class: 'num' }, job.attempts),
    el('td', { class: 'error-cell', title: job.error || '' }, job.error || ''),
    el('td', { class: 'nowrap' }, fmtTime(job.created_at)),
    el('td', { class: 'nowrap' }, fmtTime(job.started_at)),
    el('td', { class: 'nowrap' }, fmtTime(job.finished_at)),
    el('td', { class: 'small' }, summarize(job.scope)),
    el('td', { class: 'small result-cell' }, toggle, ' ', el('span', { class: 'result-line' }, resultLine(job.result))));
  if (!open) return [row];
  const block = (label, value) => [el('h3', {}, label), el('pre', { class: 'json' }, JSON.stringify(value, null, 2))];
  const detail = el('tr', { class: 'job-detail', dataset: { id: job.id } }, el('td', { colspan: 10 },
    job.error ? [el('h3', {}, 'error'), el('p', { class: 'error memtext' }, job.error)] : null,
    block('result', job.result || {}),
    Object.keys(job.params || {}).length ? block('params', job.params) : null));
  return [row, detail];
}

function rerenderJob(job) {
  const row = document.querySelector(`#jobs-table tr.job-row[data-id="${CSS.escape(job.id)}"]`);
  if (!row) return;
  const old = row.nextElementSibling;
  if (old && old.classList.contains('job-detail')) old.remove();
  row.replaceWith(...jobRows(job));
}

function scheduleJobs() {
  clearInterval(state.jobs.timer);
  state.jobs.timer = null;
  if (state.view === 'jobs' && $('#jobs-auto').checked) {
    state.jobs.timer = setInterval(() => { if (!document.hidden && getKey()) loadJobs(false); }, 5000);
  }
}

// ---- context playground -------------------------------------------------------------------------

async function runPlayground() {
  const values = formValues($('#pg-form'));
  const body = {
    query: values.query || '', budget_tokens: Number(values.budget_tokens || 0), model: values.model || 'cl100k_base',
    mode: values.mode || 'hybrid', include_archived: Boolean(values.include_archived),
  };
  for (const k of ['user_id', 'agent_id', 'session_id']) if (values[k]) body[k] = values[k];
  $('#pg-run').disabled = true;
  try {
    const result = await api('POST', '/v1/context', { body });
    showBanner('');
    renderContext(result);
  } catch (err) { reportError(err, 'context'); } finally { $('#pg-run').disabled = false; }
}

function renderContext(result) {
  $('#pg-output').hidden = false;
  const summary = $('#pg-summary');
  summary.textContent = `· ${result.token_count} / ${result.budget_tokens} tokens · ${result.tokenizer}${result.exact ? '' : ' (approximate counter)'}`
    + ` · ${result.items.length} in, ${result.left_out.length} left out`;
  summary.dataset.tokens = result.token_count;
  summary.dataset.budget = result.budget_tokens;
  $('#pg-meter').style.width = `${result.budget_tokens ? Math.min(100, (100 * result.token_count) / result.budget_tokens) : 0}%`;
  $('#pg-context').textContent = result.context || '(empty context)';
  const items = clear($('#pg-items tbody'));
  for (const it of result.items) {
    items.append(el('tr', { class: 'pg-item', dataset: { id: it.id, fidelity: it.fidelity }, onclick: () => openMemory(it.id) },
      el('td', {}, it.section), el('td', {}, badge(it.kind, 'kind')), el('td', {}, badge(it.fidelity, 'tier')),
      el('td', { class: 'num' }, it.tokens), el('td', { class: 'num' }, fmtNum(it.score, 4)), el('td', { class: 'num' }, fmtNum(it.value, 4)),
      el('td', { class: 'reason' }, it.reason), el('td', { class: 'preview', 'data-preview': it.id }, shortId(it.id))));
  }
  if (!result.items.length) items.append(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'Nothing fitted or matched.')));
  const left = clear($('#pg-leftout tbody'));
  for (const lo of result.left_out) {
    left.append(el('tr', { class: 'pg-left', dataset: { id: lo.id }, onclick: () => openMemory(lo.id) },
      el('td', { class: 'num' }, fmtNum(lo.score, 4)), el('td', { class: 'reason' }, lo.reason),
      el('td', { class: 'preview', 'data-preview': lo.id }, shortId(lo.id))));
  }
  if (!result.left_out.length) left.append(el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'Nothing was left out.')));
  fillPreviews([...result.items, ...result.left_out].map((x) => x.id).slice(0, 60));
}

// Show what each id is (its text), a few requests at a time.
async function fillPreviews(ids) {
  const queue = [...new Set(ids)];
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      try {
        const m = await api('GET', `/v1/memories/${encodeURIComponent(id)}`);
        for (const cell of document.querySelectorAll(`td[data-preview="${CSS.escape(id)}"]`)) {
          clear(cell).append(el('code', { title: id }, shortId(id)), ' ', el('span', { class: 'memtext clamp' }, m.content));
        }
      } catch (err) { /* a deleted memory keeps its id only */ }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

// ---- wiring -------------------------------------------------------------------------------------

function fillSelect(select, values) { for (const v of values) select.append(el('option', { value: v }, v)); }

async function init() {
  fillSelect($('#mem-filters [name=kind]'), KINDS);
  fillSelect($('#mem-filters [name=tier]'), TIERS);
  for (const button of document.querySelectorAll('#nav button')) button.addEventListener('click', () => showView(button.dataset.view));
  window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
  $('#key-input').value = getKey();
  $('#key-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, $('#key-input').value.trim());
    state.mem.loaded = false;
    if (await connect()) showView(state.view);
  });
  $('#key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORE);
    $('#key-input').value = '';
    connect();
  });
  $('#mem-filters').addEventListener('submit', (e) => { e.preventDefault(); loadMemories(false); });
  $('#mem-filters').addEventListener('reset', () => setTimeout(() => loadMemories(false), 0));
  $('#mem-more').addEventListener('click', () => loadMemories(true));
  $('#tier-filters').addEventListener('submit', (e) => { e.preventDefault(); loadTiers(); });
  $('#ret-form').addEventListener('submit', (e) => { e.preventDefault(); plotRetention(); });
  $('#jobs-filters').addEventListener('submit', (e) => { e.preventDefault(); loadJobs(false); });
  $('#jobs-filters [name=status]').addEventListener('change', () => loadJobs(false));
  $('#jobs-more').addEventListener('click', () => loadJobs(true));
  $('#jobs-auto').addEventListener('change', scheduleJobs);
  $('#pg-form').addEventListener('submit', (e) => { e.preventDefault(); runPlayground(); });
  await loadFeatures();
  await connect();
  showView(location.hash.slice(1) || 'memories');
  document.body.dataset.ready = 'true';
}

document.addEventListener('DOMContentLoaded', init);
