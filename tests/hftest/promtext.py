"""promtext: the one parser of the Prometheus text exposition format (what holdfast's /metrics
and the fixtures' exporters answer).

    samples(text)               [(name, {labels}, value)]
    value(text, name, **labels) the sum of the samples of `name` whose labels include `labels`,
                                None when there is none
    families(text)              {family: type} from the # TYPE lines
"""
import re

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_TYPE = re.compile(r"# TYPE (\S+) (\S+)$")


def samples(text):
    """[(name, {labels}, value)] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def value(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels` (values compared as strings);
    None when no sample matches."""
    total = None
    for n, lab, v in samples(text):
        if n == name and all(lab.get(k) == str(want) for k, want in labels.items()):
            total = v if total is None else total + v
    return total


def families(text):
    """{family: type} from the # TYPE lines of a /metrics page."""
    out = {}
    for line in text.splitlines():
        m = _TYPE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out
