// Services (/services) and one service's instances (/services/{name}), live from the
// registry's event stream.

import { h, setChildren, reconcile, statusBadge, empty, notice, duration, timeEl, plural } from '../dom.js';
import { api, seg } from '../api.js';
import { live, liveIndicator } from '../live.js';
import { navigate } from '../router.js';
import { serviceSections } from './service.js';

export default {
  title: (p) => (p.name ? `${p.name} · Services` : 'Services'),
  mount(main, params) {
    let name = params.name;
    let search = params.search || '';
    let sections = null; // the service page's sections (service.js), while a service is open
    const sectionsBox = h('div', { class: 'service-sections', 'data-testid': 'service-sections' });
    let restServices = null; // GET /api/registry/services, used until the first snapshot
    let filterText = '';

    const indicator = liveIndicator();
    const errorBox = h('div');
    const filter = h('input', {
      type: 'search',
      class: 'input input-sm',
      placeholder: 'Filter services or tags',
      'aria-label': 'Filter services',
      'data-testid': 'services-filter',
      oninput: () => {
        filterText = filter.value.trim().toLowerCase();
        paint();
      },
    });

    const svcBody = h('tbody', { 'data-testid': 'services-body' });
    const svcTable = h(
      'table',
      { class: 'table table-hover', 'data-testid': 'services-table' },
      h(
        'thead',
        null,
        h('tr', null, h('th', { class: 'col-name' }, 'Service'), h('th', { class: 'num' }, 'Instances'), h('th', null, 'Health'), h('th', null, 'Tags')),
      ),
      svcBody,
    );
    const svcEmpty = h('div', { hidden: true });
    const svcCount = h('span', { class: 'panel-count' });
    const detail = h('section', { class: 'panel', 'data-testid': 'service-detail', hidden: true });

    setChildren(
      main,
      h('div', { class: 'page-head' }, h('h1', null, 'Services'), indicator.el, h('div', { class: 'spacer' }), filter),
      errorBox,
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Registered services'), svcCount), svcTable, svcEmpty),
      detail,
      sectionsBox,
    );

    // Detail parts, rebuilt when the selected service changes.
    let instBody = null;
    let detailSummary = null;
    let detailEmpty = null;

    function buildDetail() {
      if (sections) sections.unmount();
      sections = null;
      sectionsBox.replaceChildren();
      if (name) sections = serviceSections(sectionsBox, name, search);
      if (!name) {
        detail.hidden = true;
        detail.replaceChildren();
        instBody = null;
        return;
      }
      detail.hidden = false;
      instBody = h('tbody', { 'data-testid': 'instances-body' });
      detailSummary = h('span', { class: 'panel-count', 'data-testid': 'service-summary' });
      detailEmpty = h('div', { hidden: true });
      const table = h(
        'table',
        { class: 'table instances', 'data-testid': 'instances-table' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { rowspan: 2 }, 'Instance'),
            h('th', { rowspan: 2 }, 'Address'),
            h('th', { rowspan: 2 }, 'Status'),
            h('th', { rowspan: 2, class: 'col-checks' }, 'Checks'),
            h('th', { colspan: 4, class: 'group' }, 'Gateway'),
          ),
          h('tr', null, h('th', null, 'Ejected'), h('th', null, 'Circuit'), h('th', { class: 'num', title: 'Requests in flight' }, 'In flight'), h('th', { class: 'num', title: 'Latency EWMA' }, 'Latency')),
        ),
        instBody,
      );
      setChildren(
        detail,
        h(
          'div',
          { class: 'panel-head' },
          h('h2', null, h('a', { href: '/services', class: 'crumb', title: 'All services' }, 'Services'), h('span', { class: 'crumb-sep' }, '/'), h('span', { 'data-testid': 'service-title' }, name)),
          detailSummary,
        ),
        h('div', { class: 'table-scroll' }, table),
        detailEmpty,
      );
    }

    function paint() {
      const all = live.hasSnapshot ? live.services() : restServices || live.services();
      const list = filterText ? all.filter((s) => s.name.toLowerCase().includes(filterText) || s.tags.some((t) => t.toLowerCase().includes(filterText))) : all;
      svcCount.textContent = filterText ? `${list.length} of ${all.length}` : plural(all.length, 'service');
      reconcile(svcBody, list, (s) => s.name, serviceSignature, serviceRow);
      for (const tr of svcBody.children) tr.classList.toggle('selected', tr.dataset.key === name);
      if (all.length === 0) {
        svcEmpty.hidden = false;
        setChildren(
          svcEmpty,
          empty(
            live.hasSnapshot || restServices ? 'No services are registered' : 'Loading…',
            live.hasSnapshot || restServices ? ['Register an instance with ', h('code', null, 'POST /api/registry/instances'), ' or the Consul API; it appears here at once.'] : null,
          ),
        );
      } else if (list.length === 0) {
        svcEmpty.hidden = false;
        setChildren(svcEmpty, empty('No service matches the filter'));
      } else {
        svcEmpty.hidden = true;
      }

      if (!instBody) return;
      const insts = live.ofService(name);
      const counts = { passing: 0, warning: 0, critical: 0 };
      for (const i of insts) counts[i.status]++;
      setChildren(
        detailSummary,
        plural(insts.length, 'instance'),
        ...['passing', 'warning', 'critical'].filter((s) => counts[s]).map((s) => h('span', { class: `count count-${s}` }, `${counts[s]} ${s}`)),
      );
      reconcile(instBody, insts, (i) => i.id, (i) => JSON.stringify(i), instanceRow);
      if (insts.length === 0) {
        detailEmpty.hidden = false;
        setChildren(
          detailEmpty,
          empty(
            live.hasSnapshot ? `No instances of “${name}” are registered` : 'Loading…',
            live.hasSnapshot ? 'This list follows the registry: new instances show up here as they register.' : null,
          ),
        );
      } else {
        detailEmpty.hidden = true;
      }
    }

    function fetchDetail() {
      if (!name || live.hasSnapshot) return;
      const want = name;
      api('GET', `/api/registry/services/${seg(want)}`)
        .then((list) => {
          if (Array.isArray(list)) live.seed(list);
        })
        .catch((e) => showError(e));
    }

    function showError(e) {
      if (e.status === 401) return;
      setChildren(errorBox, notice('error', `Could not load the registry: ${e.message}`));
    }

    if (!live.hasSnapshot) {
      api('GET', '/api/registry/services')
        .then((list) => {
          restServices = list.map((s) => ({ ...s, tags: [...(s.tags || [])].sort() }));
          paint();
        })
        .catch(showError);
    }
    buildDetail();
    fetchDetail();
    paint();
    const unsub = live.subscribe(() => {
      if (live.hasSnapshot) errorBox.replaceChildren();
      paint();
    });

    return {
      update(p) {
        const searchChanged = (p.search || '') !== search;
        search = p.search || '';
        if (p.name === name && searchChanged && sections) sections.update(search);
        if (p.name !== name) {
          name = p.name;
          buildDetail();
          fetchDetail();
          paint();
        }
      },
      unmount() {
        if (sections) sections.unmount();
        unsub();
        indicator.unsub();
      },
    };
  },
};

