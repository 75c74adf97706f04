"""What Azure Blob Storage (azure.py) and Azure Files (azurefiles.py) share: the connection string,
scrubbing its secrets, and turning the Azure SDK's exceptions into Transient or StorageError.

Rules: the account and its key come from AZURE_STORAGE_CONNECTION_STRING only (OVMS's only way).
The SDK's own retries are off (retry_total=0 where the client is made): retry.py retries every
call and logs why. No message carries the account key or a SAS token (scrub()).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastserve.storage.retry import CONNECT_TIMEOUT, StorageError, Transient, read_timeout

VARIABLE = "AZURE_STORAGE_CONNECTION_STRING"
T = TypeVar("T")


def scrub(text: str) -> str:
    """The connection string's secrets (AccountKey, SharedAccessSignature, sig=) never reach a message."""
    text = re.sub(r"(AccountKey=|SharedAccessSignature=)[^;\s]+", r"\1***", text, flags=re.IGNORECASE)
    text = re.sub(r"([?&]sig=)[^&\s]+", r"\1***", text)
    key = re.search(r"AccountKey=([^;]+)", os.environ.get(VARIABLE, ""), flags=re.IGNORECASE)
    return text.replace(key.group(1), "***") if key else text


def connection_string(scheme: str) -> str:
    # azure-core logs every request and its headers at INFO: kept quiet, warnings still show.
    logging.getLogger("azure").setLevel(logging.WARNING)
    connection = os.environ.get(VARIABLE)
    if not connection:
        raise StorageError(f"{scheme}:// paths need {VARIABLE} (the storage account's connection string)")
    return connection


def make_client(factory: Callable[..., T], connection: str) -> T:
    """`factory` is the SDK's from_connection_string; a malformed string is a StorageError, scrubbed."""
    try:
        return factory(connection, retry_total=0, connection_timeout=CONNECT_TIMEOUT,
                       read_timeout=read_timeout())
    except ValueError as exc:
        raise StorageError(f"{VARIABLE} is not a valid connection string: {scrub(str(exc))}") from None


def guard(fn: Callable[..., T], missing: str, account: str, *args: Any) -> T:
    """Call the SDK; `missing` names what a 404 means ("the container or blob does not exist")."""
    from azure.core import exceptions as aex

    refused = f"the request was refused: wrong account key in {VARIABLE}, or no permission"
    try:
        return fn(*args)
    except aex.ResourceNotFoundError as exc:
        raise StorageError(f"{missing} ({code(exc)}; account {account})") from None
    except aex.ClientAuthenticationError as exc:
        raise StorageError(f"{refused} ({code(exc)}; account {account})") from None
    except aex.ResourceModifiedError as exc:
        raise Transient(f"the object changed while being read ({code(exc)})") from None
    except aex.HttpResponseError as exc:
        status = int(getattr(exc, "status_code", 0) or 0)
        if status >= 500 or status in (408, 429):
            raise Transient(f"the store answered {status} ({code(exc)})") from None
        if status == 403:
            raise StorageError(f"{refused} ({code(exc)}; account {account})") from None
        raise StorageError(f"the store refused the request: {status} ({code(exc)})") from None
    except (aex.ServiceRequestError, aex.ServiceResponseError, aex.AzureError, OSError) as exc:
        raise Transient(text(exc)) from None


def code(exc: Any) -> str:
    error = getattr(exc, "error_code", None)
    error = getattr(error, "value", error)  # the SDK gives some codes as StorageErrorCode members
    first = text(exc).splitlines()[0] if text(exc) else ""
    return f"{error}: {first}" if error else first


def text(exc: BaseException) -> str:
    return scrub(str(exc)).rstrip(".") or type(exc).__name__
