// The live registry: one EventSource on /api/registry/events shared by every page, and a
// client-side map of instances by id kept current from its events.
//
//   snapshot {index, instances}           every instance (replaces the map)
//   change   {index, instances, removed}  changed instances and ids that left
//   gateway  {index, instances}           refreshed gateway columns
//
// Service rows are derived from the map, so counts follow every event.
//
// A safety net runs beside the stream: every few seconds the service counts are compared
// with GET /api/registry/services, and a service that differs (or is open on screen) is
// re-read. The node can publish a health change's index before it logs the change, and
// the stream then skips it (see the report that came with this console); the resync makes
// the page converge anyway. `resyncFixes` counts what only the resync delivered.

import { api, seg } from './api.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;
const RESYNC_MS = 4000;

class LiveRegistry {
  constructor() {
    this.instances = new Map();
    this.index = 0;
    this.hasSnapshot = false;
    /** idle | connecting | live | reconnecting | offline */
    this.state = 'idle';
    this.listeners = new Set();
    this.es = null;
    this.retryMs = RETRY_MIN_MS;
    this.retryTimer = null;
    this.notifyQueued = false;
    this.onUnauthorized = () => {};
    this.watched = new Map(); // service name -> number of views showing it
    this.removedAt = new Map(); // instance id -> index of the event that removed it
    this.resyncTimer = null;
    this.resyncing = false;
    this.resyncFixes = 0;
  }

  /** Marks `name` as on screen (re-read on every resync); returns the undo. */
  watch(name) {
    this.watched.set(name, (this.watched.get(name) || 0) + 1);
    return () => {
      const n = (this.watched.get(name) || 1) - 1;
      if (n) this.watched.set(name, n);
      else this.watched.delete(name);
    };
  }

  /** `fn()` after every change of instances or connection state; returns the unsubscribe. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  notify() {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const fn of Array.from(this.listeners)) {
        try {
          fn();
        } catch (e) {
          console.error(e);
        }
      }
    });
  }

  setState(s) {
    if (this.state !== s) {
      this.state = s;
      this.notify();
    }
  }

  start() {
    if (!this.resyncTimer) this.resyncTimer = setInterval(() => this.resync(), RESYNC_MS);
    if (this.es || this.retryTimer) return;
    this.connect();
  }

  stop() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    this.removedAt.clear();
    if (this.es) this.es.close();
    this.es = null;
    this.instances.clear();
    this.hasSnapshot = false;
    this.index = 0;
    this.setState('idle');
    this.notify();
  }

  connect() {
    this.retryTimer = null;
    this.setState(this.hasSnapshot ? 'reconnecting' : 'connecting');
    const es = new EventSource('/api/registry/events');
    this.es = es;
    es.addEventListener('snapshot', (e) => this.onSnapshot(parse(e)));
    es.addEventListener('change', (e) => this.onChange(parse(e)));
    es.addEventListener('gateway', (e) => this.onGateway(parse(e)));
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (401 after the session expired, or an error
        // status): the browser will not retry by itself.
        es.close();
        this.es = null;
        this.setState('offline');
        this.scheduleRetry();
      } else {
        // The connection dropped; the browser reconnects and we get a fresh snapshot.
        this.setState('reconnecting');
      }
    });
  }

  async scheduleRetry() {
    try {
      await api('GET', '/api/session', undefined, { quiet401: true });
    } catch (e) {
      if (e.status === 401) {
        this.onUnauthorized();
        return;
      }
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  onSnapshot(d) {
    if (!d) return;
    this.instances = new Map(d.instances.map((i) => [i.id, i]));
    this.index = d.index;
    this.hasSnapshot = true;
    this.retryMs = RETRY_MIN_MS;
    this.setState('live');
    this.notify();
  }

  onChange(d) {
    if (!d) return;
    for (const i of d.instances || []) this.instances.set(i.id, i);
    for (const id of d.removed || []) {
      this.instances.delete(id);
      this.removedAt.set(id, d.index);
    }
    this.index = d.index;
    this.setState('live');
    this.notify();
  }

  onGateway(d) {
    if (!d) return;
    // These are whole, current instance views (events arrive in order), so take them as
    // they are: besides the gateway columns this also repairs a missed health change.
    let changed = false;
    for (const i of d.instances || []) {
      const cur = this.instances.get(i.id);
      if (!cur && (this.removedAt.get(i.id) || 0) >= d.index) continue;
      if (!cur || JSON.stringify(cur) !== JSON.stringify(i)) {
        this.instances.set(i.id, i);
        changed = true;
      }
    }
    this.setState('live');
    if (changed) this.notify();
  }

  /** Compares with the REST view and re-reads services that differ or are on screen. */
  async resync() {
    if (!this.hasSnapshot || this.resyncing || document.hidden || this.state !== 'live') return;
    this.resyncing = true;
    const before = this.index;
    try {
      const list = await api('GET', '/api/registry/services', undefined, { quiet401: true });
      const mine = new Map(this.services().map((s) => [s.name, s]));
      const names = new Set(this.watched.keys());
      for (const s of list) {
        const m = mine.get(s.name);
        if (!m || m.instances !== s.instances || m.passing !== s.passing || m.warning !== s.warning || m.critical !== s.critical) names.add(s.name);
        mine.delete(s.name);
      }
      for (const name of mine.keys()) names.add(name); // services the node no longer lists
      let fixed = 0;
      for (const name of names) {
        const insts = await api('GET', `/api/registry/services/${seg(name)}`, undefined, { quiet401: true });
        fixed += this.merge(name, insts, before);
      }
      if (fixed) {
        this.resyncFixes += fixed;
        this.notify();
      }
    } catch {
      // The stream's own error handling reports a dead node or an ended session.
    } finally {
      this.resyncing = false;
      if (this.removedAt.size > 1000) this.removedAt.clear();
    }
  }

