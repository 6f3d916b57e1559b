"""Drives Signalbox's Consul API with a real Python Consul client (py-consul or
python-consul2; both import as `consul`) and prints what the client returned, as JSON, for
the Rust test to check.

Usage: PYTHONPATH=<client dir> python3 consul_client.py HOST PORT
"""

import base64
import inspect
import json
import sys

import consul

host, port = sys.argv[1], int(sys.argv[2])
c = consul.Consul(host=host, port=port)
out = {"client": consul.__name__}

node = c.agent.self()["Config"]["NodeName"]
out["self_node"] = node
out["members"] = c.agent.members()

# Registration with checks: py-consul sends `checks` (check + extra_checks), python-consul2
# a single `check`; both with lowercase keys.
kw = {}
if "extra_checks" in inspect.signature(c.agent.service.register).parameters:
    kw["extra_checks"] = [consul.Check.ttl("30s")]
out["register"] = c.agent.service.register(
    "web",
    service_id="web-1",
    address="127.0.0.1",
    port=8080,
    tags=["v1"],
    meta={"version": "1"},
    check=consul.Check.ttl("15s"),
    **kw,
)
out["check_register"] = c.agent.check.register(
    "extra", check=consul.Check.ttl("20s"), check_id="web-1-extra", service_id="web-1"
)
checks = c.agent.checks()
out["check_ids"] = sorted(checks)
for cid, chk in checks.items():
    if chk["ServiceID"] == "web-1":
        c.agent.check.ttl_pass(cid, notes="ready")
out["services"] = c.agent.services()
out["catalog_services"] = c.catalog.services()[1]
out["catalog_node"] = c.catalog.node(node)[1]
out["health_passing"] = c.health.service("web", passing=True)[1]
out["health_checks"] = c.health.checks("web")[1]
out["health_state_passing"] = c.health.state("passing")[1]
out["health_node"] = c.health.node(node)[1]

out["kv_put"] = c.kv.put("app/config", "hello")
index, entry = c.kv.get("app/config")
entry["Value"] = entry["Value"].decode()
out["kv_get"] = entry
out["kv_cas_stale"] = c.kv.put("app/config", "lost", cas=entry["ModifyIndex"] + 1000)
out["txn"] = c.txn.put(
    [
        {"KV": {"Verb": "set", "Key": "app/a", "Value": base64.b64encode(b"one").decode()}},
        {"KV": {"Verb": "get", "Key": "app/config"}},
    ]
)
out["kv_after_txn"] = c.kv.get("app/a")[1]["Value"].decode()

# The catalog, with a service given in lowercase keys.
out["catalog_register"] = c.catalog.register(
    node, "127.0.0.1", service={"service": "ext", "id": "ext-1", "port": 9100, "tags": ["x"]}
)
out["catalog_ext"] = c.catalog.service("ext")[1]
out["catalog_deregister"] = c.catalog.deregister(node, service_id="ext-1")
out["catalog_ext_after"] = c.catalog.service("ext")[1]

out["check_deregister"] = c.agent.check.deregister("web-1-extra")
out["deregister"] = c.agent.service.deregister("web-1")
out["catalog_after"] = c.catalog.services()[1]
print(json.dumps(out))
