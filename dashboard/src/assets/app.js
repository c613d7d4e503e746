// The ekube dashboard's page. Every API call goes, relative to this page, to the dashboard,
// which relays it to the apiserver with the token the viewer signed in with (sent in
// X-Dashboard-Token). Everything shown is built with DOM calls and text nodes, never with
// markup from the cluster.
'use strict';

const TOKEN_KEY = 'ekube-dashboard-token';
const NAMESPACE_KEY = 'ekube-dashboard-namespace';
const ALL = '';
const REFRESH_MS = 5000;

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const picker = document.getElementById('namespace-picker');
const namespaceSelect = document.getElementById('namespace');
const signout = document.getElementById('signout');

// ---- The API, as the viewer -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign(
    { 'X-Dashboard-Token': sessionStorage.getItem(TOKEN_KEY) || '', Accept: 'application/json' },
    options.headers || {},
  );
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  const text = await resp.text();
  if (!resp.ok) {
    let message = text;
    try {
      message = JSON.parse(text).message || text;
    } catch (_) {
      // Not a Status: show the text as it came.
    }
    throw new ApiError(resp.status, `${resp.status}: ${message}`);
  }
  return (resp.headers.get('content-type') || '').includes('json') ? JSON.parse(text) : text;
}

function namespaced(group, resource, namespace) {
  const root = group ? `apis/${group}` : 'api/v1';
  return namespace ? `${root}/namespaces/${encodeURIComponent(namespace)}/${resource}` : `${root}/${resource}`;
}

// ---- Small helpers ----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)));
  }
  return e;
}

function section(title, ...children) {
  return el('section', {}, el('h2', {}, title), ...children);
}

function failure(err) {
  const hint = err.status === 401 ? ' (sign in again with a valid token)' : '';
  return el('p', { class: 'error' }, `${err.message}${hint}`);
}

// A table whose rows carry `data-name` (namespace/name or name) for finding them.
function table(id, headers, rows) {
  if (rows.length === 0) return el('p', { class: 'empty', id }, 'Nothing here.');
  return el('table', { id },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.map(({ name, cells }) => el('tr', { 'data-name': name },
      cells.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c)))))));
}

function age(timestamp) {
  if (!timestamp) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(timestamp)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

// A CPU quantity ("250m", "1", "123456789n") in millicores.
function millicores(q) {
  if (!q) return 0;
  const units = { n: 1e-6, u: 1e-3, m: 1 };
  const unit = q.slice(-1);
  return unit in units ? parseFloat(q) * units[unit] : parseFloat(q) * 1000;
}

// A memory quantity ("1024Ki", "3Gi", "1000000") in bytes.
function bytes(q) {
  if (!q) return 0;
  const m = /^([0-9.]+)([KMGTE]i?)?$/.exec(q);
  if (!m) return 0;
  const pow = { K: 1, M: 2, G: 3, T: 4, E: 6 };
  const base = m[2] && m[2].endsWith('i') ? 1024 : 1000;
  return parseFloat(m[1]) * (m[2] ? base ** pow[m[2][0]] : 1);
}

function mib(b) {
  return `${Math.round(b / 1048576)}Mi`;
}

// Metrics of the metrics.k8s.io API, by name, or null where it is not served or allowed.
async function metrics(path) {
  try {
    const list = await api(`apis/metrics.k8s.io/v1beta1/${path}`);
    return new Map(list.items.map((m) => [m.metadata.namespace ? `${m.metadata.namespace}/${m.metadata.name}` : m.metadata.name, m]));
  } catch (_) {
    return null;
  }
}

// ---- Pages ------------------------------------------------------------------------------

function loginPage() {
  const input = el('textarea', { id: 'token', placeholder: 'eyJhbGciOi…', autocomplete: 'off', spellcheck: 'false' });
  const error = el('p', { class: 'error', id: 'login-error' });
  const form = el('form', { class: 'login' },
    el('p', {}, 'Sign in with a bearer token. The dashboard acts only with it: you see and change what the token may.'),
    el('p', { class: 'note' }, 'For a ServiceAccount: kubectl -n <namespace> create token <name>'),
    input,
    el('p', {}, el('button', { id: 'signin', type: 'submit' }, 'Sign in')),
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api('api');
      location.hash = '#/workloads';
      await loadNamespaces();
      render();
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      error.textContent = err.status === 401 ? 'That token was not accepted (401 Unauthorized).' : err.message;
    }
  });
  return section('Sign in', form);
}

