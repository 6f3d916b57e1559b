// Alerts (/alerts): what is firing or pending (the Prometheus API's /alerts), the rules by
// group with their state and health (/rules), and the alert history when the node offers
// one (/api/alerts/history; a 404 hides that section). An alert links to the Logs and
// Traces of its service (label `service`, else `job`) around the time it became active.
// The page refreshes itself every REFRESH_MS.

import { h, setChildren, empty, notice, ago, plural, fullTime } from '../dom.js';
import { api } from '../api.js';
import { prom, promErrorText, seriesName } from '../promql.js';
import { metricsUrl, alertUrls } from '../links.js';
import { liveAlerts } from '../live.js';
import { fullTimeMs } from '../trace-model.js';

const REFRESH_MS = 30_000;
const BEFORE_MS = 5 * 60e3; // the logs/traces window opens this long before activeAt
const STATES = ['firing', 'pending', 'inactive'];

/** Unix ms of an RFC 3339 time (or a Unix seconds number), 0 when unknown. */
function timeMs(t) {
  if (t === undefined || t === null || t === '') return 0;
  if (typeof t === 'number') return t > 1e12 ? t : t * 1000;
  const ms = Date.parse(t);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

/** Where an alert leads (links.js alertUrls): its service page, logs, traces and metrics
 * from BEFORE_MS before it became active to now. */
export function alertLinks(labels, activeAt, now = Date.now()) {
  return alertUrls(labels, timeMs(activeAt), { now, beforeMs: BEFORE_MS });
}

function stateBadge(state, testid) {
  const s = String(state || 'unknown').toLowerCase();
  return h('span', { class: `badge alert-state alert-state-${s}`, 'data-testid': testid, 'data-state': s }, s);
}

function healthBadge(health) {
  const s = String(health || 'unknown').toLowerCase();
  return h('span', { class: `badge rule-health rule-health-${s}`, 'data-testid': 'rule-health', 'data-health': s }, s);
}

function labelChips(labels, testid = 'alert-label') {
  const entries = Object.entries(labels || {}).filter(([k]) => k !== 'alertname');
  if (!entries.length) return null;
  return h('span', { class: 'tags' }, entries.sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => h('span', { class: 'tag mono', 'data-testid': testid }, `${k}=${v}`)));
}

function annotationList(ann) {
  const entries = Object.entries(ann || {});
  if (!entries.length) return null;
  return h('dl', { class: 'kv alert-annotations', 'data-testid': 'alert-annotations' }, entries.map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))]));
}

