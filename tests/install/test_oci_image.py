"""The OCI image of the plugin (devkit.oci): a valid image layout whose digests match their content, one
layer holding only the executable at the root, the entrypoint OpenBao takes the file name from, and the
same digests from two builds of the same file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from devkit.oci import (
    CONFIG_TYPE,
    INDEX_TYPE,
    LAYER_TYPE,
    MANIFEST_TYPE,
    ImageReference,
    OciImage,
    build_image,
    write_archive,
    write_layout,
)

NAME = "vault-plugin-secrets-llm"
CONTENT = b"#!/bin/sh\necho 'a stand-in for the plugin'\n" + bytes(range(256)) * 64


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / NAME
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    path.chmod(0o700)  # the layer's mode must not depend on the file's
    return path


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(layout: Path, descriptor: dict[str, Any]) -> bytes:
    """A blob of the layout, checked against its descriptor's digest and size."""
    algorithm, _, hex_digest = descriptor["digest"].partition(":")
    data = (layout / "blobs" / algorithm / hex_digest).read_bytes()
    assert sha256_of(data) == descriptor["digest"]
    assert len(data) == descriptor["size"]
    return data


def layer_members(layer: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]  # type: ignore[union-attr]


def test_layout_is_a_valid_oci_image_layout(binary: Path, tmp_path: Path) -> None:
    layout = write_layout(build_image(binary, tag="v0.1.0"), tmp_path / "layout")

    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == INDEX_TYPE
    [entry] = index["manifests"]
    assert entry["mediaType"] == MANIFEST_TYPE
    assert entry["platform"] == {"os": "linux", "architecture": "amd64"}
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v0.1.0"}

    manifest = json.loads(blob(layout, entry))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    [layer_descriptor] = manifest["layers"]
    assert layer_descriptor["mediaType"] == LAYER_TYPE
    config = json.loads(blob(layout, manifest["config"]))
    layer = blob(layout, layer_descriptor)
    # The config names the layer by the digest of its uncompressed tar.
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256_of(gzip.decompress(layer))]}
    # Nothing in blobs/ that the index does not reach.
    stored = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    reached = {entry["digest"], manifest["config"]["digest"], layer_descriptor["digest"]}
    assert {f"sha256:{name}" for name in stored} == reached


def test_the_one_layer_holds_only_the_executable_at_the_root(binary: Path) -> None:
    image = build_image(binary, tag="v0.1.0")

    [(member, data)] = layer_members(image.layer.data)
    assert member.name == NAME  # OpenBao compares the bare name: no "./" and no "/"
    assert member.isreg()
    assert member.mode == 0o755
    assert (member.uid, member.gid) == (0, 0)
    assert member.mtime == 0
    assert data == CONTENT
    assert image.binary_sha256 == hashlib.sha256(CONTENT).hexdigest()


def test_config_sets_platform_entrypoint_and_labels(binary: Path) -> None:
    labels = {"org.opencontainers.image.version": "v0.1.0", "org.opencontainers.image.revision": "abc"}
    config = json.loads(build_image(binary, tag="v0.1.0", labels=labels).config.data)

    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["Entrypoint"] == [f"/{NAME}"]
    assert config["config"]["Labels"] == labels
    assert "created" not in config  # no build time unless one is asked for


def test_created_stamps_the_config_and_the_layer(binary: Path) -> None:
    image = build_image(binary, tag="v0.1.0", created=1_700_000_000)

    assert json.loads(image.config.data)["created"] == "2023-11-14T22:13:20Z"
    [(member, _)] = layer_members(image.layer.data)
    assert member.mtime == 1_700_000_000


def test_the_registry_tag_points_at_an_index_with_the_platform(binary: Path) -> None:
    image = build_image(binary, tag="v0.1.0")

    index = json.loads(image.index.data)
    assert index["mediaType"] == INDEX_TYPE
    assert index["manifests"] == [
        {
            "mediaType": MANIFEST_TYPE,
            "digest": image.manifest.digest,
            "size": len(image.manifest.data),
            "platform": {"os": "linux", "architecture": "amd64"},
        }
    ]


def build_twice(binary: Path, tmp_path: Path, **options: Any) -> tuple[OciImage, OciImage, list[Path]]:
    first = build_image(binary, tag="v0.1.0", **options)
    second = build_image(binary, tag="v0.1.0", **options)
    outputs = [
        write_layout(first, tmp_path / "one"),
        write_layout(second, tmp_path / "two"),
        write_archive(first, tmp_path / "one.tar"),
        write_archive(second, tmp_path / "two.tar"),
    ]
    return first, second, outputs


def test_two_builds_of_one_file_are_identical(binary: Path, tmp_path: Path) -> None:
    first, second, (layout1, layout2, archive1, archive2) = build_twice(binary, tmp_path)

    assert first.index.digest == second.index.digest
    assert first.manifest.digest == second.manifest.digest
    files1 = {p.relative_to(layout1): p.read_bytes() for p in layout1.rglob("*") if p.is_file()}
    files2 = {p.relative_to(layout2): p.read_bytes() for p in layout2.rglob("*") if p.is_file()}
    assert files1 == files2
    assert archive1.read_bytes() == archive2.read_bytes()


def test_another_file_gives_another_digest_and_the_tag_is_not_part_of_the_image(
    binary: Path, tmp_path: Path
) -> None:
    image = build_image(binary, tag="v0.1.0")
    other = tmp_path / "other" / NAME
    other.parent.mkdir()
    other.write_bytes(CONTENT + b"\n")

    assert build_image(other, tag="v0.1.0").manifest.digest != image.manifest.digest
    assert build_image(binary, tag="v0.2.0").manifest.digest == image.manifest.digest


def test_the_archive_is_the_layout_in_one_tarball(binary: Path, tmp_path: Path) -> None:
    image = build_image(binary, tag="v0.1.0")
    layout = write_layout(image, tmp_path / "layout")
    archive = write_archive(image, tmp_path / "image.tar")

    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]
    expected = {str(p.relative_to(layout)): p.read_bytes() for p in layout.rglob("*") if p.is_file()}
    assert files == expected


def test_a_tag_must_be_a_registry_tag(binary: Path) -> None:
    with pytest.raises(ValueError, match="tag"):
        build_image(binary, tag="v0.1.0+build/1")


@pytest.mark.parametrize(
    ("text", "image", "tag", "scheme"),
    [
        ("127.0.0.1:5000/plugins/name:v0.1.0", "127.0.0.1:5000/plugins/name", "v0.1.0", "http"),
        ("localhost:5000/name", "localhost:5000/name", None, "http"),
        ("[::1]:5000/name", "[::1]:5000/name", None, "http"),
        ("192.0.2.10:5000/team/name", "192.0.2.10:5000/team/name", None, "https"),  # TEST-NET-1
    ],
)
def test_image_references(text: str, image: str, tag: str | None, scheme: str) -> None:
    ref = ImageReference.parse(text)
    assert (ref.image, ref.tag, ref.scheme) == (image, tag, scheme)


@pytest.mark.parametrize("text", ["name", "127.0.0.1:5000/", "127.0.0.1:5000/Upper", "host/name:bad/tag"])
def test_bad_image_references_say_what_is_wanted(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST\[:PORT\]/REPOSITORY|repository|tag"):
        ImageReference.parse(text)
