// Rollouts (/rollouts, /rollouts/{service}): every service's latest canary rollout or
// blue-green switch with its phase, weights and last decision; a service's own page shows
// the full rollout panel (components/rollouts.js): charts, history, pause/promote/abort.

import { h, setChildren, notice, empty, timeEl } from '../dom.js';
import { api, seg } from '../api.js';
import { serviceUrl } from '../links.js';
import { rolloutPanel, phaseBadge, weightsBar } from '../components/rollouts.js';

const REFRESH_MS = 3_000;

export function rolloutUrl(service) {
  return service ? `/rollouts/${seg(service)}` : '/rollouts';
}

function listView(main) {
  let timer = 0;
  let dead = false;
  const body = h('div', { 'data-testid': 'rollouts' }, h('div', { class: 'empty' }, 'Loading…'));
  const errorBox = h('div');
  setChildren(
    main,
    h('div', { class: 'page-head' }, h('h1', null, 'Rollouts')),
    h('p', { class: 'muted' }, 'Canary rollouts move a service’s requests to a new version step by step and are promoted or rolled back on the gateway’s own metrics; a blue-green switch moves them in one step. Start one with ', h('code', null, 'signalbox rollout start SERVICE --to VERSION'), '.'),
    errorBox,
    h('section', { class: 'panel' }, body),
  );
  async function load() {
    clearTimeout(timer);
    try {
      const d = await api('GET', '/api/v1/rollouts');
      if (dead) return;
      errorBox.replaceChildren();
      const list = d.rollouts || [];
      if (!list.length) {
        setChildren(body, h('div', { 'data-testid': 'rollouts-none' }, empty('No rollouts yet', 'Start one with signalbox rollout start SERVICE --to VERSION, or POST /api/v1/rollouts/{service}.')));
      } else {
        setChildren(
          body,
          h(
            'div',
            { class: 'table-scroll' },
            h(
              'table',
              { class: 'table', 'data-testid': 'rollouts-table' },
              h('thead', null, h('tr', null, ['Service', 'Phase', 'Versions', 'Weights', 'Last decision', 'Started'].map((x) => h('th', null, x)))),
              h(
                'tbody',
                null,
                list.map((r) => {
                  const last = r.history[r.history.length - 1];
                  return h(
                    'tr',
                    { 'data-testid': 'rollout-row', 'data-service': r.spec.service, 'data-phase': r.phase },
                    h('td', null, h('a', { href: rolloutUrl(r.spec.service), 'data-testid': 'rollout-link' }, r.spec.service), ' ', h('a', { class: 'muted small', href: serviceUrl(r.spec.service) }, 'service')),
                    h('td', null, phaseBadge(r.phase)),
                    h('td', { class: 'mono' }, `${r.spec.stable} → ${r.spec.canary}`),
                    h('td', null, weightsBar(r.weights, r.spec)),
                    h('td', { class: 'small' }, last ? `${last.decision.replace('_', ' ')}: ${last.reason}` : '–'),
                    h('td', null, timeEl(r.started_ms)),
                  );
                }),
              ),
            ),
          ),
        );
      }
    } catch (e) {
      if (dead || e.status === 401) return;
      setChildren(errorBox, notice('error', `The rollouts could not be loaded: ${e.message}`));
    }
    timer = setTimeout(load, REFRESH_MS);
  }
  load();
  return {
    unmount() {
      dead = true;
      clearTimeout(timer);
    },
  };
}

function detailView(main, service) {
  const box = h('div');
  setChildren(main, h('div', { class: 'page-head' }, h('h1', null, `Rollout of ${service}`), h('div', { class: 'spacer' }), h('a', { href: '/rollouts' }, 'All rollouts'), ' · ', h('a', { href: serviceUrl(service) }, 'Service page')), box);
  return rolloutPanel(box, service);
}

export default {
  title: 'Rollouts',
  mount(main, params) {
    let view = params.service ? detailView(main, params.service) : listView(main);
    let current = params.service || null;
    return {
      update(next) {
        if ((next.service || null) === current) return;
        view.unmount();
        current = next.service || null;
        view = current ? detailView(main, current) : listView(main);
      },
      unmount() {
        view.unmount();
      },
    };
  },
};
