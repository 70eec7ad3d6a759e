"""Scrape a daemon's /metrics and parse the Prometheus text exposition
format (version 0.0.4), strictly enough to catch what a real Prometheus
would refuse: every sample must belong to a family declared by a # TYPE
line before it, histogram samples must be _bucket (with le), _sum or
_count, values must be numbers, and a family is declared once.

    m = prom.scrape("127.0.0.1:9100", token)               # the --metrics-token-file token
    m.value("cairn_sdc_volume_writes_total", volume="v1")   # one sample, or 0
    m.sum("cairn_sds_device_written_bytes_total")            # over every sample
    m.samples("cairn_sds_requests_total", op="read")         # [(labels, value)]
"""
import math
import re
import urllib.request

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ParseError(ValueError):
    pass


def _unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def _labels(text, line):
    out = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ParseError(f"bad labels in {line!r}")
        if m.group(1) in out:
            raise ParseError(f"label {m.group(1)} twice in {line!r}")
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def _number(v, line):
    if v in ("+Inf", "Inf"):
        return math.inf
    if v == "-Inf":
        return -math.inf
    if v == "NaN":
        return math.nan
    try:
        return float(v)
    except ValueError:
        raise ParseError(f"bad value in {line!r}") from None


class Exposition:
    def __init__(self, text):
        self.types, self.helps = {}, {}
        self.by_name = {}  # sample name -> [(labels, value)]
        self.family_of = {}  # sample name -> family
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "TYPE":
                    name, typ = parts[2], parts[3] if len(parts) > 3 else ""
                    if typ not in _TYPES:
                        raise ParseError(f"unknown type in {line!r}")
                    if name in self.types:
                        raise ParseError(f"family {name} declared twice")
                    self.types[name] = typ
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise ParseError(f"bad sample line {line!r}")
            name, labels = m.group(1), _labels(m.group(2) or "", line)
            value = _number(m.group(3), line)
            fam = self._family(name, labels, line)
            self.family_of[name] = fam
            self.by_name.setdefault(name, []).append((labels, value))

    def _family(self, name, labels, line):
        if self.types.get(name) in ("counter", "gauge", "untyped"):
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.types.get(base) == "histogram":
                if suffix == "_bucket" and "le" not in labels:
                    raise ParseError(f"bucket without le: {line!r}")
                return base
        raise ParseError(f"sample {name} belongs to no family declared by # TYPE: {line!r}")

    def samples(self, name, **labels):
        """[(labels, value)] of the samples of that name whose labels include
        the given ones."""
        return [(lab, v) for lab, v in self.by_name.get(name, [])
                if all(lab.get(k) == str(want) for k, want in labels.items())]

    def sum(self, name, **labels):
        return sum(v for _, v in self.samples(name, **labels))

    def value(self, name, **labels):
        """The one sample's value (0 if none); more than one is an error."""
        s = self.samples(name, **labels)
        if len(s) > 1:
            raise AssertionError(f"{name}{labels}: {len(s)} samples, expected one")
        return s[0][1] if s else 0

    def has(self, name):
        return name in self.by_name


def get_full(addr, path="/metrics", token=None, timeout=10):
    """(status, headers, body text) of GET http://addr/path, sending token
    as a bearer token if given; HTTP errors are returned."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(f"http://{addr}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


def get(addr, path="/metrics", token=None, timeout=10):
    """(status, body text) of GET http://addr/path, as get_full()."""
    status, _, body = get_full(addr, path, token, timeout)
    return status, body


def scrape(addr, token, timeout=10):
    status, body = get(addr, "/metrics", token, timeout)
    if status != 200:
        raise AssertionError(f"GET http://{addr}/metrics: {status}")
    return Exposition(body)
