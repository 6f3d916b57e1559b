// Overview: every service with its request rate, error ratio and p99 (the gateway's RED
// metrics), instance health, open circuits and firing alerts, what needs attention first
// (GET /api/overview); summary cards from the registry (live) and configuration.
// URL: /?since=15m&q=pay&sort=errors&attention=1

import { h, setChildren, notice, empty } from '../dom.js';
import { api } from '../api.js';
import { live, liveIndicator } from '../live.js';
import { navigate } from '../router.js';
import { serviceUrl, alertsUrl, mapUrl, overviewUrl } from '../links.js';
import { timeRange, readRange } from '../components/time-range.js';
import { sparkline } from '../components/sparkline.js';
import { fmtRate, fmtPct, fmtMs, healthBadge, errorLevel, latencyLevel } from '../components/red.js';
import { machineTroubleMark } from '../components/hosts.js';

const REFRESH_MS = 10_000;
const SORTS = [
  ['attention', 'Needs attention'],
  ['name', 'Name'],
  ['rate', 'Request rate'],
  ['errors', 'Error rate'],
  ['p99', 'p99 latency'],
];

/** Page state from the URL. */
function readState(search) {
  const p = new URLSearchParams(search || '');
  const r = readRange(p);
  if (!p.get('since') && !p.get('start')) r.since = '15m';
  return {
    range: r,
    q: p.get('q') || '',
    sort: SORTS.some(([k]) => k === p.get('sort')) ? p.get('sort') : 'attention',
    attention: p.get('attention') === '1',
  };
}

function stateUrl(st) {
  const p = new URLSearchParams();
  if (st.range.start) {
    p.set('start', st.range.start);
    if (st.range.end) p.set('end', st.range.end);
  } else if (st.range.since !== '15m') p.set('since', st.range.since);
  if (st.q) p.set('q', st.q);
  if (st.sort !== 'attention') p.set('sort', st.sort);
  if (st.attention) p.set('attention', '1');
  const s = p.toString();
  return `/${s ? `?${s}` : ''}`;
}

function rangeQuery(r) {
  const p = new URLSearchParams();
  if (r.start) {
    p.set('start', r.start);
    if (r.end) p.set('end', r.end);
  } else p.set('since', r.since);
  return p.toString();
}

function sortRows(rows, sort) {
  const by = {
    name: (a, b) => a.name.localeCompare(b.name),
    rate: (a, b) => (b.rate_rps ?? -1) - (a.rate_rps ?? -1) || a.name.localeCompare(b.name),
    errors: (a, b) => (b.error_ratio ?? -1) - (a.error_ratio ?? -1) || a.name.localeCompare(b.name),
    p99: (a, b) => (b.p99_ms ?? -1) - (a.p99_ms ?? -1) || a.name.localeCompare(b.name),
  }[sort];
  return by ? [...rows].sort(by) : rows; // the API's order is "needs attention first"
}

