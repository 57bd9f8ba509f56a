#!/usr/bin/python3
"""A test-only renderer for helm/holdfast (Helm itself cannot be installed on these machines).

It implements exactly the Go text/template and sprig features the chart uses, with Helm's
semantics, and raises RenderError on anything else (never silently wrong YAML):

- actions: {{ pipeline }}, {{- / -}} whitespace trimming, {{/* comments */}},
  if / else if / else / end, range (lists; maps in sorted key order; `$v :=`, `$k, $v :=`),
  with / else, define, include, variables ($, $name := pipeline, $name.field)
- arguments: .Field chains, ., $, "strings" (Go escapes), `raw`, integers, true/false/nil,
  ( sub-pipelines ), pipelines with |
- functions: quote, default, toYaml, nindent, indent, trunc, trimSuffix, printf (%s %d %v %q
  %%), eq, ne, and, or, not, include
- objects: .Values, .Release (Name, Namespace, Service, IsInstall, IsUpgrade, Revision),
  .Chart (Name, Version, AppVersion, Description, Type, KubeVersion), .Template (Name, BasePath)
- values: chart values.yaml, then each -f FILE (deep merge), then --set / --set-string a.b=c[,..]

Stricter than Helm on purpose: a reference to a map key that does not exist (e.g. a misspelt
.Values key) is an error (Helm prints nothing), and numbers that Go would print in exponent form
(|n| >= 1e6 from YAML, which Helm turns into float64) are an error.

Usage: render.py CHART [--release NAME] [--namespace NS] [-f FILE]... [--set k=v]...
                        [--set-string k=v]... [--include-crds] [--no-hooks]
"""
import argparse
import math
import os
import re
import sys

import yaml


class RenderError(Exception):
    pass


# ---------------------------------------------------------------- lexer

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _lex(src, name):
    """[(kind, text, line)]: kind "text" or "action"; trimming applied to the text pieces."""
    out = []
    pos = 0
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if out and out[-1][0] == "trim":
            out.pop()
            text = text.lstrip(" \t\r\n")
        out.append(("text", text, 0))
        body = m.group(2).strip()
        if "{{" in body:
            raise RenderError("%s: nested '{{' in action %r" % (name, m.group(0)))
        line = src.count("\n", 0, m.start()) + 1
        if not (body.startswith("/*") and body.endswith("*/")):
            out.append(("action", body, line))
        if m.group(3):
            out.append(("trim", "", line))
        pos = m.end()
    text = src[pos:]
    if out and out[-1][0] == "trim":
        out.pop()
        text = text.lstrip(" \t\r\n")
    out.append(("text", text, 0))
    if "{{" in text or "}}" in text:
        raise RenderError("%s: unbalanced '{{' or '}}' after the last action" % name)
    return [t for t in out if t[0] != "text" or t[1]]


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>-?\d+(?![\w.]))
  | (?P<assign>:=)
  | (?P<pipe>\|)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)

_GO_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
           "f": "\f", "v": "\v", "0": "\0"}


def _go_unquote(s, where):
    out, i = [], 1
    while i < len(s) - 1:
        c = s[i]
        if c == "\\":
            e = s[i + 1]
            if e not in _GO_ESC or e == "0":
                raise RenderError("%s: unsupported string escape \\%s" % (where, e))
            out.append(_GO_ESC[e])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _tokens(text, where):
    toks, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RenderError("%s: cannot parse %r at %r" % (where, text, text[pos:]))
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        toks.append((kind, m.group()))
    return toks


# ---------------------------------------------------------------- parser
# Nodes: ("text", s) ("out", pipe) ("if", [(pipe, body)...], else_body) ("range", vars, pipe,
# body) ("with", pipe, body, else_body) ("assign", var, pipe)
# pipe: [cmd, ...]; cmd: [arg, ...]; arg: ("str"/"num"/"bool"/"nil", v) ("field", [names])
# ("var", name, [names]) ("dot",) ("ident", name) ("pipe", pipe)

