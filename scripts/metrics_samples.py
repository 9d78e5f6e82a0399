#!/usr/bin/python3
"""Parse OpenMetrics text on standard input with the Prometheus client library's own strict
parser (Debian: python3-prometheus-client) and print its samples as one JSON list:
[{"name": ..., "labels": {...}, "value": ...}, ...]. Exits 1 with the parser's message when
the text is not valid OpenMetrics. The tests use it to read `smon-console metrics`."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

try:
    samples = [
        {"name": s.name, "labels": s.labels, "value": s.value}
        for family in text_string_to_metric_families(sys.stdin.read())
        for s in family.samples
    ]
except Exception as e:  # the parser raises ValueError and friends
    print(f"metrics_samples.py: not valid OpenMetrics: {e}", file=sys.stderr)
    sys.exit(1)
json.dump(samples, sys.stdout)
