"""The minimal OCI registry (devkit.oci_registry) and the push client (devkit.oci.push): a pushed image
reads back byte for byte by tag and by digest with the right media types and digests; uploads are checked
against their digest; unknown content is a 404 with the distribution spec's JSON error body."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from devkit.oci import INDEX_TYPE, MANIFEST_TYPE, OciImage, PushError, build_image, push, sha256_digest
from devkit.oci_registry import OciRegistry

REPO = "plugins/vault-plugin-secrets-llm"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def image(tmp_path: Path) -> OciImage:
    binary = tmp_path / "vault-plugin-secrets-llm"
    binary.write_bytes(b"\x7fELF stand-in" * 1000)
    return build_image(binary, tag="v0.1.0")


@pytest.fixture
def http(registry: OciRegistry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=10, trust_env=False) as client:
        yield client


def error_codes(resp: httpx.Response) -> list[str]:
    assert resp.headers["Content-Type"] == "application/json"
    return [e["code"] for e in resp.json()["errors"]]


def upload(http: httpx.Client, data: bytes, digest: str) -> httpx.Response:
    """POST then PUT, the monolithic upload."""
    start = http.post(f"/v2/{REPO}/blobs/uploads/")
    assert start.status_code == 202
    return http.put(f"{start.headers['Location']}?digest={digest}", content=data)


def test_push_then_pull_round_trip(registry: OciRegistry, image: OciImage, http: httpx.Client) -> None:
    result = push(image, f"{registry.host}/{REPO}")
    assert result.reference == f"{registry.host}/{REPO}:v0.1.0"
    assert result.digest == image.index.digest
    assert set(result.uploaded) == {image.layer.digest, image.config.digest}

    assert http.get("/v2/").status_code == 200
    by_tag = http.get(f"/v2/{REPO}/manifests/v0.1.0", headers={"Accept": f"{INDEX_TYPE},{MANIFEST_TYPE}"})
    assert by_tag.status_code == 200
    assert by_tag.content == image.index.data
    assert by_tag.headers["Content-Type"] == INDEX_TYPE
    assert by_tag.headers["Docker-Content-Digest"] == image.index.digest
    by_digest = http.get(f"/v2/{REPO}/manifests/{image.manifest.digest}")
    assert by_digest.content == image.manifest.data
    assert by_digest.headers["Content-Type"] == MANIFEST_TYPE
    for blob in (image.config, image.layer):
        got = http.get(f"/v2/{REPO}/blobs/{blob.digest}")
        assert got.status_code == 200
        assert got.content == blob.data
        assert got.headers["Docker-Content-Digest"] == blob.digest
        head = http.head(f"/v2/{REPO}/blobs/{blob.digest}")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["Content-Length"] == str(len(blob.data))
    head = http.head(f"/v2/{REPO}/manifests/v0.1.0")
    assert head.headers["Docker-Content-Digest"] == image.index.digest
    assert http.get(f"/v2/{REPO}/tags/list").json() == {"name": REPO, "tags": ["v0.1.0"]}


def test_a_second_push_sends_no_blob_again(registry: OciRegistry, image: OciImage) -> None:
    push(image, f"{registry.host}/{REPO}")
    uploads_before = sum(1 for r in registry.requests() if r.method == "POST")

    again = push(image, f"{registry.host}/{REPO}:v0.1.0")

    assert again.uploaded == ()
    assert sum(1 for r in registry.requests() if r.method == "POST") == uploads_before


def test_an_upload_whose_digest_does_not_match_is_refused(http: httpx.Client) -> None:
    claimed = sha256_digest(b"what the client says it sends")

    resp = upload(http, b"what it really sends", claimed)

    assert resp.status_code == 400
    assert error_codes(resp) == ["DIGEST_INVALID"]
    missing = http.get(f"/v2/{REPO}/blobs/{claimed}")
    assert missing.status_code == 404
    assert error_codes(missing) == ["NAME_UNKNOWN"]  # nothing was stored, not even the repository


def test_single_post_and_chunked_uploads(http: httpx.Client) -> None:
    whole = b"0123456789abcdefghij"
    single = http.post(f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256_digest(b"one")}, content=b"one")
    assert single.status_code == 201
    assert single.headers["Docker-Content-Digest"] == sha256_digest(b"one")

    start = http.post(f"/v2/{REPO}/blobs/uploads/")
    location = start.headers["Location"]
    first = http.patch(location, content=whole[:10], headers={"Content-Range": "0-9"})
    assert (first.status_code, first.headers["Range"]) == (202, "0-9")
    out_of_order = http.patch(location, content=whole[15:], headers={"Content-Range": "15-19"})
    assert out_of_order.status_code == 416
    # Transfer-Encoding: chunked, as go-containerregistry streams a layer.
    second = http.patch(location, content=iter([whole[10:15], whole[15:]]))
    assert (second.status_code, second.headers["Range"]) == (202, "0-19")
    done = http.put(location, params={"digest": sha256_digest(whole)})
    assert done.status_code == 201
    assert http.get(done.headers["Location"]).content == whole


def test_unknown_names_manifests_and_blobs_are_404_with_spec_errors(
    registry: OciRegistry, image: OciImage, http: httpx.Client
) -> None:
    push(image, f"{registry.host}/{REPO}")

    cases = {
        f"/v2/{REPO}/manifests/v9.9.9": "MANIFEST_UNKNOWN",
        f"/v2/{REPO}/manifests/{sha256_digest(b'nothing')}": "MANIFEST_UNKNOWN",
        f"/v2/{REPO}/blobs/{sha256_digest(b'nothing')}": "BLOB_UNKNOWN",
        "/v2/no/such/repo/manifests/v0.1.0": "NAME_UNKNOWN",
    }
    for path, code in cases.items():
        resp = http.get(path)
        assert resp.status_code == 404, path
        assert error_codes(resp) == [code], path
        assert resp.json()["errors"][0]["message"]
    assert error_codes(http.get(f"/v2/{REPO}/blobs/md5:abc")) == ["DIGEST_INVALID"]
    assert error_codes(http.get("/v2/Upper/Case/manifests/v1")) == ["NAME_INVALID"]


def test_a_manifest_is_checked_before_it_is_stored(image: OciImage, http: httpx.Client) -> None:
    def put(reference: str, data: bytes, media_type: str) -> httpx.Response:
        return http.put(
            f"/v2/{REPO}/manifests/{reference}", content=data, headers={"Content-Type": media_type}
        )

    # Its blobs are not there yet.
    early = put("v0.1.0", image.manifest.data, MANIFEST_TYPE)
    assert early.status_code == 400
    assert error_codes(early) == ["MANIFEST_BLOB_UNKNOWN"]
    assert set(early.json()["errors"][0]["detail"]) == {image.config.digest, image.layer.digest}
    for blob in (image.layer, image.config):
        assert upload(http, blob.data, blob.digest).status_code == 201
    # Pushed by a digest that is not its own; with a Content-Type that is not its mediaType; not JSON.
    wrong = put(image.config.digest, image.manifest.data, MANIFEST_TYPE)
    assert error_codes(wrong) == ["DIGEST_INVALID"]
    assert error_codes(put("v0.1.0", image.manifest.data, INDEX_TYPE)) == ["MANIFEST_INVALID"]
    assert error_codes(put("v0.1.0", b"{not json", MANIFEST_TYPE)) == ["MANIFEST_INVALID"]
    # An index whose manifest is not there.
    assert error_codes(put("v0.1.0", image.index.data, INDEX_TYPE)) == ["MANIFEST_BLOB_UNKNOWN"]

    stored = put(image.manifest.digest, image.manifest.data, MANIFEST_TYPE)
    assert stored.status_code == 201
    assert stored.headers["Docker-Content-Digest"] == image.manifest.digest
    assert put("v0.1.0", image.index.data, INDEX_TYPE).status_code == 201


def test_push_failures_say_what_failed(image: OciImage) -> None:
    with OciRegistry() as gone:
        host = gone.host
    with pytest.raises(PushError, match="cannot reach the registry"):
        push(image, f"{host}/{REPO}")


def test_the_request_log_counts_what_was_served(registry: OciRegistry, image: OciImage) -> None:
    push(image, f"{registry.host}/{REPO}")
    path = f"/v2/{REPO}/blobs/{image.layer.digest}"
    assert registry.served("GET", path) == 0

    httpx.get(registry.url + path, trust_env=False)
    httpx.get(registry.url + path, trust_env=False)

    assert registry.served("GET", path) == 2


def test_runs_by_hand_with_python_m() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit.oci_registry", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert url, banner
        assert httpx.get(f"{url.group(0)}/v2/", trust_env=False).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
