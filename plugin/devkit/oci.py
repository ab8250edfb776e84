"""An OCI image of a plugin executable, built without Docker: written as an OCI image layout (a directory or
a tarball) and pushed to a registry over the OCI distribution API.

OpenBao's declarative plugin block (`plugin "secret" "<name>" { image = ..., version = ... }`) pulls such an
image for its own platform, takes the one regular file at the image root named by `binary_name` (else by
the entrypoint), checks its sha256 and runs it as an ordinary host process. The image is only a transport
for that file, so it has exactly one layer holding exactly that file.

Everything is reproducible: the same executable, tag and labels give the same bytes and so the same
digests (fixed tar metadata, gzip without a timestamp, JSON with sorted keys, no creation time unless one
is given, e.g. from SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

# Media types (OCI image spec v1.1).
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"

REF_NAME = "org.opencontainers.image.ref.name"  # the annotation that names a tag in an image layout
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # distribution spec
REPO_RE = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

# Tar and gzip metadata fixed so that two builds of one file are byte for byte identical.
FILE_MODE = 0o755
DEFAULT_MTIME = 0  # 1970-01-01, unless the caller passes SOURCE_DATE_EPOCH


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: one byte sequence per document, hence one digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    """Content addressed by its sha256, with the media type it is referenced under."""

    media_type: str
    data: bytes
    digest: str

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        return cls(media_type, data, sha256_digest(data))

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"

    def as_json(self) -> dict[str, str]:
        return {"architecture": self.architecture, "os": self.os}


@dataclass(frozen=True)
class OciImage:
    """One plugin file as an OCI image: its layer, config and manifest, and the one-entry image index that
    a registry tag points at (so a server on another platform gets a clear "no child with platform" error
    instead of a binary it cannot run)."""

    binary_name: str
    binary_sha256: str  # what the plugin block's sha256sum must be
    tag: str
    platform: Platform
    layer: Blob
    config: Blob
    manifest: Blob
    index: Blob

    def layout_index(self) -> bytes:
        """index.json of the image layout: the manifest, its platform and the tag it is known by."""
        entry = self.manifest.descriptor(platform=self.platform.as_json(), annotations={REF_NAME: self.tag})
        return canonical_json({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]})


def layer_tar(binary_name: str, content: bytes, mtime: int = DEFAULT_MTIME) -> bytes:
    """An uncompressed tar with one entry: the executable at the root, mode 0755, owned by 0:0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(binary_name)  # no "./" or "/": OpenBao compares the bare name
        info.size = len(content)
        info.mode = FILE_MODE
        info.mtime = mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def build_image(
    binary: Path,
    *,
    tag: str,
    labels: Mapping[str, str] | None = None,
    created: int | None = None,
    platform: Platform | None = None,
) -> OciImage:
    """The OCI image of the executable `binary` (its file name becomes the entrypoint `/<name>`).

    `created` (seconds since the epoch, e.g. SOURCE_DATE_EPOCH) sets the layer's mtime and the config's
    creation time; without it both are fixed, so the digest depends on the content alone.
    """
    if not TAG_RE.fullmatch(tag):
        raise ValueError(
            f"tag {tag!r}: want letters, digits, '_', '.', '-' (at most 128, not starting with . -)"
        )
    platform = platform or Platform()
    content = binary.read_bytes()
    name = binary.name
    tar = layer_tar(name, content, DEFAULT_MTIME if created is None else created)
    # mtime=0: gzip would otherwise stamp the current time into its header.
    layer = Blob.of(LAYER_TYPE, gzip.compress(tar, compresslevel=9, mtime=0))
    config_doc: dict[str, Any] = {
        **platform.as_json(),
        "config": {"Entrypoint": [f"/{name}"], "Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
        "history": [{"created_by": f"devkit.oci: /{name}, the plugin executable"}],
    }
    if created is not None:
        stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        config_doc["created"] = stamp
        config_doc["history"][0]["created"] = stamp
    config = Blob.of(CONFIG_TYPE, canonical_json(config_doc))
    manifest = Blob.of(
        MANIFEST_TYPE,
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    index = Blob.of(
        INDEX_TYPE,
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": INDEX_TYPE,
                "manifests": [manifest.descriptor(platform=platform.as_json())],
            }
        ),
    )
    return OciImage(
        binary_name=name,
        binary_sha256=hashlib.sha256(content).hexdigest(),
        tag=tag,
        platform=platform,
        layer=layer,
        config=config,
        manifest=manifest,
        index=index,
    )


# --- the image layout (directory and tarball) ------------------------------------------------------------


def _layout_files(image: OciImage) -> Iterator[tuple[str, bytes]]:
    """(relative path, content) of every file of the image layout, in a fixed order."""
    yield "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})
    yield "index.json", image.layout_index()
    for blob in sorted((image.layer, image.config, image.manifest), key=lambda b: b.digest):
        yield f"blobs/sha256/{blob.hex}", blob.data


def write_layout(image: OciImage, directory: Path) -> Path:
    """Write the image as an OCI image layout directory (for `skopeo copy oci:DIR:TAG ...`)."""
    for relative, data in _layout_files(image):
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return directory


