#!/usr/bin/env bash
# `signalbox demo` as a load: the process's CPU and memory while the demo runs, and for each
# injected fault the time until the matching alert fires and until the service map shows
# an edge into the faulty service with health `fail`.
#
# The demo is one process: the node (gateway, registry, config, logs, metrics, traces), the
# seven sample instances, the log agent and the load generator all run in it, so its CPU and
# RSS are the whole system's, not the node's alone. For comparison the script first measures
# an idle `signalbox serve` (temp data dir, free loopback ports) for IDLE_S seconds.
#
# Every second it reads utime+stime from /proc/PID/stat (cores used = CPU seconds / wall
# seconds) and VmRSS from /proc/PID/status, GET /prometheus/api/v1/alerts (firing alerts)
# and GET /api/service-map?since=30s (edges with health `fail`). The demo's own narration
# (`HH:MM:SS injecting: ...`, `HH:MM:SS alert firing: Name{service=x} -> URL`) gives the
# fault times; a fault's service is the first demo service its line names (payments-2 ->
# payments).
#
# Usage: bench/demo.sh [SECONDS, default 330] [SPEED, default 1]
# Env: SIGNALBOX_BIN (default target/release/signalbox), SEED (default 1), IDLE_S (default
# 20; 0 skips the idle node). Results: bench/results/demo-<time>/ (demo.out, samples.tsv,
# summary.txt); the summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-330}
SPEED=${2:-1}
SEED=${SEED:-1}
IDLE_S=${IDLE_S:-20}
BIN=${SIGNALBOX_BIN:-target/release/signalbox}
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release -p signalbox, or set SIGNALBOX_BIN)" >&2; exit 1; }
OUT=bench/results/demo-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
echo "results in $OUT"

exec python3 - "$BIN" "$SECONDS_TO_RUN" "$SPEED" "$SEED" "$IDLE_S" "$OUT" <<'PY'
import json, os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

BIN, RUN_S, SPEED, SEED, IDLE_S, OUT = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6]
SERVICES = ["web-frontend", "orders", "payments", "inventory-db", "inventory"]
TICK = os.sysconf("SC_CLK_TCK")
env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}


