// The Signalbox console: shell (header, navigation, main area), login, and routing.
// Pages live in js/pages/; each exports { title, mount(main, params) -> {update?, unmount} }.

import { h, setChildren } from './js/dom.js';
import { whoami, login, logout, setUnauthorizedHandler } from './js/api.js';
import { startRouter, navigate, currentUrl } from './js/router.js';
import { live } from './js/live.js';
import { icon } from './js/icons.js';
import overview from './js/pages/overview.js';
import services from './js/pages/services.js';
import serviceMap from './js/pages/service-map.js';
import config from './js/pages/config.js';
import traces from './js/pages/traces.js';
import trace from './js/pages/trace.js';
import logs from './js/pages/logs.js';
import metrics from './js/pages/metrics.js';
import alerts from './js/pages/alerts.js';
import targets from './js/pages/targets.js';
import { notFound } from './js/pages/placeholder.js';

/** Navigation entries. `later`: a page that arrives with a later release. */
const NAV = [
  { id: 'overview', label: 'Overview', path: '/' },
  { id: 'map', label: 'Service map', path: '/map' },
  { id: 'services', label: 'Services', path: '/services' },
  { id: 'config', label: 'Configuration', path: '/config' },
  { heading: 'Observability' },
  { id: 'traces', label: 'Traces', path: '/traces' },
  { id: 'logs', label: 'Logs', path: '/logs' },
  // `/metrics` itself is the node's Prometheus endpoint.
  { id: 'metrics', label: 'Metrics', path: '/metrics-explorer' },
  { id: 'alerts', label: 'Alerts', path: '/alerts' },
  { id: 'targets', label: 'Targets', path: '/targets' },
];

/** URL -> { nav, page, params }. */
function match(url) {
  let parts;
  try {
    parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { nav: null, page: notFound, params: { path: url.pathname } };
  }
  const [first, ...rest] = parts;
  if (!first || (first === 'overview' && !rest.length)) return { nav: 'overview', page: overview, params: { search: url.search } };
  if (first === 'map' && !rest.length) return { nav: 'map', page: serviceMap, params: { search: url.search } };
  if (first === 'services') {
    if (rest.length === 0) return { nav: 'services', page: services, params: { name: null } };
    if (rest.length === 1) return { nav: 'services', page: services, params: { name: rest[0], search: url.search } };
  }
  if (first === 'config') {
    if (rest.length === 0) return { nav: 'config', page: config, params: { create: url.searchParams.has('new') } };
    // Keys may contain `/`: everything after the profile is the key.
    if (rest.length >= 3) {
      return { nav: 'config', page: config, params: { app: rest[0], profile: rest[1], key: rest.slice(2).join('/') } };
    }
  }
  if (first === 'traces') {
    if (rest.length === 0) return { nav: 'traces', page: traces, params: { search: url.search } };
    if (rest.length === 1) return { nav: 'traces', page: trace, params: { id: rest[0], span: url.searchParams.get('span') } };
  }
  if (first === 'logs' && rest.length === 0) return { nav: 'logs', page: logs, params: { search: url.search } };
  if (first === 'metrics-explorer' && rest.length === 0) return { nav: 'metrics', page: metrics, params: { search: url.search } };
  if (first === 'alerts' && rest.length === 0) return { nav: 'alerts', page: alerts, params: {} };
  if (first === 'targets' && rest.length === 0) return { nav: 'targets', page: targets, params: {} };
  return { nav: null, page: notFound, params: { path: url.pathname } };
}

// State -----------------------------------------------------------------------------------

const main = document.getElementById('main');
const sidenav = document.getElementById('sidenav');
const sessionEl = document.getElementById('session');

let session = null;
let routerStarted = false;
let view = null; // { page, inst }

function unmountView() {
  if (view && view.inst && view.inst.unmount) {
    try {
      view.inst.unmount();
    } catch (e) {
      console.error(e);
    }
  }
  view = null;
}

function route(url) {
  if (!session) return;
  const m = match(url);
  paintNav(m.nav);
  document.title = `${typeof m.page.title === 'function' ? m.page.title(m.params) : m.page.title} · Signalbox`;
  if (view && view.page === m.page && view.inst.update && view.inst.update(m.params) !== false) return;
  unmountView();
  main.replaceChildren();
  const inst = m.page.mount(main, m.params) || {};
  view = { page: m.page, inst };
  main.scrollTop = 0;
}