export default {
  title: 'Overview',
  mount(main, params) {
    let st = readState(params.search);
    const indicator = liveIndicator();
    let data = null;
    let loadError = null;
    let loading = false;
    let config = null;
    let configError = null;
    let restServices = null;
    let timer = 0;
    let seq = 0;

    const picker = timeRange({ onChange: (r) => go({ ...st, range: r }), testid: 'overview-range' });
    const filter = h('input', {
      class: 'input',
      type: 'search',
      placeholder: 'Filter services…  (/)',
      'aria-label': 'Filter services by name',
      'data-testid': 'overview-filter',
      value: st.q,
      oninput: () => {
        st = { ...st, q: filter.value.trim() };
        navigate(stateUrl(st), { replace: true });
      },
    });
    const sortSel = h('select', { class: 'input', 'aria-label': 'Sort by', 'data-testid': 'overview-sort', onchange: () => go({ ...st, sort: sortSel.value }) }, SORTS.map(([k, l]) => h('option', { value: k }, l)));
    const onlyBad = h('input', { type: 'checkbox', 'data-testid': 'overview-attention-only', onchange: () => go({ ...st, attention: onlyBad.checked }) });
    const updated = h('span', { class: 'panel-hint', 'data-testid': 'overview-updated' });
    const cards = h('div', { class: 'cards', 'data-testid': 'overview-cards' });
    const problems = h('div', { 'data-testid': 'overview-problems' });
    const body = h('div', { class: 'table-scroll' });

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Overview'), indicator.el, h('div', { class: 'page-head-spacer' }), picker.chip, picker.el),
      cards,
      problems,
      h(
        'section',
        { class: 'panel' },
        h(
          'div',
          { class: 'panel-head view-toolbar' },
          h('h2', null, 'Services'),
          filter,
          h('label', { class: 'check-label' }, onlyBad, ' Needing attention only'),
          h('label', { class: 'check-label' }, 'Sort ', sortSel),
          h('div', { class: 'page-head-spacer' }),
          h('a', { href: mapUrl({ since: st.range.since || '15m' }), 'data-testid': 'overview-map-link' }, 'Service map →'),
          updated,
        ),
        body,
      ),
    );

    function go(next) {
      navigate(stateUrl(next));
    }

    function card(label, value, testid, kind, href) {
      const inner = [h('div', { class: 'card-value', 'data-testid': testid }, value === null || value === undefined ? '–' : String(value)), h('div', { class: 'card-label' }, label)];
      return href ? h('a', { class: `card card-${kind || 'plain'}`, href }, inner) : h('div', { class: `card card-${kind || 'plain'}` }, inner);
    }

    function paintCards() {
      const services = live.hasSnapshot ? live.services() : restServices;
      const t = live.hasSnapshot ? live.totals() : restServices ? sumServices(restServices) : null;
      const entries = config ? config.entries : null;
      const apps = entries ? new Set(entries.map((e) => e.application)).size : null;
      const tot = data ? data.totals : null;
      setChildren(
        cards,
        card('Registered services', services ? services.length : null, 'overview-services', 'plain', '/services'),
        card('Instances', t ? t.instances : null, 'overview-instances', 'plain', '/services'),
        card('Passing', t ? t.passing : null, 'overview-passing', 'passing'),
        card('Warning', t ? t.warning : null, 'overview-warning', t && t.warning ? 'warning' : 'plain'),
        card('Critical', t ? t.critical : null, 'overview-critical', t && t.critical ? 'critical' : 'plain'),
        card('Needing attention', tot ? tot.needing_attention : null, 'overview-attention', tot && tot.needing_attention ? 'warning' : 'plain', overviewUrl({ attention: true, ...(st.range.start ? { start: st.range.start, end: st.range.end } : { since: st.range.since }) })),
        card('Alerts firing', tot ? tot.alerts_firing : null, 'overview-alerts', tot && tot.alerts_firing ? 'critical' : 'plain', alertsUrl()),
        card('Open circuits', tot ? tot.circuits_open : null, 'overview-circuits', tot && tot.circuits_open ? 'critical' : 'plain'),
        card('Requests', tot ? fmtRate(tot.rate_rps) : null, 'overview-rate-total', 'plain'),
        card('Config keys', entries ? entries.length : configError ? '!' : null, 'overview-config-keys', 'plain', '/config'),
        card('Applications', apps, 'overview-applications', 'plain', '/config'),
      );
    }

    function paintTable() {
      if (document.activeElement !== filter) filter.value = st.q;
      sortSel.value = st.sort;
      onlyBad.checked = st.attention;
      const issues = [];
      if (loadError) issues.push(notice('error', `Could not load the overview: ${loadError}`, data ? ' (showing the last answer)' : ''));
      if (data) for (const p of data.problems) issues.push(notice('warning', p));
      setChildren(problems, issues);
      if (!data) {
        setChildren(body, loadError ? empty('The overview is unavailable', 'Check that the node is running; the page retries every 10 seconds.') : h('div', { class: 'empty' }, 'Loading…'));
        return;
      }
      const all = data.services;
      if (!all.length) {
        setChildren(
          body,
          h(
            'div',
            { 'data-testid': 'overview-empty' },
            empty(
              'No services yet',
              'Register an instance with the registry (POST /api/registry/instances), route traffic to a service through the gateway, or send spans over OTLP. ',
              'To see everything at work, run ',
              h('code', null, 'signalbox demo'),
              '.',
            ),
          ),
        );
        return;
      }
      const q = st.q.toLowerCase();
      let rows = all.filter((s) => (!q || s.name.toLowerCase().includes(q)) && (!st.attention || s.attention > 0));
      rows = sortRows(rows, st.sort);
      const t = data.thresholds;
      const range = st.range.start ? { start: st.range.start, end: st.range.end } : { since: st.range.since };
      const noTraffic = all.every((s) => !s.rate_rps);
      setChildren(
        body,
        noTraffic && data.sources.metrics
          ? notice('info', 'No requests went through the gateway in this window, so rates, errors and latency are empty. Add a route to a service (gateway.routes) and send traffic through the gateway port.')
          : null,
        rows.length
          ? h(
              'table',
              { class: 'table table-hover overview-table', 'data-testid': 'overview-table' },
              h(
                'thead',
                null,
                h(
                  'tr',
                  null,
                  h('th', null, 'Service'),
                  h('th', null, 'Health'),
                  h('th', { class: 'num' }, 'Requests'),
                  h('th', { class: 'num' }, 'Errors'),
                  h('th', { class: 'num' }, 'p99'),
                  h('th', { class: 'num' }, 'Instances'),
                  h('th', { class: 'num' }, 'Circuits'),
                  h('th', { class: 'num' }, 'Alerts'),
                ),
              ),
              h(
                'tbody',
                null,
                rows.map((s) => row(s, t, range)),
              ),
            )
          : h('div', { 'data-testid': 'overview-no-match' }, empty('No service matches', st.attention ? 'Nothing needs attention right now.' : `No service name contains “${st.q}”.`)),
      );
    }

    function row(s, t, range) {
      const spark = s.spark || {};
      const errLevel = errorLevel(s.error_ratio, t);
      const latLevel = latencyLevel(s.p99_ms, t);
      const inst = s.instances;
      const firing = s.alerts.filter((a) => a.state === 'firing');
      return h(
        'tr',
        { 'data-testid': 'overview-row', 'data-service': s.name, 'data-status': s.status, class: `overview-row row-${s.status}` },
        h(
          'td',
          { class: 'col-name' },
          h('a', { href: serviceUrl(s.name, range), 'data-testid': 'overview-service-link' }, s.name),
          machineTroubleMark(s.machine_trouble, 'overview-machine-trouble'),
          s.reasons.length ? h('div', { class: 'reasons', 'data-testid': 'overview-reasons' }, s.reasons.join(' · ')) : null,
        ),
        h('td', null, healthBadge(s.status, 'overview-status')),
        h('td', { class: 'num spark-cell' }, sparkline(spark.rate, { kind: 'rate' }), h('span', { 'data-testid': 'overview-rate' }, fmtRate(s.rate_rps))),
        h('td', { class: `num spark-cell level-${errLevel}` }, sparkline(spark.errors, { kind: 'errors' }), h('span', { 'data-testid': 'overview-errors' }, fmtPct(s.error_ratio))),
        h('td', { class: `num spark-cell level-${latLevel}` }, sparkline(spark.p99_ms, { kind: 'latency' }), h('span', { 'data-testid': 'overview-p99' }, fmtMs(s.p99_ms))),
        h(
          'td',
          { class: 'num', 'data-testid': 'overview-instances-cell', title: `${inst.passing} passing, ${inst.warning} warning, ${inst.critical} critical` },
          inst.total ? `${inst.passing}/${inst.total}` : '–',
          inst.critical ? h('span', { class: 'count count-critical' }, ` ${inst.critical} critical`) : null,
        ),
        h(
          'td',
          { class: 'num', 'data-testid': 'overview-circuits-cell' },
          s.circuits_open ? h('span', { class: 'badge circuit-open' }, `${s.circuits_open} open`) : s.circuits_half_open ? h('span', { class: 'badge circuit-half_open' }, `${s.circuits_half_open} half-open`) : s.circuits_open === null ? '–' : '0',
          s.ejected ? h('div', { class: 'muted' }, `${s.ejected} ejected`) : null,
        ),
        h(
          'td',
          { class: 'num', 'data-testid': 'overview-alerts-cell' },
          firing.length ? h('a', { href: alertsUrl(), class: 'badge health-fail', title: firing.map((a) => a.name).join(', ') }, `${firing.length} firing`) : '0',
        ),
      );
    }

    async function load() {
      clearTimeout(timer);
      const mine = ++seq;
      loading = true;
      try {
        const d = await api('GET', `/api/overview?${rangeQuery(st.range)}`);
        if (mine !== seq) return;
        data = d;
        loadError = null;
        updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        if (mine !== seq || e.status === 401) return;
        loadError = e.message;
      } finally {
        loading = false;
      }
      paintCards();
      paintTable();
      // A relative range follows now; a fixed one does not change.
      if (!st.range.start || !st.range.end) timer = setTimeout(load, REFRESH_MS);
    }

    api('GET', '/api/config')
      .then((c) => {
        config = c;
        paintCards();
      })
      .catch((e) => {
        configError = e.message;
        paintCards();
      });
    if (!live.hasSnapshot) {
      api('GET', '/api/registry/services')
        .then((l) => {
          restServices = l;
          paintCards();
        })
        .catch(() => {});
    }
    picker.set(st.range);
    paintCards();
    paintTable();
    load();
    const unsub = live.subscribe(paintCards);
    // `/` focuses the filter, Escape clears it.
    const onKey = (ev) => {
      if (ev.key === '/' && !ev.target.closest('input, textarea, select, [contenteditable]')) {
        ev.preventDefault();
        filter.focus();
      } else if (ev.key === 'Escape' && ev.target === filter && filter.value) {
        filter.value = '';
        filter.dispatchEvent(new Event('input'));
      }
    };
    document.addEventListener('keydown', onKey);
    return {
      update(p) {
        const next = readState(p.search);
        const reload = JSON.stringify(next.range) !== JSON.stringify(st.range);
        st = next;
        picker.set(st.range);
        paintTable();
        if (reload && !loading) load();
        else if (reload) load();
      },
      unmount() {
        clearTimeout(timer);
        seq++;
        document.removeEventListener('keydown', onKey);
        unsub();
        indicator.unsub();
      },
    };
  },
};

function sumServices(list) {
  const t = { instances: 0, passing: 0, warning: 0, critical: 0 };
  for (const s of list) for (const k of Object.keys(t)) t[k] += s[k];
  return t;
}
