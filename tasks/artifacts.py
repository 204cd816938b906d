"""Prefect artifacts of a finished stage: what the UI shows of it.

For each stage manifest: a table artifact of its metrics (nested values flattened to
``a.b`` keys) and a markdown artifact with its directory, files, its ``report.md`` (if it wrote
one) and every PNG it published, embedded as ``data:`` URIs with each file's path beside it
(:mod:`tasks.core.markdown_images`): the Prefect UI is an ``http://`` page and never loads a
``file://`` or relative image, so no image artifacts with such URLs are made. A PNG over the
embedding limits is replaced by a note naming its path. :func:`publish_markdown_file` does the
same for a flow's report (the pipeline's, the scaling curve's, ...). Artifacts are a view: a
failure to create one is logged, never raised, so it cannot fail the work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.core.manifest import Manifest
from tasks.core.markdown_images import embed_images

log = logging.getLogger(__name__)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = f"[{len(value)} values]" if len(value) > 8 else ", ".join(map(str, value))
        else:
            out[name] = value
    return out


def artifact_key(manifest: Manifest, suffix: str = "") -> str:
    base = "".join(c if c.isalnum() else "-" for c in manifest.stage.lower())
    return f"{base}-{manifest.key[:12]}{suffix}".lower()


def publish_stage_artifacts(manifest: Manifest) -> None:
    try:
        rows = [{"metric": k, "value": v} for k, v in flatten(manifest.metrics).items()]
        create_table_artifact(rows, key=artifact_key(manifest), description=f"{manifest.stage} metrics")
        report = manifest.dir / "report.md"
        text = [
            f"# {manifest.stage} `{manifest.key}`",
            "",
            f"Directory: `{manifest.path}`",
            "",
            f"Files: {len(manifest.files)}; code version `{manifest.code_version}`",
            "",
        ]
        if report.is_file():
            text += ["---", "", report.read_text()]
        pngs = [manifest.dir / name for name in sorted(manifest.files) if name.endswith(".png")]
        create_markdown_artifact(
            embed_images("\n".join(text), manifest.dir, extra=pngs),
            key=artifact_key(manifest, "-report"),
            description=f"{manifest.stage} report",
        )
    except Exception as err:  # artifacts are a view; never fail the stage over one
        log.warning("could not publish artifacts of %s: %s", manifest.stage, err)


def publish_markdown_file(path: Path | str, key: str, description: str, extra: Iterable[Path] = ()) -> None:
    """A markdown artifact of the file at ``path``, its PNG links (relative to its directory)
    and ``extra`` PNGs embedded; logged, never raised, on failure."""
    try:
        path = Path(path)
        markdown = embed_images(path.read_text(), path.parent, extra=extra)
        create_markdown_artifact(markdown, key=key, description=description)
    except Exception as err:  # artifacts are a view; never fail the flow over one
        log.warning("could not publish the %s artifact from %s: %s", key, path, err)
