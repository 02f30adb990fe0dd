#!/usr/bin/env bash
# Prints the module import picture of src/: which top-level module uses which (through `use
# crate::…` or a `crate::…` path in code; comments are ignored), one edge "from -> to" per line,
# then every circle (a group of modules that reach each other). `scripts/module-imports.sh api`
# draws the picture inside src/api/ instead. Run from the repository root.
set -euo pipefail
exec python3 - "${1:-}" <<'PY'
import os, re, sys

scope = sys.argv[1]
root = os.path.join("src", scope) if scope else "src"
prefix = "crate::" + (scope.replace("/", "::") + "::" if scope else "")

def module_of(path):
    first = os.path.relpath(path, root).split(os.sep)[0]
    name = first[:-3] if first.endswith(".rs") else first
    return name[:-6] if name.endswith("_tests") else name

def top_level_names(group):
    """`a, b::{c, d}, e::f` -> {a, b, e}: the first segment of each item of a `{…}` group."""
    names, depth, item = set(), 0, ""
    for ch in group + ",":
        if ch == "{": depth += 1
        elif ch == "}": depth -= 1
        if ch == "," and depth == 0:
            head = item.strip().split("::")[0].strip()
            if re.fullmatch(r"[a-z_][a-z0-9_]*", head): names.add(head)
            item = ""
        else:
            item += ch
    return names

edges = set()
for directory, _, files in os.walk(root):
    if directory.startswith(os.path.join("src", "bin")): continue
    for file in files:
        if not file.endswith(".rs"): continue
        path = os.path.join(directory, file)
        source = re.sub(r"//[^\n]*", "", open(path).read())
        here = module_of(path)
        if here in ("lib", "main", "mod"): continue
        # In a file directly under the scope, `super::` names the scope's module too.
        prefixes = [re.escape(prefix)]
        if scope and os.path.dirname(path) == root:
            prefixes.append(r"super::")
        used = set()
        for p in prefixes:
            used |= set(re.findall(p + r"([a-z_][a-z0-9_]*)", source))
            for start in re.finditer(p + r"\{", source):
                depth, i = 1, start.end()
                while depth and i < len(source):
                    depth += {"{": 1, "}": -1}.get(source[i], 0)
                    i += 1
                used |= top_level_names(source[start.end():i - 1])
        modules = {module_of(os.path.join(root, n + ".rs")) for n in used}
        for there in modules:
            exists = os.path.exists(os.path.join(root, there + ".rs")) or os.path.isdir(os.path.join(root, there))
            if there != here and exists:
                edges.add((here, there))

for a, b in sorted(edges):
    print(f"{a} -> {b}")

graph = {}
for a, b in edges: graph.setdefault(a, set()).add(b)
index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in sorted(graph.get(v, ())):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        group = []
        while True:
            w = stack.pop(); on.discard(w); group.append(w)
            if w == v: break
        if len(group) > 1: circles.append(sorted(group))
for v in sorted(graph):
    if v not in index: visit(v)
print(f"# {len(edges)} edges; circles: {len(circles)}")
for group in circles:
    pairs = [f"{a}<->{b}" for a in group for b in group if a < b and (a, b) in edges and (b, a) in edges]
    print("# circle through:", " ".join(group), ("(pairs: " + ", ".join(pairs) + ")") if pairs else "")
PY
