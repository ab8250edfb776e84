"""A stand-in for the one Kubernetes API call OpenBao's `kubernetes` auth method makes: TokenReview.

With it the shipped agent configs log in exactly as they would in a pod: the agent reads a service account
token from `token_path` and posts it to auth/kubernetes/login; OpenBao reads the token's claims (no signature
check when the auth config has no pem_keys) and asks "Kubernetes" whether the token is valid. This server says
yes for the tokens it minted, and no to anything else.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
LEGACY_ISSUER = "kubernetes/serviceaccount"  # what OpenBao expects when the auth config sets no issuer


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str
    uid: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def token(self) -> str:
        """A JWT shaped like a Kubernetes service account token (RS256 header, random signature)."""
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {
            "iss": LEGACY_ISSUER,
            "sub": self.username,
            "kubernetes.io/serviceaccount/namespace": self.namespace,
            "kubernetes.io/serviceaccount/service-account.name": self.name,
            "kubernetes.io/serviceaccount/service-account.uid": self.uid,
            "kubernetes.io/serviceaccount/secret.name": f"{self.name}-token",
        }
        parts = [json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(256)]
        return ".".join(_b64url(p) for p in parts)


def throwaway_ca_pem() -> str:
    """A self-signed CA certificate: the auth config requires `kubernetes_ca_cert` once it is told not to read
    the pod's own CA file, though this fake API is plain HTTP on loopback and never uses it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubernetes-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_service_account(namespace: str, name: str) -> ServiceAccount:
    return ServiceAccount(namespace, name, str(uuid.uuid4()))


class FakeKubernetesApi:
    """TokenReview on 127.0.0.1: `authenticated` for tokens of the registered service accounts."""

    def __init__(self) -> None:
        self._tokens: dict[str, ServiceAccount] = {}
        self.reviews = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, reply = api.review(self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: no request lines on stderr
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def issue_token(self, account: ServiceAccount) -> str:
        token = account.token()
        self._tokens[token] = account
        return token

    def review(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path != TOKEN_REVIEW_PATH:
            return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
        self.reviews += 1
        spec = body.get("spec", {})
        account = self._tokens.get(str(spec.get("token", "")))
        status: dict[str, Any] = {"authenticated": account is not None}
        if account is not None:
            status["user"] = {"username": account.username, "uid": account.uid}
            status["audiences"] = spec.get("audiences") or []
        return 201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