export default {
  title: 'Alerts',
  mount(main) {
    let seq = 0;
    let timer = null;
    const summary = h('div', { class: 'alerts-summary', 'data-testid': 'alerts-summary' });
    const errorBox = h('div', { 'data-testid': 'alerts-error-box' });
    const activeCount = h('span', { class: 'panel-count', 'data-testid': 'alerts-active-count' });
    const activeBody = h('div', { 'data-testid': 'alerts-active' }, h('div', { class: 'empty' }, 'Loading…'));
    const rulesCount = h('span', { class: 'panel-count', 'data-testid': 'alerts-rules-count' });
    const rulesBody = h('div', { 'data-testid': 'alerts-rules' });
    const historyBody = h('div', { 'data-testid': 'alerts-history' });
    const historyPanel = h('section', { class: 'panel', 'data-testid': 'alerts-history-panel', hidden: true }, h('div', { class: 'panel-head' }, h('h2', null, 'History')), historyBody);
    const updated = h('span', { class: 'panel-hint', 'data-testid': 'alerts-updated' });
    const refreshBtn = h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'alerts-refresh', onclick: () => load() }, 'Refresh');

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Alerts'), summary, h('div', { class: 'spacer' }), updated, refreshBtn),
      errorBox,
      h('section', { class: 'panel', 'data-testid': 'alerts-active-panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Firing and pending'), activeCount), activeBody),
      h('section', { class: 'panel', 'data-testid': 'alerts-rules-panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Rules'), rulesCount), rulesBody),
      historyPanel,
    );

    async function load() {
      const mine = ++seq;
      clearTimeout(timer);
      const [rules, alerts, history] = await Promise.allSettled([prom('rules'), prom('alerts'), api('GET', '/api/alerts/history')]);
      if (mine !== seq) return;
      errorBox.replaceChildren();
      for (const [what, r] of [['rules', rules], ['alerts', alerts]]) {
        if (r.status === 'rejected' && r.reason.status !== 401) errorBox.append(notice('error', `The ${what} could not be loaded: ${promErrorText(r.reason)}`));
      }
      const groups = rules.status === 'fulfilled' && Array.isArray(rules.value?.groups) ? rules.value.groups : [];
      const active = alerts.status === 'fulfilled' && Array.isArray(alerts.value?.alerts) ? alerts.value.alerts : [];
      paintSummary(groups, active);
      paintActive(active, alerts.status === 'fulfilled');
      paintRules(groups, rules.status === 'fulfilled');
      paintHistory(history);
      updated.textContent = `Updated ${fullTime(Date.now())}`;
      timer = setTimeout(load, REFRESH_MS);
    }

    function paintSummary(groups, active) {
      const counts = { firing: 0, pending: 0, inactive: 0 };
      for (const g of groups) for (const r of g.rules || []) if (r.type !== 'recording' && counts[r.state] !== undefined) counts[r.state]++;
      setChildren(
        summary,
        STATES.map((s) => h('span', { class: `alerts-sum alerts-sum-${s}`, 'data-testid': `alerts-sum-${s}`, 'data-count': counts[s] }, h('strong', null, String(counts[s])), ` ${s}`)),
      );
      summary.dataset.active = String(active.length);
    }

    function paintActive(active, loaded) {
      activeCount.textContent = loaded ? plural(active.length, 'alert') : '';
      if (!loaded) {
        setChildren(activeBody, empty('Alerts unavailable', 'The node did not list its alerts (see the error above). Refresh tries again.'));
        return;
      }
      if (!active.length) {
        setChildren(activeBody, h('div', { 'data-testid': 'alerts-none' }, empty('Nothing is firing', 'No alert is firing or pending right now.')));
        return;
      }
      const order = (a) => STATES.indexOf(a.state);
      const sorted = [...active].sort((a, b) => order(a) - order(b) || timeMs(a.activeAt) - timeMs(b.activeAt));
      setChildren(
        activeBody,
        h(
          'table',
          { class: 'table alerts-table' },
          h('thead', null, h('tr', null, h('th', null, 'Alert'), h('th', null, 'State'), h('th', null, 'Active since'), h('th', { class: 'num' }, 'Value'), h('th', null, 'Look at'))),
          h('tbody', null, sorted.map(alertRow)),
        ),
      );
    }

    function alertRow(a) {
      const labels = a.labels || {};
      const since = timeMs(a.activeAt);
      const links = alertLinks(labels, a.activeAt);
      return h(
        'tr',
        { 'data-testid': 'alert-row', 'data-alertname': labels.alertname || '', 'data-state': a.state || '' },
        h('td', null, h('div', { class: 'alert-name' }, labels.alertname || '(unnamed)'), labelChips(labels), annotationList(a.annotations)),
        h('td', null, stateBadge(a.state, 'alert-state')),
        h('td', { title: since ? fullTimeMs(since) : '' }, since ? [h('div', { 'data-testid': 'alert-active-at' }, fullTimeMs(since)), h('div', { class: 'sub' }, ago(since))] : '—'),
        h('td', { class: 'num mono' }, a.value === undefined ? '—' : String(a.value)),
        h(
          'td',
          { class: 'alert-links' },
          links
            ? [
                h('a', { href: links.service_page, 'data-testid': 'alert-service-link', title: `The ${links.service} service page from 5 minutes before the alert became active` }, links.service),
                ' · ',
                h('a', { href: links.metrics, 'data-testid': 'alert-metrics-link', title: `Request rate, errors and p99 of ${links.service} over the alert's window` }, 'Metrics'),
                ' · ',
                h('a', { href: links.logs, 'data-testid': 'alert-logs-link', title: `Logs of ${links.service} since 5 minutes before it became active` }, 'Logs'),
                ' · ',
                h('a', { href: links.traces, 'data-testid': 'alert-traces-link', title: `Traces of ${links.service} over the same window` }, 'Traces'),
              ]
            : h('span', { class: 'muted', title: 'The alert has no service or job label' }, '—'),
        ),
      );
    }

    function paintRules(groups, loaded) {
      const nRules = groups.reduce((n, g) => n + (g.rules || []).length, 0);
      rulesCount.textContent = loaded ? `${plural(nRules, 'rule')} in ${plural(groups.length, 'group')}` : '';
      if (!loaded) {
        setChildren(rulesBody, empty('Rules unavailable', 'The node did not list its rules (see the error above). Refresh tries again.'));
        return;
      }
      if (!nRules) {
        setChildren(rulesBody, h('div', { 'data-testid': 'alerts-no-rules' }, empty('No rules loaded', 'This node evaluates no alerting or recording rules yet. List rule files under [metrics.rules] files in the node\'s configuration (signalbox check-rules checks them first); they show up here with their state and health.')));
        return;
      }
      setChildren(
        rulesBody,
        groups.map((g) =>
          h(
            'div',
            { class: 'rule-group', 'data-testid': 'rule-group', 'data-group': g.name || '' },
            h('div', { class: 'rule-group-head' }, h('strong', null, g.name || '(unnamed group)'), g.file ? h('span', { class: 'muted mono' }, g.file) : null, g.interval ? h('span', { class: 'muted' }, `every ${g.interval}s`) : null),
            h(
              'table',
              { class: 'table rules-table' },
              h('thead', null, h('tr', null, h('th', null, 'Rule'), h('th', null, 'State'), h('th', null, 'Health'), h('th', null, 'Query'))),
              h('tbody', null, (g.rules || []).map(ruleRow)),
            ),
          ),
        ),
      );
    }

    function ruleRow(r) {
      const alerting = r.type !== 'recording';
      const firing = (r.alerts || []).filter((a) => a.state === 'firing').length;
      return h(
        'tr',
        { 'data-testid': 'rule-row', 'data-rule': r.name || '', 'data-state': alerting ? r.state || '' : 'recording' },
        h('td', null, h('div', { class: 'alert-name' }, r.name || '(unnamed)'), h('div', { class: 'sub' }, alerting ? `alerting${(r.alerts || []).length ? ` · ${plural(r.alerts.length, 'alert')}, ${firing} firing` : ''}` : 'recording'), labelChips(r.labels, 'rule-label')),
        h('td', null, alerting ? stateBadge(r.state, 'rule-state') : h('span', { class: 'muted' }, '—')),
        h('td', null, healthBadge(r.health), r.lastError ? h('div', { class: 'field-error', 'data-testid': 'rule-last-error' }, r.lastError) : null),
        h('td', null, h('a', { class: 'mono rule-query', href: metricsUrl({ query: r.query || '', since: '1h' }), title: 'Chart this query' }, r.query || '')),
      );
    }

    /** History entries: `{alerts|history|entries: [...]}` or a bare list, each with labels,
     * state and a time (`at`, `time`, `timestamp`, `activeAt`). */
    function paintHistory(res) {
      if (res.status === 'rejected') {
        // 404: the node keeps no history; other failures are not worth a banner here.
        historyPanel.hidden = true;
        return;
      }
      const v = res.value;
      const list = Array.isArray(v) ? v : Array.isArray(v?.history) ? v.history : Array.isArray(v?.alerts) ? v.alerts : Array.isArray(v?.entries) ? v.entries : null;
      if (!list) {
        historyPanel.hidden = true;
        return;
      }
      historyPanel.hidden = false;
      if (!list.length) {
        setChildren(historyBody, empty('No history', 'No alert has changed state yet.'));
        return;
      }
      const at = (e) => timeMs(e.at ?? e.time ?? e.timestamp ?? e.activeAt ?? e.ts);
      setChildren(
        historyBody,
        h(
          'table',
          { class: 'table alerts-history' },
          h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'Alert'), h('th', null, 'State'))),
          h(
            'tbody',
            null,
            [...list].sort((a, b) => at(b) - at(a)).slice(0, 500).map((e) =>
              h(
                'tr',
                { 'data-testid': 'alert-history-row' },
                h('td', { class: 'mono' }, at(e) ? fullTimeMs(at(e)) : '—'),
                h('td', null, h('div', { class: 'alert-name' }, e.labels?.alertname || e.name || e.alertname || seriesName(e.labels || {})), labelChips(e.labels)),
                h('td', null, stateBadge(e.state || e.to || e.status, 'alert-history-state')),
              ),
            ),
          ),
        ),
      );
    }

    load();
    // The live stream's `alerts` topic says when an alert changes state: reload then (the
    // periodic refresh stays for rule health and values, which change without a transition).
    const offLive = liveAlerts.subscribe(() => load());
    return {
      unmount() {
        seq++;
        clearTimeout(timer);
        offLive();
      },
    };
  },
};
