// The machines, containers and processes under a service's instances (the `hosts` section
// of GET /api/services/{name}/summary, docs/console-views.md): a row per instance with its
// host's CPU, memory against the total (or a container's working set against its limit),
// root filesystem, network and trouble badges, each figure linking to the Metrics page with
// the PromQL behind it. Also the mark the overview and the map put on a service whose
// machine is in trouble.
//
//   setChildren(box, hostsTable(summary.hosts, { since: '1h' }));
//   machineTroubleMark(row.machine_trouble)   -> a badge (or null) with the reasons as title

import { h } from '../dom.js';
import { metricsUrl } from '../links.js';
import { fmtPct } from './red.js';

/** 1536 -> "1.5 KiB"; null -> "–". */
export function fmtBytes(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${Number(x.toPrecision(x >= 100 ? 3 : 2))} ${units[i]}`;
}

function fmtCores(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return v >= 10 ? `${Math.round(v)}` : `${Number(v.toPrecision(2))}`;
}

function level(ratio, limit) {
  if (ratio === null || ratio === undefined) return '';
  return ratio > limit ? 'fail' : ratio > limit * 0.8 ? 'warn' : 'ok';
}

/** A bar filled to `ratio` (0..1) with a label; coloured past the threshold. */
function meter(ratio, label, limit, testid) {
  const pct = ratio === null || ratio === undefined ? 0 : Math.max(0, Math.min(1, ratio)) * 100;
  return h(
    'div',
    { class: `meter level-${level(ratio, limit)}`, 'data-testid': testid, 'data-ratio': ratio === null || ratio === undefined ? '' : String(ratio) },
    h('div', { class: 'meter-fill', style: `width:${pct.toFixed(1)}%` }),
    h('span', { class: 'meter-text' }, label),
  );
}

function link(query, range, body, testid) {
  return query ? h('a', { href: metricsUrl({ query, ...range }), 'data-testid': testid, title: query }, body) : body;
}

function troubleBadges(list) {
  if (!list.length) return h('span', { class: 'badge health-ok', 'data-testid': 'host-ok' }, 'ok');
  return list.map((t) => h('span', { class: `badge health-${t.kind === 'alert' ? 'fail' : 'warn'}`, 'data-testid': 'host-trouble', title: t.alert ? `alert ${t.alert}` : 'over a threshold' }, t.reason));
}

function machineRow(x, range, thr) {
  const m = x.machine;
  const q = x.queries.machine;
  const who = h('td', null, h('div', { class: 'mono', 'data-testid': 'host-name' }, x.host), h('div', { class: 'muted small' }, x.instance ? `${x.instance} · by ${x.matched_by.replace('.', ' ')}` : `no registered instance · by ${x.matched_by}`));
  if (!m) {
    return h('tr', { 'data-testid': 'host-row', 'data-host': x.host }, who, h('td', { colspan: '4', class: 'muted' }, 'No host metrics from this machine.'), h('td', null, troubleBadges(x.trouble)));
  }
  return h(
    'tr',
    { 'data-testid': 'host-row', 'data-host': x.host },
    who,
    h('td', null, link(q.cpu_ratio, range, meter(m.cpu_ratio, `${fmtPct(m.cpu_ratio)} of ${fmtCores(m.cpu_cores)} cores`, thr.use, 'host-cpu'))),
    h('td', null, link(q.memory_ratio, range, meter(m.memory_ratio, `${fmtBytes(m.memory_used_bytes)} / ${fmtBytes(m.memory_total_bytes)}`, thr.use, 'host-memory'))),
    h('td', null, link(q.disk_free_ratio, range, meter(m.disk_free_ratio === null ? null : 1 - m.disk_free_ratio, `${fmtPct(m.disk_free_ratio)} free`, thr.use, 'host-disk'))),
    h('td', { class: 'num' }, link(q.network_rx_bps, range, `↓ ${fmtBytes(m.network_rx_bps)}/s`), ' ', link(q.network_tx_bps, range, `↑ ${fmtBytes(m.network_tx_bps)}/s`)),
    h('td', null, troubleBadges(x.trouble)),
  );
}

function containerRows(x, range, thr) {
  const q = x.queries.containers;
  const rows = x.containers.map((c) =>
    h(
      'tr',
      { class: 'sub-row', 'data-testid': 'container-row', 'data-name': c.name },
      h('td', { class: 'mono' }, `↳ ${c.name}`),
      h('td', null, link(q.cpu_cores, range, `${fmtCores(c.cpu_cores)} cores`), c.throttled_ratio ? h('span', { class: 'muted small' }, ` · throttled ${fmtPct(c.throttled_ratio)}`) : null),
      h('td', null, link(q.memory, range, c.memory_limit_bytes ? meter(c.memory_ratio, `${fmtBytes(c.memory_working_set_bytes)} / ${fmtBytes(c.memory_limit_bytes)}`, thr.use, 'container-memory') : `${fmtBytes(c.memory_working_set_bytes)} (no limit)`)),
      // Containers' filesystems and network are not collected (cgroup v2 has neither).
      h('td', { class: 'muted' }, '–'),
      h('td', { class: 'muted' }, '–'),
      h('td', null, c.oom_kills ? h('span', { class: 'badge health-fail', 'data-testid': 'container-oom' }, `${Math.round(c.oom_kills)} OOM kill(s)`) : null),
    ),
  );
  for (const p of x.processes) {
    rows.push(
      h(
        'tr',
        { class: 'sub-row', 'data-testid': 'process-row' },
        h('td', { class: 'mono' }, `↳ process (${p.instance})`),
        h('td', null, link(q.process_cpu_cores, range, `${fmtCores(p.cpu_cores)} cores`), p.threads === null ? null : h('span', { class: 'muted small' }, ` · ${p.threads} threads`)),
        h('td', null, link(q.process_resident, range, `${fmtBytes(p.resident_bytes)} resident`), p.open_fds === null ? null : h('span', { class: 'muted small' }, ` · ${p.open_fds} open fds`)),
        h('td', { class: 'muted' }, '–'),
        h('td', { class: 'muted' }, '–'),
        h('td', null),
      ),
    );
  }
  return rows;
}

/** The service page's "Hosts and containers" body; `hosts` may be null (no metrics). */
export function hostsTable(hosts, range) {
  if (!hosts) return h('div', { class: 'empty' }, 'Metrics are not enabled on this node, so host metrics cannot be shown.');
  if (!hosts.reporting || !hosts.instances.length) {
    return h(
      'div',
      { class: 'empty', 'data-testid': 'service-hosts-none' },
      'No host metrics are reported for the machines of this service. Turn them on in the agent that runs on each machine: ',
      h('code', null, '[host_metrics] enabled = true'),
      ' in its configuration (docs/agent.md, “Host metrics”). An instance is matched to its machine by its meta ',
      h('code', null, 'host'),
      ', else ',
      h('code', null, 'node'),
      ', else its address.',
    );
  }
  const thr = hosts.thresholds;
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'table hosts-table', 'data-testid': 'service-hosts-table' },
      h('thead', null, h('tr', null, ['Host', 'CPU', 'Memory', 'Root filesystem', 'Network', 'Trouble'].map((x) => h('th', null, x)))),
      h(
        'tbody',
        null,
        hosts.instances.flatMap((x) => [machineRow(x, range, thr), ...containerRows(x, range, thr)]),
      ),
    ),
  );
}

/** The overview's and the map's mark on a service whose machine is in trouble (null when none). */
export function machineTroubleMark(list, testid = 'machine-trouble') {
  if (!list || !list.length) return null;
  const title = list.map((t) => `${t.host}${t.instance ? ` (${t.instance})` : ''}: ${t.reasons.join('; ')}`).join('\n');
  return h('span', { class: 'badge health-warn machine-trouble', 'data-testid': testid, title }, list.length === 1 ? `machine ${list[0].host}` : `${list.length} machines`);
}
