#!/usr/bin/env python3
"""Figures of the scale-out deployment (docs/benchmarks.md, "Cluster"): ingest throughput of
one node against three with the NATS buffer, the latency the buffer adds, failover times
(a Signalbox node, an etcd member, a NATS server, a standalone gateway's control plane) and
etcd's write load per registered instance. Reuses the loopback cluster of
scripts/cluster_test.py (3 etcd members, 3 NATS servers with JetStream). Run by
bench/cluster.sh; prints one JSON object per figure and a Markdown summary at the end.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import cluster_test as ct  # noqa: E402

SECONDS = float(os.environ.get("INGEST_SECONDS", "15"))
LATENCY_REQUESTS = int(os.environ.get("LATENCY_REQUESTS", "300"))
LOAD_INSTANCES = int(os.environ.get("LOAD_INSTANCES", "100"))
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
TTL_REPORT_EVERY = float(os.environ.get("TTL_REPORT_EVERY", "10"))

RESULTS = []
FEATURES = set()


def emit(name, **v):
    v["figure"] = name
    RESULTS.append(v)
    print(json.dumps(v), flush=True)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def cpu_of(procs):
    """User + system CPU seconds of the processes so far."""
    total = 0.0
    for pr in procs:
        try:
            with open("/proc/%d/stat" % pr.p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError):
            pass
    return total


def loadgen(node, seconds, connections, start):
    r = subprocess.run([LOADGEN, "trace-ingest", "--url", "http://127.0.0.1:%d" % node.grpc, "--seconds",
                        str(seconds), "--connections", str(connections), "--from", str(start),
                        "--base-ns", str(time.time_ns() - 600_000_000_000)],
                       capture_output=True, text=True, timeout=seconds + 120,
                       env=dict(os.environ, TARGET_PID=str(node.proc.p.pid)))
    if r.returncode != 0:
        raise RuntimeError("loadgen against %s: %s" % (node.name, r.stderr[-800:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_nodes(root, etcd, nats, n, buffer, prefix, tag):
    nodes = [ct.Node(root, i, etcd, nats, set(), grpc=True, prefix=prefix, buffer=buffer,
                     name="%s-%d" % (tag, i + 1)) for i in range(n)]
    for x in nodes:
        x.start()
    for x in nodes:
        x.wait_ready()
    return nodes


def stop_nodes(nodes):
    for x in nodes:
        x.proc.kill9()


def ingest_throughput(root, etcd, nats, buffer_ok):
    runs = [("one node, no buffer", 1, False)]
    if buffer_ok:
        runs += [("one node, NATS buffer", 1, True), ("three nodes, NATS buffer", 3, True)]
    runs += [("three nodes, no buffer (each stores what it receives)", 3, False)]
    start = 0
    for k, (label, n, buf) in enumerate(runs):
        nodes = start_nodes(root, etcd, nats, n, buf, "/bench-tp%d/" % k, "tp%d" % k)
        out = [None] * n
        # Four OTLP/gRPC connections in all, spread over the nodes.
        conns = [4 // n + (1 if i < 4 % n else 0) for i in range(n)]

        def go(i):
            out[i] = loadgen(nodes[i], SECONDS, max(1, conns[i]), start + i * 10_000_000)
        ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        engines = [x.proc for x in nodes] + [srv["proc"] for srv in nats.servers]
        cpu0 = cpu_of(engines)
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        cluster_cpu = cpu_of(engines) - cpu0
        start += 100_000_000
        stop_nodes(nodes)
        emit("ingest throughput", setup=label, nodes=n, buffer=buf,
             spans_per_second=round(sum(o["spans_per_second"] for o in out)),
             refused_requests=sum(o["refused_requests"] for o in out),
             spans=sum(o["spans"] for o in out),
             cpu_us_per_span_signalbox_and_nats=round(cluster_cpu * 1e6 / max(1, sum(o["spans"] for o in out)), 2))


def buffer_latency(root, etcd, nats, buffer_ok):
    setups = [("no buffer", False)] + ([("NATS buffer", True)] if buffer_ok else [])
    for k, (label, buf) in enumerate(setups):
        node = start_nodes(root, etcd, nats, 1, buf, "/bench-lat%d/" % k, "lat%d" % k)[0]
        ing = ct.Ingest([node])
        lat = []
        for _ in range(LATENCY_REQUESTS):
            t = time.monotonic()
            ing.send_spans(node)
            lat.append((time.monotonic() - t) * 1000)
        stop_nodes([node])
        emit("ingest request latency", setup=label, requests=LATENCY_REQUESTS,
             failed=len(ing.failed["spans"]), p50_ms=round(pct(lat, 0.5), 2), p99_ms=round(pct(lat, 0.99), 2))


def failovers(root, etcd, nats, buffer_ok):
    nodes = start_nodes(root, etcd, nats, 3, buffer_ok, "/bench-fo/", "fo")
    # Signalbox node: health checks of its instances on another node.
    up = ct.Proc("upstreams", [sys.executable, "-c", ct.UPSTREAM_CODE, "[]"], os.path.join(root, "up.log"))
    echo = [("echo-%d" % i, ct.free_port()) for i in range(6)]
    control, conv_port = ct.free_port(), ct.free_port()
    up.argv[3] = json.dumps(echo + [("conv", conv_port), ("_control", control)])
    up.start()
    ct.wait_until("upstreams", lambda: ct.request("GET", "http://127.0.0.1:%d/" % control, timeout=1)[0] == 200, 10)
    for k, (name, port) in enumerate(echo):
        ct.register(nodes[k % 3], name, "echo", port)
    names = [n.name for n in nodes]
    owners = {name: ct.owner(names, name) for name, _ in echo}
    victim = nodes[0]
    mine = [i for i, o in owners.items() if o == victim.name]
    standalone = None
    if "gateway_failover" in FEATURES:
        standalone = ct.StandaloneGateway(root, nodes)
        standalone.proc.start()
        ct.wait_until("standalone gateway", lambda: ct.request("GET", standalone.base + "/readyz", timeout=1)[0] == 200, 30)
    time.sleep(3)
    t_kill = time.time()
    victim.proc.kill9()
    if standalone:
        # A change made on a live node right after the kill: how long until the gateway,
        # which followed the killed node, routes by it.
        t0 = time.monotonic()
        ct.register(nodes[1], "conv-1", "conv", conv_port, checks=False)
        ct.wait_until("the standalone gateway routing conv",
                      lambda: b'"upstream": "conv"' in ct.request("GET", standalone.gw + "/conv/x", timeout=1)[1],
                      30, 0.02)
        emit("failover: standalone gateway's control-plane node killed", change_routed_after_s=round(
            time.monotonic() - t0, 3), now_following=standalone.following())
        standalone.proc.kill9()
    time.sleep(ct.LEASE_TTL + 3)
    hits = ct.get_json("http://127.0.0.1:%d/" % control)
    moved = [min([t for t in hits.get(i, []) if t > t_kill] or [float("inf")]) - t_kill for i in mine]
    emit("failover: Signalbox node (health checks)", lease_ttl_s=ct.LEASE_TTL, instances=len(mine),
         worst_s=round(max(moved), 2) if moved else None)
    victim.start()
    victim.wait_ready()

    # etcd member (the leader): the longest a registry write waits or fails.
    stop = threading.Event()
    writes = []

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            t = time.monotonic()
            body = json.dumps({"service": "w", "id": "w-%d" % (i % 20), "address": "127.0.0.1", "port": 1}).encode()
            st, _ = ct.request("POST", nodes[1].base + "/api/registry/instances", body,
                               {"content-type": "application/json"}, timeout=10)
            writes.append((t, time.monotonic(), st))
            time.sleep(0.02)
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(2)
    m = etcd.leader()
    t_kill = time.monotonic()
    m["proc"].kill9()
    time.sleep(5)
    stop.set()
    th.join()
    m["proc"].start()
    etcd.wait_healthy(m)
    after = [(a, b, st) for a, b, st in writes if b >= t_kill]
    first_ok = min([b for a, b, st in after if st // 100 == 2] or [float("inf")])
    emit("failover: etcd leader killed (registry writes)", failed_writes=sum(1 for a, b, st in after if st // 100 != 2),
         failed_statuses=sorted({st for a, b, st in after if st // 100 != 2}),
         longest_write_s=round(max((b - a for a, b, st in after), default=0), 3),
         until_first_ok_write_s=round(first_ok - t_kill, 3),
         median_write_ms_before=round(1000 * statistics.median(b - a for a, b, st in writes if b < t_kill), 1))

    # NATS server: ingest through a node (buffered) while a server dies.
    if buffer_ok:
        ing = ct.Ingest([nodes[1]])
        lat = []
        stop.clear()

        def sender():
            while not stop.is_set():
                t = time.monotonic()
                ing.send_spans(nodes[1])
                lat.append((t, time.monotonic()))
                time.sleep(0.02)
        th = threading.Thread(target=sender, daemon=True)
        th.start()
        time.sleep(2)
        s = nats.servers[0]
        t_kill = time.monotonic()
        s["proc"].kill9()
        time.sleep(6)
        stop.set()
        th.join()
        s["proc"].start()
        nats.wait_healthy(s)
        fails = [t for t, _, _ in ing.failed["spans"]]
        emit("failover: NATS server killed (buffered ingest)", failed_requests=len(fails),
             longest_request_s=round(max((b - a for a, b in lat if b >= t_kill), default=0), 3))
    stop_nodes(nodes)
    up.kill9()


def etcd_load(root, etcd, nats):
    nodes = start_nodes(root, etcd, nats, 3, False, "/bench-load/", "ld")
    up = ct.Proc("upstreams-load", [sys.executable, "-c", ct.UPSTREAM_CODE, "[]"], os.path.join(root, "upl.log"))
    http = [("h-%d" % i, ct.free_port()) for i in range(LOAD_INSTANCES)]
    control = ct.free_port()
    up.argv[3] = json.dumps(http + [("_control", control)])
    up.start()
    ct.wait_until("upstreams", lambda: ct.request("GET", "http://127.0.0.1:%d/" % control, timeout=1)[0] == 200, 20)

    def window(label, seconds, during=None):
        c0, r0 = etcd.counters(), etcd.revision()
        stop = threading.Event()
        th = threading.Thread(target=during, args=(stop,), daemon=True) if during else None
        if th:
            th.start()
        time.sleep(seconds)
        stop.set()
        if th:
            th.join()
        c1, r1 = etcd.counters(), etcd.revision()
        return {"revisions": r1 - r0, **{k.replace("etcd_mvcc_", ""): int(c1.get(k, 0) - c0.get(k, 0)) for k in c1}}

    for k, (name, port) in enumerate(http):
        ct.register(nodes[k % 3], name, "h", port)
    time.sleep(3)
    d = window("http", LOAD_SECONDS)
    per = d["revisions"] / LOAD_INSTANCES / (LOAD_SECONDS / 60)
    emit("etcd write load: HTTP check every 1 s, stable", instances=LOAD_INSTANCES, seconds=LOAD_SECONDS,
         per_instance_per_minute=round(per, 3), **d)
    for name, _ in http:
        ct.request("DELETE", nodes[0].base + "/api/registry/instances/" + name, timeout=10)
    ttl = ["t-%d" % i for i in range(LOAD_INSTANCES)]
    for k, name in enumerate(ttl):
        body = {"service": "t", "id": name, "address": "127.0.0.1", "port": 1,
                "checks": [{"ttl": "%ds" % int(3 * TTL_REPORT_EVERY)}]}
        ct.write("POST", nodes[k % 3], "/api/registry/instances", body, "load")

    bad = []

    def reporter(stop):
        k = 0
        while not stop.is_set():
            t0 = time.monotonic()
            for name in ttl:
                st, b = ct.request("PUT", nodes[k % 3].base + "/api/registry/instances/%s/ttl" % name,
                                   json.dumps({"status": "passing"}).encode(), {"content-type": "application/json"},
                                   timeout=5)
                if st // 100 != 2:
                    bad.append((st, b[:120]))
                k += 1
            stop.wait(max(0, TTL_REPORT_EVERY - (time.monotonic() - t0)))
    time.sleep(2)
    d = window("ttl", LOAD_SECONDS, reporter)
    per = d["revisions"] / LOAD_INSTANCES / (LOAD_SECONDS / 60)
    emit("etcd write load: TTL check reported every %.0f s" % TTL_REPORT_EVERY, instances=LOAD_INSTANCES,
         seconds=LOAD_SECONDS, per_instance_per_minute=round(per, 3), failed_reports=len(bad),
         first_failure=str(bad[0]) if bad else None, **d)
    stop_nodes(nodes)
    up.kill9()


def main():
    global LOADGEN
    ct.BIN = os.path.abspath(sys.argv[1])
    LOADGEN = os.path.abspath(sys.argv[2])
    ct.NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
    root = tempfile.mkdtemp(prefix="signalbox-bench-cluster-")
    import atexit
    atexit.register(ct.kill_all)
    atexit.register(lambda: shutil.rmtree(root, ignore_errors=True))
    global FEATURES
    features, _ = ct.probe_features(root)
    FEATURES = features
    buffer_ok = "buffer" in features
    etcd, nats = ct.Etcd(root), ct.Nats(root)
    etcd.start()
    nats.start()
    only = os.environ.get("ONLY", "throughput,latency,failover,load").split(",")
    if "throughput" in only:
        ingest_throughput(root, etcd, nats, buffer_ok)
    if "latency" in only:
        buffer_latency(root, etcd, nats, buffer_ok)
    if "failover" in only:
        failovers(root, etcd, nats, buffer_ok)
    if "load" in only:
        etcd_load(root, etcd, nats)
    if not buffer_ok:
        print("NOTE: the binary has no [ingest] buffer: buffered figures not measured", flush=True)
    print("\n| figure | values |\n| --- | --- |")
    for r in RESULTS:
        print("| %s | %s |" % (r["figure"], ", ".join("%s %s" % (k, v) for k, v in r.items() if k != "figure")))


if __name__ == "__main__":
    main()
