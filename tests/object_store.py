"""A real S3-compatible server for the tests: moto's server mode on 127.0.0.1 (never its default, which binds every
interface), fake credentials, and a log of every request it answers (to count what TensorBoard and the plugin ask)."""

import logging
import os
import re
import socket
import threading

import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RequestLog(logging.Handler):
    """werkzeug logs one line per request: '127.0.0.1 - - [date] "GET /bucket/key HTTP/1.1" 200 -'."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []
        self._lock = threading.Lock()

    def emit(self, record):
        message = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())  # werkzeug colours 206, 4xx, 5xx
        match = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d+)', message)
        if match:
            with self._lock:
                self.lines.append((match.group(1), match.group(2), int(match.group(3))))

    def take(self):
        with self._lock:
            lines, self.lines = self.lines, []
        return lines


class S3Server:
    def __init__(self, port, requests):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.requests = requests  # _RequestLog: .take() -> [(method, path, status)] since the last take
        # What a process needs to reach it: TensorBoard's S3_ENDPOINT, fsspec's and botocore's own variables.
        self.env = dict(FAKE_CREDENTIALS, S3_ENDPOINT=self.endpoint, AWS_ENDPOINT_URL_S3=self.endpoint)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())

    def make_bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket, prefix=""):
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _boto_credentials():
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1:<free port> for one test module; this process's environment points at it."""
    from moto.server import ThreadedMotoServer

    requests = _RequestLog()
    logging.getLogger("werkzeug").addHandler(requests)
    logging.getLogger("werkzeug").setLevel(logging.INFO)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    info = S3Server(port, requests)
    saved = {k: os.environ.get(k) for k in info.env}
    os.environ.update(info.env)
    try:
        yield info
    finally:
        server.stop()
        logging.getLogger("werkzeug").removeHandler(requests)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