  /**
   * Merges a REST read of one service. `before` is the stream index when the read began:
   * an instance the stream removed after it is not brought back, and one the stream knew
   * before it but the read lacks is gone. Returns how many instances changed.
   */
  merge(name, insts, before) {
    let changed = 0;
    const seen = new Set();
    for (const i of insts) {
      seen.add(i.id);
      const cur = this.instances.get(i.id);
      if (!cur) {
        if ((this.removedAt.get(i.id) || 0) > before) continue;
        this.instances.set(i.id, i);
        changed++;
      } else if (i.modify_index >= cur.modify_index && JSON.stringify({ ...i, gateway: null }) !== JSON.stringify({ ...cur, gateway: null })) {
        this.instances.set(i.id, { ...i, gateway: cur.gateway });
        changed++;
      }
    }
    for (const [id, cur] of Array.from(this.instances)) {
      if (cur.service === name && !seen.has(id) && cur.modify_index <= before) {
        this.instances.delete(id);
        changed++;
      }
    }
    return changed;
  }

  /** Instances fetched over REST before the first snapshot arrives (the snapshot wins). */
  seed(instances) {
    if (this.hasSnapshot) return;
    for (const i of instances) this.instances.set(i.id, i);
    this.notify();
  }

  /** `[{name, instances, passing, warning, critical, tags}]`, by name. */
  services() {
    const by = new Map();
    for (const i of this.instances.values()) {
      let s = by.get(i.service);
      if (!s) {
        s = { name: i.service, instances: 0, passing: 0, warning: 0, critical: 0, tags: new Set() };
        by.set(i.service, s);
      }
      s.instances++;
      s[i.status] = (s[i.status] || 0) + 1;
      for (const t of i.tags || []) s.tags.add(t);
    }
    return Array.from(by.values())
      .map((s) => ({ ...s, tags: Array.from(s.tags).sort() }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The instances of one service, by id. */
  ofService(name) {
    return Array.from(this.instances.values())
      .filter((i) => i.service === name)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Instance counts by status. */
  totals() {
    const t = { instances: 0, passing: 0, warning: 0, critical: 0 };
    for (const i of this.instances.values()) {
      t.instances++;
      t[i.status] = (t[i.status] || 0) + 1;
    }
    return t;
  }
}

function parse(e) {
  try {
    return JSON.parse(e.data);
  } catch (err) {
    console.error('bad registry event', err);
    return null;
  }
}

export const live = new LiveRegistry();

/** The small "live" indicator shown on pages that follow the registry. */
export function liveIndicator() {
  const labels = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    offline: 'Offline — retrying',
  };
  const dot = document.createElement('span');
  dot.className = 'live-dot';
  const text = document.createElement('span');
  const el = document.createElement('span');
  el.className = 'live';
  el.setAttribute('data-testid', 'live-indicator');
  el.append(dot, text);
  const paint = () => {
    el.dataset.state = live.state;
    el.dataset.resyncFixes = String(live.resyncFixes);
    text.textContent = labels[live.state] || live.state;
    el.title = live.state === 'live' ? `Following registry changes (index ${live.index})` : labels[live.state];
  };
  paint();
  const unsub = live.subscribe(paint);
  return { el, unsub };
}
