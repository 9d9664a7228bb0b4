"""Speed and coverage of the SQL analysis over real PostgreSQL SQL.

    python bench/sql_analysis.py [--corpus DIR ...] [--statements N] [--show K]

The corpus is the SQL that PostgreSQL's own Debian package ships: the extension scripts
(/usr/share/postgresql/<version>/extension/*.sql) and the catalog scripts beside them
(system_views.sql, information_schema.sql, …). When no PostgreSQL is installed, the script
fetches the package with `apt-get download postgresql-<version>` into a temporary directory
and unpacks it with `dpkg-deb -x` (no root needed); if that is impossible too it says how
to get the corpus and exits 0, so it never fails a build.

Prints the number of statements, the share devagent reports as "not understood"
(`not understood: X.X%`, target < 5%), the most common not-understood kinds, and the time
to analyse one file of N statements (default 10,000; target < 5 s) as statements per second.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devagent.sql_analysis import analyze_sql  # noqa: E402

# psql meta-commands (\echo, \quit) are not SQL; the placeholders are filled by CREATE EXTENSION.
_META = re.compile(r"^\\.*$", re.MULTILINE)
_PLACEHOLDERS = {"@extschema@": "public", "@extowner@": "postgres", "MODULE_PATHNAME": "$libdir/module"}


def corpus_files(dirs: list[str]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        files += [Path(p) for p in sorted(glob.glob(os.path.join(d, "**", "*.sql"), recursive=True))]
    return files


def installed_dirs() -> list[str]:
    return sorted(glob.glob("/usr/share/postgresql/[0-9]*"))


def downloaded_dirs(workdir: str) -> list[str]:
    """apt-get download the newest postgresql-<version> package and unpack it (no root)."""
    if not (shutil.which("apt-get") and shutil.which("apt-cache") and shutil.which("dpkg-deb")):
        return []
    # the distribution's default server package, as the "postgresql" metapackage names it
    depends = subprocess.run(["apt-cache", "depends", "postgresql"], capture_output=True, text=True).stdout
    versions = re.findall(r"Depends: (postgresql-\d+)\b", depends)
    if not versions:
        return []
    got = subprocess.run(["apt-get", "download", versions[0]], cwd=workdir, capture_output=True, text=True)
    debs = glob.glob(os.path.join(workdir, "*.deb"))
    if got.returncode or not debs:
        return []
    root = os.path.join(workdir, "root")
    subprocess.run(["dpkg-deb", "-x", debs[0], root], check=True)
    return sorted(glob.glob(os.path.join(root, "usr/share/postgresql/[0-9]*")))


def load(path: Path) -> str:
    text = _META.sub("", path.read_text(encoding="utf-8", errors="replace"))
    for placeholder, value in _PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="*", help="directories of .sql files (default: PostgreSQL's own)")
    parser.add_argument("--statements", type=int, default=10_000, help="size of the timed file")
    parser.add_argument("--show", type=int, default=10, help="how many not-understood kinds to list")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        dirs = args.corpus or installed_dirs() or downloaded_dirs(workdir)
        files = corpus_files(dirs)
        if not files:
            print("no SQL corpus found: install PostgreSQL (apt-get install postgresql), or run "
                  "`apt-get download postgresql-15 && dpkg-deb -x postgresql-15_*.deb root` and pass "
                  "--corpus root/usr/share/postgresql")
            return 0
        texts = [load(p) for p in files]

    statements: list[str] = []
    verdicts: collections.Counter[str] = collections.Counter()
    opaque: collections.Counter[str] = collections.Counter()
    for text in texts:
        for stmt in analyze_sql(text, "postgres").statements:
            statements.append(stmt.text)
            verdicts[stmt.verdict or "none"] += 1
            if stmt.verdict == "not_understood":
                opaque[stmt.kind] += 1
    total = len(statements)
    print(f"corpus: {len(files)} files under {', '.join(dirs)}; {total} statements")
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in verdicts.most_common()))
    if opaque:
        print("most common not understood: " + ", ".join(f"{k} {v}" for k, v in opaque.most_common(args.show)))
    print(f"not understood: {100 * verdicts['not_understood'] / max(total, 1):.1f}%")

    # One file of N statements, cycling through the corpus, analysed as one migration.
    big = "\n;\n".join(statements[k % total] for k in range(args.statements)) + "\n;\n"
    started, cpu = time.perf_counter(), time.process_time()
    analysis = analyze_sql(big, "postgres")
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    # CPU time too: on a shared machine the wall clock also counts other processes' turns
    print(f"{len(analysis.statements)} statements ({len(big) / 1e6:.1f} MB) analysed in {took:.2f} s "
          f"({cpu:.2f} s CPU): {len(analysis.statements) / took:,.0f} statements/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
