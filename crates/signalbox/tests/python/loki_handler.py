"""Ships records through python-logging-loki's LokiHandler (the real PyPI client) to
Signalbox's Loki push API. Usage: loki_handler.py URL COUNT"""
import logging
import sys

import logging_loki

url, count = sys.argv[1], int(sys.argv[2])
handler = logging_loki.LokiHandler(url=url, tags={"application": "billing"}, version="1")
logger = logging.getLogger("billing")
logger.addHandler(handler)
logger.setLevel(logging.DEBUG)
for i in range(count):
    logger.error("invoice %d failed: card declined", i, extra={"tags": {"invoice": "inv-%d" % i}})
print("sent", count)
