"""Remote model repositories (s3://, gs://, az://, azfs://, as OVMS): listed remotely, mirrored locally.

Rules: the rest of fastserve only ever sees local folders. A remote base_path is mirrored into
its own cache folder (location.py) before the loader lists versions (mirror.py), so the version
policy, /v1/config/reload and the file-system poll work on it unchanged; a remote config.json is
fetched to a local copy (configfile.py). Nothing here imports a cloud client at import time:
the client library is an optional extra, imported when a remote path is first used.
"""