async function namespacesPage() {
  try {
    const list = await api('api/v1/namespaces');
    return section('Namespaces', table('namespaces', ['Name', 'Status', 'Age'], list.items.map((ns) => ({
      name: ns.metadata.name,
      cells: [ns.metadata.name, ns.status && ns.status.phase, age(ns.metadata.creationTimestamp)],
    }))));
  } catch (err) {
    return section('Namespaces', failure(err));
  }
}

function nodeReady(node) {
  const c = ((node.status && node.status.conditions) || []).find((x) => x.type === 'Ready');
  const ready = c && c.status === 'True';
  let status = ready ? 'Ready' : 'NotReady';
  if (node.spec && node.spec.unschedulable) status += ',SchedulingDisabled';
  return el('td', { class: ready ? 'status-ok' : 'status-bad' }, status);
}

async function nodesPage() {
  let list;
  try {
    list = await api('api/v1/nodes');
  } catch (err) {
    return section('Nodes', failure(err));
  }
  const usage = await metrics('nodes');
  const rows = list.items.map((node) => {
    const name = node.metadata.name;
    const labels = node.metadata.labels || {};
    const roles = Object.keys(labels)
      .filter((k) => k.startsWith('node-role.kubernetes.io/'))
      .map((k) => k.slice('node-role.kubernetes.io/'.length)).join(',') || '<none>';
    const alloc = (node.status && node.status.allocatable) || {};
    const m = usage && usage.get(name);
    const cpu = m ? millicores(m.usage.cpu) : null;
    const mem = m ? bytes(m.usage.memory) : null;
    const pct = (v, total) => (total ? ` (${Math.round((100 * v) / total)}%)` : '');
    return {
      name,
      cells: [
        name, nodeReady(node), roles,
        (node.status && node.status.nodeInfo && node.status.nodeInfo.kubeletVersion) || '',
        el('td', { class: 'num cpu' }, cpu === null ? '–' : `${Math.round(cpu)}m${pct(cpu, millicores(alloc.cpu))}`),
        el('td', { class: 'num memory' }, mem === null ? '–' : `${mib(mem)}${pct(mem, bytes(alloc.memory))}`),
        age(node.metadata.creationTimestamp),
      ],
    };
  });
  const note = usage ? [] : [el('p', { class: 'note' }, 'CPU and memory need the metrics.k8s.io API and the right to read it.')];
  return section('Nodes', table('nodes', ['Name', 'Status', 'Roles', 'Version', 'CPU', 'Memory', 'Age'], rows), note);
}

// What the last scaling did, shown until the next one (the page is rebuilt meanwhile).
let scaleNote = { cls: 'note', text: '' };

function showScaleNote(status, cls, text) {
  scaleNote = { cls, text };
  status.className = cls;
  status.textContent = text;
}

async function scale(namespace, name, replicas, status) {
  showScaleNote(status, 'note', 'Scaling…');
  try {
    const result = await api(`apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments/${encodeURIComponent(name)}/scale`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/merge-patch+json' },
      body: JSON.stringify({ spec: { replicas } }),
    });
    showScaleNote(status, 'note', `Scaled ${namespace}/${name} to ${result.spec.replicas}.`);
  } catch (err) {
    showScaleNote(status, 'error', err.message);
  }
}

