// The tab's one live-update connection: an EventSource on `/api/live?topics=...` that every
// page shares (a browser allows six HTTP/1.1 connections per host; one EventSource per page
// would run into that). Pages subscribe to topics; the stream reconnects with the union of
// the topics wanted whenever a new one is asked for.
//
//   const off = stream.subscribe('alerts', (kind, data) => ...);   // later: off()
//   stream.onState((state) => ...);   // idle | connecting | live | reconnecting | offline
//
// Every server event is `{topic, kind, data}` (crates/api/src/live.rs lists the topics):
//   registry  snapshot {index, instances} · change {index, instances, removed} · gateway {index, instances}
//   alerts    snapshot {generation, alerts} (pending and firing, again after every change)
//             · unavailable {reason}
//   config    hello {index} · change {index, changes: [{application, profile, key, version,
//             deleted, value}]} · reset {index} (changes were missed: read again)
// After a reconnect every topic starts with a snapshot again.
//
// The Logs page's live tail is NOT here: it carries the person's query and is its own
// EventSource, open only while the Logs page shows "Live" (see pages/logs.js).

import { api } from './api.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;

class LiveStream {
  constructor() {
    this.handlers = new Map(); // topic -> Set<fn(kind, data)>
    this.stateListeners = new Set();
    this.state = 'idle';
    this.started = false;
    this.es = null;
    this.connectedTopics = '';
    this.retryMs = RETRY_MIN_MS;
    this.retryTimer = null;
    this.reconnectQueued = false;
    this.onUnauthorized = () => {};
  }

  /** `fn(kind, data)` for every event of `topic`; returns the unsubscribe. */
  subscribe(topic, fn) {
    let set = this.handlers.get(topic);
    if (!set) {
      set = new Set();
      this.handlers.set(topic, set);
    }
    set.add(fn);
    if (!this.connectedTopics.split(',').includes(topic)) this.queueReconnect();
    return () => {
      set.delete(fn);
      if (!set.size) this.handlers.delete(topic);
      // The connection keeps the topic until it reconnects for another reason: dropping a
      // topic is not worth a new connection and a fresh snapshot of the others.
      if (!this.handlers.size) this.close('idle');
    };
  }

  /** `fn(state)` on every change of the connection state; returns the unsubscribe. */
  onState(fn) {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  topics() {
    return Array.from(this.handlers.keys()).sort();
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    document.documentElement.dataset.live = s;
    for (const fn of Array.from(this.stateListeners)) {
      try {
        fn(s);
      } catch (e) {
        console.error(e);
      }
    }
  }

  start() {
    this.started = true;
    this.queueReconnect();
  }

  stop() {
    this.started = false;
    this.close('idle');
  }

  close(state) {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.es) this.es.close();
    this.es = null;
    this.connectedTopics = '';
    this.setState(state);
  }

  queueReconnect() {
    if (this.reconnectQueued) return;
    this.reconnectQueued = true;
    queueMicrotask(() => {
      this.reconnectQueued = false;
      if (!this.started || !this.handlers.size) return;
      const want = this.topics().join(',');
      if (this.es && want === this.connectedTopics) return;
      this.connect();
    });
  }

  connect() {
    const hadConnection = !!this.es;
    if (this.es) this.es.close();
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const topics = this.topics().join(',');
    this.connectedTopics = topics;
    // A new topic reconnects a live stream: it stays "live" unless the new connection fails.
    if (this.state !== 'live') this.setState(hadConnection || this.state === 'offline' ? 'reconnecting' : 'connecting');
    const es = new EventSource(`/api/live?topics=${encodeURIComponent(topics)}`);
    this.es = es;
    document.documentElement.dataset.liveTopics = topics;
    es.addEventListener('open', () => {
      if (this.es !== es) return;
      this.retryMs = RETRY_MIN_MS;
      this.setState('live');
    });
    es.addEventListener('message', (e) => {
      if (this.es !== es) return;
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch (err) {
        console.error('bad live event', err);
        return;
      }
      this.setState('live');
      for (const fn of Array.from(this.handlers.get(ev.topic) || [])) {
        try {
          fn(ev.kind, ev.data);
        } catch (err) {
          console.error(err);
        }
      }
    });
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (401 after the session ended, or an error status):
        // the browser will not retry by itself.
        es.close();
        this.es = null;
        this.connectedTopics = '';
        this.setState('offline');
        this.scheduleRetry();
      } else {
        // The connection dropped; the browser reconnects and every topic snapshots again.
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
    if (!this.started) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }
}

export const stream = new LiveStream();
