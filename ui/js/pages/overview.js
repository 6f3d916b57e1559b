// Overview: counts from the registry (live) and central configuration.

import { h, setChildren, notice, timeEl, statusBadge } from '../dom.js';
import { api, seg } from '../api.js';
import { live, liveIndicator } from '../live.js';

export default {
  title: 'Overview',
  mount(main) {
    const indicator = liveIndicator();
    let restServices = null;
    let config = null;
    let configError = null;

    const cards = h('div', { class: 'cards', 'data-testid': 'overview-cards' });
    const attention = h('div');
    const recent = h('div');
    const errorBox = h('div');

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Overview'), indicator.el),
      errorBox,
      cards,
      h(
        'div',
        { class: 'grid-2' },
        h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Services needing attention')), attention),
        h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Recent configuration changes')), recent),
      ),
    );

    function card(label, value, testid, kind, href) {
      const body = [h('div', { class: 'card-value', 'data-testid': testid }, value === null ? '–' : String(value)), h('div', { class: 'card-label' }, label)];
      return href ? h('a', { class: `card card-${kind || 'plain'}`, href }, body) : h('div', { class: `card card-${kind || 'plain'}` }, body);
    }

    function paint() {
      const services = live.hasSnapshot ? live.services() : restServices;
      const t = live.hasSnapshot ? live.totals() : restServices ? sumServices(restServices) : null;
      const entries = config ? config.entries : null;
      const apps = entries ? new Set(entries.map((e) => e.application)).size : null;
      setChildren(
        cards,
        card('Services', services ? services.length : null, 'overview-services', 'plain', '/services'),
        card('Instances', t ? t.instances : null, 'overview-instances', 'plain', '/services'),
        card('Passing', t ? t.passing : null, 'overview-passing', 'passing'),
        card('Warning', t ? t.warning : null, 'overview-warning', t && t.warning ? 'warning' : 'plain'),
        card('Critical', t ? t.critical : null, 'overview-critical', t && t.critical ? 'critical' : 'plain'),
        card('Config keys', entries ? entries.length : null, 'overview-config-keys', 'plain', '/config'),
        card('Applications', apps, 'overview-applications', 'plain', '/config'),
      );

      if (!services) {
        setChildren(attention, h('div', { class: 'empty' }, 'Loading…'));
      } else {
        const bad = services.filter((s) => s.warning || s.critical);
        if (!services.length) setChildren(attention, h('div', { class: 'empty' }, 'No services are registered yet.'));
        else if (!bad.length) setChildren(attention, h('div', { class: 'empty ok' }, `All ${services.length} services are passing.`));
        else
          setChildren(
            attention,
            h(
              'table',
              { class: 'table' },
              h('thead', null, h('tr', null, h('th', null, 'Service'), h('th', null, 'Worst'), h('th', { class: 'num' }, 'Critical'), h('th', { class: 'num' }, 'Warning'), h('th', { class: 'num' }, 'Instances'))),
              h(
                'tbody',
                null,
                bad.map((s) =>
                  h(
                    'tr',
                    null,
                    h('td', null, h('a', { href: `/services/${seg(s.name)}` }, s.name)),
                    h('td', null, statusBadge(s.critical ? 'critical' : 'warning')),
                    h('td', { class: 'num' }, String(s.critical)),
                    h('td', { class: 'num' }, String(s.warning)),
                    h('td', { class: 'num' }, String(s.instances)),
                  ),
                ),
              ),
            ),
          );
      }

      if (configError) {
        setChildren(recent, notice('error', `Could not load configuration: ${configError}`));
      } else if (!entries) {
        setChildren(recent, h('div', { class: 'empty' }, 'Loading…'));
      } else if (!entries.length) {
        setChildren(recent, h('div', { class: 'empty' }, 'No configuration keys yet. ', h('a', { href: '/config?new' }, 'Create one')));
      } else {
        const latest = [...entries].sort((a, b) => b.time_unix_ms - a.time_unix_ms).slice(0, 8);
        setChildren(
          recent,
          h(
            'table',
            { class: 'table' },
            h('thead', null, h('tr', null, h('th', null, 'Key'), h('th', { class: 'num' }, 'Version'), h('th', null, 'Author'), h('th', null, 'When'))),
            h(
              'tbody',
              null,
              latest.map((e) =>
                h(
                  'tr',
                  null,
                  h('td', null, h('a', { href: `/config/${seg(e.application)}/${seg(e.profile)}/${seg(e.key)}`, class: 'mono' }, `${e.application}/${e.profile}/${e.key}`)),
                  h('td', { class: 'num' }, `v${e.version}`),
                  h('td', null, e.author),
                  h('td', null, timeEl(e.time_unix_ms)),
                ),
              ),
            ),
          ),
        );
      }
    }

    if (!live.hasSnapshot) {
      api('GET', '/api/registry/services')
        .then((l) => {
          restServices = l;
          paint();
        })
        .catch((e) => e.status !== 401 && setChildren(errorBox, notice('error', `Could not load the registry: ${e.message}`)));
    }
    api('GET', '/api/config')
      .then((c) => {
        config = c;
        paint();
      })
      .catch((e) => {
        configError = e.message;
        paint();
      });
    paint();
    const unsub = live.subscribe(paint);
    return {
      unmount() {
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