function deploymentRow(d, status) {
  const ns = d.metadata.namespace;
  const name = d.metadata.name;
  const s = d.status || {};
  const desired = (d.spec && d.spec.replicas) || 0;
  const input = el('input', { type: 'number', min: '0', value: String(desired), 'data-scale': `${ns}/${name}`, 'aria-label': `replicas of ${name}` });
  const button = el('button', { type: 'button', 'data-scale-button': `${ns}/${name}` }, 'Scale');
  button.addEventListener('click', () => {
    const replicas = Number(input.value);
    if (!Number.isInteger(replicas) || replicas < 0) {
      showScaleNote(status, 'error', 'Replicas must be a whole number, 0 or more.');
      return;
    }
    scale(ns, name, replicas, status).then(() => render());
  });
  const ready = s.readyReplicas || 0;
  return {
    name: `${ns}/${name}`,
    cells: [name, ns, el('td', { class: ready === desired ? 'status-ok' : 'status-warn' }, `${ready}/${desired}`),
      s.updatedReplicas || 0, s.availableReplicas || 0, age(d.metadata.creationTimestamp), el('td', {}, input, ' ', button)],
  };
}

async function workloadsPage() {
  const ns = currentNamespace();
  const status = el('p', { class: scaleNote.cls, id: 'scale-status' }, scaleNote.text);
  const parts = [];
  try {
    const deployments = await api(namespaced('apps/v1', 'deployments', ns));
    parts.push(section('Deployments', table('deployments', ['Name', 'Namespace', 'Ready', 'Up-to-date', 'Available', 'Age', 'Replicas'],
      deployments.items.map((d) => deploymentRow(d, status))), status));
  } catch (err) {
    parts.push(section('Deployments', failure(err)));
  }
  for (const [title, resource] of [['StatefulSets', 'statefulsets'], ['DaemonSets', 'daemonsets']]) {
    try {
      const list = await api(namespaced('apps/v1', resource, ns));
      parts.push(section(title, table(resource, ['Name', 'Namespace', 'Ready', 'Age'], list.items.map((o) => {
        const s = o.status || {};
        const ready = resource === 'daemonsets' ? `${s.numberReady || 0}/${s.desiredNumberScheduled || 0}` : `${s.readyReplicas || 0}/${(o.spec && o.spec.replicas) || 0}`;
        return { name: `${o.metadata.namespace}/${o.metadata.name}`, cells: [o.metadata.name, o.metadata.namespace, ready, age(o.metadata.creationTimestamp)] };
      }))));
    } catch (err) {
      parts.push(section(title, failure(err)));
    }
  }
  return parts;
}

// The pod's status as `kubectl get pods` words it.
function podStatus(pod) {
  if (pod.metadata.deletionTimestamp) return 'Terminating';
  const s = pod.status || {};
  for (const c of (s.containerStatuses || [])) {
    if (c.state && c.state.waiting && c.state.waiting.reason) return c.state.waiting.reason;
    if (c.state && c.state.terminated && c.state.terminated.reason && s.phase !== 'Succeeded') return c.state.terminated.reason;
  }
  return s.reason || s.phase || 'Unknown';
}

function statusClass(status) {
  if (status === 'Running' || status === 'Succeeded' || status === 'Completed') return 'status-ok';
  if (status === 'Pending' || status === 'ContainerCreating' || status === 'Terminating') return 'status-warn';
  return 'status-bad';
}

