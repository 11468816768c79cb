"""Reads wstund's status pages for tests/status_page.rs.
    status_parse.py json  < page   -> each top-level key as `key <json, keys sorted>`
    status_parse.py html  < page   -> parses the page as XML (it is XHTML), then prints
                                      every table row as `table-id|cell|cell|...`
Exits non-zero when the page does not parse."""
import json
import sys
import xml.etree.ElementTree as ET

text = sys.stdin.read()
if sys.argv[1] == "json":
    obj = json.loads(text)
    for k, v in obj.items():
        print(k, json.dumps(v, sort_keys=True, separators=(",", ":")))
else:
    # The DOCTYPE is plain "html": expat accepts it; any unbalanced tag or stray "&" fails.
    root = ET.fromstring(text)
    ns = "{http://www.w3.org/1999/xhtml}"
    for table in root.iter(ns + "table"):
        for tr in table.iter(ns + "tr"):
            cells = ["".join(c.itertext()) for c in tr if c.tag in (ns + "td", ns + "th")]
            print("|".join([table.get("id", "")] + cells))
