"""A small sample backend for the framework tests: roles CRUD, and creds that issue leased tokens.

A uniquely named module (not conftest) so other test directories cannot shadow it on import."""

from __future__ import annotations

from typing import Any

from vaultplugin.framework import (
    Backend,
    Field,
    FieldData,
    FieldType,
    InMemoryStorage,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
    SecretType,
    SpecialPaths,
    generic_name_regex,
    get_json,
    list_pattern,
    put_json,
)


class Sample:
    """Holds the backend plus what its handlers saw, so tests can assert on calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.storage = InMemoryStorage()
        self.token = SecretType(
            name="token",
            fields={"token": Field(FieldType.STRING, "The issued token.", sensitive=True)},
            renew=self._renew,
            revoke=self._revoke,
            default_ttl=60,
            max_ttl=3600,
        )
        self.backend = Backend(
            help="The sample backend issues tokens.",
            paths=[
                Path(
                    list_pattern("roles"),
                    operations={Operation.LIST: self._list_roles},
                    synopsis="List roles.",
                ),
                Path(
                    "roles/" + generic_name_regex("name"),
                    fields={
                        "name": Field(FieldType.NAME, "Name of the role."),
                        "ttl": Field(FieldType.DURATION, "Lease TTL of issued tokens.", default="1h"),
                        "models": Field(FieldType.COMMA_STRING_LIST, "Models the role may use."),
                        "api_key": Field(FieldType.STRING, "Upstream admin key.", sensitive=True),
                    },
                    operations={
                        Operation.READ: self._read_role,
                        Operation.UPDATE: OperationSpec(self._write_role, summary="Write a role."),
                        Operation.DELETE: self._delete_role,
                    },
                    existence_check=self._role_exists,
                    synopsis="Manage roles.",
                    description="Roles say which models a token may use.",
                ),
                Path(
                    "creds/" + generic_name_regex("name"),
                    fields={"name": Field(FieldType.NAME, "Role to issue a token for.")},
                    operations={Operation.READ: self._creds},
                    synopsis="Issue a token.",
                ),
                Path(
                    "creds/special",  # never reached: the path above matches first
                    operations={Operation.READ: self._creds},
                ),
            ],
            secrets=[self.token],
            special_paths=SpecialPaths(local_storage=("local/",)),
        )

    def request(self, operation: str, path: str, **data: Any) -> Request:
        return Request(operation=operation, path=path, data=data, storage=self.storage)

    def _list_roles(self, req: Request, d: FieldData) -> Response:
        self.calls.append(("list", {}))
        return Response(data={"keys": [k for k in self.storage.list("roles/")]})

    def _read_role(self, req: Request, d: FieldData) -> Response | None:
        role = get_json(self.storage, "roles/" + d.get_str("name"))
        return None if role is None else Response(data=role)

    def _write_role(self, req: Request, d: FieldData) -> Response:
        self.calls.append(("write", {"op": req.operation, "name": d.get_str("name")}))
        put_json(
            self.storage,
            "roles/" + d.get_str("name"),
            {"ttl": d.get_duration("ttl"), "models": d.get_list("models")},
        )
        return Response(data={"ok": True})

    def _delete_role(self, req: Request, d: FieldData) -> None:
        self.storage.delete("roles/" + d.get_str("name"))

    def _role_exists(self, req: Request, d: FieldData) -> bool:
        return self.storage.get("roles/" + d.get_str("name")) is not None

    def _creds(self, req: Request, d: FieldData) -> Response:
        return self.token.response({"token": "tok-" + d.get_str("name")}, {"role": d.get_str("name")})

    def _renew(self, req: Request, d: FieldData) -> Response:
        self.calls.append(("renew", dict(req.secret.internal_data if req.secret else {})))
        return self.token.renew_response(req)

    def _revoke(self, req: Request, d: FieldData) -> None:
        self.calls.append(("revoke", dict(req.secret.internal_data if req.secret else {})))