/** What a service row shows, independent of how the object was built (the REST list and the
 * live map order their fields differently, which re-rendered and flashed every row). */
function serviceSignature(s) {
  return [s.name, s.instances, s.passing, s.warning, s.critical, (s.tags || []).join(',')].join('|');
}

/** The worst health among a service's instances. */
function worst(s) {
  return s.critical ? 'critical' : s.warning ? 'warning' : 'passing';
}

function serviceRow(s) {
  const total = s.instances || 1;
  const bar = h(
    'div',
    { class: 'health-bar', title: `${s.passing} passing, ${s.warning} warning, ${s.critical} critical` },
    ...['passing', 'warning', 'critical'].filter((k) => s[k]).map((k) => h('span', { class: `seg seg-${k}`, style: { width: `${(100 * s[k]) / total}%` } })),
  );
  return h(
    'tr',
    {
      'data-testid': 'service-row',
      'data-service': s.name,
      // A changed row flashes in its health's colour: an all-passing service is not
      // highlighted as if it needed attention.
      'data-health': worst(s),
      class: 'clickable',
      onclick: (ev) => {
        if (ev.target.closest('a')) return;
        navigate(`/services/${seg(s.name)}`);
      },
    },
    h('td', { class: 'col-name' }, h('a', { href: `/services/${seg(s.name)}`, 'data-testid': 'service-link' }, s.name)),
    h('td', { class: 'num', 'data-testid': 'service-instances' }, String(s.instances)),
    h(
      'td',
      { class: 'health-cell' },
      bar,
      h(
        'span',
        { class: 'counts' },
        ...['passing', 'warning', 'critical'].map((k) => h('span', { class: `count count-${k}${s[k] ? '' : ' zero'}`, 'data-testid': `service-${k}`, 'data-count': s[k] }, `${s[k]} ${k}`)),
      ),
    ),
    h('td', null, tagList(s.tags)),
  );
}

