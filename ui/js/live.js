// The live registry and the firing alerts, kept current from the tab's one live stream
// (stream.js, topics `registry` and `alerts`).
//
// Registry events:
//   snapshot {index, instances}           every instance (replaces the map)
//   change   {index, instances, removed}  changed instances and ids that left
//   gateway  {index, instances}           refreshed gateway columns
//
// Service rows are derived from the map, so counts follow every event. The node publishes
// an index only once every change up to it is applied, so the stream misses none and no
// periodic re-read is needed.

import { stream } from './stream.js';

class LiveRegistry {
  constructor() {
    this.instances = new Map();
    this.index = 0;
    this.hasSnapshot = false;
    /** idle | connecting | live | reconnecting | offline */
    this.state = 'idle';
    this.listeners = new Set();
    this.notifyQueued = false;
    this.removedAt = new Map(); // instance id -> index of the event that removed it
    this.unsubscribe = null;
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

  /** Follows the `registry` topic of the live stream (which app.js starts after sign-in). */
  start() {
    if (this.unsubscribe) return;
    const offEvents = stream.subscribe('registry', (kind, d) => {
      if (kind === 'snapshot') this.onSnapshot(d);
      else if (kind === 'change') this.onChange(d);
      else if (kind === 'gateway') this.onGateway(d);
    });
    const offState = stream.onState((st) => {
      // `live` only once a snapshot is in: until then the counts are not the registry's.
      if (st === 'live') this.setState(this.hasSnapshot ? 'live' : 'connecting');
      else if (st === 'connecting' && this.hasSnapshot) this.setState('reconnecting');
      else this.setState(st);
    });
    this.unsubscribe = () => {
      offEvents();
      offState();
    };
    this.setState('connecting');
  }

  stop() {
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
    this.removedAt.clear();
    this.instances.clear();
    this.hasSnapshot = false;
    this.index = 0;
    this.setState('idle');
    this.notify();
  }

  onSnapshot(d) {
    if (!d) return;
    this.instances = new Map(d.instances.map((i) => [i.id, i]));
    this.index = d.index;
    this.hasSnapshot = true;
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

export const live = new LiveRegistry();

/**
 * The pending and firing alerts from the `alerts` topic: `alerts.list` is Prometheus's
 * alert objects ({labels, annotations, state, activeAt, value}); `alerts.available` is
 * false (with `alerts.reason`) when the node evaluates no rules.
 */
class LiveAlerts {
  constructor() {
    this.list = [];
    this.loaded = false;
    this.available = true;
    this.reason = '';
    this.listeners = new Set();
    this.unsubscribe = null;
  }

  start() {
    if (this.unsubscribe) return;
    this.unsubscribe = stream.subscribe('alerts', (kind, d) => {
      if (kind === 'unavailable') {
        this.available = false;
        this.reason = (d && d.reason) || 'no rules are evaluated';
        this.list = [];
      } else if (kind === 'snapshot') {
        this.available = true;
        this.list = (d && d.alerts) || [];
      } else {
        return;
      }
      this.loaded = true;
      for (const fn of Array.from(this.listeners)) {
        try {
          fn();
        } catch (e) {
          console.error(e);
        }
      }
    });
  }

  stop() {
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
    this.list = [];
    this.loaded = false;
  }

  firing() {
    return this.list.filter((a) => a.state === 'firing');
  }

  /** `fn()` after every change; returns the unsubscribe. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

export const liveAlerts = new LiveAlerts();

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
