"""A real S3 server on 127.0.0.1 for the tests: moto's standalone server in a child process.

Started by the test that needs it, stopped by its PID (stop() also when the test stops the store
on purpose). With `auth=True` it checks credentials like S3: the first three requests (made here)
create an IAM user with full rights and its access key; every later request must be signed with
it. With `tls` (tests/tlscert.py) it serves https with that certificate, and the test's own
client trusts the certificate's CA. Also: an environment for a fastserve process that reads
only what the test gives it (no AWS variable or proxy of the machine leaks in), and uploading
models built in code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openvino as ov

from tests.childproc import terminate, wait_listening
from tests.modelzoo import save
from tests.serverproc import free_port
from tests.tlscert import ServerCertificate

START_TIMEOUT = 30.0  # seconds for moto to import and listen (about one on this VM)
REGION = "us-east-1"
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "S3_ENDPOINT",
                 # the other stores' (tests/e2e/test_gcs.py, test_azure.py use clean_env too)
                 "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
                 "AZURE_STORAGE_CONNECTION_STRING")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
                   "ALL_PROXY")


class S3Server:
    def __init__(self, auth: bool = False, tls: ServerCertificate | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.endpoint}"
        self.tls = tls
        env = clean_env()
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        self.log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        if tls:
            command += ["--ssl-cert", str(tls.cert), "--ssl-key", str(tls.key)]
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:  # a failure here must not leave the server running
            wait_listening(self.proc, self.port, START_TIMEOUT, "moto")
            self.key_id, self.secret = "testing-key", "testing-secret"
            if auth:
                iam = self._client("iam")
                iam.create_user(UserName="fastserve")
                policy = {"Version": "2012-10-17",
                          "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
                iam.put_user_policy(UserName="fastserve", PolicyName="all", PolicyDocument=json.dumps(policy))
                key = iam.create_access_key(UserName="fastserve")["AccessKey"]
                self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
            self.s3 = self._client("s3")
        except BaseException:
            self.stop()
            raise

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            verify=str(self.tls.ca) if self.tls else None,
                            aws_access_key_id=getattr(self, "key_id", "x"),
                            aws_secret_access_key=getattr(self, "secret", "x"))

    def temporary_credentials(self) -> tuple[str, str, str]:
        """(key id, secret, session token) of a role assumed through STS: AWS_SESSION_TOKEN's case.
        The store checks the token of such keys (a wrong one is InvalidToken)."""
        trust = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam = self._client("iam")
        role = iam.create_role(RoleName=f"reader-{time.monotonic_ns()}", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=role["Role"]["RoleName"], PolicyName="all", PolicyDocument=json.dumps(everything))
        got = self._client("sts").assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="fastserve")["Credentials"]
        return got["AccessKeyId"], got["SecretAccessKey"], got["SessionToken"]

    def make_public(self, bucket: str) -> None:
        """Anyone may list and read the bucket, as a public model bucket (moto refuses unsigned reads otherwise)."""
        statement = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                     "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}
        self.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17",
                                                                    "Statement": [statement]}))

    def put_model(self, bucket: str, prefix: str, version: int, model: ov.Model) -> None:
        """Save `model` as OVMS's <version>/model.xml + .bin and upload both under s3://bucket/prefix/."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = save(model, Path(tmp), version)
            for name in ("model.xml", "model.bin"):
                self.s3.put_object(Bucket=bucket, Key=f"{prefix}/{version}/{name}", Body=(folder / name).read_bytes())

    def delete_prefix(self, bucket: str, prefix: str) -> None:
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        for item in listed:
            self.s3.delete_object(Bucket=bucket, Key=item["Key"])

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()


def clean_env(**variables: str) -> dict[str, str]:
    """Our environment without any cloud or proxy setting (so 127.0.0.1 is reached directly), plus `variables`."""
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARIABLES + PROXY_VARIABLES}
    env.update(variables)
    return env
