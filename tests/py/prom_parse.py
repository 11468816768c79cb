"""Parses Prometheus text exposition from stdin with the reference parser
(prometheus_client.parser) and prints what it understood, one line each:
    TYPE <family> <type>
    SAMPLE <name>{<k>="<v>",...} <value>      (labels sorted by name)
Exits non-zero (with the parser's error) when the text is not valid exposition."""
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
out = []
for fam in text_string_to_metric_families(text):
    out.append("TYPE %s %s" % (fam.name, fam.type))
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        name = s.name + ("{%s}" % labels if labels else "")
        out.append("SAMPLE %s %r" % (name, float(s.value)))
print("\n".join(out))
