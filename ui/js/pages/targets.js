// Scrape targets (/targets): every target the node pulls metrics from (the registry's
// instances that declare a metrics path, and the static jobs), with its health, the time and
// duration of its last scrape and, when it is down, why. Targets that relabeling dropped are
// counted. The page refreshes itself every REFRESH_MS.

import { h, setChildren, empty, notice, ago, plural } from '../dom.js';
import { prom, promErrorText } from '../promql.js';
import { metricsUrl } from '../links.js';

const REFRESH_MS = 10_000;

function healthBadge(health) {
  const s = String(health || 'unknown').toLowerCase();
  const cls = s === 'up' ? 'passing' : s === 'down' ? 'critical' : 'warning';
  return h('span', { class: `badge status-${cls}`, 'data-testid': 'target-health', 'data-health': s }, s);
}

function labelChips(labels) {
  const entries = Object.entries(labels || {}).filter(([k]) => k !== 'job');
  return h('span', { class: 'tags' }, entries.sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => h('span', { class: 'tag mono' }, `${k}=${v}`)));
}

export default {
  title: 'Targets',
  mount(main) {
    let timer = null;
    let seq = 0;
    const summary = h('span', { class: 'panel-hint', 'data-testid': 'targets-summary' });
    const body = h('div', { 'data-testid': 'targets' }, h('div', { class: 'empty' }, 'Loading…'));
    const errorBox = h('div');
    const refreshBtn = h('button', { type: 'button', class: 'btn btn-sm', 'data-testid': 'targets-refresh', onclick: () => load() }, 'Refresh');
    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Scrape targets'), h('div', { class: 'spacer' }), summary, refreshBtn),
      errorBox,
      h('section', { class: 'panel' }, body),
    );

    async function load() {
      const mine = ++seq;
      clearTimeout(timer);
      let data;
      try {
        data = await prom('targets');
      } catch (e) {
        if (mine !== seq) return;
        setChildren(errorBox, notice('error', `The targets could not be loaded: ${promErrorText(e)}`));
        // Not an endless "Loading…": say what happened and what to do.
        if (!body.querySelector('table')) setChildren(body, h('div', { 'data-testid': 'targets-failed' }, empty('Targets unavailable', 'The node did not answer with its scrape targets. It retries by itself; Refresh tries now.')));
        timer = setTimeout(load, REFRESH_MS);
        return;
      }
      if (mine !== seq) return;
      errorBox.replaceChildren();
      const active = Array.isArray(data?.activeTargets) ? data.activeTargets : [];
      const dropped = Array.isArray(data?.droppedTargets) ? data.droppedTargets.length : 0;
      const down = active.filter((t) => t.health === 'down').length;
      summary.textContent = `${plural(active.length, 'target')}, ${down} down${dropped ? `, ${dropped} dropped by relabeling` : ''}`;
      if (!active.length) {
        setChildren(body, h('div', { 'data-testid': 'targets-none' }, empty('No targets', 'Register an instance with meta metrics_path, or add a [[metrics.scrape]] job.')));
      } else {
        const sorted = [...active].sort((a, b) => (a.health === 'down' ? 0 : 1) - (b.health === 'down' ? 0 : 1) || a.scrapePool.localeCompare(b.scrapePool) || a.scrapeUrl.localeCompare(b.scrapeUrl));
        setChildren(
          body,
          h(
            'table',
            { class: 'table' },
            h('thead', null, h('tr', null, ['Job', 'Endpoint', 'Health', 'Labels', 'Last scrape', 'Duration', 'Error'].map((c) => h('th', null, c)))),
            h(
              'tbody',
              null,
              sorted.map((t) => {
                const scraped = Date.parse(t.lastScrape);
                const instance = t.labels?.instance || '';
                return h(
                  'tr',
                  { 'data-testid': 'target-row', 'data-health': t.health, 'data-instance': instance },
                  h('td', null, t.scrapePool),
                  h('td', { class: 'mono' }, h('a', { href: metricsUrl({ query: `up{instance="${instance}"}` }) }, t.scrapeUrl)),
                  h('td', null, healthBadge(t.health)),
                  h('td', null, labelChips(t.labels)),
                  h('td', null, scraped > 0 ? ago(scraped) : 'never'),
                  h('td', null, t.lastScrapeDuration ? `${(t.lastScrapeDuration * 1000).toFixed(1)} ms` : ''),
                  h('td', { class: 'mono status-text-critical', 'data-testid': 'target-error' }, t.lastError || ''),
                );
              }),
            ),
          ),
        );
      }
      timer = setTimeout(load, REFRESH_MS);
    }

    load();
    return {
      unmount() {
        seq++;
        clearTimeout(timer);
      },
    };
  },
};
