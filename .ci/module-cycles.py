#!/usr/bin/env python3
"""Fails when the modules under src/ import each other in a circle.

    python3 .ci/module-cycles.py              # check src/; exit 1 and print each cycle
    python3 .ci/module-cycles.py --edges      # also print every edge with where it is
    python3 .ci/module-cycles.py --self-test  # check this script on small made-up trees

The graph has one node per source file (src/a/b.rs and src/a/b/mod.rs are
module a/b; src/lib.rs is the crate root, shown as `crate`; src/main.rs is the
binary's own crate, shown as `main`, where `peergate::x` means the library's
module x). File A has an edge to file B when A names B, or something inside B,
by a path:

* `use` trees: `use crate::x::{y, z::W}`, `use super::T`, `use self::c::T`, and
  `use c::T` where c is a child module of A (re-exports, `pub use`, count too);
* inline paths: `crate::x::f()`, `super::T`, `c::f()` for a child module c.

A path goes to the longest prefix of it that is a module file, so
`super::proto::put_addr` from rendezvous/auth is an edge to rendezvous/proto,
not to rendezvous. Declaring a child (`mod c;`) is containment, not an edge;
a parent that uses `c::T` has an edge to c, and a child that uses `super::T`
has one to its parent (together, a cycle).

Tests may import anything, so they are left out: `#[cfg(test)]` items (the
`mod tests { ... }` blocks, and files declared only under `#[cfg(test)]`, such
as src/**/tests.rs and the `#[path = "../tests/support/ci.rs"]` include) and
`#[path]` files outside src/. Only files reachable from src/lib.rs or
src/main.rs through `mod` declarations are read. Comments and string literals
are ignored. Inline `mod x { ... }` blocks outside tests count as part of
their file. Python 3 standard library only.
"""

import os
import re
import sys
from collections import deque

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
LIB = "lib"
MAIN = "main"
EXCLUDED = object()


# ---------------------------------------------------------------------------
# lexing: blank out comments and literals, keeping every newline


