#!/usr/bin/env python3
"""check-layers.py -- the include rules of docs/DESIGN.md, checked.

1. Every project include names its folder ("log/txlog.h", "archive/manifest.h").
2. A file includes headers of its own layer or of layers below it, never above:
   base < log < capture < store < export < archive < restore < replica < daemon < cli.
3. No cycle between modules (a module is NAME.c with NAME.h) nor between folders.

Prints each violation as FILE: ... and exits 1 if there is any; 0 and one
summary line otherwise.  Run by `make test` (and `make check-layers`).
"""
import os, re, sys

LAYERS = ["src/base", "src/log", "src/capture", "src/store", "src/export",
          "archive", "restore", "src/replica", "src/daemon", "src/cli"]
RANK = {d: i for i, d in enumerate(LAYERS)}
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(path):
    return os.path.dirname(path)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    files = []
    for top in ("src", "archive", "restore"):
        for dp, _, fn in os.walk(top):
            files += [os.path.join(dp, f) for f in fn if f.endswith((".c", ".h"))]
    bad = []
    mod_edges = {}
    dir_edges = {}
    for f in sorted(files):
        d = folder_of(f)
        if d not in RANK:
            bad.append(f"{f}: folder {d} is not a layer (add it to LAYERS in tests/check-layers.py and to docs/DESIGN.md)")
            continue
        src = open(f, encoding="utf-8", errors="replace").read()
        for inc in INC.findall(src):
            if "/" not in inc:
                bad.append(f"{f}: #include \"{inc}\" does not name its folder")
                continue
            target = inc if inc.startswith(("archive/", "restore/")) else "src/" + inc
            if not os.path.exists(target):
                bad.append(f"{f}: #include \"{inc}\": no such header {target}")
                continue
            td = folder_of(target)
            if td not in RANK:
                bad.append(f"{f}: #include \"{inc}\" is from {td}, which is not a layer")
                continue
            if RANK[td] > RANK[d]:
                bad.append(f"{f}: includes {inc}, from {td}, a layer above {d}")
            m = module_of(f)
            t = module_of(target)
            if m != t:
                mod_edges.setdefault(m, set()).add(t)
            if d != td:
                dir_edges.setdefault(d, set()).add(td)
    for name, edges in (("module", mod_edges), ("folder", dir_edges)):
        cyc = find_cycle(edges)
        if cyc:
            bad.append(f"{name} include cycle: " + " -> ".join(cyc))
    for b in bad:
        print(b)
    if bad:
        print(f"check-layers: {len(bad)} violation(s)")
        return 1
    print(f"check-layers: {len(files)} files, layers {' < '.join(l.replace('src/', '') for l in LAYERS)}: ok")
    return 0


def module_of(path):
    """NAME.c, NAME.h and NAME_impl.h (the module's private header) are one module."""
    m = os.path.splitext(path)[0]
    return m[:-len("_impl")] if m.endswith("_impl") else m


def find_cycle(edges):
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for t in sorted(edges.get(n, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                c = visit(t)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


if __name__ == "__main__":
    sys.exit(main())