class _Parser:
    def __init__(self, items, name):
        self.items, self.i, self.name, self.defines = items, 0, name, {}

    def where(self, line):
        return "%s:%d" % (self.name, line)

    def parse_list(self, stops):
        nodes = []
        while self.i < len(self.items):
            kind, text, line = self.items[self.i]
            if kind == "text":
                nodes.append(("text", text))
                self.i += 1
                continue
            word = text.split(None, 1)[0] if text else ""
            if word in stops:
                return nodes, word, text, line
            self.i += 1
            rest = text[len(word):].strip()
            w = self.where(line)
            if word == "if":
                nodes.append(self.parse_if(rest, w))
            elif word == "range":
                vars_, pipe = self.parse_decl(rest, w)
                body, stop, _, _ = self.parse_list(("end", "else"))
                if stop != "end":
                    raise RenderError("%s: range ... else is not supported" % w)
                self.i += 1
                nodes.append(("range", vars_, pipe, body))
            elif word == "with":
                pipe = self.parse_pipe(_tokens(rest, w), w)
                body, stop, stext, sline = self.parse_list(("end", "else"))
                self.i += 1
                else_body = []
                if stop == "else":
                    if stext.strip() != "else":
                        raise RenderError("%s: 'else with' is not supported" % self.where(sline))
                    else_body, stop, _, _ = self.parse_list(("end",))
                    self.i += 1
                if stop != "end":
                    raise RenderError("%s: with without end" % w)
                nodes.append(("with", pipe, body, else_body))
            elif word == "define":
                toks = _tokens(rest, w)
                if len(toks) != 1 or toks[0][0] != "str":
                    raise RenderError("%s: define needs one string name" % w)
                body, stop, _, _ = self.parse_list(("end",))
                if stop != "end":
                    raise RenderError("%s: define without end" % w)
                self.i += 1
                self.defines[_go_unquote(toks[0][1], w)] = body
            elif word in ("end", "else"):
                raise RenderError("%s: unexpected {{ %s }}" % (w, word))
            elif word in ("template", "block", "break", "continue", "tpl"):
                raise RenderError("%s: {{ %s }} is not supported by this renderer" % (w, word))
            else:
                toks = _tokens(text, w)
                if len(toks) >= 2 and toks[0][0] == "var" and toks[1][0] == "assign":
                    if "." in toks[0][1]:
                        raise RenderError("%s: cannot assign to %s" % (w, toks[0][1]))
                    nodes.append(("assign", toks[0][1], self.parse_pipe(toks[2:], w)))
                else:
                    nodes.append(("out", self.parse_pipe(toks, w)))
        return nodes, None, None, None

    def parse_if(self, rest, w):
        branches = []
        cond = self.parse_pipe(_tokens(rest, w), w)
        while True:
            body, stop, stext, sline = self.parse_list(("end", "else"))
            if stop is None:
                raise RenderError("%s: if without end" % w)
            self.i += 1
            branches.append((cond, body))
            if stop == "end":
                return ("if", branches, [])
            after = stext[len("else"):].strip()
            if not after:
                else_body, stop, _, _ = self.parse_list(("end",))
                if stop != "end":
                    raise RenderError("%s: if without end" % w)
                self.i += 1
                return ("if", branches, else_body)
            if not after.startswith("if ") and not after.startswith("if\t"):
                raise RenderError("%s: 'else %s' is not supported" % (self.where(sline), after))
            cond = self.parse_pipe(_tokens(after[2:].strip(), w), w)

    def parse_decl(self, rest, w):
        toks = _tokens(rest, w)
        vars_ = []
        if ("assign", ":=") in toks:
            k = toks.index(("assign", ":="))
            decl = [t for t in toks[:k] if t[0] != "comma"]
            if not 1 <= len(decl) <= 2 or any(t[0] != "var" or "." in t[1] for t in decl):
                raise RenderError("%s: bad range declaration %r" % (w, rest))
            vars_ = [t[1] for t in decl]
            toks = toks[k + 1:]
        return vars_, self.parse_pipe(toks, w)

    def parse_pipe(self, toks, w):
        if not toks:
            raise RenderError("%s: empty pipeline" % w)
        cmds, cmd, depth, sub = [], [], 0, []
        for t in toks:
            if depth:
                if t[0] == "lp":
                    depth += 1
                elif t[0] == "rp":
                    depth -= 1
                    if depth == 0:
                        cmd.append(("pipe", self.parse_pipe(sub, w)))
                        sub = []
                        continue
                sub.append(t)
            elif t[0] == "lp":
                depth = 1
            elif t[0] == "rp":
                raise RenderError("%s: unbalanced ')'" % w)
            elif t[0] == "pipe":
                if not cmd:
                    raise RenderError("%s: empty command in pipeline" % w)
                cmds.append(cmd)
                cmd = []
            else:
                cmd.append(self.arg(t, w))
        if depth:
            raise RenderError("%s: unbalanced '('" % w)
        if not cmd:
            raise RenderError("%s: empty command in pipeline" % w)
        cmds.append(cmd)
        return cmds

    def arg(self, t, w):
        kind, v = t
        if kind == "str":
            return ("str", _go_unquote(v, w))
        if kind == "raw":
            return ("str", v[1:-1])
        if kind == "num":
            return ("num", int(v))
        if kind == "field":
            return ("dot",) if v == "." else ("field", v[1:].split("."))
        if kind == "var":
            name, _, rest = v.partition(".")
            return ("var", name, rest.split(".") if rest else [])
        if kind == "ident":
            if v in ("true", "false"):
                return ("bool", v == "true")
            if v == "nil":
                return ("nil", None)
            if v not in FUNCS:
                raise RenderError("%s: function %r is not supported by this renderer" % (w, v))
            return ("ident", v)
        raise RenderError("%s: unexpected %r" % (w, v))


