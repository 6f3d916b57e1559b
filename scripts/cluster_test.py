#!/usr/bin/env python3
"""The three-node loopback cluster test (issue 15): a 3-member etcd cluster, a 3-server NATS
cluster with JetStream, three Signalbox nodes on etcd (and on the NATS ingest buffer when the
binary has it), upstream HTTP servers registered through the registry API, steady ingest of
traces, logs and samples, and gateway traffic through every node's gateway; then kill -9 a
Signalbox node, an etcd member and a NATS server, restart each, and check that nothing
acknowledged was lost or stored twice, that gateways kept serving, that health checks moved
and that routes converged. Started by scripts/cluster-test.sh; stdlib only.

Every check ends as PASS, FAIL or SKIP (with the reason: a feature the binary lacks); the
exit status is non-zero when one failed. A skipped check is never counted as passed.
"""

import argparse
import atexit
import ctypes
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

LEASE_TTL = 2.0  # [control.etcd] lease_ttl of the nodes: the documented failover window
CHECK_INTERVAL = 1.0  # health check interval of the registered upstreams
SCRAPE_INTERVAL = 1.0  # scrape_interval of the test job
ROUTE_CONVERGENCE = 2.0  # routes must reach every gateway within this
ECHO_INSTANCES = 6
SCRAPE_PORT = None  # the upstream every node's scrape job names (set by run())
RUN = "r%d" % int(time.time())

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: children die with the driver even if it is killed with SIGKILL.
    _libc.prctl(1, signal.SIGKILL)
    os.setpgid(0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print("[%7.2fs] %s" % (time.monotonic() - T0, msg), flush=True)


T0 = time.monotonic()


# ---------------------------------------------------------------- HTTP helpers

def request(method, url, body=None, headers=None, timeout=5.0):
    """(status, body bytes); status 0 with the error text when the exchange failed."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        conn.request(method, path or "/", body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e).encode()
    finally:
        conn.close()


def get_json(url, timeout=10.0):
    st, b = request("GET", url, timeout=timeout)
    if st != 200:
        raise RuntimeError("GET %s: %s %s" % (url, st, b[:300]))
    return json.loads(b)


def wait_until(what, fn, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except Exception as e:  # noqa: BLE001 - reported if the wait times out
            last = e
        time.sleep(interval)
    raise RuntimeError("timed out after %.0fs waiting for %s (%s)" % (timeout, what, last))


# ---------------------------------------------------------------- processes

class Proc:
    """A child process with its argv, log file and restart."""

    def __init__(self, name, argv, logpath, env=None):
        self.name, self.argv, self.logpath, self.env = name, argv, logpath, env
        self.p = None

    def start(self):
        logf = open(self.logpath, "ab")
        self.p = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  preexec_fn=_die_with_parent, env=self.env)
        logf.close()
        PROCS.append(self)

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


PROCS = []


def kill_all():
    for pr in PROCS:
        if pr.alive():
            try:
                os.killpg(pr.p.pid, signal.SIGKILL)
            except OSError:
                pass
            pr.p.wait()


# ---------------------------------------------------------------- etcd

class Etcd:
    def __init__(self, root, n=3):
        self.members = []
        for i in range(n):
            self.members.append({"name": "e%d" % (i + 1), "client": free_port(), "peer": free_port(),
                                 "dir": os.path.join(root, "etcd%d" % (i + 1))})
        cluster = ",".join("%s=http://127.0.0.1:%d" % (m["name"], m["peer"]) for m in self.members)
        for m in self.members:
            argv = ["etcd", "--name", m["name"], "--data-dir", m["dir"],
                    "--listen-client-urls", "http://127.0.0.1:%d" % m["client"],
                    "--advertise-client-urls", "http://127.0.0.1:%d" % m["client"],
                    "--listen-peer-urls", "http://127.0.0.1:%d" % m["peer"],
                    "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % m["peer"],
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "sbtest-" + RUN, "--logger=zap", "--log-level=warn"]
            m["proc"] = Proc(m["name"], argv, os.path.join(root, m["name"] + ".log"))

    def endpoints(self):
        return ["http://127.0.0.1:%d" % m["client"] for m in self.members]

    def start(self):
        for m in self.members:
            m["proc"].start()
        for m in self.members:
            self.wait_healthy(m)

    def wait_healthy(self, m, timeout=30):
        wait_until("etcd %s healthy" % m["name"],
                   lambda: b'"health":"true"' in request("GET", "http://127.0.0.1:%d/health" % m["client"],
                                                        timeout=1)[1], timeout)

    def status(self, m):
        st, b = request("POST", "http://127.0.0.1:%d/v3/maintenance/status" % m["client"], body=b"{}", timeout=2)
        return json.loads(b) if st == 200 else None

    def leader(self):
        for m in self.members:
            s = self.status(m)
            if s:
                lid = s.get("leader")
                for mm in self.members:
                    ss = self.status(mm)
                    if ss and ss.get("header", {}).get("member_id") == lid:
                        return mm
        return self.members[0]

    def counters(self):
        """etcd's own put/txn/delete counters (its /metrics), per member."""
        total = {}
        for m in self.members:
            st, b = request("GET", "http://127.0.0.1:%d/metrics" % m["client"], timeout=3)
            for line in b.decode(errors="replace").splitlines():
                for k in ("etcd_mvcc_put_total", "etcd_mvcc_txn_total", "etcd_mvcc_delete_total"):
                    if line.startswith(k + " "):
                        total[k] = total.get(k, 0) + float(line.split()[1])
        # Every member applies every write: the average over the members is the cluster's.
        return {k: v / len(self.members) for k, v in total.items()}

    def revision(self):
        for m in self.members:
            st, b = request("POST", "http://127.0.0.1:%d/v3/kv/range" % m["client"],
                            body=json.dumps({"key": "AA==", "limit": 1}).encode(), timeout=2)
            if st == 200:
                return int(json.loads(b)["header"]["revision"])
        return None


# ---------------------------------------------------------------- NATS

class Nats:
    def __init__(self, root, n=3):
        self.servers = []
        for i in range(n):
            self.servers.append({"name": "n%d" % (i + 1), "client": free_port(), "cluster": free_port(),
                                 "http": free_port(), "dir": os.path.join(root, "nats%d" % (i + 1))})
        routes = ", ".join("nats-route://127.0.0.1:%d" % s["cluster"] for s in self.servers)
        for s in self.servers:
            os.makedirs(s["dir"], exist_ok=True)
            conf = os.path.join(root, s["name"] + ".conf")
            with open(conf, "w") as f:
                f.write(
                    'server_name: %s\nlisten: "127.0.0.1:%d"\nhttp: "127.0.0.1:%d"\n'
                    'jetstream { store_dir: "%s", max_memory_store: 64MB, max_file_store: 1GB }\n'
                    'cluster { name: sbtest, listen: "127.0.0.1:%d", routes: [%s] }\n'
                    % (s["name"], s["client"], s["http"], s["dir"], s["cluster"], routes))
            s["proc"] = Proc(s["name"], [NATS_BIN, "-c", conf], os.path.join(root, s["name"] + ".log"))

    def url(self):
        return ",".join("nats://127.0.0.1:%d" % s["client"] for s in self.servers)

    def start(self):
        for s in self.servers:
            s["proc"].start()
        for s in self.servers:
            self.wait_healthy(s)

    def wait_healthy(self, s, timeout=30):
        wait_until("nats %s JetStream ready" % s["name"],
                   lambda: request("GET", "http://127.0.0.1:%d/healthz" % s["http"], timeout=1)[0] == 200,
                   timeout, 0.2)


# ---------------------------------------------------------------- Signalbox nodes

GATEWAY_SECTION = """
[[gateway.services]]
name = "echo"

[[gateway.services]]
name = "conv"

[gateway.services.outlier]
consecutive_5xx = 0
consecutive_gateway_failures = 0

[[gateway.routes]]
name = "echo"
service = "echo"
[gateway.routes.match]
path_prefix = "/echo"

[[gateway.routes]]
name = "conv"
service = "conv"
[gateway.routes.match]
path_prefix = "/conv"
"""


class Node:
    def __init__(self, root, i, etcd, nats, features, grpc=False, prefix="/sbtest/", buffer=None, name=None):
        self.name = name or "sb-%d" % (i + 1)
        self.dir = os.path.join(root, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.console, self.gateway, self.otlp = free_port(), free_port(), free_port()
        self.base = "http://127.0.0.1:%d" % self.console
        self.gw = "http://127.0.0.1:%d" % self.gateway
        self.otlp_url = "http://127.0.0.1:%d/v1/traces" % self.otlp
        self.grpc = free_port() if grpc else None
        self.config = os.path.join(self.dir, "signalbox.toml")
        use_buffer = "buffer" in features if buffer is None else buffer
        with open(self.config, "w") as f:
            f.write(node_config(self, etcd, nats, use_buffer, prefix))
        self.proc = Proc(self.name, [BIN, "serve", "-c", self.config], os.path.join(root, self.name + ".log"),
                         env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")))

    def start(self):
        self.proc.start()

    def wait_ready(self, timeout=60):
        def ready():
            if not self.proc.alive():
                raise RuntimeError("%s exited:\n%s" % (self.name, self.proc.tail()))
            return request("GET", self.base + "/readyz", timeout=1)[0] == 200
        wait_until("%s ready" % self.name, ready, timeout, 0.1)


class StandaloneGateway:
    """`signalbox gateway --control-plane A,B,C`: follows one node, moves on when it fails."""

    def __init__(self, root, follow):
        self.name = "standalone"
        self.dir = os.path.join(root, "standalone")
        os.makedirs(self.dir, exist_ok=True)
        self.admin, self.gateway = free_port(), free_port()
        self.base = "http://127.0.0.1:%d" % self.admin
        self.gw = "http://127.0.0.1:%d" % self.gateway
        self.config = os.path.join(self.dir, "gateway.toml")
        with open(self.config, "w") as f:
            f.write('[node]\ndata_dir = "%s"\nlog_level = "warn"\n\n[console]\nlisten = "127.0.0.1:%d"\n\n'
                    '[gateway]\nlisten = "127.0.0.1:%d"\nworkers = 1\n\n[gateway.telemetry]\nspans = false\n'
                    'access_log = "off"\n%s' % (os.path.join(self.dir, "data"), self.admin, self.gateway,
                                                  GATEWAY_SECTION))
        self.proc = Proc(self.name, [BIN, "gateway", "--control-plane", ",".join(n.base for n in follow),
                                     "-c", self.config], os.path.join(root, "standalone.log"),
                         env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")))

    def following(self):
        st, b = request("GET", self.base + "/api/gateway/control-plane", timeout=2)
        return json.loads(b).get("following") if st == 200 else None


def node_config(node, etcd, nats, use_buffer, prefix="/sbtest/"):
    eps = ", ".join('"%s"' % e for e in etcd.endpoints())
    c = """[node]
data_dir = "{data}"
log_level = "warn"

[console]
listen = "127.0.0.1:{console}"

[consul]
enabled = false

[control]
backend = "etcd"

[control.etcd]
endpoints = [{eps}]
prefix = "{prefix}"
lease_ttl = "{ttl}s"
request_timeout = "3s"
node_name = "{name}"

[otlp]
grpc_listen = "{grpc}"
http_listen = "127.0.0.1:{otlp}"

[zipkin]
listen = ""

[metrics]
self_interval = "0s"
scrape_registry = false

{scrape}
[gateway]
listen = "127.0.0.1:{gw}"
workers = 1

[gateway.telemetry]
spans = false
access_log = "off"
""".format(data=os.path.join(node.dir, "data"), console=node.console, eps=eps, ttl=int(LEASE_TTL),
           name=node.name, otlp=node.otlp, gw=node.gateway, prefix=prefix,
           grpc="127.0.0.1:%d" % node.grpc if node.grpc else "",
           scrape=('[[metrics.scrape]]\njob_name = "clustertest"\nscrape_interval = "%ds"\n' % SCRAPE_INTERVAL + 'scrape_timeout = "500ms"\n'
                   '[[metrics.scrape.static_configs]]\ntargets = ["127.0.0.1:%d"]\n' % SCRAPE_PORT)
           if SCRAPE_PORT else "")
    if use_buffer:
        # Three copies of every batch; the stream's limit well inside each server's
        # JetStream store (1 GB).
        c += '\n[ingest]\nbuffer = "%s"\n\n[ingest.nats]\nreplicas = 3\nmax_bytes = "256MiB"\n' % nats.url()
    return c + GATEWAY_SECTION


def probe_features(root):
    """Which issue-15 features the binary has, found by asking it (check-config / --help)."""
    feats = {}
    probe = os.path.join(root, "probe.toml")
    with open(probe, "w") as f:
        f.write('[ingest]\nbuffer = "nats://127.0.0.1:4222"\n')
    r = subprocess.run([BIN, "check-config", probe], capture_output=True, text=True, timeout=30)
    feats["buffer"] = r.returncode == 0
    if not feats["buffer"]:
        feats["buffer_why"] = (r.stdout + r.stderr).strip().splitlines()[:2]
    with open(probe, "w") as f:
        f.write('[cluster]\npartitions = 16\n')
    r = subprocess.run([BIN, "check-config", probe], capture_output=True, text=True, timeout=30)
    feats["fanout"] = r.returncode == 0
    r = subprocess.run([BIN, "gateway", "--help"], capture_output=True, text=True, timeout=30)
    # Failover over several control-plane addresses (wt-lease): the help names it.
    feats["gateway_failover"] = "comma" in r.stdout.lower() and "control-plane" in r.stdout
    return {k for k, v in feats.items() if v is True}, feats


# ---------------------------------------------------------------- upstreams

UPSTREAM_CODE = r'''
import json, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
specs = json.loads(sys.argv[1])
hits = {}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        name = self.server.name
        if name == "_control":
            with lock:
                body = json.dumps(hits).encode()
        elif self.path.startswith("/health"):
            with lock:
                hits.setdefault(name, []).append(time.time())
            body = b"ok"
        elif self.path.startswith("/metrics"):
            with lock:
                hits.setdefault(name + "/metrics", []).append(time.time())
            body = b"cluster_test_target_up 1\n"
        else:
            body = json.dumps({"upstream": name, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
for name, port in specs:
    s = ThreadingHTTPServer(("127.0.0.1", port), H)
    s.daemon_threads = True
    s.name = name
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''


# ---------------------------------------------------------------- ingest

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_len(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def snappy_block(data):
    """Snappy's block format with literals only: valid for any decoder, no compression."""
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def remote_write_body(samples):
    """samples: [(labels dict, value float, ts ms)] -> snappy WriteRequest."""
    import struct
    req = b""
    for labels, value, ts in samples:
        ts_pb = b""
        for k in sorted(labels):
            ts_pb += pb_len(1, pb_len(1, k.encode()) + pb_len(2, labels[k].encode()))
        sample = varint(1 << 3 | 1) + struct.pack("<d", value) + varint(2 << 3 | 0) + varint(ts)
        ts_pb += pb_len(2, sample)
        req += pb_len(1, ts_pb)
    return snappy_block(req)


class Ingest:
    """Three senders (one per signal) spreading batches over the nodes; an item is
    acknowledged only when its batch got a 2xx."""

    LOG_STREAMS = 6
    SERIES = 5

    def __init__(self, nodes):
        self.nodes = nodes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.next_id = 1
        self.acked = {"spans": {}, "logs": set(), "samples": set()}  # spans: trace id -> span ids
        self.unacked = {"spans": {}, "logs": set(), "samples": set()}
        self.sent = {"spans": 0, "logs": 0, "samples": 0}
        self.failed = {"spans": [], "logs": [], "samples": []}  # (time, node, status)
        self.last_ts = {}
        self.threads = [threading.Thread(target=self.loop, args=(s,), daemon=True)
                        for s in ("spans", "logs", "samples")]

    def ids(self, n):
        with self.lock:
            first = self.next_id
            self.next_id += n
        return list(range(first, first + n))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def loop(self, signal_name):
        i = random.randrange(3)
        send = {"spans": self.send_spans, "logs": self.send_logs, "samples": self.send_samples}[signal_name]
        while not self.stop.is_set():
            node = self.nodes[i % len(self.nodes)]
            i += 1
            send(node)
            self.stop.wait(0.1)

    def record(self, signal_name, node, status, items):
        ok = 200 <= status < 300
        with self.lock:
            self.sent[signal_name] += 1
            target = self.acked if ok else self.unacked
            if not ok:
                self.failed[signal_name].append((time.time(), node.name, status))
            if signal_name == "spans":
                tid, sids = items
                target["spans"][tid] = sids
            else:
                target[signal_name].update(items)

    def send_spans(self, node):
        ids = self.ids(3)
        tid = "%032x" % (0xC1A5 << 100 | ids[0])
        now = time.time_ns()
        spans = []
        for k, sid in enumerate(ids):
            s = {"traceId": tid, "spanId": "%016x" % sid, "name": "op-%d" % k, "kind": 2,
                 "startTimeUnixNano": str(now - 5_000_000 + k), "endTimeUnixNano": str(now),
                 "attributes": [{"key": "uid", "value": {"stringValue": str(sid)}}]}
            if k:
                s["parentSpanId"] = "%016x" % ids[0]
            spans.append(s)
        body = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "clustertest"}}]},
            "scopeSpans": [{"scope": {"name": "cluster-test"}, "spans": spans}]}]}
        st, _ = request("POST", node.otlp_url, json.dumps(body).encode(),
                        {"content-type": "application/json"}, timeout=5)
        self.record("spans", node, st, (tid, set("%016x" % s for s in ids)))

    def send_logs(self, node):
        ids = self.ids(5)
        now = time.time_ns()
        streams = {}
        for k, uid in enumerate(ids):
            s = str(uid % self.LOG_STREAMS)
            streams.setdefault(s, []).append([str(now + k), "cluster-test line uid=%d run=%s" % (uid, RUN)])
        body = {"streams": [{"stream": {"job": "clustertest", "run": RUN, "s": s}, "values": v}
                            for s, v in streams.items()]}
        st, _ = request("POST", node.base + "/loki/api/v1/push", json.dumps(body).encode(),
                        {"content-type": "application/json"}, timeout=5)
        self.record("logs", node, st, ids)

    def send_samples(self, node):
        ids = self.ids(self.SERIES)
        now = int(time.time() * 1000)
        samples = []
        with self.lock:
            for k, uid in enumerate(ids):
                ts = max(now, self.last_ts.get(k, 0) + 1)
                self.last_ts[k] = ts
                samples.append(({"__name__": "cluster_test_sample", "run": RUN, "s": str(k)}, float(uid), ts))
        st, _ = request("POST", node.base + "/prometheus/api/v1/write", remote_write_body(samples),
                        {"content-type": "application/x-protobuf", "content-encoding": "snappy",
                         "x-prometheus-remote-write-version": "0.1.0"}, timeout=5)
        self.record("samples", node, st, ids)


# ---------------------------------------------------------------- queries

def query_spans(node, trace_ids):
    """trace id -> list of span ids (duplicates kept) as `node` answers."""
    def one(tid):
        st, b = request("GET", node.base + "/api/traces/" + tid, timeout=15)
        if st == 404:
            return tid, []
        if st != 200:
            raise RuntimeError("%s GET /api/traces/%s: %s %s" % (node.name, tid, st, b[:200]))
        return tid, [s["span_id"] for s in json.loads(b)["spans"]]
    with ThreadPoolExecutor(6) as ex:
        return dict(ex.map(one, trace_ids))


def query_logs(node, start_ns):
    """uid -> times seen, over every stream of this run."""
    seen = {}
    end = time.time_ns() + 60_000_000_000
    for s in range(Ingest.LOG_STREAMS):
        frm = start_ns
        while True:
            q = urllib.parse.urlencode({"query": '{job="clustertest",run="%s",s="%d"}' % (RUN, s),
                                        "start": str(frm), "end": str(end), "limit": "5000",
                                        "direction": "forward"})
            res = get_json(node.base + "/loki/api/v1/query_range?" + q, timeout=30)
            values = [v for r in res["data"]["result"] for v in r["values"]]
            for ts, line in values:
                uid = int(line.split("uid=")[1].split()[0])
                seen[uid] = seen.get(uid, 0) + 1
            if len(values) < 5000:
                break
            frm = max(int(v[0]) for v in values) + 1
    return seen


def query_samples(node):
    """uid (the sample's value) -> times seen, over every series of this run."""
    q = urllib.parse.urlencode({"query": 'cluster_test_sample{run="%s"}[1h]' % RUN, "time": "%.3f" % (time.time() + 60)})
    res = get_json(node.base + "/prometheus/api/v1/query?" + q, timeout=60)
    seen = {}
    for series in res["data"]["result"]:
        for _, v in series["values"]:
            uid = int(float(v))
            seen[uid] = seen.get(uid, 0) + 1
    return seen


# ---------------------------------------------------------------- gateway traffic

class GatewayProbe:
    """Sequential GETs through one gateway; records every failing stretch (from the first
    failed request's start to the next success), apart from the times its own process is
    down on purpose."""

    def __init__(self, name, url):
        self.name, self.url = name, url
        self.expected_down = threading.Event()
        self.stop = threading.Event()
        self.ok = self.failed = self.failed_down = 0
        self.stretches = []  # (start wall time, length s, first error)
        self.by_upstream = {}
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        fail_start, fail_err = None, None
        n = 0
        while not self.stop.is_set():
            n += 1
            t = time.time()
            st, b = request("GET", self.url + "/echo/p%d" % n, timeout=2)
            good = st == 200 and b.startswith(b'{"upstream": "echo')
            if self.expected_down.is_set():
                if not good:
                    self.failed_down += 1
                fail_start = None
            elif good:
                self.ok += 1
                up = json.loads(b)["upstream"]
                self.by_upstream[up] = self.by_upstream.get(up, 0) + 1
                if fail_start is not None:
                    self.stretches.append((fail_start, t - fail_start, fail_err))
                    fail_start = None
            else:
                self.failed += 1
                if fail_start is None:
                    fail_start, fail_err = t, "%s %s" % (st, b[:80])
            self.stop.wait(0.02)
        if fail_start is not None:
            self.stretches.append((fail_start, time.time() - fail_start, fail_err + " (still failing at the end)"))

    def longest(self):
        return max((s[1] for s in self.stretches), default=0.0)


# ---------------------------------------------------------------- the test

class Result:
    def __init__(self):
        self.rows = []
        self.measures = []

    def add(self, status, name, detail):
        self.rows.append((status, name, detail))
        log("%s %s: %s" % (status, name, detail))

    def measure(self, name, value):
        self.measures.append((name, value))
        log("measured %s: %s" % (name, value))


def owner(members, instance):
    return max(members, key=lambda m: hashlib.sha256(m.encode() + b"\0" + instance.encode()).digest()[:8])


WRITE_FAILURES = []  # (label, node, status, body) of registry writes that did not get a 2xx


def write(method, node, path, body, label):
    """A registry write, retried (up to 10 times, 0.3 s apart) as a client would; every failed
    try is recorded for the summary."""
    for _ in range(10):
        st, b = request(method, node.base + path, json.dumps(body).encode() if body is not None else None,
                        {"content-type": "application/json"}, timeout=10)
        if st // 100 == 2:
            return
        WRITE_FAILURES.append((label, node.name, st, b[:160].decode(errors="replace")))
        time.sleep(0.3)
    raise RuntimeError("%s %s on %s: %s %s" % (method, path, node.name, st, b[:300]))


def register(node, inst_id, service, port, checks=True, label="setup"):
    body = {"service": service, "id": inst_id, "address": "127.0.0.1", "port": port}
    if checks:
        body["checks"] = [{"http": "http://127.0.0.1:%d/health" % port, "interval": "%ds" % int(CHECK_INTERVAL),
                           "timeout": "500ms"}]
    write("POST", node, "/api/registry/instances", body, label)


def route_convergence(res, label, writer, gateways, conv_port):
    """Register then deregister a `conv` instance through `writer`; the time until every
    gateway in `gateways` (name -> url) routes to it, then stops."""
    def until(pred):
        start = time.monotonic()
        pending = dict(gateways)
        times = {}
        while pending and time.monotonic() - start < 10:
            for name, url in list(pending.items()):
                st, b = request("GET", url + "/conv/x", timeout=1)
                if pred(st, b):
                    times[name] = time.monotonic() - start
                    del pending[name]
            time.sleep(0.02)
        for name in pending:
            times[name] = None
        return times

    t = time.monotonic()
    register(writer, "conv-1", "conv", conv_port, checks=False, label=label)
    write_s = time.monotonic() - t
    up = until(lambda st, b: st == 200 and b'"upstream": "conv"' in b)
    t = time.monotonic()
    write("DELETE", writer, "/api/registry/instances/conv-1", None, label)
    down = until(lambda st, b: st != 0 and not (st == 200 and b'"upstream": "conv"' in b))
    worst = [v for v in list(up.values()) + list(down.values())]
    bad = [n for n, v in list(up.items()) + list(down.items()) if v is None or v > ROUTE_CONVERGENCE]
    detail = "write on %s took %.2fs (retries included); register -> routed: %s; deregister -> gone: %s" % (
        writer.name, write_s,
        ", ".join("%s %s" % (n, "never" if v is None else "%.2fs" % v) for n, v in up.items()),
        ", ".join("%s %s" % (n, "never" if v is None else "%.2fs" % v) for n, v in down.items()))
    res.add("FAIL" if bad else "PASS", "routes converge within %.0fs (%s)" % (ROUTE_CONVERGENCE, label), detail)
    return max((v for v in worst if v is not None), default=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = ap.parse_args()
    global BIN, NATS_BIN
    BIN = os.path.abspath(args.bin)
    NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
    root = tempfile.mkdtemp(prefix="signalbox-cluster-")
    res = Result()
    atexit.register(kill_all)
    # The logs and data stay for a look when a check failed (or with --keep).
    atexit.register(lambda: None if args.keep or any(r[0] == "FAIL" for r in res.rows)
                    else shutil.rmtree(root, ignore_errors=True))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    try:
        run(root, res)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        import traceback
        traceback.print_exc()
        res.add("FAIL", "the test ran to the end", "%s: %s" % (type(e).__name__, e))
    print_summary(res)
    if any(r[0] == "FAIL" for r in res.rows):
        print("logs and data kept in %s" % root)
        return 1
    return 0


def print_summary(res):
    print("\n================ cluster test summary ================")
    for status, name, detail in res.rows:
        print("%-4s  %s\n      %s" % (status, name, detail))
    if res.measures:
        print("---- measurements")
        for name, value in res.measures:
            print("  %s: %s" % (name, value))
    counts = {s: sum(1 for r in res.rows if r[0] == s) for s in ("PASS", "FAIL", "SKIP")}
    print("== %d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))


def run(root, res):
    features, probe = probe_features(root)
    log("binary %s; features: %s" % (BIN, ", ".join(sorted(features)) or "none of the optional ones"))
    if "buffer" not in features:
        res.add("SKIP", "ingest through the NATS JetStream buffer",
                "the binary refuses [ingest] buffer (%s): NATS runs and is killed, but receivers write "
                "to their own node" % " / ".join(probe.get("buffer_why", [])))

    etcd = Etcd(root)
    nats = Nats(root)
    t = time.monotonic()
    etcd.start()
    nats.start()
    log("etcd (3 members) and NATS (3 servers, JetStream) up in %.1fs" % (time.monotonic() - t))

    # Upstreams: six echo instances, one for the convergence test, in one child process.
    echo = [("echo-%d" % i, free_port()) for i in range(ECHO_INSTANCES)]
    conv_port = free_port()
    control_port = free_port()
    global SCRAPE_PORT
    SCRAPE_PORT = free_port()
    up = Proc("upstreams", [sys.executable, "-c", UPSTREAM_CODE,
                            json.dumps(echo + [("conv", conv_port), ("scrape", SCRAPE_PORT),
                                               ("_control", control_port)])],
              os.path.join(root, "upstreams.log"))
    up.start()
    wait_until("upstreams", lambda: request("GET", "http://127.0.0.1:%d/" % control_port, timeout=1)[0] == 200, 10)

    nodes = [Node(root, i, etcd, nats, features) for i in range(3)]
    t = time.monotonic()
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_ready()
    log("three Signalbox nodes ready in %.1fs" % (time.monotonic() - t))
    names = [n.name for n in nodes]

    for k, (name, port) in enumerate(echo):
        register(nodes[k % 3], name, "echo", port)
    owners = {name: owner(names, name) for name, _ in echo}
    by_owner = {n: [i for i, o in owners.items() if o == n] for n in names}
    # The node killed: the scrape target's owner when there is one (so its scrapes must move
    # too) and it runs some health checks; else the node that runs the most checks.
    scrape_owner = None
    for _ in range(50):
        ts = get_json(nodes[0].base + "/prometheus/api/v1/targets")["data"]["activeTargets"]
        scrape_owner = ts[0].get("owner") if ts else None
        if scrape_owner or (ts and "owner" not in ts[0]):
            break
        time.sleep(0.1)
    if scrape_owner in names and by_owner[scrape_owner]:
        victim = nodes[names.index(scrape_owner)]
    else:
        victim = nodes[names.index(max(names, key=lambda n: len(by_owner[n])))]
    log("health-check owners (rendezvous over %s): %s; scrape target owner %s; the node killed will be %s" % (
        names, by_owner, scrape_owner, victim.name))

    gateways = {n.name: n.gw for n in nodes}
    standalone = None
    if "gateway_failover" in features:
        # It follows the node that will be killed first, so the kill exercises its failover.
        order = [victim] + [n for n in nodes if n is not victim]
        standalone = StandaloneGateway(root, order)
        standalone.proc.start()
        wait_until("the standalone gateway ready",
                   lambda: request("GET", standalone.base + "/readyz", timeout=1)[0] == 200, 30)
        gateways[standalone.name] = standalone.gw

    def all_routed():
        for gw in gateways.values():
            seen = set()
            for _ in range(30):
                st, b = request("GET", gw + "/echo/warm", timeout=2)
                if st == 200:
                    seen.add(json.loads(b)["upstream"])
            if len(seen) < ECHO_INSTANCES:
                return False
        return True
    wait_until("every gateway routing to the echo instances", all_routed, 30, 0.2)
    route_convergence(res, "all members up", nodes[0], gateways, conv_port)

    probes = [GatewayProbe(n.name, n.gw) for n in nodes]
    if standalone:
        probes.append(GatewayProbe(standalone.name, standalone.gw))
    ingest = Ingest(nodes)
    for p in probes:
        p.thread.start()
    ingest_start = time.time_ns() - 60_000_000_000
    ingest.start()
    etcd_before = etcd.counters()
    rev_before, rev_t0 = etcd.revision(), time.monotonic()
    time.sleep(4)

    def hits():
        return get_json("http://127.0.0.1:%d/" % control_port)

    # Exactly one node runs each check: at most ~1 health request per interval per instance.
    h0 = hits()
    time.sleep(4)
    h1 = hits()
    scrape_rate = (len(h1.get("scrape/metrics", [])) - len(h0.get("scrape/metrics", []))) / 4.0
    targets = get_json(nodes[0].base + "/prometheus/api/v1/targets")["data"]["activeTargets"]
    shared = bool(targets) and "scrapedHere" in targets[0]
    scrape_owner = targets[0].get("owner") if shared else None
    if shared:
        res.add("PASS" if 0 < scrape_rate <= 1.5 else "FAIL", "each scrape target is scraped by one node",
                "%.2f scrapes/s of a target every node's config names (interval 1s); owner %s" % (
                    scrape_rate, scrape_owner))
    else:
        res.add("SKIP", "each scrape target is scraped by one node",
                "no scrape ownership in this binary (the targets API has no `scrapedHere`): %.2f scrapes/s "
                "of a target every node's config names, interval 1s" % scrape_rate)
    rates = {k: (len(h1.get(k, [])) - len(h0.get(k, []))) / 4.0 for k, _ in echo}
    extra = {k: r for k, r in rates.items() if r > 1.5 / CHECK_INTERVAL or r == 0}
    res.add("FAIL" if extra else "PASS", "each instance's health checks run on one node",
            "health requests per second per instance over 4s: %s (interval %.0fs)" % (
                ", ".join("%s %.2f" % kv for kv in sorted(rates.items())), CHECK_INTERVAL))

    # ---- 1. kill -9 a Signalbox node, restart it
    vi = nodes.index(victim)
    probes[vi].expected_down.set()
    kill_t = time.time()
    victim.proc.kill9()
    log("killed -9 %s (owner of %s)" % (victim.name, by_owner[victim.name]))
    time.sleep(LEASE_TTL + 3 * CHECK_INTERVAL + 1)
    live = {k: v for k, v in gateways.items() if k != victim.name}
    route_convergence(res, "%s killed" % victim.name, nodes[(vi + 1) % 3], live, conv_port)
    if standalone:
        now_following = standalone.following()
        res.add("PASS" if now_following and now_following != victim.base else "FAIL",
                "standalone gateway moved to a live control-plane node",
                "followed %s (%s) before the kill; follows %s after it" % (victim.base, victim.name, now_following))
    if "fanout" in features:
        check_partial(res, nodes[(vi + 1) % 3], victim)
    h2 = hits()
    moved = {}
    for inst in by_owner[victim.name]:
        after = [t for t in h2.get(inst, []) if t > kill_t]
        before = [t for t in h2.get(inst, []) if t <= kill_t]
        moved[inst] = (after[0] - kill_t) if after else None
        del before
    bound = LEASE_TTL + CHECK_INTERVAL + 1.0
    bad = [k for k, v in moved.items() if v is None or v > bound]
    if not by_owner[victim.name]:
        res.add("FAIL", "health checks of the killed node moved to a live node", "the killed node owned no instance")
    else:
        res.add("FAIL" if bad else "PASS", "health checks of the killed node moved to a live node",
                "first health request after the kill, per instance %s owned: %s (bound: lease TTL %.0fs + "
                "interval %.0fs + 1s)" % (victim.name, ", ".join(
                    "%s %s" % (k, "never" if v is None else "%.2fs" % v) for k, v in moved.items()),
                    LEASE_TTL, CHECK_INTERVAL))
    if shared:
        sc = [t for t in h2.get("scrape/metrics", []) if t > kill_t - 3]
        gaps = [b - a for a, b in zip(sc, sc[1:])]
        first_after = min([t for t in sc if t > kill_t] or [float("inf")]) - kill_t
        worst = max(gaps + [first_after])
        # A gap starts at the last scrape before the kill (up to one interval earlier), then
        # the lease runs out, then the new owner's loop waits for its first tick (up to one
        # interval): TTL + 2 intervals + 1 s of scheduling slack.
        scrape_bound = LEASE_TTL + 2 * SCRAPE_INTERVAL + 1.0
        res.add("PASS" if worst <= scrape_bound else "FAIL", "scrapes continue when a node dies",
                "longest gap between scrapes around the kill %.2fs (bound %.0fs: lease TTL + 2 scrape intervals "
                "+ 1s); the target's owner was %s, the node killed %s" % (worst, scrape_bound, scrape_owner, victim.name))
    res.measure("health-check failover after kill -9 of a node (lease TTL %.0fs)" % LEASE_TTL,
                "%.2fs worst" % max((v for v in moved.values() if v is not None), default=float("nan")))
    t = time.monotonic()
    victim.start()
    victim.wait_ready()
    probes[vi].expected_down.clear()
    res.measure("restart of the killed node until /readyz", "%.2fs" % (time.monotonic() - t))
    time.sleep(3)

    # ---- 2. kill -9 an etcd member (the leader), restart it
    m = etcd.leader()
    m["proc"].kill9()
    log("killed -9 etcd member %s (the leader)" % m["name"])
    time.sleep(3)
    route_convergence(res, "etcd leader %s down" % m["name"], nodes[1], gateways, conv_port)
    m["proc"].start()
    etcd.wait_healthy(m)
    log("etcd member %s back" % m["name"])
    time.sleep(3)

    # ---- 3. kill -9 a NATS server, restart it
    s = nats.servers[1]
    s["proc"].kill9()
    log("killed -9 NATS server %s" % s["name"])
    time.sleep(5)
    s["proc"].start()
    nats.wait_healthy(s)
    log("NATS server %s back" % s["name"])
    time.sleep(3)

    ingest.finish()
    for p in probes:
        p.stop.set()
    for p in probes:
        p.thread.join(10)
    rev_after, rev_t1 = etcd.revision(), time.monotonic()
    etcd_after = etcd.counters()
    route_convergence(res, "after every restart", nodes[2], gateways, conv_port)

    res.add("FAIL" if WRITE_FAILURES else "PASS", "registry writes answered at the first try (also with an etcd member down)",
            "; ".join("%s: %s on %s answered %s %s" % (l, "write", n, st, b) for l, n, st, b in WRITE_FAILURES[:4])
            + (" (+%d more)" % (len(WRITE_FAILURES) - 4) if len(WRITE_FAILURES) > 4 else "")
            if WRITE_FAILURES else "every register/deregister got a 2xx")

    # ---- gateway traffic
    for p in probes:
        detail = "%d ok, %d failed outside its own downtime, longest failing stretch %.2fs%s; spread %s" % (
            p.ok, p.failed, p.longest(),
            "" if not p.stretches else " (first: %s)" % p.stretches[0][2],
            dict(sorted(p.by_upstream.items())))
        if p.failed_down:
            detail += "; %d failed while its own node was down (expected)" % p.failed_down
        res.add("FAIL" if p.longest() > LEASE_TTL or p.ok == 0 else "PASS",
                "gateway %s: no failing stretch longer than the failover window (%.0fs)" % (p.name, LEASE_TTL), detail)
    if not standalone:
        res.add("SKIP", "standalone gateway failover over several control-plane addresses",
                "not in this binary: `signalbox gateway --control-plane` takes one node")

    # ---- ingest: every acknowledged item exactly once
    with ingest.lock:
        acked = {k: (dict(v) if isinstance(v, dict) else set(v)) for k, v in ingest.acked.items()}
        unacked = {k: (dict(v) if isinstance(v, dict) else set(v)) for k, v in ingest.unacked.items()}
    log("acknowledged: %d traces (%d spans), %d log lines, %d samples; refused or failed batches: "
        "%d spans, %d logs, %d samples" % (
            len(acked["spans"]), 3 * len(acked["spans"]), len(acked["logs"]), len(acked["samples"]),
            len(ingest.failed["spans"]), len(ingest.failed["logs"]), len(ingest.failed["samples"])))
    res.measure("ingest batches refused or failed (not acknowledged, so not checked)", "spans %d, logs %d, samples %d "
                "of %d/%d/%d sent%s" % (len(ingest.failed["spans"]), len(ingest.failed["logs"]),
                                       len(ingest.failed["samples"]), ingest.sent["spans"], ingest.sent["logs"],
                                       ingest.sent["samples"], " (through the NATS buffer)" if "buffer" in features
                                       else ""))
    verify_ingest(res, nodes, acked, unacked, ingest_start, features)

    if rev_before is not None and rev_after is not None:
        res.measure("etcd revisions during the chaos phase", "%d in %.0fs (%s)" % (
            rev_after - rev_before, rev_t1 - rev_t0,
            ", ".join("%s +%d" % (k, etcd_after.get(k, 0) - etcd_before.get(k, 0)) for k in sorted(etcd_after))))


def check_partial(res, asker, down):
    """While `down` is dead, a query through `asker` says which node did not answer."""
    q = urllib.parse.urlencode({"query": '{job="clustertest",run="%s"}' % RUN, "limit": "10",
                                "start": str(time.time_ns() - 600_000_000_000), "end": str(time.time_ns())})
    u = urllib.parse.urlsplit(asker.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", "/loki/api/v1/query_range?" + q)
        r = conn.getresponse()
        body, header = r.read(), r.getheader("x-signalbox-partial") or ""
        status = r.status
    finally:
        conn.close()
    ok = status == 200 and down.name in header
    res.add("PASS" if ok else "FAIL", "a query with a storage node down is labelled partial",
            "log query through %s while %s is down: %s, X-Signalbox-Partial: %r, body %s" % (
                asker.name, down.name, status, header, body[:200].decode(errors="replace")))


def verify_ingest(res, nodes, acked, unacked, start_ns, features):
    """Every acknowledged item found exactly once; an unacknowledged one at most once.

    With fan-out queries each node must answer every item once. Without, each node answers
    only what it stores: the count summed over the nodes must be one."""
    fanout = "fanout" in features
    deadline = time.monotonic() + 45
    while True:
        per_node = []
        for n in nodes:
            spans = query_spans(n, list(acked["spans"]) + list(unacked["spans"]))
            per_node.append({"spans": spans, "logs": query_logs(n, start_ns), "samples": query_samples(n)})
        problems = check_counts(per_node, acked, unacked, fanout)
        if not any(problems.values()) or time.monotonic() > deadline:
            break
        log("not all found yet (%s); querying again" % {k: len(v) for k, v in problems.items()})
        time.sleep(3)
    for sig, label in (("spans", "span"), ("logs", "log line"), ("samples", "sample")):
        n_acked = 3 * len(acked["spans"]) if sig == "spans" else len(acked[sig])
        p = problems[sig]
        how = "through every node (fan-out)" if fanout else "summed over the nodes that store them"
        res.add("FAIL" if p or n_acked == 0 else "PASS",
                "every acknowledged %s queryable exactly once" % label,
                "%d acknowledged, counted %s; %s" % (n_acked, how, "; ".join(p[:5]) + (
                    " (+%d more)" % (len(p) - 5) if len(p) > 5 else "") if p else "all found once"))
    if not fanout:
        res.add("SKIP", "every item queryable through any node",
                "no fan-out queries in this binary: each node answers only what it stores")


def check_counts(per_node, acked, unacked, fanout):
    problems = {"spans": [], "logs": [], "samples": []}
    # spans: (trace, span) -> count per node
    for sig in ("spans", "logs", "samples"):
        if sig == "spans":
            want = {(t, s): True for t, ss in acked["spans"].items() for s in ss}
            maybe = {(t, s): True for t, ss in unacked["spans"].items() for s in ss}
            counts = []
            for pn in per_node:
                c = {}
                for t, ss in pn["spans"].items():
                    for s in ss:
                        c[(t, s)] = c.get((t, s), 0) + 1
                counts.append(c)
        else:
            want = {u: True for u in acked[sig]}
            maybe = {u: True for u in unacked[sig]}
            counts = [pn[sig] for pn in per_node]
        keys = set(want) | set(maybe)
        for c in counts:
            keys |= set(c)
        for k in sorted(keys, key=str):
            per = [c.get(k, 0) for c in counts]
            if k not in want and k not in maybe:
                problems[sig].append("%s stored but never sent %s" % (k, per))
                continue
            if fanout:
                bad = [x for x in per if x != 1] if k in want else [x for x in per if x > 1]
                if bad:
                    problems[sig].append("%s counted %s by the nodes" % (k, per))
            else:
                total = sum(per)
                if (k in want and total != 1) or total > 1:
                    problems[sig].append("%s counted %s by the nodes" % (k, per))
    return problems


if __name__ == "__main__":
    sys.exit(main())
