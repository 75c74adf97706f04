"""S3 and S3-compatible stores (MinIO ...) through botocore, configured from OVMS's environment variables.

Rules: one client per endpoint, made on first use by store.py (botocore clients are thread-safe,
and making one costs a few hundred ms). Credentials as OVMS (src/filesystem/s3filesystem.cpp):
AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else AWS_PROFILE with the
shared credentials file, else anonymous (public buckets). AWS_REGION sets the region.
S3_ENDPOINT is host:port (http, as OVMS) or http(s)://host:port; the http(s)_proxy variables are
honoured by botocore (and no_proxy). An https endpoint's certificate is checked against the
system's CAs, or the bundle AWS_CA_BUNDLE names (botocore's variable; OVMS has none): an
untrusted certificate is a StorageError at once, naming the variable. botocore's own retries are
off: retry.py retries every call, the object downloads included, and logs why. No message
carries a secret: scrub() removes the key, secret and token from anything botocore says.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from fastserve.storage.location import RemoteURL
from fastserve.storage.retry import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT_VARIABLE,
    StorageError,
    Transient,
    read_timeout,
    with_retries,
)
from fastserve.storage.store import RemoteObject, extra_hint

EXTRA_HINT = extra_hint("s3")
CHUNK = 1 << 20  # bytes per read while streaming an object to its file
# Failures retrying cannot fix: the caller must change credentials, bucket or path.
PERMANENT = {
    "AccessDenied": "access denied (wrong credentials, or no permission to list and read)",
    "InvalidAccessKeyId": "the access key is not known to the store (wrong AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "the request signature does not match (wrong AWS_SECRET_ACCESS_KEY)",
    "ExpiredToken": "the session token has expired (AWS_SESSION_TOKEN)",
    "InvalidToken": "the session token is not valid (AWS_SESSION_TOKEN)",
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the object does not exist (removed while being read?)",
    "PermanentRedirect": "the bucket is in another region (set AWS_REGION)",
    "AuthorizationHeaderMalformed": "the request was refused (check AWS_REGION and the credentials)",
}


def scrub(text: str) -> str:
    """Never let a secret reach a log line or an error message (keys, token, a proxy's user:password)."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(://)[^/@\s:]+:[^/@\s]+@", r"\1***@", text)


class S3Store:
    def __init__(self, endpoint_in_url: str = "") -> None:
        try:
            import botocore.config
            import botocore.session
            from botocore import UNSIGNED
        except ImportError:
            raise StorageError(EXTRA_HINT) from None
        # botocore's and urllib3's DEBUG lines carry request headers (X-Amz-Security-Token among them):
        # they stay quiet even at --log_level DEBUG.
        for name in ("botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
        env = os.environ
        keys = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        profile = None if keys else env.get("AWS_PROFILE")
        session = botocore.session.Session(profile=profile)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or session.get_config_variable("region")
        options: dict[str, Any] = {"region_name": region or "us-east-1"}
        endpoint = env.get("S3_ENDPOINT") or endpoint_in_url
        if endpoint:
            options["endpoint_url"] = endpoint if "://" in endpoint else f"http://{endpoint}"
        bundle = env.get("AWS_CA_BUNDLE")
        if bundle and not os.path.isfile(bundle):
            raise StorageError(f"AWS_CA_BUNDLE={bundle}: no such file (it must name a PEM file of CA certificates)")
        anonymous = False
        if keys:
            options.update(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                           aws_session_token=env.get("AWS_SESSION_TOKEN") or None)
        elif not profile:
            anonymous = True  # OVMS: no keys and no profile means a public bucket
        self.read_timeout = read_timeout()
        config = botocore.config.Config(
            retries={"total_max_attempts": 1},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=self.read_timeout,
            signature_version=UNSIGNED if anonymous else None,
            # MinIO and most S3-compatible stores want path-style addressing (no bucket subdomain).
            s3={"addressing_style": "path"} if endpoint else None,
        )
        try:
            self.client = session.create_client("s3", config=config, **options)
        except Exception as exc:  # ProfileNotFound, a malformed endpoint ...
            raise StorageError(f"cannot set up the S3 client: {scrub(str(exc))}") from None
        self.credentials = "anonymous" if anonymous else (f"profile {profile}" if profile else "access key")

    def list(self, url: RemoteURL) -> list[RemoteObject]:
        """Every object under `url` taken as a folder; or the object `url` itself, keyed by its file name."""
        return with_retries(str(url), lambda: self._list(url))

    def _list(self, url: RemoteURL) -> list[RemoteObject]:
        prefix = f"{url.key}/" if url.key else ""
        found: list[RemoteObject] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": url.bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token
            page = self._call(self.client.list_objects_v2, **args)
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):  # folder markers some tools write
                    found.append(RemoteObject(item["Key"][len(prefix):], int(item["Size"]), item["ETag"].strip('"'),
                                              item["Key"]))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        if not found and url.key:  # base_path may name one model file
            try:
                head = self._call(self.client.head_object, Bucket=url.bucket, Key=url.key)
            except StorageError:
                return []
            found.append(RemoteObject(url.key.rpartition("/")[2], int(head["ContentLength"]), head["ETag"].strip('"'),
                                      url.key))
        return found

    def download(self, url: RemoteURL, obj: RemoteObject, dest: Path) -> None:
        """Write `obj` (under folder `url`) to `dest`, checked against its listed size and MD5 ETag."""
        what = f"{url.scheme}://{url.bucket}/{obj.full}"
        with_retries(what, lambda: self._download(url.bucket, obj.full, obj, dest))

    def read(self, url: RemoteURL) -> bytes:
        """A small object (config.json) in memory."""
        def work() -> bytes:
            reply = self._call(self.client.get_object, Bucket=url.bucket, Key=url.key)
            try:
                return self._guard(reply["Body"].read)
            finally:
                reply["Body"].close()

        return with_retries(str(url), work)

    def _download(self, bucket: str, key: str, obj: RemoteObject, dest: Path) -> None:
        # IfMatch: an object replaced since it was listed fails (412) instead of mixing two uploads.
        reply = self._call(self.client.get_object, Bucket=bucket, Key=key, IfMatch=f'"{obj.etag}"')
        body, md5, size = reply["Body"], hashlib.md5(usedforsecurity=False), 0
        try:
            with dest.open("wb") as out:
                while chunk := self._guard(body.read, CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
        finally:
            body.close()
        if size != obj.size:
            raise Transient(f"got {size} of {obj.size} bytes")
        # A plain ETag is the content's MD5; multipart uploads ("...-N") and SSE-KMS ones are not.
        if len(obj.etag) == 32 and "-" not in obj.etag and md5.hexdigest() != obj.etag:
            raise Transient("the content does not match its ETag (MD5)")

    def _call(self, method: Any, **args: Any) -> Any:
        return self._guard(method, **args)

    def _guard(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call botocore, turning its exceptions into Transient or StorageError with a clear, scrubbed text."""
        from botocore import exceptions as bex

        try:
            return fn(*args, **kwargs)
        except bex.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            detail = scrub(f"{code}: {error.get('Message', '')}".strip(": "))
            if code in PERMANENT:
                raise StorageError(f"{PERMANENT[code]} ({detail}; credentials: {self.credentials})") from None
            if status >= 500 or status in (408, 429) or code in ("SlowDown", "RequestTimeout", "PreconditionFailed"):
                raise Transient(f"the store answered {status} {detail}") from None
            if status in (401, 403):
                raise StorageError(f"{PERMANENT['AccessDenied']} ({detail}; credentials: {self.credentials})") from None
            if status == 404:
                raise StorageError(f"not found ({detail})") from None
            raise StorageError(f"the store refused the request: {status} {detail}") from None
        except (bex.NoCredentialsError, bex.PartialCredentialsError, bex.ProfileNotFound) as exc:
            raise StorageError(f"no usable credentials: {_text(exc)}") from None
        except (bex.ResponseStreamingError, bex.IncompleteReadError) as exc:
            raise Transient(f"the download broke off ({_text(exc)})") from None
        except bex.ReadTimeoutError:
            raise Transient(f"the store sent nothing for {self.read_timeout:g} s (the read timeout; "
                            f"{READ_TIMEOUT_VARIABLE} changes it)") from None
        except bex.ConnectTimeoutError:
            raise Transient(f"no connection to the store within {CONNECT_TIMEOUT:g} s") from None
        except bex.SSLError as exc:
            text = _text(exc)
            if "certificate verify failed" in text.lower():  # not a network hiccup: retrying cannot help
                raise StorageError(f"the store's TLS certificate is not trusted ({text}); name the CA that signed "
                                   "it with AWS_CA_BUNDLE=/path/to/ca.pem") from None
            raise Transient(text) from None
        except (bex.BotoCoreError, OSError) as exc:  # connection refused or reset, timeouts
            raise Transient(_text(exc)) from None


def _text(exc: BaseException) -> str:
    return scrub(str(exc)).rstrip(".") or type(exc).__name__


