"""A loopback OCI Object Storage (API 20160918) serving the two read calls a cost-report reader makes.

    GET /n/{namespace}/b/{bucket}/o?prefix=&start=&end=&limit=&fields=&startAfter=    ListObjects
        -> {"objects": [{"name", and the requested fields: size, timeCreated, md5, etag, ...}],
            "prefixes": [], "nextStartWith": "<name of the next object>" (only when truncated)}
    GET /n/{namespace}/b/{bucket}/o/{objectName}                                         GetObject
        -> the object's bytes (application/octet-stream), with ETag / Content-MD5 / Last-Modified

Object names arrive percent-encoded (the SDK quotes `/` and spaces: `FOCUS%20Reports%2F2024...`).
Listing is in name order; `start` is inclusive, `startAfter` exclusive, `end` exclusive, `limit` at most
1000 (default 1000), like the service. Missing namespace/bucket/object answer 404 with the service's
`{"code": "BucketNotFound" | "ObjectNotFound", "message": ...}` envelope.

Auth: every request must carry an HTTP-signature `Authorization` header (`Signature version="1",
keyId="<tenancy>/<user>/<fingerprint>",...`), as the SDK's API-key signer sends. The signature itself is
not verified; with `tenancy=` set, the keyId must name that tenancy, and a key whose fingerprint was
`revoke`d (as a user deletes an API key in the console) is refused (both 401 NotAuthenticated).

Usage (tests):

    with OciObjectStorageStub(tenancy="ocid1.tenancy.oc1..x") as stub:
        stub.put("bling", "ocid1.tenancy.oc1..x", "reports/cost-csv/0001-00001.csv.gz", data,
                 time_created=dt.datetime(2024, 3, 2, tzinfo=dt.UTC))
        ObjectStorageClient(config, service_endpoint=stub.base_url)
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from stubs.http_stub import BadRequest, LoopbackStub, _Handler, last_param

MAX_LIMIT = 1000
LIST_FIELDS = ("name", "size", "etag", "md5", "timeCreated", "timeModified", "storageTier", "archivalState")


@dataclass
class StoredObject:
    data: bytes
    time_created: dt.datetime

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def etag(self) -> str:
        return hashlib.sha1(self.data).hexdigest()


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class _ObjectHandler(_Handler):
    """The shared handler, plus raw-bytes answers (GetObject) next to the JSON ones."""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if not isinstance(body, _Bytes):
            extra = {"opc-request-id": "stub-request", **(headers or {})}
            return super()._send(status, body, extra)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body.data)))
        for k, v in {"opc-request-id": "stub-request", **body.headers, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body.data)


@dataclass
class _Bytes:
    data: bytes
    headers: dict[str, str]


class OciObjectStorageStub(LoopbackStub):
    name = "oci-object-storage-stub"
    handler_class = _ObjectHandler

    def __init__(self, *, tenancy: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.tenancy = tenancy
        self.revoked: set[str] = set()  # fingerprints of deleted API keys
        self._objects: dict[tuple[str, str], dict[str, StoredObject]] = {}
        self._data_lock = threading.Lock()

    # -- content ---------------------------------------------------------------------------------
    def revoke(self, fingerprint: str) -> None:
        self.revoked.add(fingerprint)

    def create_bucket(self, namespace: str, bucket: str) -> None:
        with self._data_lock:
            self._objects.setdefault((namespace, bucket), {})

    def put(self, namespace: str, bucket: str, name: str, data: bytes,
            time_created: dt.datetime | None = None) -> None:
        with self._data_lock:
            self._objects.setdefault((namespace, bucket), {})[name] = StoredObject(
                bytes(data), time_created or dt.datetime.now(dt.UTC))

    def delete(self, namespace: str, bucket: str, name: str) -> None:
        with self._data_lock:
            self._objects.get((namespace, bucket), {}).pop(name, None)

    # -- LoopbackStub ------------------------------------------------------------------------------
    def error_body(self, status: int, message: str) -> dict:
        code = {400: "InvalidParameter", 401: "NotAuthenticated", 403: "NotAuthorized", 404: "NotFound",
                429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}.get(status, "Error")
        return {"code": code, "message": message}

    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Signature ") or 'keyId="' not in auth:
            return 401, self.error_body(401, "The required information to complete authentication was not "
                                              "provided or was incorrect.")
        key_id = auth.split('keyId="', 1)[1].split('"', 1)[0]
        if self.tenancy and key_id.split("/", 1)[0] != self.tenancy:
            return 401, self.error_body(401, f"The keyId {key_id!r} does not belong to tenancy {self.tenancy}.")
        if key_id.rsplit("/", 1)[-1] in self.revoked:
            return 401, self.error_body(401, "The API key was deleted.")
        return None

    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        parts = path.split("/")
        # ['', 'n', ns, 'b', bucket, 'o', name...]  (the name is percent-encoded, '/' as %2F)
        if len(parts) < 6 or parts[1] != "n" or parts[3] != "b" or parts[5] != "o":
            return 404, self.error_body(404, f"No route for {path}")
        namespace, bucket = unquote(parts[2]), unquote(parts[4])
        with self._data_lock:
            objects = self._objects.get((namespace, bucket))
            if objects is None:
                return 404, {"code": "BucketNotFound",
                             "message": f"Either the bucket named '{bucket}' does not exist in the namespace "
                                        f"'{namespace}' or you are not authorized to access it"}
            objects = dict(objects)
        if len(parts) == 6:
            return 200, self._list(objects, params)
        name = unquote("/".join(parts[6:]))
        obj = objects.get(name)
        if obj is None:
            return 404, {"code": "ObjectNotFound",
                         "message": f"The object '{name}' was not found in the bucket '{bucket}'"}
        return 200, _Bytes(obj.data, {"ETag": obj.etag, "Content-MD5": obj.md5,
                                      "Last-Modified": obj.time_created.strftime("%a, %d %b %Y %H:%M:%S GMT")})

    def _list(self, objects: dict[str, StoredObject], params: dict[str, list[str]]) -> dict:
        prefix = last_param(params, "prefix", "")
        start = last_param(params, "start")
        start_after = last_param(params, "startAfter")
        end = last_param(params, "end")
        try:
            limit = int(last_param(params, "limit", MAX_LIMIT))
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        fields = {f.strip() for f in (last_param(params, "fields", "") or "").split(",") if f.strip()}
        unknown = fields - set(LIST_FIELDS)
        if unknown:
            raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))}")
        names = sorted(n for n in objects if n.startswith(prefix)
                       and (start is None or n >= start) and (start_after is None or n > start_after)
                       and (end is None or n < end))
        page, rest = names[:limit], names[limit:]
        out = []
        for n in page:
            o = objects[n]
            item: dict[str, Any] = {"name": n}
            values = {"size": len(o.data), "etag": o.etag, "md5": o.md5, "timeCreated": _iso(o.time_created),
                      "timeModified": _iso(o.time_created), "storageTier": "Standard", "archivalState": None}
            for f in LIST_FIELDS[1:]:
                if f in fields:
                    item[f] = values[f]
            out.append(item)
        body: dict[str, Any] = {"objects": out, "prefixes": []}
        if rest:
            body["nextStartWith"] = rest[0]
        return body


def _main() -> None:  # pragma: no cover - manual poking: python -m stubs.oci_object_storage
    import time

    with OciObjectStorageStub() as stub:
        stub.put("bling", "ocid1.tenancy.oc1..example", "reports/cost-csv/0001-00001.csv.gz", b"")
        print(json.dumps({"endpoint": stub.base_url}))
        while True:
            time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    _main()
