"""A Google service account for the tests: its key file, and the OAuth 2.0 token endpoint it names.

GOOGLE_APPLICATION_CREDENTIALS points at a service-account key file; Google's auth library signs
a JWT with the file's private key and trades it at the file's token_uri for an access token,
which it then sends to the store as "Bearer <token>". Here the key pair is made in the test, the
key file's token_uri is this server on 127.0.0.1 (a thread of the test process), and the server
does what Google's does for that grant (RFC 7523, jwt-bearer): it checks the JWT's RS256
signature against the service account's public key and its iss, aud, exp and scope claims, and only
then answers with a fresh token. Tokens it issued are listed in `issued`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EMAIL = "model-reader@fastserve-test.iam.gserviceaccount.com"
# The audience Google's token endpoint expects (google-auth sends it whatever the key file's token_uri).
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class TokenServer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issued: list[str] = []
        self.refused: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                status, reply = owner._grant(parse_qs(body))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def key_file(self, folder: Path, forged: bool = False) -> Path:
        """The service account's key file; `forged`: the same account with another private key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if forged else self.key
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        path = folder / "service-account.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "fastserve-test", "private_key_id": "k1", "private_key": pem,
            "client_email": EMAIL, "client_id": "1", "token_uri": self.uri,
        }))
        return path

    def _grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        if form.get("grant_type") != [GRANT] or len(form.get("assertion", [])) != 1:
            return self._refuse("unsupported_grant_type")
        try:
            head, claims, signature = form["assertion"][0].split(".")
            self.key.public_key().verify(_b64decode(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(),
                                         hashes.SHA256())
            header, payload = json.loads(_b64decode(head)), json.loads(_b64decode(claims))
        except (ValueError, InvalidSignature):
            return self._refuse("invalid_grant: bad signature")
        if header.get("alg") != "RS256" or payload.get("iss") != EMAIL or payload.get("aud") not in (
                GOOGLE_AUDIENCE, self.uri):
            return self._refuse("invalid_grant: wrong alg, iss or aud")
        if "devstorage" not in str(payload.get("scope", "")):
            return self._refuse("invalid_scope: no Cloud Storage scope")
        if not payload.get("iat", 0) - 300 <= time.time() <= payload.get("exp", 0) + 300:
            return self._refuse("invalid_grant: expired")
        token = f"ya29.test-{secrets.token_hex(8)}"
        self.issued.append(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def _refuse(self, why: str) -> tuple[int, dict[str, object]]:
        self.refused.append(why)
        return 400, {"error": why.split(":")[0], "error_description": why}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
