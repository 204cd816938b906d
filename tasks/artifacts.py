"""Prefect artifacts of a finished stage: what the UI shows of it.

For each stage manifest: a table artifact of its metrics (nested values flattened to
``a.b`` keys), a markdown artifact with its directory, files and (if it wrote one) its
``report.md``, and an image artifact per PNG it published (``file://`` URLs: they open on the
machine that holds the run directory). Artifacts are a view: a failure to create one is logged,
never raised, so it cannot fail the work.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

from tasks.core.manifest import Manifest

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
        create_markdown_artifact(
            "\n".join(text), key=artifact_key(manifest, "-report"), description=f"{manifest.stage} report"
        )
        for i, name in enumerate(sorted(f for f in manifest.files if f.endswith(".png"))):
            create_image_artifact(
                image_url=(manifest.dir / name).as_uri(),
                key=artifact_key(manifest, f"-png{i}"),
                description=name,
            )
    except Exception as err:  # artifacts are a view; never fail the stage over one
        log.warning("could not publish artifacts of %s: %s", manifest.stage, err)
