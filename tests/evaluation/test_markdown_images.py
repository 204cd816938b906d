"""PNG plots embedded in markdown as data URIs (what the Prefect UI can show), and the stage
artifacts built with them."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import pytest

from tasks.core.markdown_images import embed_images, png_data_uri

DATA_URI = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def png(path, width: int = 2, height: int = 1, noise: int = 0) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` (``noise`` extra bytes of incompressible text)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if noise:
        data += chunk(b"tEXt", b"pad\x00" + bytes(range(256)) * (noise // 256 + 1))
    data += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return data


def embedded(text: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(b64) for alt, b64 in DATA_URI.findall(text)}


def test_relative_png_links_become_data_uris_with_their_paths_in_the_text(tmp_path):
    a, b = png(tmp_path / "a.png"), png(tmp_path / "b.png", 3)
    text = embed_images("# R\n\n![pass](a.png) ![n](./b.png)\n\nend", tmp_path)
    assert embedded(text) == {"pass": a, "n": b}
    assert f"`{tmp_path / 'a.png'}`" in text and f"`{tmp_path / 'b.png'}`" in text
    assert "](a.png)" not in text and "](./b.png)" not in text
    assert text.startswith("# R\n") and text.endswith("end")


def test_data_uri_round_trips_and_refuses_what_is_not_a_png(tmp_path):
    data = png(tmp_path / "a.png")
    assert base64.b64decode(png_data_uri(data).split(",", 1)[1]) == data
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(b"GIF89a")


def test_links_that_are_not_local_pngs_are_left_as_they_are(tmp_path):
    png(tmp_path.parent / "outside.png")
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    png(tmp_path / "inside.png")
    links = [
        "![u](https://example.org/x.png)",
        "![f](file:///etc/x.png)",
        "![d](data:image/png;base64,AAAA)",
        "![m](missing.png)",
        "![o](../outside.png)",
        "![fake](fake.png)",
        "![svg](inside.svg)",
    ]
    text = "\n".join(links) + "\n```\n![code](inside.png)\n```"
    assert embed_images(text, tmp_path) == text


def test_extra_pngs_not_linked_are_appended_once_under_plots(tmp_path):
    a, b = png(tmp_path / "a.png"), png(tmp_path / "loss.png", 4)
    (tmp_path / "notes.png").write_text("no")
    text = embed_images("![a](a.png)", tmp_path, extra=[tmp_path / "a.png", tmp_path / "loss.png"])
    assert embedded(text) == {"a": a, "loss": b}
    assert text.count("data:image/png") == 2
    plots = text.split("## Plots", 1)[1]
    assert f"`{tmp_path / 'loss.png'}`" in plots and "![a]" not in plots
    assert "## Plots" not in embed_images("![a](a.png)", tmp_path, extra=[tmp_path / "a.png"])


def test_a_png_over_the_image_limit_is_a_note_naming_its_path(tmp_path):
    small, big = png(tmp_path / "small.png"), png(tmp_path / "big.png", noise=5000)
    text = embed_images("![s](small.png)\n![b](big.png)", tmp_path, max_image_bytes=2000)
    assert embedded(text) == {"s": small}
    assert len(big) > 2000
    assert "plot `big.png` not embedded" in text and f"open `{tmp_path / 'big.png'}`" in text
    assert "limit for one image" in text


def test_the_total_limit_skips_the_plots_that_would_pass_it(tmp_path):
    first, _ = png(tmp_path / "first.png", noise=600), png(tmp_path / "second.png", noise=600)
    text = embed_images("![1](first.png)\n![2](second.png)", tmp_path, max_total_bytes=len(first) + 100)
    assert embedded(text) == {"1": first}
    assert "plot `second.png` not embedded" in text and "of images" in text


def test_stage_artifact_embeds_every_png_and_makes_no_image_artifact(tmp_path, monkeypatch):
    import tasks.artifacts as artifacts
    from tasks.core.manifest import publish

    curve, loss = png(tmp_path / "curve.png"), png(tmp_path / "loss.png", 5)
    (tmp_path / "report.md").write_text("# Curve\n\n![curve](curve.png)\n")
    manifest = publish(
        tmp_path,
        stage="curve",
        key="k" * 20,
        config={},
        upstream=[],
        code="c",
        files=["curve.png", "loss.png", "report.md"],
        metrics={"a": {"b": 1}},
    )
    made: dict[str, str] = {}
    monkeypatch.setattr(artifacts, "create_table_artifact", lambda rows, key, description: None)
    monkeypatch.setattr(
        artifacts, "create_markdown_artifact", lambda md, key, description: made.setdefault(key, md)
    )
    assert not hasattr(artifacts, "create_image_artifact")
    artifacts.publish_stage_artifacts(manifest)
    (markdown,) = made.values()
    assert embedded(markdown) == {"curve": curve, "loss": loss}
    assert str(tmp_path / "curve.png") in markdown and "file://" not in markdown


def test_markdown_file_artifact_is_logged_not_raised_on_failure(tmp_path, monkeypatch, caplog):
    import tasks.artifacts as artifacts

    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda *a, **k: 1 / 0)
    (tmp_path / "report.md").write_text("hi")
    artifacts.publish_markdown_file(tmp_path / "report.md", key="r", description="d")
    assert "could not publish the r artifact" in caplog.text


def test_markdown_file_artifact_embeds_the_files_plots(tmp_path, monkeypatch):
    import tasks.artifacts as artifacts

    trend = png(tmp_path / "trend_valid.png")
    (tmp_path / "report.md").write_text("# History\n\n![trend](trend_valid.png)\n")
    made = []
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda md, key, description: made.append(md))
    artifacts.publish_markdown_file(tmp_path / "report.md", key="reevaluate-report", description="d")
    assert len(made) == 1 and embedded(made[0]) == {"trend": trend}
    assert made[0].startswith("# History") and str(tmp_path / "trend_valid.png") in made[0]
