"""Uses the official elasticsearch-py client (the real PyPI package) against Signalbox's
Elasticsearch subset: info() checks the product header, bulk() ships documents.
Usage: es_client.py URL COUNT EPOCH_SECONDS; prints a JSON summary."""
import json
import sys

from elasticsearch import Elasticsearch, helpers

url, count, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
es = Elasticsearch(url, request_timeout=10)
info = es.info()
docs = [
    {"_index": "shop-api", "_source": {"@timestamp": (base + i) * 1000, "message": "order %d placed" % i, "log.level": "info", "order_id": "o-%d" % i}}
    for i in range(count)
]
ok, errors = helpers.bulk(es, docs, raise_on_error=False)
resp = es.bulk(operations=[{"create": {"_index": "shop-api"}}, {"message": "raw bulk line", "level": "warn"}, {"delete": {"_index": "shop-api", "_id": "1"}}])
print(json.dumps({"version": info["version"]["number"], "ok": ok, "errors": len(errors), "raw_errors": resp["errors"], "raw_items": len(resp["items"])}))