async function podsPage() {
  const ns = currentNamespace();
  let list;
  try {
    list = await api(namespaced('', 'pods', ns));
  } catch (err) {
    return section('Pods', failure(err));
  }
  const usage = await metrics(ns ? `namespaces/${encodeURIComponent(ns)}/pods` : 'pods');
  const rows = list.items.map((pod) => {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const statuses = (pod.status && pod.status.containerStatuses) || [];
    const containers = (pod.spec && pod.spec.containers) || [];
    const status = podStatus(pod);
    const m = usage && usage.get(key);
    const sum = (f) => (m ? m.containers.reduce((t, c) => t + f(c.usage), 0) : null);
    const cpu = sum((u) => millicores(u.cpu));
    const mem = sum((u) => bytes(u.memory));
    return {
      name: key,
      cells: [
        el('td', {}, el('a', { href: `#/pod/${encodeURIComponent(pod.metadata.namespace)}/${encodeURIComponent(pod.metadata.name)}` }, pod.metadata.name)),
        pod.metadata.namespace,
        el('td', { class: `status ${statusClass(status)}` }, status),
        `${statuses.filter((c) => c.ready).length}/${containers.length}`,
        statuses.reduce((t, c) => t + (c.restartCount || 0), 0),
        el('td', { class: 'num cpu' }, cpu === null ? '–' : `${Math.round(cpu)}m`),
        el('td', { class: 'num memory' }, mem === null ? '–' : mib(mem)),
        (pod.spec && pod.spec.nodeName) || '',
        age(pod.metadata.creationTimestamp),
      ],
    };
  });
  return section('Pods', table('pods', ['Name', 'Namespace', 'Status', 'Ready', 'Restarts', 'CPU', 'Memory', 'Node', 'Age'], rows));
}

async function podPage(ns, name) {
  const base = `api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`;
  let pod;
  try {
    pod = await api(base);
  } catch (err) {
    return section(`Pod ${ns}/${name}`, failure(err));
  }
  const s = pod.status || {};
  const labels = Object.entries(pod.metadata.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  const summary = el('dl', { id: 'pod-summary' },
    el('dt', {}, 'Namespace'), el('dd', {}, ns),
    el('dt', {}, 'Status'), el('dd', { class: statusClass(podStatus(pod)) }, podStatus(pod)),
    el('dt', {}, 'Node'), el('dd', {}, (pod.spec && pod.spec.nodeName) || '–'),
    el('dt', {}, 'Pod IP'), el('dd', {}, s.podIP || '–'),
    el('dt', {}, 'Created'), el('dd', {}, `${pod.metadata.creationTimestamp} (${age(pod.metadata.creationTimestamp)} ago)`),
    el('dt', {}, 'Labels'), el('dd', {}, labels || '–'));
  const statuses = new Map((s.containerStatuses || []).map((c) => [c.name, c]));
  const containers = table('containers', ['Name', 'Image', 'Ready', 'Restarts', 'State'], pod.spec.containers.map((c) => {
    const st = statuses.get(c.name) || {};
    const state = Object.keys(st.state || {})[0] || 'waiting';
    return { name: c.name, cells: [c.name, c.image, st.ready ? 'true' : 'false', st.restartCount || 0, state] };
  }));
  const parts = [section(`Pod ${ns}/${name}`, summary), section('Containers', containers)];

  try {
    const events = await api(`api/v1/namespaces/${encodeURIComponent(ns)}/events?fieldSelector=${encodeURIComponent(`involvedObject.name=${name}`)}`);
    const mine = events.items.filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.uid === pod.metadata.uid);
    // Oldest first; events of the same second in the order they were written.
    const when = (e) => Date.parse(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp);
    mine.sort((a, b) => when(a) - when(b) || Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
    parts.push(section('Events', table('events', ['Type', 'Reason', 'Age', 'From', 'Message'], mine.map((e) => ({
      name: e.metadata.name,
      cells: [e.type, e.reason, age(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp),
        (e.source && e.source.component) || e.reportingComponent || '', e.message],
    })))));
  } catch (err) {
    parts.push(section('Events', failure(err)));
  }

  const choose = el('select', { id: 'log-container' }, pod.spec.containers.map((c) => el('option', { value: c.name }, c.name)));
  choose.value = logContainer.get(`${ns}/${name}`) || pod.spec.containers[0].name;
  const logs = el('pre', { id: 'logs' }, 'Loading…');
  const load = async () => {
    logContainer.set(`${ns}/${name}`, choose.value);
    try {
      const text = await api(`${base}/log?container=${encodeURIComponent(choose.value)}&tailLines=1000`, { headers: { Accept: 'text/plain' } });
      logs.textContent = text || '(no output yet)';
      logs.scrollTop = logs.scrollHeight;
    } catch (err) {
      logs.textContent = err.message;
    }
  };
  choose.addEventListener('change', load);
  parts.push(section('Logs', el('p', {}, el('label', {}, 'Container ', choose), ' ',
    el('button', { type: 'button', id: 'refresh-logs', onclick: load }, 'Refresh')), logs));
  await load();
  return parts;
}

// ---- Namespace picker, routing, refresh --------------------------------------------------

const logContainer = new Map();

function currentNamespace() {
  return sessionStorage.getItem(NAMESPACE_KEY) || ALL;
}

async function loadNamespaces() {
  const chosen = currentNamespace();
  const options = [el('option', { value: ALL }, 'All namespaces')];
  try {
    const list = await api('api/v1/namespaces');
    options.push(...list.items.map((ns) => el('option', { value: ns.metadata.name }, ns.metadata.name)));
  } catch (_) {
    // Not allowed to list them: offer the one the viewer most likely has.
    options.push(el('option', { value: 'default' }, 'default'));
  }
  namespaceSelect.replaceChildren(...options);
  namespaceSelect.value = chosen;
}

namespaceSelect.addEventListener('change', () => {
  sessionStorage.setItem(NAMESPACE_KEY, namespaceSelect.value);
  render();
});

signout.addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '#/';
  render();
});

