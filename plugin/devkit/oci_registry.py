"""A minimal OCI registry on loopback (stdlib http.server, in memory), for tests and for trying the OCI
install by hand: `python -m devkit.oci_registry --port 5000`.

It serves what a push (`devkit.oci.push`, also crane and skopeo) and go-containerregistry's pull (what
OpenBao's `plugin_auto_download` uses) need from the OCI distribution spec: `GET /v2/`; blob uploads (single
POST with ?digest=, POST then PUT, chunked PATCH); blobs and manifests by GET and HEAD with
Docker-Content-Digest; manifests by tag and by digest, served with the media type they were pushed with;
tag lists; and the spec's JSON error bodies. Uploads and manifests pushed by digest are verified
(400 DIGEST_INVALID), and a manifest that references missing content is refused (MANIFEST_BLOB_UNKNOWN).
No authentication, no deletes, no referrers API. Every request is recorded, so a test can count pulls.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devkit.oci import DIGEST_RE, INDEX_TYPE, MANIFEST_TYPE, REPO_RE, TAG_RE, sha256_digest

MAX_BODY = 1 << 30  # one upload request at most 1 GiB (everything is kept in memory)
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_TYPES = (MANIFEST_TYPE, DOCKER_MANIFEST_TYPE)  # reference a config and layers (blobs)
LIST_TYPES = (INDEX_TYPE, DOCKER_LIST_TYPE)  # reference other manifests

RANGE_RE = re.compile(r"^(\d+)-\d+$")
ROUTE = re.compile(
    r"^/v2/(?P<name>.+?)/(?:"
    r"blobs/uploads/(?P<upload>[^/]*)|blobs/(?P<digest>[^/]+)|manifests/(?P<reference>[^/]+)|(?P<tags>tags/list)"
    r")$"
)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # without the query
    status: int


@dataclass(frozen=True)
class StoredManifest:
    media_type: str
    data: bytes


@dataclass
class Repository:
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> content
    manifests: dict[str, StoredManifest] = field(default_factory=dict)  # digest -> manifest
    tags: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest


@dataclass
class Upload:
    repository: str
    data: bytearray = field(default_factory=bytearray)


class RegistryError(Exception):
    """Answered as the spec's error body: {"errors": [{"code", "message", "detail"}]}."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail


class _Store:
    """The registry's content; every access holds the lock (the server is threaded)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.repositories: dict[str, Repository] = {}
        self.uploads: dict[str, Upload] = {}

    def existing(self, name: str) -> Repository:
        repo = self.repositories.get(name)
        if repo is None:
            raise RegistryError(404, "NAME_UNKNOWN", f"repository {name!r} is not known to this registry")
        return repo

    def resolve(self, repo: Repository, reference: str) -> tuple[str, StoredManifest]:
        digest = reference if DIGEST_RE.fullmatch(reference) else repo.tags.get(reference, "")
        manifest = repo.manifests.get(digest)
        if manifest is None:
            raise RegistryError(404, "MANIFEST_UNKNOWN", f"manifest {reference!r} is not known", reference)
        return digest, manifest


def _checked_digest(digest: str | None) -> str:
    if digest is None or not DIGEST_RE.fullmatch(digest):
        raise RegistryError(400, "DIGEST_INVALID", f"want a digest sha256:<64 hex>, got {digest!r}")
    return digest


def _referenced(media_type: str, document: dict[str, Any]) -> tuple[list[str], bool]:
    """The digests a manifest references, and whether they are manifests (an index) or blobs."""
    if media_type in LIST_TYPES:
        return [str(m.get("digest")) for m in document.get("manifests", [])], True
    if media_type in IMAGE_TYPES:
        descriptors = [document.get("config", {}), *document.get("layers", [])]
        return [str(d.get("digest")) for d in descriptors], False
    return [], False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: go-containerregistry reuses its connection
    timeout = 30  # a client that sends half a request (e.g. a TLS hello on this plain port) is dropped
    server: _Server

    # --- plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        # Recorded before the answer leaves, so a client that has its answer always finds it counted.
        self.server.registry.record(RequestRecord(self.command, urlsplit(self.path).path, status))
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_error(self, exc: RegistryError) -> None:
        error = {"code": exc.code, "message": str(exc), "detail": exc.detail}
        body = json.dumps({"errors": [error]}).encode()
        self._send(exc.status, body, {"Content-Type": "application/json"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True  # the body is left unread
            raise RegistryError(413, "SIZE_INVALID", f"a request body of {length} bytes is over the limit")
        return self.rfile.read(length)

    def _chunked_body(self) -> bytes:
        data = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return bytes(data)
            if len(data) + size > MAX_BODY:
                self.close_connection = True
                raise RegistryError(413, "SIZE_INVALID", "a request body is over the limit")
            data += self.rfile.read(size)
            self.rfile.readline()  # the CRLF after each chunk

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            # Read the body first, whatever the answer: on a kept-alive connection, unread bytes would be
            # taken for the next request.
            body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
            if url.path in ("/v2", "/v2/"):
                if self.command not in ("GET", "HEAD"):
                    raise RegistryError(405, "UNSUPPORTED", f"{self.command} /v2/")
                self._send(200, b"{}", {"Content-Type": "application/json"})
                return
            match = ROUTE.match(url.path)
            if match is None:
                raise RegistryError(404, "NAME_UNKNOWN", f"no such endpoint: {url.path}")
            name = match["name"]
            if not REPO_RE.fullmatch(name):
                raise RegistryError(400, "NAME_INVALID", f"invalid repository name {name!r}")
            if match["upload"] is not None:
                self._upload(name, match["upload"], query, body)
            elif match["digest"] is not None:
                self._blob(name, match["digest"])
            elif match["reference"] is not None:
                self._manifest(name, match["reference"], body)
            else:
                self._tags(name)
        except RegistryError as exc:
            self._send_error(exc)
        except ValueError as exc:  # a Content-Length or chunk size that is not a number
            self.close_connection = True
            self._send_error(RegistryError(400, "SIZE_INVALID", f"malformed request: {exc}"))

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.registry.verbose:
            # A TLS hello sent to this plain-HTTP port (clients try HTTPS first) is logged as binary bytes.
            message = (format % args).encode("ascii", "backslashreplace").decode("ascii")
            sys.stderr.write(f"oci-registry: {self.address_string()} {message}\n")

    # --- endpoints

    def _upload(self, name: str, upload_id: str, query: dict[str, str], body: bytes) -> None:
        store = self.server.registry.store
        if self.command == "POST" and upload_id == "":
            if "digest" in query:  # single-request monolithic upload
                self._finish_upload(name, Upload(name, bytearray(body)), query["digest"])
                return
            new_id = uuid.uuid4().hex
            with store.lock:
                store.uploads[new_id] = Upload(name, bytearray(body))
            self._send(202, headers=self._upload_headers(name, new_id, len(body)))
            return
        with store.lock:
            upload = store.uploads.get(upload_id)
        if upload is None or upload.repository != name:
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", f"upload {upload_id!r} is not known")
        if self.command == "GET":
            self._send(204, headers=self._upload_headers(name, upload_id, len(upload.data)))
        elif self.command == "DELETE":
            with store.lock:
                store.uploads.pop(upload_id, None)
            self._send(204)
        elif self.command == "PATCH":
            content_range = self.headers.get("Content-Range")
            start = RANGE_RE.match(content_range or "")
            if content_range and start is None:
                raise RegistryError(400, "BLOB_UPLOAD_INVALID", f"bad Content-Range {content_range!r}")
            if start is not None and int(start[1]) != len(upload.data):
                self._send(416, headers=self._upload_headers(name, upload_id, len(upload.data)))
                return
            upload.data += body
            self._send(202, headers=self._upload_headers(name, upload_id, len(upload.data)))
        elif self.command == "PUT":
            upload.data += body
            with store.lock:
                store.uploads.pop(upload_id, None)
            self._finish_upload(name, upload, query.get("digest"))
        else:
            raise RegistryError(405, "UNSUPPORTED", f"{self.command} on an upload")

    @staticmethod
    def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        }

    def _finish_upload(self, name: str, upload: Upload, digest: str | None) -> None:
        digest = _checked_digest(digest)
        actual = sha256_digest(bytes(upload.data))
        if actual != digest:
            raise RegistryError(
                400, "DIGEST_INVALID", f"the upload's digest is {actual}, not {digest}", digest
            )
        store = self.server.registry.store
        with store.lock:
            store.repositories.setdefault(name, Repository()).blobs[digest] = bytes(upload.data)
        self._send(201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    def _blob(self, name: str, digest: str) -> None:
        if self.command not in ("GET", "HEAD"):
            raise RegistryError(405, "UNSUPPORTED", f"{self.command} on a blob")
        digest = _checked_digest(digest)
        store = self.server.registry.store
        with store.lock:
            data = store.existing(name).blobs.get(digest)
        if data is None:
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob {digest} is not known", digest)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
            "Docker-Content-Digest": digest,
        }
        self._send(200, data, headers)

    def _manifest(self, name: str, reference: str, body: bytes) -> None:
        if self.command == "PUT":
            self._put_manifest(name, reference, body)
            return
        if self.command not in ("GET", "HEAD"):
            raise RegistryError(405, "UNSUPPORTED", f"{self.command} on a manifest")
        store = self.server.registry.store
        with store.lock:
            digest, manifest = store.resolve(store.existing(name), reference)
        headers = {
            "Content-Type": manifest.media_type,
            "Content-Length": str(len(manifest.data)),
            "Docker-Content-Digest": digest,
        }
        self._send(200, manifest.data, headers)

    def _put_manifest(self, name: str, reference: str, data: bytes) -> None:
        is_digest = reference.startswith("sha256:")
        if not is_digest and not TAG_RE.fullmatch(reference):
            raise RegistryError(400, "MANIFEST_INVALID", f"{reference!r} is neither a tag nor a digest")
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise RegistryError(400, "MANIFEST_INVALID", f"the manifest is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise RegistryError(400, "MANIFEST_INVALID", "the manifest is not a JSON object")
        if document.get("mediaType", media_type) != media_type or not media_type:
            raise RegistryError(
                400,
                "MANIFEST_INVALID",
                f"Content-Type {media_type!r} is not the manifest's mediaType {document.get('mediaType')!r}",
            )
        digest = sha256_digest(data)
        if is_digest and _checked_digest(reference) != digest:
            raise RegistryError(400, "DIGEST_INVALID", f"the manifest's digest is {digest}, not {reference}")
        store = self.server.registry.store
        with store.lock:
            repo = store.repositories.setdefault(name, Repository())
            wanted, are_manifests = _referenced(media_type, document)
            have = repo.manifests if are_manifests else repo.blobs
            missing = [d for d in wanted if d not in have]
            if missing:
                raise RegistryError(
                    400, "MANIFEST_BLOB_UNKNOWN", "the manifest references unknown content", missing
                )
            repo.manifests[digest] = StoredManifest(media_type, data)
            if not is_digest:
                repo.tags[reference] = digest
        self._send(
            201, headers={"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        )

    def _tags(self, name: str) -> None:
        store = self.server.registry.store
        with store.lock:
            tags = sorted(store.existing(name).tags)
        self._send(
            200, json.dumps({"name": name, "tags": tags}).encode(), {"Content-Type": "application/json"}
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: OciRegistry


class OciRegistry:
    """The registry on 127.0.0.1 (port 0: a free one), served by a background thread until `stop()`."""

    def __init__(self, port: int = 0, *, verbose: bool = False) -> None:
        self.store = _Store()
        self.verbose = verbose
        self._requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.registry = self
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """HOST:PORT, the start of an image reference (`<host>/<repository>`)."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def record(self, request: RequestRecord) -> None:
        with self._requests_lock:
            self._requests.append(request)

    def requests(self) -> list[RequestRecord]:
        with self._requests_lock:
            return list(self._requests)

    def served(self, method: str, path: str) -> int:
        """How many `method path` requests were answered 200."""
        return sum(1 for r in self.requests() if (r.method, r.path, r.status) == (method, path, 200))

    def serve_forever(self) -> None:
        """Serve on this thread until interrupted (the `python -m` entry point)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def start(self) -> OciRegistry:
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)  # a quick stop()
        self._thread = threading.Thread(target=serve, name="oci-registry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> OciRegistry:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.oci_registry",
        description="A minimal in-memory OCI registry on 127.0.0.1 (no authentication); Ctrl-C stops it.",
    )
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    registry = OciRegistry(args.port, verbose=not args.quiet)
    print(f"OCI registry at {registry.url} (in memory; push with scripts/build-oci-image --push)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        registry.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