def write_archive(image: OciImage, path: Path, mtime: int = DEFAULT_MTIME) -> Path:
    """Write the image layout as one tarball (for `skopeo copy oci-archive:FILE:TAG ...`), reproducibly."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = mtime
            tar.addfile(info)
        for relative, data in _layout_files(image):
            info = tarfile.TarInfo(relative)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


# --- push over the distribution API ----------------------------------------------------------------------


class PushError(RuntimeError):
    """The registry refused a step of the push; the message says which and why."""


@dataclass(frozen=True)
class ImageReference:
    """`HOST[:PORT]/REPOSITORY[:TAG]`, as in a plugin block's `image` plus `version`."""

    host: str
    repository: str
    tag: str | None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        host, sep, rest = text.partition("/")
        if not sep or not host or not rest:
            raise ValueError(
                f"{text!r}: want HOST[:PORT]/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/plugins/name:v1"
            )
        repository, _, tag = rest.partition(":")
        if not REPO_RE.fullmatch(repository):
            raise ValueError(f"{text!r}: repository {repository!r} must be lower-case a-z, 0-9, . _ - and /")
        if tag and not TAG_RE.fullmatch(tag):
            raise ValueError(f"{text!r}: tag {tag!r} is not a valid tag")
        return cls(host, repository, tag or None)

    @property
    def image(self) -> str:
        """What goes in the plugin block's `image` (the tag goes in `version`)."""
        return f"{self.host}/{self.repository}"

    @property
    def scheme(self) -> str:
        """Plain HTTP for a registry on loopback (as go-containerregistry, which OpenBao pulls with,
        assumes), HTTPS anywhere else."""
        if self.host.startswith("["):  # [::1]:5000
            hostname = self.host[1 : self.host.index("]")]
        else:
            hostname = self.host.rsplit(":", 1)[0]
        if hostname == "localhost":
            return "http"
        try:
            return "http" if ipaddress.ip_address(hostname).is_loopback else "https"
        except ValueError:
            return "https"


@dataclass(frozen=True)
class PushResult:
    reference: str  # HOST/REPOSITORY:TAG
    digest: str  # what the tag points at (the image index)
    uploaded: tuple[str, ...]  # digests of the blobs sent (the others were already there)


def _check(resp: httpx.Response, expected: int, what: str) -> None:
    if resp.status_code == expected:
        return
    if resp.status_code == 401:
        raise PushError(
            f"{what}: the registry asks for authentication, which this push does not do; push the OCI "
            "archive with `skopeo copy oci-archive:FILE:TAG docker://...` or `crane push` instead"
        )
    raise PushError(f"{what}: HTTP {resp.status_code} {resp.text[:500]}")


def _upload_blob(http: httpx.Client, base: str, repository: str, blob: Blob) -> bool:
    """Send `blob` unless the registry has it (HEAD); monolithic POST then PUT. True if it was sent."""
    head = http.head(f"{base}/v2/{repository}/blobs/{blob.digest}")
    if head.status_code == 200:
        return False
    start = http.post(f"{base}/v2/{repository}/blobs/uploads/")
    _check(start, 202, f"starting the upload of {blob.digest}")
    location = urljoin(f"{base}/", start.headers["Location"])  # may be relative, may carry a query
    separator = "&" if "?" in location else "?"
    done = http.put(
        f"{location}{separator}digest={blob.digest}",
        content=blob.data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _check(done, 201, f"uploading {blob.digest}")
    return True


def _put_manifest(http: httpx.Client, base: str, repository: str, reference: str, blob: Blob) -> None:
    resp = http.put(
        f"{base}/v2/{repository}/manifests/{reference}",
        content=blob.data,
        headers={"Content-Type": blob.media_type},
    )
    _check(resp, 201, f"putting the manifest {reference}")
    returned = resp.headers.get("Docker-Content-Digest")
    if returned is not None and returned != blob.digest:
        raise PushError(f"the registry stored {reference} as {returned}, not {blob.digest}")


def push(image: OciImage, reference: str, *, timeout: float = 120.0) -> PushResult:
    """Push `image` to `reference` (HOST[:PORT]/REPOSITORY[:TAG]; the tag defaults to the image's).

    Blobs first (skipping those the registry has), then the manifest by digest, then the image index
    under the tag, so the tag never points at something incomplete. No authentication.
    """
    ref = ImageReference.parse(reference)
    tag = ref.tag or image.tag
    base = f"{ref.scheme}://{ref.host}"
    uploaded = []
    # trust_env=False: a loopback registry must not be sent through an HTTP proxy from the environment.
    with httpx.Client(timeout=timeout, trust_env=ref.scheme == "https") as http:
        try:
            ping = http.get(f"{base}/v2/")
        except httpx.HTTPError as exc:
            raise PushError(f"cannot reach the registry at {base}: {exc}") from exc
        _check(ping, 200, f"GET {base}/v2/ (is it an OCI registry?)")
        for blob in (image.layer, image.config):
            if _upload_blob(http, base, ref.repository, blob):
                uploaded.append(blob.digest)
        _put_manifest(http, base, ref.repository, image.manifest.digest, image.manifest)
        _put_manifest(http, base, ref.repository, tag, image.index)
    return PushResult(f"{ref.image}:{tag}", image.index.digest, tuple(uploaded))