let rendering = 0;

function typing() {
  const active = document.activeElement;
  return Boolean(active && main.contains(active) && ['INPUT', 'SELECT', 'TEXTAREA'].includes(active.tagName));
}

async function render(refreshing = false) {
  const signedIn = Boolean(sessionStorage.getItem(TOKEN_KEY));
  nav.hidden = !signedIn;
  signout.hidden = !signedIn;
  const route = (location.hash || '#/').slice(2).split('/').map(decodeURIComponent);
  picker.hidden = !signedIn || !['workloads', 'pods'].includes(route[0]);
  for (const a of nav.querySelectorAll('a')) {
    a.classList.toggle('active', a.getAttribute('href') === `#/${route[0]}`);
  }
  // Counted before anything else, so that a render still on its way when the viewer signs
  // out does not bring its page back.
  const turn = ++rendering;
  if (!signedIn) {
    // A sign-in form already shown stays: the hash change that follows signing out renders
    // again, and must not swap in an empty form while a token is being typed.
    if (main.getAttribute('data-page') !== 'login') {
      main.replaceChildren(loginPage());
      main.setAttribute('data-page', 'login');
    }
    return;
  }
  let content;
  switch (route[0]) {
    case 'namespaces': content = await namespacesPage(); break;
    case 'nodes': content = await nodesPage(); break;
    case 'pods': content = await podsPage(); break;
    case 'pod': content = await podPage(route[1], route[2]); break;
    default: content = await workloadsPage(); break;
  }
  // A later render (navigation, refresh) started meanwhile: it shows its own.
  if (turn !== rendering) return;
  // The viewer started typing while this refresh was on its way: keep what they type in.
  if (refreshing && typing()) return;
  main.replaceChildren(...[content].flat());
  main.setAttribute('data-page', route[0] || 'workloads');
}

window.addEventListener('hashchange', () => render());
setInterval(() => {
  // Not while the viewer types a replica count, nor under a log they may be reading.
  if (typing()) return;
  if (sessionStorage.getItem(TOKEN_KEY) && !location.hash.startsWith('#/pod/')) render(true);
}, REFRESH_MS);

if (sessionStorage.getItem(TOKEN_KEY)) loadNamespaces();
render();
