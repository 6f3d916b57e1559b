// The live registry: one EventSource on /api/registry/events shared by every page, and a
// client-side map of instances by id kept current from its events.
//
//   snapshot {index, instances}           every instance (replaces the map)
//   change   {index, instances, removed}  changed instances and ids that left
//   gateway  {index, instances}           refreshed gateway columns
//
// Service rows are derived from the map, so counts follow every event. The node publishes
// an index only once every change up to it is applied, so the stream misses none and no
// periodic re-read is needed.

import { api } from './api.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;

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
    this.removedAt = new Map(); // instance id -> index of the event that removed it
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
    if (this.es || this.retryTimer) return;
    this.connect();
  }

  stop() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
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
    if (this.removedAt.size > 1000) this.removedAt.clear();
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
    text.textContent = labels[live.state] || live.state;
    el.title = live.state === 'live' ? `Following registry changes (index ${live.index})` : labels[live.state];
  };
  paint();
  const unsub = live.subscribe(paint);
  return { el, unsub };
}
