"""Registers two instances of one service through Signalbox's Consul API with py-consul:
one whose version is in `Meta`, one whose version is a `version=` tag.

Usage: PYTHONPATH=<py-consul dir> python3 consul_register_versions.py HOST PORT SERVICE PORT_V1 PORT_V2
"""

import json
import sys

import consul

host, port, service, p1, p2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = consul.Consul(host=host, port=port)
ok1 = c.agent.service.register(service, service_id=service + "-v1", address="127.0.0.1", port=p1, tags=["version=v1"])
ok2 = c.agent.service.register(service, service_id=service + "-v2", address="127.0.0.1", port=p2, meta={"version": "v2"})
_, nodes = c.health.service(service)
print(json.dumps({"registered": [ok1, ok2], "instances": [n["Service"]["ID"] for n in nodes]}))
