"""Shared by the serve tests: a real uvicorn server on a free 127.0.0.1 port, and plain HTTP calls."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

from ldm_cli.pipeline.config import ModelSettings
from ldm_cli.serve.server import ServeSettings, serving_in_thread


@contextlib.contextmanager
def running_server(model, **options):
    """`ldm serve` on a background thread, port 0 (a free one); yields (base_url, worker)."""
    settings = ServeSettings(model=ModelSettings(model=str(model), device="cpu", offline=True), host="127.0.0.1", port=0, **options)
    with serving_in_thread(settings) as (url, worker):
        yield url, worker


def call(url: str, path: str, body=None, *, raw: bytes | None = None, auth: tuple[str, str] | None = None, timeout=120):
    """(status, headers, parsed JSON or text) for GET (body None) or POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, _parse(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, _parse(error.read())


def _parse(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def pixels_of_b64(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("RGB"))