// Shell -----------------------------------------------------------------------------------

function renderNav() {
  const items = NAV.map((n) =>
    n.heading
      ? h('div', { class: 'nav-heading' }, n.heading)
      : h(
          'a',
          { href: n.path, class: 'nav-item', 'data-testid': `nav-${n.id}`, dataset: { nav: n.id } },
          icon(n.id),
          h('span', { class: 'nav-label' }, n.label),
          n.later ? h('span', { class: 'nav-later', title: 'Arrives with a later release' }, 'soon') : null,
        ),
  );
  setChildren(sidenav, h('div', { class: 'nav-items' }, items), h('div', { class: 'nav-foot' }, 'Signalbox console'));
  sidenav.hidden = false;
}

function paintNav(active) {
  for (const a of sidenav.querySelectorAll('.nav-item')) {
    const on = a.dataset.nav === active;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function renderSession() {
  if (!session) {
    sessionEl.replaceChildren();
    return;
  }
  if (!session.access_control) {
    setChildren(
      sessionEl,
      h('span', { class: 'session-open', 'data-testid': 'session-user', title: 'This node has no access tokens configured: everyone is admin.' }, 'Access control off'),
    );
    return;
  }
  setChildren(
    sessionEl,
    h('span', { class: 'session-who' }, 'Signed in as ', h('strong', { 'data-testid': 'session-user' }, session.token_id)),
    h('span', { class: 'role-badge', 'data-testid': 'session-role' }, session.role),
    h('button', { type: 'button', class: 'btn btn-header', 'data-testid': 'logout', onclick: doLogout }, 'Sign out'),
  );
}

async function doLogout() {
  try {
    await logout();
  } catch (e) {
    console.error(e);
  }
  showLogin(null, 'You are signed out.');
}

function signedIn(s) {
  session = s;
  renderSession();
  renderNav();
  live.start();
  if (!routerStarted) {
    routerStarted = true;
    startRouter(route);
  } else {
    route(currentUrl());
  }
}

function showLogin(error, info) {
  unmountView();
  live.stop();
  session = null;
  renderSession();
  sidenav.hidden = true;
  document.title = 'Sign in · Signalbox';
  const token = h('input', {
    type: 'password',
    name: 'token',
    id: 'login-token',
    autocomplete: 'current-password',
    required: true,
    spellcheck: 'false',
    'data-testid': 'login-token',
    placeholder: 'sbx_…',
  });
  const msg = h('div', { class: 'login-msg', 'data-testid': 'login-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' }, 'Sign in');
  const showMsg = (kind, text) => {
    msg.className = `login-msg notice notice-${kind}`;
    msg.textContent = text;
  };
  if (error) showMsg('error', error);
  else if (info) showMsg('info', info);
  const form = h(
    'form',
    {
      class: 'login-card',
      'data-testid': 'login-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (!token.value.trim()) return;
        button.disabled = true;
        button.textContent = 'Signing in…';
        try {
          const s = await login(token.value.trim());
          token.value = '';
          signedIn(s);
        } catch (e) {
          showMsg('error', e.status === 401 ? `Sign-in failed: ${e.message}` : `Sign-in failed: ${e.message}`);
          button.disabled = false;
          button.textContent = 'Sign in';
          token.select();
        }
      },
    },
    h('h1', null, 'Sign in'),
    h('p', { class: 'muted' }, 'Access control is on for this node. Sign in with an access token; the console keeps a session cookie, never the token.'),
    h('label', { for: 'login-token' }, 'Access token'),
    token,
    button,
    msg,
  );
  setChildren(main, h('div', { class: 'login-wrap' }, form));
  token.focus();
}

async function boot() {
  setUnauthorizedHandler(() => {
    if (session) showLogin('Your session has ended. Sign in again.');
  });
  live.onUnauthorized = () => {
    if (session) showLogin('Your session has ended. Sign in again.');
  };
  let s;
  try {
    s = await whoami();
  } catch (e) {
    setChildren(
      main,
      h(
        'div',
        { class: 'login-wrap' },
        h('div', { class: 'login-card' }, h('h1', null, 'Cannot reach the node'), h('p', null, e.message), h('button', { class: 'btn', onclick: () => location.reload() }, 'Retry')),
      ),
    );
    return;
  }
  if (s) signedIn(s);
  else showLogin();
}

// Exposed for pages that need to go somewhere after an action.
export { navigate };

boot();
