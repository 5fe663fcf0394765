"""Secret Manager access for the GCP backend (SDK imported only when used)."""
from __future__ import annotations


def _client():
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient()


def put_secret(project: str, secret_id: str, payload: str) -> str:
    """Create the secret if needed, add a version, return the version's resource name."""
    from google.api_core.exceptions import AlreadyExists

    client = _client()
    parent = f"projects/{project}"
    try:
        client.create_secret(request={
            "parent": parent, "secret_id": secret_id,
            "secret": {"replication": {"automatic": {}}, "labels": {"app": "cloudact"}},
        })
    except AlreadyExists:
        pass
    version = client.add_secret_version(request={
        "parent": f"{parent}/secrets/{secret_id}", "payload": {"data": payload.encode()},
    })
    return version.name


def get_secret(version_name: str) -> str:
    return _client().access_secret_version(request={"name": version_name}).payload.data.decode()


def disable_secret_version(version_name: str) -> None:
    """A rotated-out version can no longer be read (kept, not destroyed, so an audit can still see it existed)."""
    _client().disable_secret_version(request={"name": version_name})