def cpu_rss(pid):
    """(CPU seconds, RSS MiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stop(proc, timeout=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(pid, seconds, every=None):
    """CPU and RSS samples over `seconds`; `every(t)` runs once a second."""
    t0 = time.time()
    c0, _ = cpu_rss(pid)
    samples = []
    while time.time() - t0 < seconds:
        time.sleep(1 - ((time.time() - t0) % 1))
        try:
            c, rss = cpu_rss(pid)
        except FileNotFoundError:
            break
        t = time.time() - t0
        samples.append((t, c - c0, rss))
        if every:
            every(t)
    return samples


def describe(samples, skip_s=0.0):
    s = [x for x in samples if x[0] >= skip_s] or samples
    if len(s) < 2:
        return "too short"
    cores = (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0])
    rss = sorted(x[2] for x in s)
    # Cores used per 10 s slice: the busiest slice.
    peak = 0.0
    for a in s:
        b = next((x for x in s if x[0] >= a[0] + 10), None)
        if b:
            peak = max(peak, (b[1] - a[1]) / (b[0] - a[0]))
    return f"mean {cores:.2f} cores (busiest 10 s: {peak:.2f}); RSS median {rss[len(rss) // 2]:.0f} MiB, max {rss[-1]:.0f} MiB"


summary = []

# An idle node first -------------------------------------------------------------------
if IDLE_S > 0:
    data = tempfile.mkdtemp(prefix="signalbox-idle-")
    gw, con, consul, og, oh, zk = free_ports(6)
    idle = subprocess.Popen(
        [BIN, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{gw}", "--console-listen", f"127.0.0.1:{con}",
         "--consul-listen", f"127.0.0.1:{consul}", "--otlp-grpc-listen", f"127.0.0.1:{og}",
         "--otlp-http-listen", f"127.0.0.1:{oh}", "--zipkin-listen", f"127.0.0.1:{zk}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{con}/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        time.sleep(2)
        idle_samples = measure(idle.pid, IDLE_S)
        summary.append(f"idle `signalbox serve` over {IDLE_S:.0f} s: {describe(idle_samples)}")
    finally:
        stop(idle)
        subprocess.run(["rm", "-rf", data])
    print(summary[-1], flush=True)

# The demo -----------------------------------------------------------------------------
out_path = os.path.join(OUT, "demo.out")
out = open(out_path, "w")
demo = subprocess.Popen([BIN, "demo", "--port", "0", "--speed", SPEED, "--seed", SEED, "--duration", f"{int(RUN_S) + 60}s"],
                        stdout=out, stderr=subprocess.STDOUT, env=env)
base = None
deadline = time.time() + 60
while time.time() < deadline and base is None:
    time.sleep(0.2)
    for line in open(out_path):
        if line.startswith("console: "):
            base = line.split(" ", 1)[1].strip()
if base is None:
    stop(demo)
    sys.exit("the demo printed no console line within 60 s; see " + out_path)
print(f"demo on {base}, pid {demo.pid}, {RUN_S:.0f} s at speed {SPEED}", flush=True)

firing_seen = {}  # "Name{service}" -> first unix time seen firing in the API
fail_edges = []  # (unix time, [edge ids with health fail])
tsv = open(os.path.join(OUT, "samples.tsv"), "w")
tsv.write("t_s\tcpu_s\trss_mib\tfiring\tfail_edges\n")


def poll(t):
    now = time.time()
    firing, edges = [], []
    try:
        for a in get(f"{base}/prometheus/api/v1/alerts")["data"]["alerts"]:
            if a.get("state") == "firing":
                key = f"{a['labels'].get('alertname')}{{{a['labels'].get('service') or a['labels'].get('instance', '')}}}"
                firing.append(key)
                firing_seen.setdefault(key, now)
    except Exception as e:
        firing.append(f"error:{e}")
    try:
        m = get(f"{base}/api/service-map?since=30s", timeout=3)
        edges = [e["id"] for e in m["edges"] if e.get("health") == "fail"]
        fail_edges.append((now, edges))
    except Exception as e:
        edges.append(f"error:{e}")
    c, rss = cpu_rss(demo.pid)
    tsv.write(f"{t:.0f}\t{c:.2f}\t{rss:.0f}\t{','.join(firing)}\t{','.join(edges)}\n")
    tsv.flush()


t_start = time.time()
try:
    samples = measure(demo.pid, RUN_S, poll)
finally:
    t_stop = time.time()
    stop(demo)
    out.close()
print(f"demo exited {demo.returncode} after SIGINT in {time.time() - t_stop:.1f} s", flush=True)
summary.append(f"`signalbox demo --speed {SPEED} --seed {SEED}` over {RUN_S:.0f} s (after its first 30 s): {describe(samples, 30)}")
summary.append(f"demo stopped on SIGINT in {time.time() - t_stop:.1f} s, exit {demo.returncode}")

# Faults against the narration, the alerts API and the map -----------------------------
lines = open(out_path).read().splitlines()
midnight = t_start - (t_start % 86400)  # the narration's clock is UTC


def at(hms):
    h, m, s = map(int, hms.split(":"))
    t = midnight + h * 3600 + m * 60 + s
    return t + 86400 if t < t_start - 3600 else t


faults, narrated = [], []
for line in lines:
    m = re.match(r"(\d\d:\d\d:\d\d) injecting: (.*)", line)
    if m:
        svc = next((s for s in SERVICES if re.search(rf"\b{s}\b|\b{s}-\d", m.group(2))), None)
        faults.append((at(m.group(1)), m.group(2), svc))
    m = re.match(r"(\d\d:\d\d:\d\d) alert firing: (\w+)\{(.*?)\}", line)
    if m:
        narrated.append((at(m.group(1)), m.group(2), m.group(3)))

summary.append("")
summary.append("| fault (injected at, s after start) | first alert (narrated) | first alert (API, 1 s polls) | map: an edge into the service `fail` | ... for 5 polls running |")
summary.append("|---|---|---|---|---|")
for i, (t, what, svc) in enumerate(faults):
    end = faults[i + 1][0] if i + 1 < len(faults) else t_stop
    nar = [(a - t, n, l) for a, n, l in narrated if t <= a < end and svc and svc in l]
    api = sorted((a - t, k) for k, a in firing_seen.items() if t <= a < end and svc and svc in k)
    into = lambda ids: [e for e in ids if e.endswith(f">{svc}")]
    red = next(((a - t, into(ids)) for a, ids in fail_edges if t <= a < end and into(ids)), None)
    # Steady: the first poll from which an edge into the service stays `fail` 5 polls running
    # (the map's figures move with each 5 s scrape, and a fault before can leave an edge red).
    steady = next(((a - t, into(ids)) for i, (a, ids) in enumerate(fail_edges)
                   if t <= a < end and len(fail_edges[i:i + 5]) == 5 and all(into(x) for _, x in fail_edges[i:i + 5])), None)
    summary.append(
        f"| {what} ({t - t_start:.0f}) | "
        + (f"{nar[0][0]:.0f} s {nar[0][1]}{{{nar[0][2]}}}" if nar else "none before the next fault")
        + " | "
        + (f"{api[0][0]:.0f} s {api[0][1]}" if api else "none")
        + " | "
        + (f"{red[0]:.0f} s ({', '.join(red[1])})" if red else "not seen")
        + " | "
        + (f"{steady[0]:.0f} s ({', '.join(steady[1])})" if steady else "not seen")
        + " |")

text = "\n".join(summary)
open(os.path.join(OUT, "summary.txt"), "w").write(text + "\n")
print(text)
PY