# ---------------------------------------------------------------- values, printing

def _truth(v):
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def _num_text(v):
    if isinstance(v, float) and not v.is_integer():
        r = repr(v)
        if "e" in r or abs(v) < 1e-4:
            raise RenderError("number %r would print in Go's exponent form" % v)
        return r
    if abs(v) >= 1e6:
        raise RenderError("number %r would print as %s in Helm (float64 from YAML); quote it"
                          % (v, "%ge+%02d" % (v / 10 ** int(math.log10(abs(v))), int(math.log10(abs(v))))))
    return str(int(v))


def _print(v):
    """fmt.Sprint of a value, as text/template prints it (Helm turns <no value> into "")."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _num_text(v)
    if isinstance(v, str):
        return v
    raise RenderError("printing a %s (%r) is not supported: use toYaml" % (type(v).__name__, v))


def _go_quote(s):
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            raise RenderError("quote: control character %r is not supported" % c)
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _check_yamlable(v, path="value"):
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, (int, float)):
        _num_text(v)
        return
    if isinstance(v, list):
        for i, x in enumerate(v):
            _check_yamlable(x, "%s[%d]" % (path, i))
        return
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise RenderError("toYaml: non-string key %r in %s" % (k, path))
            _check_yamlable(x, path + "." + k)
        return
    raise RenderError("toYaml: unsupported %s in %s" % (type(v).__name__, path))


def _to_yaml(v):
    """sprig toYaml (sigs.k8s.io/yaml): sorted keys, block style, indentless lists, no final \\n."""
    _check_yamlable(v)
    if v is None:
        return "null"
    text = yaml.safe_dump(v, default_flow_style=False, sort_keys=True, width=1 << 30,
                          allow_unicode=True)
    if text.endswith("\n...\n"):
        text = text[:-4]
    return text[:-1] if text.endswith("\n") else text


def _indent(n, s):
    if not isinstance(n, int) or not isinstance(s, str):
        raise RenderError("indent/nindent take (int, string), got (%r, %r)" % (n, s))
    pad = " " * n
    return pad + s.replace("\n", "\n" + pad)


def _default(d, *given):
    if len(given) > 1:
        raise RenderError("default takes 2 arguments")
    if not given or not _truth(given[0]):
        return d
    return given[0]


def _trunc(n, s):
    if not isinstance(n, int) or not isinstance(s, str):
        raise RenderError("trunc takes (int, string)")
    if n < 0:
        return s[n:] if len(s) + n > 0 else s
    return s[:n]


def _trim_suffix(suffix, s):
    if not isinstance(suffix, str) or not isinstance(s, str):
        raise RenderError("trimSuffix takes (string, string)")
    return s[:-len(suffix)] if suffix and s.endswith(suffix) else s


def _printf(fmt, *args):
    if not isinstance(fmt, str):
        raise RenderError("printf: format must be a string")
    out, ai, i = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(fmt):
            raise RenderError("printf: trailing %")
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if verb not in "sdvq":
            raise RenderError("printf: verb %%%s is not supported" % verb)
        if ai >= len(args):
            raise RenderError("printf: missing argument for %%%s" % verb)
        a = args[ai]
        ai += 1
        if verb == "d":
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not float(a).is_integer():
                raise RenderError("printf: %%d of %r" % (a,))
            out.append(str(int(a)))
        elif verb == "q":
            if not isinstance(a, str):
                raise RenderError("printf: %%q of non-string %r" % (a,))
            out.append(_go_quote(a))
        else:
            if verb == "s" and not isinstance(a, str):
                raise RenderError("printf: %%s of non-string %r" % (a,))
            out.append(_print(a))
    if ai != len(args):
        raise RenderError("printf: %d extra arguments" % (len(args) - ai))
    return "".join(out)


def _eq(a, *bs):
    if not bs:
        raise RenderError("eq needs at least 2 arguments")
    for b in bs:
        if isinstance(a, bool) != isinstance(b, bool):
            raise RenderError("eq: incompatible types for comparison (%r, %r)" % (a, b))
        if type(a) in (dict, list) or type(b) in (dict, list):
            raise RenderError("eq: non-comparable type")
        if a == b:
            return True
    return False


def _ne(a, b):
    return not _eq(a, b)


def _quote(*args):
    return " ".join(_go_quote(_print(a)) for a in args if a is not None)


FUNCS = {
    "quote": _quote, "default": _default, "toYaml": _to_yaml, "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent, "trunc": _trunc, "trimSuffix": _trim_suffix, "printf": _printf,
    "eq": _eq, "ne": _ne, "not": lambda a: not _truth(a), "include": None, "and": None, "or": None,
}


# ---------------------------------------------------------------- evaluation

class _Template:
    def __init__(self, defines):
        self.defines = defines
        self.depth = 0

    def field(self, obj, names, where):
        for n in names:
            if obj is None:
                raise RenderError("%s: nil pointer evaluating .%s" % (where, n))
            if not isinstance(obj, dict):
                raise RenderError("%s: can't evaluate field %s in %s" % (where, n, type(obj).__name__))
            if n not in obj:
                raise RenderError("%s: map has no entry for key %r (strict renderer)" % (where, n))
            obj = obj[n]
        return obj

    def arg(self, a, dot, scope, where):
        k = a[0]
        if k in ("str", "num", "bool", "nil"):
            return a[1]
        if k == "dot":
            return dot
        if k == "field":
            return self.field(dot, a[1], where)
        if k == "var":
            name = a[1]
            for s in reversed(scope):
                if name in s:
                    return self.field(s[name], a[2], where)
            raise RenderError("%s: undefined variable %s" % (where, name))
        if k == "pipe":
            return self.pipe(a[1], dot, scope, where)
        if k == "ident":
            return self.call(a[1], [], None, False, dot, scope, where)
        raise RenderError("%s: bad argument %r" % (where, a))

    def call(self, fn, args, prev, has_prev, dot, scope, where):
        if fn in ("and", "or"):
            vals = args + ([("value", prev)] if has_prev else [])
            if not vals:
                raise RenderError("%s: %s needs arguments" % (where, fn))
            v = None
            for x in vals:
                v = x[1] if x[0] == "value" else self.arg(x, dot, scope, where)
                if _truth(v) != (fn == "and"):
                    return v
            return v
        vals = [self.arg(x, dot, scope, where) for x in args]
        if has_prev:
            vals.append(prev)
        if fn == "include":
            if len(vals) != 2 or not isinstance(vals[0], str):
                raise RenderError("%s: include takes a template name and a value" % where)
            return self.include(vals[0], vals[1], where)
        try:
            return FUNCS[fn](*vals)
        except TypeError as e:
            raise RenderError("%s: %s: %s" % (where, fn, e))
        except RenderError as e:
            raise RenderError("%s: %s" % (where, e))

    def pipe(self, cmds, dot, scope, where):
        prev, has_prev = None, False
        for cmd in cmds:
            head = cmd[0]
            if head[0] == "ident":
                prev = self.call(head[1], cmd[1:], prev, has_prev, dot, scope, where)
            else:
                if len(cmd) > 1:
                    raise RenderError("%s: can't give arguments to a non-function" % where)
                if has_prev:
                    raise RenderError("%s: can't pipe into a non-function" % where)
                prev = self.arg(head, dot, scope, where)
            has_prev = True
        return prev

    def include(self, name, data, where):
        if name not in self.defines:
            raise RenderError("%s: no template %r" % (where, name))
        self.depth += 1
        if self.depth > 50:
            raise RenderError("%s: include recursion" % where)
        try:
            return self.run(self.defines[name], data, [{"$": data}])
        finally:
            self.depth -= 1

    def run(self, nodes, dot, scope):
        out = []
        for n in nodes:
            k = n[0]
            if k == "text":
                out.append(n[1])
            elif k == "out":
                out.append(_print(self.pipe(n[1], dot, scope, "output")))
            elif k == "assign":
                scope[-1][n[1]] = self.pipe(n[2], dot, scope, "assign")
            elif k == "if":
                for cond, body in n[1]:
                    if _truth(self.pipe(cond, dot, scope, "if")):
                        out.append(self.run(body, dot, scope + [{}]))
                        break
                else:
                    out.append(self.run(n[2], dot, scope + [{}]))
            elif k == "with":
                v = self.pipe(n[1], dot, scope, "with")
                if _truth(v):
                    out.append(self.run(n[2], v, scope + [{}]))
                else:
                    out.append(self.run(n[3], dot, scope + [{}]))
            elif k == "range":
                vars_, v = n[1], self.pipe(n[2], dot, scope, "range")
                if v is None:
                    continue
                if isinstance(v, dict):
                    items = [(key, v[key]) for key in sorted(v)]
                elif isinstance(v, list):
                    items = list(enumerate(v))
                elif isinstance(v, int) and not isinstance(v, bool):
                    items = [(i, i) for i in range(v)]
                else:
                    raise RenderError("range can't iterate over %r" % (v,))
                for key, val in items:
                    s = {}
                    if len(vars_) == 1:
                        s[vars_[0]] = val
                    elif len(vars_) == 2:
                        s[vars_[0]], s[vars_[1]] = key, val
                    out.append(self.run(n[3], val, scope + [s]))
            else:
                raise RenderError("bad node %r" % (n,))
        return "".join(out)


def parse(src, name="template"):
    """Parse one template source: returns (nodes, defines)."""
    p = _Parser(_lex(src, name), name)
    nodes, stop, _, line = p.parse_list(())
    if stop is not None:
        raise RenderError("%s:%d: unexpected %s" % (name, line, stop))
    return nodes, p.defines


def render_string(src, data, defines=None, name="template"):
    """Render a template string with `data` as dot and $ (tests use this for single features)."""
    nodes, defs = parse(src, name)
    all_defs = dict(defines or {})
    all_defs.update(defs)
    return _Template(all_defs).run(nodes, data, [{"$": data}])


# ---------------------------------------------------------------- values

def deep_merge(base, over):
    """Helm's coalescing: maps merge recursively, everything else is replaced; null deletes."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _split_unescaped(s, sep):
    parts, cur, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur.append(s[i + 1])
            i += 2
            continue
        if s[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(s[i])
        i += 1
    parts.append("".join(cur))
    return parts


def _typed(v):
    """Helm strvals: true/false -> bool, null -> nil, integers -> int64, everything else a string."""
    if v == "true":
        return True
    if v == "false":
        return False
    if v == "null":
        return None
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", v):
        return int(v)
    return v


def apply_set(values, expr, as_string=False):
    """--set a.b=c,d=e (no list indices, no {a,b} lists: those fail)."""
    values = dict(values)
    for item in _split_unescaped(expr, ","):
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise RenderError("--set %r: expected key=value" % item)
        if "[" in key or val.startswith("{"):
            raise RenderError("--set %r: list syntax is not supported by this renderer" % item)
        path = key.split(".")
        over = cur = {}
        for p in path[:-1]:
            cur[p] = {}
            cur = cur[p]
        cur[path[-1]] = val if as_string else _typed(val)
        values = deep_merge(values, over) if cur[path[-1]] is not None else _delete(values, path)
    return values


def _delete(values, path):
    values = dict(values)
    cur = values
    for p in path[:-1]:
        if not isinstance(cur.get(p), dict):
            return values
        cur[p] = dict(cur[p])
        cur = cur[p]
    cur.pop(path[-1], None)
    return values


# ---------------------------------------------------------------- chart

def load_yaml_file(path):
    with open(path) as f:
        v = yaml.safe_load(f)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise RenderError("%s: values must be a map" % path)
    return v


def render_chart(chart_dir, release="holdfast", namespace="default", value_files=(), sets=(),
                 set_strings=(), include_crds=False, no_hooks=False):
    """[(source, text)] in Helm's order: CRDs (if asked), then templates by file name."""
    meta = load_yaml_file(os.path.join(chart_dir, "Chart.yaml"))
    values = load_yaml_file(os.path.join(chart_dir, "values.yaml"))
    for f in value_files:
        values = deep_merge(values, load_yaml_file(f))
    for s in sets:
        values = apply_set(values, s)
    for s in set_strings:
        values = apply_set(values, s, as_string=True)
    chart = {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion", ""),
             "Description": meta.get("description", ""), "Type": meta.get("type", "application"),
             "KubeVersion": meta.get("kubeVersion", "")}
    rel = {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": True,
           "IsUpgrade": False, "Revision": 1}
    tdir = os.path.join(chart_dir, "templates")
    files = sorted(f for f in os.listdir(tdir) if os.path.isfile(os.path.join(tdir, f)))
    parsed, defines = {}, {}
    for f in files:
        if f.endswith(".txt"):
            continue
        if not (f.endswith(".yaml") or f.endswith(".yml") or f.endswith(".tpl")):
            raise RenderError("templates/%s: unexpected file" % f)
        with open(os.path.join(tdir, f)) as fh:
            nodes, defs = parse(fh.read(), "templates/" + f)
        for k in defs:
            if k in defines:
                raise RenderError("templates/%s: %r defined twice" % (f, k))
        defines.update(defs)
        parsed[f] = nodes
    out = []
    if include_crds:
        cdir = os.path.join(chart_dir, "crds")
        for f in sorted(os.listdir(cdir)) if os.path.isdir(cdir) else []:
            with open(os.path.join(cdir, f)) as fh:
                out.append(("%s/crds/%s" % (meta["name"], f), fh.read()))
    t = _Template(defines)
    for f, nodes in parsed.items():
        if f.startswith("_"):
            continue
        data = {"Values": values, "Release": rel, "Chart": chart,
                "Template": {"Name": "%s/templates/%s" % (meta["name"], f),
                             "BasePath": "%s/templates" % meta["name"]}}
        text = t.run(nodes, data, [{"$": data}])
        for doc in re.split(r"(?m)^---[ \t]*$", text):
            if not doc.strip() or all(not ln.strip() or ln.lstrip().startswith("#")
                                      for ln in doc.splitlines()):
                continue
            try:
                obj = yaml.safe_load(doc)
            except yaml.YAMLError as e:
                raise RenderError("templates/%s renders invalid YAML: %s\n%s" % (f, e, doc))
            if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
                raise RenderError("templates/%s renders a document without kind/apiVersion:\n%s" % (f, doc))
            hook = ((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook")
            if no_hooks and hook:
                continue
            out.append(("%s/templates/%s" % (meta["name"], f), doc.strip("\n") + "\n"))
    return out


def to_stream(docs):
    return "".join("---\n# Source: %s\n%s" % (src, text.lstrip("\n")) for src, text in docs)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Render helm/holdfast without Helm (test-only).")
    ap.add_argument("chart")
    ap.add_argument("--release", "--name", default="holdfast")
    ap.add_argument("--namespace", "-n", default="default")
    ap.add_argument("-f", "--values", action="append", default=[])
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--set-string", action="append", default=[])
    ap.add_argument("--include-crds", action="store_true")
    ap.add_argument("--no-hooks", action="store_true")
    a = ap.parse_args(argv)
    try:
        docs = render_chart(a.chart, a.release, a.namespace, a.values, a.set, a.set_string,
                            a.include_crds, a.no_hooks)
    except RenderError as e:
        print("render.py: error: %s" % e, file=sys.stderr)
        return 1
    sys.stdout.write(to_stream(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
