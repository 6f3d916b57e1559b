"""Reads Signalbox's Spring Cloud Config endpoints with the PyPI `config-client` package
and prints what it got, as JSON, for the Rust test to check.

Usage: PYTHONPATH=<config-client dir> python3 config_client.py CONFIG_SERVER_URL
"""

import json
import sys

from config import ConfigClient

address = sys.argv[1]
out = {}
client = ConfigClient(address=address, app_name="orders", profile="prod", label="main", fail_fast=False)
client.get_config()
out["config"] = client.config
out["db_url"] = client.get("db.url")
out["retries"] = client.get("timeouts.retries")
out["nginx"] = client.get_file("nginx.conf")
out["template"] = client.get_file("templates/mail.txt")
print(json.dumps(out))