function tagList(tags) {
  if (!tags || !tags.length) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'tags' }, ...tags.map((t) => h('span', { class: 'tag' }, t)));
}

function checkKind(c) {
  switch (c.kind) {
    case 'ttl':
      return `ttl ${duration(c.ttl_ms)}`;
    case 'http':
      return `GET ${c.url}`;
    case 'tcp':
      return `connect ${c.address}`;
    case 'grpc':
      return `grpc ${c.address}${c.service ? ' ' + c.service : ''}`;
    default:
      return c.kind || '';
  }
}

function checkEl(c) {
  return h(
    'div',
    { class: 'check', 'data-testid': 'check', 'data-check-id': c.id, 'data-status': c.status },
    h('span', { class: `dot dot-${c.status}`, title: c.status }),
    h('span', { class: 'check-name' }, c.name),
    h('span', { class: 'check-kind', title: checkKind(c) }, checkKind(c)),
    c.kind !== 'ttl' ? h('span', { class: 'check-interval', title: 'Interval' }, `every ${duration(c.interval_ms)}`) : null,
    h('span', { class: `check-status status-text-${c.status}`, 'data-testid': 'check-status' }, c.status),
    c.flapping ? h('span', { class: 'tag tag-warn', title: 'The check changes status often' }, 'flapping') : null,
    c.output ? h('div', { class: 'check-output', title: c.output }, c.output) : null,
  );
}

function instanceRow(i) {
  const g = i.gateway;
  const none = () => h('td', { class: 'muted', title: 'The gateway does not route to this instance' }, '—');
  let gw;
  if (!g) {
    gw = [none(), none(), none(), none()];
  } else {
    const ejected = g.ejected
      ? h(
          'span',
          { class: 'badge status-critical', 'data-testid': 'instance-ejected', title: `${g.ejections} ejection(s)` },
          'yes',
          g.ejected_for_seconds != null ? ` · ${Math.ceil(g.ejected_for_seconds)}s` : '',
        )
      : h('span', { class: 'badge badge-plain', 'data-testid': 'instance-ejected', title: `${g.ejections || 0} ejection(s) so far` }, 'no');
    const circuit = g.circuit
      ? h('span', { class: `badge circuit-${g.circuit}`, 'data-testid': 'instance-circuit' }, g.circuit.replace('_', '-'))
      : h('span', { class: 'muted', 'data-testid': 'instance-circuit', title: 'No endpoint circuit breaker' }, 'none');
    gw = [
      h('td', null, ejected),
      h('td', null, circuit),
      h('td', { class: 'num' }, String(g.inflight ?? '')),
      h('td', { class: 'num' }, g.latency_ewma_ms != null ? `${Number(g.latency_ewma_ms).toFixed(1)} ms` : ''),
    ];
  }
  const meta = Object.entries(i.meta || {});
  return h(
    'tr',
    { 'data-testid': 'instance-row', 'data-instance-id': i.id, 'data-status': i.status },
    h(
      'td',
      { class: 'col-id' },
      h('div', { class: 'mono strong' }, i.id),
      h('div', { class: 'sub' }, `weight ${i.weight} · registered `, timeEl(i.registered_unix_ms)),
      meta.length ? h('div', { class: 'sub mono', title: 'Metadata' }, meta.map(([k, v]) => `${k}=${v}`).join(' ')) : null,
      i.tags && i.tags.length ? h('div', { class: 'inst-tags', 'data-testid': 'instance-tags' }, tagList(i.tags)) : null,
    ),
    h('td', { class: 'mono', 'data-testid': 'instance-address' }, i.address.includes(':') ? `[${i.address}]:${i.port}` : `${i.address}:${i.port}`),
    h('td', null, statusBadge(i.status, 'instance-status')),
    h('td', { class: 'col-checks' }, i.checks && i.checks.length ? i.checks.map(checkEl) : h('span', { class: 'muted' }, 'no checks')),
    ...gw,
  );
}
