// The Signalbox console: shell (header, navigation, main area), login, and routing.
// Pages live in js/pages/; each exports { title, mount(main, params) -> {update?, unmount} }.

import { h, setChildren } from './js/dom.js';
import { whoami, login, logout, setUnauthorizedHandler } from './js/api.js';
import { startRouter, navigate, currentUrl } from './js/router.js';
import { live, liveAlerts } from './js/live.js';
import { stream } from './js/stream.js';
import { applyTheme, theme, setTheme, timeZone, setTimeZone, onPrefsChange, rememberRange, lastRange, hasRange } from './js/prefs.js';
import { sinceMs } from './js/components/time-range.js';
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
import rollouts from './js/pages/rollouts.js';
import { notFound } from './js/pages/placeholder.js';

/** Navigation entries. `later`: a page that arrives with a later release. */
const NAV = [
  { id: 'overview', label: 'Overview', path: '/' },
  { id: 'map', label: 'Service map', path: '/map' },
  { id: 'services', label: 'Services', path: '/services' },
  { id: 'config', label: 'Configuration', path: '/config' },
  { id: 'rollouts', label: 'Rollouts', path: '/rollouts' },
  { heading: 'Observability' },
  { id: 'traces', label: 'Traces', path: '/traces' },
  { id: 'logs', label: 'Logs', path: '/logs' },
  // `/metrics` itself is the node's Prometheus endpoint.
  { id: 'metrics', label: 'Metrics', path: '/metrics-explorer' },
  { id: 'alerts', label: 'Alerts', path: '/alerts' },
  { id: 'targets', label: 'Targets', path: '/targets' },
];

/**
 * The route table: the first entry whose `path` matches the URL's path wins.
 *
 *   path    '/traces/:id' — `:name` matches one segment (decoded) into params.name;
 *           a last `:name*` matches one or more segments joined with `/` (config keys).
 *   page    the page module ({ title, mount(main, params) -> { update?, unmount? } }).
 *   nav     the NAV id to highlight.
 *   range   the URL parameter holding the page's relative range ('since' or 'lookback') when
 *           the page shows a time range: a URL with a range is remembered (prefs.js), and
 *           a URL without one gets the last range this tab showed, so the range carries
 *           over when moving between pages.
 *   fill    false: remember the page's range but do not add one to its URL (the Traces page
 *           runs a search when its URL has parameters; it reads the shared range itself).
 *   params  optional (pathParams, url) -> more params.
 *
 * Every page gets `search` (url.search) besides its path params.
 */
const ROUTES = [
  { path: '/', page: overview, nav: 'overview' },
  { path: '/overview', page: overview, nav: 'overview' },
  { path: '/map', page: serviceMap, nav: 'map', range: 'since' },
  { path: '/services', page: services, nav: 'services', params: () => ({ name: null }) },
  { path: '/services/:name', page: services, nav: 'services', range: 'since' },
  { path: '/config', page: config, nav: 'config', params: (_, url) => ({ create: url.searchParams.has('new') }) },
  // Keys may contain `/`: everything after the profile is the key.
  { path: '/config/:app/:profile/:key*', page: config, nav: 'config' },
  { path: '/traces', page: traces, nav: 'traces', range: 'lookback', fill: false },
  { path: '/traces/:id', page: trace, nav: 'traces', params: (_, url) => ({ span: url.searchParams.get('span') }) },
  { path: '/logs', page: logs, nav: 'logs', range: 'since' },
  { path: '/metrics-explorer', page: metrics, nav: 'metrics', range: 'since' },
  { path: '/alerts', page: alerts, nav: 'alerts' },
  { path: '/targets', page: targets, nav: 'targets' },
  { path: '/rollouts', page: rollouts, nav: 'rollouts', params: () => ({ service: null }) },
  { path: '/rollouts/:service', page: rollouts, nav: 'rollouts' },
];

const COMPILED = ROUTES.map((r) => ({ ...r, parts: r.path.split('/').filter(Boolean) }));

/** The path params of `parts` (decoded segments) for a route's pattern, or null. */
function matchParts(pattern, parts) {
  const params = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p.startsWith(':') && p.endsWith('*')) {
      if (i >= parts.length) return null;
      params[p.slice(1, -1)] = parts.slice(i).join('/');
      return params;
    }
    if (i >= parts.length) return null;
    if (p.startsWith(':')) params[p.slice(1)] = parts[i];
    else if (p !== parts[i]) return null;
  }
  return pattern.length === parts.length ? params : null;
}

/** URL -> { route, nav, page, params }. */
function match(url) {
  let parts;
  try {
    parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { route: null, nav: null, page: notFound, params: { path: url.pathname } };
  }
  for (const r of COMPILED) {
    const p = matchParts(r.parts, parts);
    if (!p) continue;
    const params = { ...p, search: url.search, ...(r.params ? r.params(p, url) : {}) };
    return { route: r, nav: r.nav, page: r.page, params };
  }
  return { route: null, nav: null, page: notFound, params: { path: url.pathname } };
}

