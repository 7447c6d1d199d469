#!/usr/bin/env python3
"""Generate THIRD-PARTY-NOTICES: the licences of what the peergate binary contains.

Run it after every change to Cargo.lock or to the dependencies in Cargo.toml:

    images/third-party-notices.py            # rewrites THIRD-PARTY-NOTICES
    images/third-party-notices.py --check    # exit 1 if the file is stale (CI)

Which crates: `cargo tree -e normal` for the image's target, i.e. every crate
in peergate's normal dependency graph with features resolved as for the
binary (no dev-dependencies, no build-dependencies). Proc-macros and what
they use at compile time are included: the list over-approximates what is
linked, never under-approximates it.

Which texts: every file in the crate's published root whose name starts with
LICENSE, LICENCE, COPYING, COPYRIGHT, NOTICE or UNLICENSE (any case), plus
the manifest's `license-file`, read from the cargo registry. Identical texts
are printed once, after the list of crates that carry them. A crate with no
such file is an error: its terms would need a text nobody generated.

The statically linked C library, GCC runtime and Rust standard library are
described in the part written by `static_part()`; their own licence texts
depend on the build machine's toolchain, so images/build.sh copies them into
the image next to this file.

Output is deterministic (sorted, no dates), so the committed file can be
compared with a fresh run.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = REPO / "THIRD-PARTY-NOTICES"
DEFAULT_TARGET = "x86_64-unknown-linux-gnu"
PREFIXES = ("LICENSE", "LICENCE", "COPYING", "COPYRIGHT", "NOTICE", "UNLICENSE")
RULE = "=" * 79
THIN = "-" * 79


def cargo(*args):
    return subprocess.run(
        ["cargo", *args], cwd=REPO, check=True, stdout=subprocess.PIPE, text=True
    ).stdout


def linked_crates(target):
    """(name, version) of every crate in the normal dependency graph."""
    out = cargo(
        "tree", "--locked", "-e", "normal", "--target", target, "-p", "peergate",
        "--prefix", "none", "--format", "{p}",
    )
    crates = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].startswith("v"):
            continue
        crates.add((parts[0], parts[1][1:]))
    crates.discard(("peergate", package_version()))
    return crates


def package_version():
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise SystemExit("no version in Cargo.toml")


def metadata(target):
    meta = json.loads(
        cargo("metadata", "--locked", "--format-version", "1", "--filter-platform", target)
    )
    return {(p["name"], p["version"]): p for p in meta["packages"]}


def normalise(text):
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def licence_files(package):
    root = pathlib.Path(package["manifest_path"]).parent
    files = {
        f for f in root.iterdir()
        if f.is_file() and f.name.upper().startswith(PREFIXES)
    }
    if package.get("license_file"):
        files.add((root / package["license_file"]).resolve())
    return sorted(files, key=lambda f: f.name)


def static_part(target):
    """What is linked in besides the crates, and what that obliges."""
    return textwrap.dedent(f"""\
        Part 2. Linked statically besides the crates
        {THIN}

        The image's binary is built for {target} with
        -C target-feature=+crt-static (.cargo/static.toml), so the following
        are copied into it at link time.

        GNU C Library (glibc): GNU Lesser General Public License, version 2.1
        or (at your option) any later version, with some files under other
        free licences listed in glibc's copyright file. Its startup files
        (crt1.o and friends) carry an exception that allows linking them into
        any program without restriction; the rest of libc.a does not. For a
        program statically linked with glibc, section 6 of the LGPL 2.1
        applies to anyone who distributes the binary or the image:

          - give prominent notice that the program uses glibc and that glibc
            is covered by the LGPL, and supply a copy of the LGPL 2.1 (both
            are in /usr/share/doc/peergate/ in the image);
          - make the complete corresponding source code of the glibc version
            that was linked available, either with the binary, by a written
            offer valid for at least three years, or by offering access to
            copy it from a designated place alongside the binary;
          - make it possible to relink the program with a modified glibc:
            supply the program as object files, or as its complete source code
            with what is needed to build it. peergate's source is public under
            Apache-2.0 and its build is reproducible from the revision in the
            image's org.opencontainers.image.revision label, Cargo.lock and
            images/static-build.sh, which meets this;
          - license the program on terms that permit modification for the
            recipient's own use and reverse engineering to debug such
            modifications (Apache-2.0 does).

        The exact glibc version, and its copyright file, are recorded by
        images/build.sh in /usr/share/doc/peergate/BUILD-TOOLCHAIN and
        glibc-copyright in the image. docs/licensing.md explains this further.

        GCC runtime (libgcc, libgcc_eh, crtbegin/crtend): GNU General Public
        License 3 with the GCC Runtime Library Exception 3.1, which permits
        distributing the linked program under any terms. No obligation
        follows from it.

        Rust standard library (std, core, alloc and their dependencies):
        MIT OR Apache-2.0, with a few parts under other permissive licences.
        The toolchain's own notices (COPYRIGHT-library.html) are copied into
        the image as rust-std-COPYRIGHT-library.html.gz.
        """)


def render(target):
    crates = linked_crates(target)
    packages = metadata(target)
    missing = sorted(c for c in crates if c not in packages)
    if missing:
        raise SystemExit(f"cargo metadata does not know {missing}")

    texts = {}  # whitespace-insensitive key -> (text, ["crate version: FILE", ...])
    rows = []
    for name, version in sorted(crates):
        pkg = packages[(name, version)]
        files = licence_files(pkg)
        if not files:
            raise SystemExit(
                f"{name} {version} ships no licence file; its terms "
                f"({pkg.get('license')}) need a text before it can be shipped"
            )
        for f in files:
            text = normalise(f.read_text(encoding="utf-8", errors="replace"))
            # Texts that differ only in line breaks and spacing are the same
            # text: print the first one seen.
            key = " ".join(text.split())
            texts.setdefault(key, (text, []))[1].append(f"{name} {version}: {f.name}")
        rows.append((name, version, pkg.get("license") or "see files", pkg.get("repository") or ""))

    name_w = max(len(r[0]) for r in rows)
    ver_w = max(len(r[1]) for r in rows)
    out = []
    out.append(textwrap.dedent(f"""\
        Third-party notices for peergate {package_version()}
        {RULE}

        peergate is licensed under the Apache License 2.0 (LICENSE). The
        binary also contains the Rust crates listed in part 1, whose licence
        texts follow in part 3, and the C library, GCC runtime and Rust
        standard library described in part 2.

        Generated by images/third-party-notices.py from Cargo.lock (target
        {target}); do not edit by hand. Part 1 lists every crate in
        peergate's normal dependency graph, including proc-macros and what
        they use at compile time, so it covers at least what is linked.

        Part 1. Rust crates ({len(rows)})
        {THIN}
        """))
    for name, version, licence, repo in rows:
        out.append(f"{name:<{name_w}}  {version:<{ver_w}}  {licence}" + (f"  <{repo}>" if repo else ""))
    out.append("")
    out.append(static_part(target))
    out.append(f"Part 3. Licence texts of the crates ({len(texts)} distinct)\n{THIN}\n")
    for text, holders in sorted(texts.values(), key=lambda v: v[1][0]):
        out.append(RULE)
        out.extend(holders)
        out.append(THIN)
        out.append(text)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=DEFAULT_TARGET, help=f"target triple (default {DEFAULT_TARGET})")
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    ap.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = ap.parse_args()
    text = render(args.target)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output.relative_to(REPO)} is stale: run images/third-party-notices.py and commit it",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output.relative_to(REPO)} is up to date ({text.count(chr(10))} lines)")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output.relative_to(REPO)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
