"""Widget size: raw and gzipped bytes of what a host page's visitor downloads.

Measures the loader (``widget/loader.js``, served as ``/widget.js``), the frame's script
and stylesheet, and their total against the budget: well under 20 KB gzipped together.
Gzip at level 9 is what a server or CDN typically sends; the frame's HTML and its
strings are a few hundred bytes more and not counted.

    python benchmarks/widget_size.py [--json results/widget_size.json]
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from _common import ROOT, console, show_table, write_json

WIDGET_DIR = ROOT / "widget"
FILES = ("loader.js", "frame.js", "frame.css")
GZIP_TARGET_BYTES = 20 * 1024


def measure(directory: Path = WIDGET_DIR) -> dict[str, dict[str, int]]:
    """Raw and gzipped (level 9) bytes of each widget file."""
    sizes: dict[str, dict[str, int]] = {}
    for name in FILES:
        data = (directory / name).read_bytes()
        sizes[name] = {"raw": len(data), "gzip": len(gzip.compress(data, compresslevel=9))}
    return sizes


def main() -> None:
    """Print the table (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    args = parser.parse_args()

    sizes = measure()
    raw = sum(s["raw"] for s in sizes.values())
    gzipped = sum(s["gzip"] for s in sizes.values())
    rows: list[list[object]] = [
        [name, f"{s['raw']:,}", f"{s['gzip']:,}"] for name, s in sizes.items()
    ]
    rows.append(["total", f"{raw:,}", f"{gzipped:,}"])
    show_table("Widget size (bytes)", ["file", "raw", "gzip -9"], rows)
    ok = gzipped < GZIP_TARGET_BYTES
    console.print(
        f"target: gzipped total < {GZIP_TARGET_BYTES:,} bytes (20 KB): {gzipped:,} bytes, "
        f"{100 * gzipped / GZIP_TARGET_BYTES:.0f}% of the budget, "
        + ("[green]met[/green]" if ok else "[red]MISSED[/red]")
    )
    write_json(
        args.json,
        {
            "benchmark": "widget_size",
            "files": sizes,
            "total": {"raw": raw, "gzip": gzipped},
            "target_gzip_bytes": GZIP_TARGET_BYTES,
            "met": ok,
        },
    )


if __name__ == "__main__":
    main()