def blank(text):
    """`text` with comments and the insides of string and char literals
    replaced by spaces; line numbers and offsets stay as they were."""
    out = []
    i, n = 0, len(text)

    def spaces(s):
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        prev = text[i - 1] if i else ""
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(spaces(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(spaces(text[i:j]))
            i = j
        elif c in "rb" and not (prev.isalnum() or prev == "_") and (
            m := re.match(r'(?:br|r)(#*)"', text[i:])
        ):
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append(spaces(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(spaces(text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j + 1
            elif i + 2 < n and text[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            out.append(spaces(text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching(text, i, open_, close):
    """Index just past the bracket that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def item_end(text, i):
    """End of the item starting at `i` (after its attributes): its `;` or
    the brace block that closes it."""
    if re.match(r"\s*(?:pub(?:\s*\([^)]*\))?\s+)?use\b", text[i:]):
        j = text.find(";", i)
        return len(text) if j < 0 else j + 1
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and c == ";":
            return j + 1
        elif depth == 0 and c == "{":
            return matching(text, j, "{", "}")
    return len(text)


ATTR = re.compile(r"#\s*(!?)\s*\[")


def is_test_cfg(attr):
    body = re.sub(r"\s+", "", attr)
    if body == "cfg(test)":
        return True
    m = re.fullmatch(r"cfg\(all\((.*)\)\)", body)
    return bool(m) and "test" in m.group(1).split(",")


def strip_tests(code):
    """(code without #[cfg(test)] items, names of modules declared in them,
    whether the whole file is #![cfg(test)])."""
    out = []
    test_mods = []
    i = 0
    while True:
        m = ATTR.search(code, i)
        if not m:
            out.append(code[i:])
            break
        end = matching(code, m.end() - 1, "[", "]")
        attr = code[m.end() : end - 1]
        if not is_test_cfg(attr):
            out.append(code[i:end])
            i = end
            continue
        if m.group(1):  # #![cfg(test)]: the whole file
            return "", [], True
        # Skip further attributes, then the item.
        j = end
        while a := re.match(r"\s*#\s*\[", code[j:]):
            j = matching(code, j + a.end() - 1, "[", "]")
        k = item_end(code, j)
        if mm := re.match(r"\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(" + IDENT + ")", code[j:k]):
            test_mods.append(mm.group(1))
        out.append(code[i : m.start()])
        out.append("".join(ch if ch == "\n" else " " for ch in code[m.start() : k]))
        i = k
    return "".join(out), test_mods, False


# ---------------------------------------------------------------------------
# module declarations and paths

MOD_DECL = re.compile(
    r"((?:#\s*\[[^\]]*\]\s*)*)(?<![\w:])(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*([;{])"
)
USE = re.compile(r"(?<![\w:])(?:pub(?:\s*\([^)]*\))?\s+)?use\b")
VIS_IN = re.compile(r"pub\s*\(\s*in\s+[^)]*\)")
INLINE = re.compile(r"(?<![\w$:])(\$?" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)")


def use_paths(tree):
    """Expands a use tree (`a::{b, c::{self, D as E}, *}`) into paths, each
    a list of segments (`self` in a group is the group's prefix; `*` and
    aliases are dropped)."""
    tokens = re.findall(r"::|[{},*]|" + IDENT, tree)
    pos = 0

    def parse(prefix):
        nonlocal pos
        paths = []
        path = list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            if t == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    paths.extend(parse(path))
                pos += 1
                return paths
            if t in (",", "}"):
                break
            pos += 1
            if t == "::":
                if not path:
                    path.append("::")  # a leading `::`: an extern crate
                continue
            if t == "*":
                continue
            if t == "as":
                pos += 1  # the alias
                continue
            if t == "self" and path and path != ["self"]:
                continue
            path.append(t)
        paths.append(path)
        return paths

    return parse([])


class Module:
    def __init__(self, crate, path, file):
        self.crate = crate
        self.path = path  # tuple of segments below the crate root
        self.file = file  # relative to the tree root, e.g. "src/a/b.rs"
        self.children = set()
        self.code = ""


def module_name(crate, path):
    if not path:
        return "crate" if crate == LIB else MAIN
    return "/".join(path)


def child_files(parent_file, name):
    d, base = os.path.split(parent_file)
    if base not in ("mod.rs", "lib.rs", "main.rs"):
        d = os.path.join(d, base[:-3])
    return [os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")]


def load(files):
    """files: {relative path: text}. Returns (modules by (crate, path),
    modules in the order they were found)."""
    table = {}
    found = []
    roots = [(LIB, "src/lib.rs"), (MAIN, "src/main.rs")]
    queue = deque()
    for crate, f in roots:
        if f in files:
            queue.append(Module(crate, (), f))
    while queue:
        mod = queue.popleft()
        code, test_mods, test_only = strip_tests(blank(files[mod.file]))
        if test_only:
            table[(mod.crate, mod.path)] = EXCLUDED
            continue
        table[(mod.crate, mod.path)] = mod
        found.append(mod)
        mod.code = code
        for name in test_mods:
            table[(mod.crate, mod.path + (name,))] = EXCLUDED
        for m in MOD_DECL.finditer(code):
            attrs, name, term = m.group(1), m.group(2), m.group(3)
            key = (mod.crate, mod.path + (name,))
            mod.children.add(name)
            if term == "{":
                table[key] = mod  # inline: part of this file
                continue
            p = re.search(r"\bpath\s*=\s*\"", files[mod.file][m.start() : m.start() + len(attrs)])
            if p:
                raw = files[mod.file][m.start() + p.end() :].split('"', 1)[0]
                target = os.path.normpath(os.path.join(os.path.dirname(mod.file), raw))
                candidates = [target] if target.startswith("src" + os.sep) else []
            else:
                candidates = child_files(mod.file, name)
            target = next((c for c in candidates if c in files), None)
            if target is None:
                table[key] = EXCLUDED
            else:
                queue.append(Module(mod.crate, key[1], target))
    return table, found


def resolve(table, mod, segments):
    """The module a path names, or None (outside the crate, or a test)."""
    if not segments:
        return None
    head, rest = segments[0], segments[1:]
    crate = mod.crate
    if head in ("crate", "$crate"):
        base = ()
    elif head == "super":
        base = mod.path
        while True:
            if not base:
                return None
            base = base[:-1]
            if rest and rest[0] == "super":
                rest = rest[1:]
            else:
                break
    elif head == "self":
        base = mod.path
    elif head == "peergate" and crate == MAIN:
        crate, base = LIB, ()
    elif head in mod.children:
        base, rest = mod.path + (head,), rest
    else:
        return None  # an extern crate, a type, a local alias
    full = base + tuple(rest)
    for k in range(len(full), -1, -1):
        target = table.get((crate, full[:k]))
        if target is EXCLUDED:
            return None
        if target is not None:
            return target
    return None


def line_of(code, offset):
    return code.count("\n", 0, offset) + 1


def graph(files):
    """Edges {(from, to): (file, line, path)} among module names."""
    table, found = load(files)
    edges = {}

    def add(mod, target, offset, what):
        if target is None or target is mod or target.file == mod.file:
            return
        key = (module_name(mod.crate, mod.path), module_name(target.crate, target.path))
        edges.setdefault(key, (mod.file, line_of(mod.code, offset), what))

    for mod in found:
        code = VIS_IN.sub(lambda m: " " * len(m.group(0)), mod.code)
        rest = list(code)
        for m in USE.finditer(code):
            end = code.find(";", m.end())
            end = len(code) if end < 0 else end
            tree = code[m.end() : end]
            for p in use_paths(tree):
                add(mod, resolve(table, mod, p), m.start(), "use " + "::".join(p))
            rest[m.start() : end] = [ch if ch == "\n" else " " for ch in code[m.start() : end]]
        rest = "".join(rest)
        for m in INLINE.finditer(rest):
            segs = [m.group(1)] + re.findall(IDENT, m.group(2))
            add(mod, resolve(table, mod, segs), m.start(), "::".join(segs))
    nodes = sorted({module_name(m.crate, m.path) for m in found})
    return nodes, edges


# ---------------------------------------------------------------------------
# cycles


def components(nodes, edges):
    """Strongly connected components with more than one node."""
    succ = {n: sorted(b for (a, b) in edges if a == n) for n in nodes}
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(1000, 4 * len(nodes) + 100))
    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(out)


def cycles(nodes, edges):
    """For every edge inside a component, the shortest cycle through it;
    each cycle once, starting at its smallest node."""
    found = set()
    for comp in components(nodes, edges):
        members = set(comp)
        inside = [(a, b) for (a, b) in edges if a in members and b in members]
        succ = {n: sorted(b for (a, b) in inside if a == n) for n in comp}
        for a, b in inside:
            # Shortest path b -> a, then the edge a -> b closes it.
            prev = {b: None}
            queue = deque([b])
            while queue and a not in prev:
                v = queue.popleft()
                for w in succ[v]:
                    if w not in prev:
                        prev[w] = v
                        queue.append(w)
            path, v = [], a
            while v is not None:
                path.append(v)
                v = prev[v]
            cyc = path[::-1]  # b ... a
            k = cyc.index(min(cyc))
            found.add(tuple(cyc[k:] + cyc[:k]))
    return sorted(found, key=lambda c: (len(c), c))


def report(nodes, edges, out):
    cyc = cycles(nodes, edges)
    if not cyc:
        print(f"module graph: {len(nodes)} modules, {len(edges)} edges, no cycle", file=out)
        return 0
    print(f"module graph: {len(cyc)} cycle(s) among {len(nodes)} modules:", file=out)
    shown = []
    for c in cyc:
        print("  " + " -> ".join(c + (c[0],)), file=out)
        for e in zip(c, c[1:] + (c[0],)):
            if e not in shown:
                shown.append(e)
    print("because:", file=out)
    for a, b in sorted(shown):
        f, line, what = edges[(a, b)]
        print(f"  {a} -> {b}: {f}:{line}: {what}", file=out)
    return 1


def read_tree(root):
    files = {}
    for d, _, names in os.walk(os.path.join(root, "src")):
        for name in names:
            if name.endswith(".rs"):
                full = os.path.join(d, name)
                with open(full, encoding="utf-8") as fh:
                    files[os.path.relpath(full, root)] = fh.read()
    return files


# ---------------------------------------------------------------------------
# self-test


def self_test():
    checks = 0

    def edges_of(files):
        return set(graph(files)[1])

    def cycles_of(files):
        return cycles(*graph(files))

    def check(cond, what):
        nonlocal checks
        if not cond:
            raise AssertionError(what)
        checks += 1

    # Plain imports, no cycle; `std::net` is not the crate's `net`.
    t = {
        "src/lib.rs": "mod a;\nmod b;\nmod net;\n",
        "src/a.rs": "use crate::b::Thing;\nuse std::net::TcpStream;\nfn f() { crate::b::g(); }\n",
        "src/b.rs": "pub struct Thing;\n",
        "src/net.rs": "",
    }
    check(edges_of(t) == {("a", "b")}, f"plain: {edges_of(t)}")
    check(cycles_of(t) == [], "plain: no cycle")

    # A parent using its child, the child using the parent: a cycle. The
    # declaration alone is not an edge.
    t = {
        "src/lib.rs": "mod p;\n",
        "src/p/mod.rs": "mod c;\npub struct T;\n",
        "src/p/c.rs": "use super::T;\n",
    }
    check(edges_of(t) == {("p/c", "p")}, f"containment: {edges_of(t)}")
    t["src/p/mod.rs"] = "mod c;\npub struct T;\nfn f() { let _ = c::make(); }\n"
    check(cycles_of(t) == [("p", "p/c")], f"parent/child: {cycles_of(t)}")
    t["src/p/mod.rs"] = "mod c;\npub use self::c::Made;\npub struct T;\n"
    check(cycles_of(t) == [("p", "p/c")], "a re-export is an edge")

    # The longest prefix that is a file: super::b::x is b, not the parent.
    t = {
        "src/lib.rs": "pub mod r;\n",
        "src/r/mod.rs": "pub mod a;\npub mod b;\n",
        "src/r/a.rs": "use super::b::{self, put};\nfn f() { super::b::put(); }\n",
        "src/r/b.rs": "pub fn put() {}\n",
    }
    check(edges_of(t) == {("r/a", "r/b")}, f"longest prefix: {edges_of(t)}")

    # Tests, comments and strings import anything.
    t = {
        "src/lib.rs": "mod a;\nmod b;\n#[cfg(test)]\n#[path = \"../tests/support/ci.rs\"]\nmod ci;\n",
        "src/a.rs": "use crate::b::X;\n",
        "src/b.rs": (
            "// use crate::a::Y;\n/* crate::a::f() /* nested */ crate::a::g() */\n"
            'const S: &str = "crate::a::h()";\nconst R: &str = r#"use crate::a::Z;"#;\n'
            "fn l<'a>(x: &'a str) -> char { let _ = x; 'c' }\n"
            "#[cfg(test)]\nmod tests {\n    use crate::a::Y;\n    fn t() { crate::a::f(); }\n}\n"
            "#[cfg(test)]\nmod more;\n"
            "#[cfg(test)]\nuse crate::a::{P, Q};\n"
            "fn uses_ci() { crate::ci::under_ci(); }\n"
        ),
        "src/b/more.rs": "use crate::a::W;\n",
        "tests/support/ci.rs": "use crate::a::V;\n",
    }
    check(edges_of(t) == {("a", "b")}, f"tests and comments: {edges_of(t)}")
    check(cycles_of(t) == [], "tests and comments: no cycle")
    t["src/b.rs"] += "#[cfg(all(test, unix))]\nfn t2() { crate::a::f(); }\nfn real() { crate::a::f(); }\n"
    check(cycles_of(t) == [("a", "b")], f"code after a test item still counts: {cycles_of(t)}")

    # #[path]: a file under src/ is read as that module; one outside is not.
    t = {
        "src/lib.rs": 'mod a;\n#[path = "impl_b.rs"]\nmod b;\n#[path = "../tests/support/x.rs"]\nmod x;\n',
        "src/a.rs": "use crate::b::B;\nuse crate::x::X;\n",
        "src/impl_b.rs": "use crate::a::A;\n",
        "tests/support/x.rs": "use crate::a::A;\n",
    }
    check(cycles_of(t) == [("a", "b")], f"#[path]: {cycles_of(t)}")
    check(edges_of(t) == {("a", "b"), ("b", "a")}, f"#[path] edges: {edges_of(t)}")

    # A whole file under #![cfg(test)].
    t = {
        "src/lib.rs": "mod a;\nmod b;\n",
        "src/a.rs": "use crate::b::X;\n",
        "src/b.rs": "#![cfg(test)]\nuse crate::a::Y;\n",
    }
    check(cycles_of(t) == [], "#![cfg(test)] file")

    # Three modules in a circle, through a use tree with groups and aliases;
    # the crate root and the binary.
    t = {
        "src/lib.rs": "pub mod cli;\nmod config;\nmod probe;\n",
        "src/main.rs": "use peergate::cli::{self, Args as A};\nfn main() { peergate::config::x(); }\n",
        "src/cli.rs": "use crate::{probe::{Probe, self as p}, duration as d};\n",
        "src/probe/mod.rs": "mod icmp;\npub fn f() -> crate::config::Config { todo!() }\n",
        "src/probe/icmp.rs": "",
        "src/config/mod.rs": "use crate::cli::Args;\n",
    }
    e = edges_of(t)
    check(("main", "cli") in e and ("main", "config") in e, f"main.rs: {e}")
    check(("cli", "probe") in e and ("probe", "config") in e, f"tree and inline: {e}")
    check(cycles_of(t) == [("cli", "probe", "config")], f"three: {cycles_of(t)}")

    # A child module reached by a bare path from a non-mod.rs parent file;
    # super::super from a grandchild.
    t = {
        "src/lib.rs": "mod a;\n",
        "src/a.rs": "mod b;\npub use b::T;\n",
        "src/a/b.rs": "mod c;\npub struct T;\n",
        "src/a/b/c.rs": "use super::super::U;\n",
    }
    check(edges_of(t) == {("a", "a/b"), ("a/b/c", "a")}, f"nested: {edges_of(t)}")
    check(cycles_of(t) == [], "nested: no cycle")

    # Two cycles sharing a node are both reported.
    t = {
        "src/lib.rs": "mod a;\nmod b;\nmod c;\n",
        "src/a.rs": "use crate::b::X;\nuse crate::c::Y;\n",
        "src/b.rs": "use crate::a::Z;\n",
        "src/c.rs": "use crate::a::Z;\n",
    }
    check(cycles_of(t) == [("a", "b"), ("a", "c")], f"two cycles: {cycles_of(t)}")
    out = []

    class Sink:
        def write(self, s):
            out.append(s)

    check(report(*graph(t), Sink()) == 1, "report exit code")
    text = "".join(out)
    check("a -> b -> a" in text and "src/b.rs:1: use crate::a::Z" in text, text)

    print(f"module-cycles self-test: {checks} checks passed")
    return 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    unknown = [a for a in argv if a not in ("--edges",)]
    if unknown:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    nodes, edges = graph(read_tree(root))
    if "--edges" in argv:
        for (a, b), (f, line, what) in sorted(edges.items()):
            print(f"{a} -> {b}: {f}:{line}: {what}")
    return report(nodes, edges, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