/**
 * The shared time range: a page URL that has a range is remembered; one that has none gets
 * the remembered one (the URL is rewritten in place, so it stays a complete deep link).
 * Returns the URL to route, or null when it was rewritten (the router routes that one).
 */
function shareRange(route, url) {
  if (!route || !route.range) return url;
  const p = url.searchParams;
  if (hasRange(p)) {
    const start = p.get('start') || '';
    rememberRange(start ? { start, end: p.get('end') || '' } : { since: p.get(route.range) || '' });
    return url;
  }
  const last = route.fill === false ? null : lastRange();
  if (!last) return url;
  if (last.start) {
    p.set('start', last.start);
    if (last.end) p.set('end', last.end);
  } else {
    p.set(route.range, wholeUnits(last.since));
  }
  navigate(url.pathname + url.search + url.hash, { replace: true });
  return null;
}

/** A relative range in the units every page reads (`90m`, `24h`). */
function wholeUnits(since) {
  const ms = sinceMs(since);
  return ms % 3600e3 === 0 ? `${ms / 3600e3}h` : ms % 60e3 === 0 ? `${ms / 60e3}m` : `${Math.max(1, Math.round(ms / 1000))}s`;
}

// State -----------------------------------------------------------------------------------

const main = document.getElementById('main');
const prefsEl = document.getElementById('prefs');
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

function route(url, { remount = false } = {}) {
  if (!session) return;
  const m = match(url);
  if (!shareRange(m.route, url)) return;
  paintNav(m.nav);
  document.title = `${typeof m.page.title === 'function' ? m.page.title(m.params) : m.page.title} · Signalbox`;
  if (!remount && view && view.page === m.page && view.inst.update && view.inst.update(m.params) !== false) return;
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
  paintAlertCount();
}

/** The number of firing alerts next to "Alerts" in the navigation (from the live stream). */
function paintAlertCount() {
  const item = sidenav.querySelector('.nav-item[data-nav="alerts"]');
  if (!item) return;
  let badge = item.querySelector('.nav-count');
  const n = liveAlerts.firing().length;
  if (!n) {
    if (badge) badge.remove();
    return;
  }
  if (!badge) {
    badge = h('span', { class: 'nav-count', 'data-testid': 'nav-alerts-count' });
    item.append(badge);
  }
  badge.textContent = String(n);
  badge.title = `${n} firing alert${n === 1 ? '' : 's'}`;
}

/** The theme and time-zone choices in the header. */
function renderPrefs() {
  const themeSel = h(
    'select',
    { class: 'pref-select', 'aria-label': 'Theme', title: 'Theme', 'data-testid': 'theme-select', onchange: (e) => setTheme(e.target.value) },
    h('option', { value: 'system' }, 'System theme'),
    h('option', { value: 'light' }, 'Light'),
    h('option', { value: 'dark' }, 'Dark'),
  );
  themeSel.value = theme();
  const zoneSel = h(
    'select',
    { class: 'pref-select', 'aria-label': 'Time zone', title: 'Time zone of every time shown', 'data-testid': 'timezone-select', onchange: (e) => setTimeZone(e.target.value) },
    h('option', { value: 'local' }, 'Local time'),
    h('option', { value: 'utc' }, 'UTC'),
  );
  zoneSel.value = timeZone();
  setChildren(prefsEl, streamState, themeSel, zoneSel);
}

/** Says so in the header while the tab's live stream is down (pages may be stale then). */
const streamState = h('span', { class: 'stream-state', 'data-testid': 'stream-state', role: 'status', hidden: true });
function paintStreamState(state) {
  const text = { reconnecting: 'Live updates reconnecting…', offline: 'Live updates offline — retrying' }[state];
  streamState.hidden = !text;
  streamState.textContent = text || '';
  streamState.dataset.state = state;
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
  stream.start();
  live.start();
  liveAlerts.start();
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
  liveAlerts.stop();
  stream.stop();
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

/** "/" anywhere outside a field focuses the page's search field (its first text input). */
function focusSearchOnSlash(ev) {
  if (ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey || ev.defaultPrevented) return;
  const t = ev.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  const field = main.querySelector('[data-search], textarea, input[type=search], input[type=text], input:not([type])');
  if (!field) return;
  ev.preventDefault();
  field.focus();
  if (typeof field.select === 'function') field.select();
}

async function boot() {
  document.addEventListener('keydown', focusSearchOnSlash);
  applyTheme();
  document.documentElement.dataset.timeZone = timeZone();
  renderPrefs();
  liveAlerts.subscribe(paintAlertCount);
  stream.onState(paintStreamState);
  // A new time zone or theme re-renders the page: every time shown changes, and canvas
  // charts read the theme's colours when they paint (the rest follows <html data-theme>).
  onPrefsChange(() => {
    renderPrefs();
    if (session) route(currentUrl(), { remount: true });
  });
  setUnauthorizedHandler(() => {
    if (session) showLogin('Your session has ended. Sign in again.');
  });
  stream.onUnauthorized = () => {
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
