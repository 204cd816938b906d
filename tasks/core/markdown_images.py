"""Markdown whose PNG plots travel inside it, for viewers that cannot open the run directory.

The Prefect UI is an ``http://`` page: it never loads a relative image link or a ``file://``
URL, so a plot linked that way shows as a broken image. :func:`embed_images` rewrites every
image link of a markdown text that names a PNG file inside ``base_dir`` (``![alt](name.png)``,
as the stages' ``report.md`` files write them) into a ``data:image/png;base64,...`` URI, and puts
the plot files' absolute paths in the text under that line (for people on the machine). PNG files
given in ``extra`` that the text does not link are appended, each with its path, in a
``## Plots`` section.

Size: the Prefect API and its database put no limit on an artifact's size (checked with Prefect
3.9: a 5.5 MB markdown artifact carrying 4 MB of PNGs is stored and renders in both the v1 and
the v2 UI, in headless Chromium), but every byte goes to each browser that opens it, so a PNG
larger than ``max_image_bytes`` (default 1 MiB; the pipeline's plots are tens of KB), or one that
would take the text's embedded total over ``max_total_bytes`` (default 4 MiB), is not embedded:
a note in its place names its file path, its size and the limit it is over.

Left as they are: links to URLs (``http:``, ``data:``, ...), to files outside ``base_dir``, to
missing files, to files that are not PNGs (by signature), and anything inside a fenced code block.
Pure: reads the PNG files, imports neither Prefect nor matplotlib.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from pathlib import Path

MAX_IMAGE_BYTES = 1 << 20
MAX_TOTAL_BYTES = 4 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_LINK = re.compile(r"!\[(?P<alt>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
PLOTS_HEADING = "## Plots"


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of ``png``; raises ``ValueError`` if it is not a PNG."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG (no PNG signature): only PNG plots are embedded")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def local_png(base_dir: Path, target: str) -> Path | None:
    """The PNG file inside ``base_dir`` that a link target names, or None (a URL, a file outside
    ``base_dir``, a missing file, not a PNG)."""
    if URL_SCHEME.match(target) or not target.lower().endswith(".png"):
        return None
    base = Path(base_dir).resolve()
    path = (base / target).resolve()
    return path if path.is_relative_to(base) and is_png(path) else None


def is_png(path: Path) -> bool:
    """Whether ``path`` is a file that starts with the PNG signature."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE


class _Budget:
    """Bytes embedded so far in one text, against the per-image and total limits."""

    def __init__(self, max_image_bytes: int, max_total_bytes: int) -> None:
        self.max_image, self.max_total, self.used = max_image_bytes, max_total_bytes, 0

    def image(self, alt: str, path: Path) -> str:
        """``![alt](data:...)``, or a note naming ``path`` when it is over a limit."""
        size = path.stat().st_size
        if size > self.max_image:
            return _skipped(path, size, f"over the {_human(self.max_image)} limit for one image")
        if self.used + size > self.max_total:
            return _skipped(path, size, f"would take this text over {_human(self.max_total)} of images")
        self.used += size
        return f"![{alt}]({png_data_uri(path.read_bytes())})"


def _human(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    return f"{size / 1024:.0f} KiB" if size >= 1024 else f"{size} bytes"


def _skipped(path: Path, size: int, why: str) -> str:
    return f"*(plot `{path.name}` not embedded: {_human(size)}, {why}; open `{path}`)*"


def embed_images(
    markdown: str,
    base_dir: Path | str,
    extra: Iterable[Path | str] = (),
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> str:
    """``markdown`` with its PNG links under ``base_dir`` embedded as data URIs, then the PNGs of
    ``extra`` it does not link (see the module docstring)."""
    budget = _Budget(max_image_bytes, max_total_bytes)
    linked: list[Path] = []
    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced:
            out.append(line)
            continue
        paths: list[Path] = []

        def swap(match: re.Match[str], paths: list[Path] = paths) -> str:
            path = local_png(Path(base_dir), match["target"])
            if path is None:
                return match[0]
            paths.append(path)
            return budget.image(match["alt"], path)

        out.append(IMAGE_LINK.sub(swap, line))
        if paths:
            out += ["", "Plot files: " + ", ".join(f"`{p}`" for p in paths), ""]
            linked += paths
    rest = [p for p in dict.fromkeys(Path(e).resolve() for e in extra) if p not in linked and is_png(p)]
    if rest:
        out += ["", PLOTS_HEADING, ""]
        for path in rest:
            out += [f"`{path}`", "", budget.image(path.stem, path), ""]
    return "\n".join(out)
