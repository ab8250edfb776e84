"""See scripts/build-oci-image: the plugin as an OCI image (no Docker), written to OUTDIR, optionally pushed.

OUTDIR gets what scripts/build-plugin writes (the executable, its SBOM, SHA256SUMS), the image as an OCI image
layout directory (`oci/`) and as a tarball (`<name>-<version>.oci.tar`). The image tag is the plugin's
version: OpenBao's plugin block uses one `version` both as the tag it pulls and as the catalog version, and
refuses a plugin that reports another one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from devkit.build import ENGINE_NAME
from devkit.oci import ImageReference, OciImage, PushError, build_image, push, write_archive, write_layout
from devkit.release import build_release

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_DIR = "oci"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/build-oci-image",
        description="Build the plugin and an OCI image of it (the executable at the image root), no Docker.",
    )
    parser.add_argument("outdir", metavar="OUTDIR", type=Path, help="where to write the plugin and the image")
    parser.add_argument(
        "--version",
        help="the version the plugin reports, and so the image tag (default: llmsecrets/version.py)",
    )
    parser.add_argument(
        "--push",
        metavar="HOST[:PORT]/REPOSITORY[:TAG]",
        help="push the image there over the OCI distribution API (plain HTTP on loopback, HTTPS elsewhere; "
        "no login: for a registry that needs one, push the tarball with skopeo or crane)",
    )
    parser.add_argument(
        "--source", help="URL of the source repository, for the org.opencontainers.image.source label"
    )
    return parser.parse_args(argv)


def git_revision() -> str | None:
    """The commit the build comes from, or None outside a checkout or with uncommitted changes (then the
    label would name code that is not what was built)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "plugin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return None if dirty else head


def labels(version: str, source: str | None) -> dict[str, str]:
    found = {
        "org.opencontainers.image.title": ENGINE_NAME,
        "org.opencontainers.image.description": "A Vault/OpenBao secrets plugin: short-lived LLM API keys",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "MPL-2.0",
    }
    revision = git_revision()
    if revision:
        found["org.opencontainers.image.revision"] = revision
    if source:
        found["org.opencontainers.image.source"] = source
    return found


def plugin_block(image: str, image_ref: OciImage) -> str:
    return (
        f'plugin "secret" "{ENGINE_NAME}" {{\n'
        f'  image     = "{image}"\n'
        f'  version   = "{image_ref.tag}"\n'
        f'  sha256sum = "{image_ref.binary_sha256}"\n'
        "}"
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    target: ImageReference | None = None
    if args.push:
        try:
            target = ImageReference.parse(args.push)
        except ValueError as exc:
            print(f"build-oci-image: --push: {exc}", file=sys.stderr)
            return 2
    outdir: Path = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        release = build_release(outdir, args.version)
    except ValueError as exc:  # a malformed --version
        print(f"build-oci-image: {exc}", file=sys.stderr)
        return 2
    if target is not None and target.tag not in (None, release.version):
        print(
            f"build-oci-image: --push tag {target.tag!r} is not the plugin's version {release.version!r}; "
            "OpenBao pulls the tag named by the plugin block's version and refuses a plugin that reports "
            "another version (leave the tag out, or build with --version)",
            file=sys.stderr,
        )
        return 2
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    image = build_image(
        release.executable,
        tag=release.version,
        labels=labels(release.version, args.source),
        created=int(epoch) if epoch else None,
    )
    layout = write_layout(image, outdir / LAYOUT_DIR)
    archive = write_archive(image, outdir / f"{ENGINE_NAME}-{release.version}.oci.tar")
    print(f"plugin     {release.executable}")
    print(f"version    {image.tag}")
    print(f"sha256sum  {image.binary_sha256}")
    print(f"manifest   {image.manifest.digest}")
    print(f"layout     {layout}")
    print(f"archive    {archive}")
    shown = "<registry>/<repository>"
    if target is not None:
        try:
            pushed = push(image, args.push)
        except PushError as exc:
            print(f"build-oci-image: push failed: {exc}", file=sys.stderr)
            return 1
        shown = target.image
        print(f"image      {target.image}")
        print(f"pushed     {pushed.reference} ({pushed.digest}; {len(pushed.uploaded)} new blobs)")
    print("\n# server config, beside plugin_directory, plugin_auto_register and plugin_auto_download = true:")
    print(plugin_block(shown, image))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
