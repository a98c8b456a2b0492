"""The `http` transport: the client of the executor service (`annapurna-executor serve`) on the host.

Submit the bundle, then poll its run until the service reports it done. Because the service keys
runs by program sha256 and keeps results on disk, a submission repeated after a lost connection or
an orchestrator restart returns the run already made instead of running the program again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from neuron_step.transports import Bundle, Outcome, Transport, TransportError

# Connection errors right after the host starts are expected (the service is still coming up).
RETRYABLE = (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.WriteError)


class HttpTransport(Transport):
    name = "http"

    def __init__(self, base_url: str, token: str, poll_interval_s: float = 2.0, request_timeout_s: float = 60.0,
                 connect_retries: int = 5, result_margin_s: float = 600.0,
                 client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        if not token:
            raise ValueError("the http transport needs the executor service's bearer token")
        self.base_url = base_url.rstrip("/")
        self.poll_interval_s = poll_interval_s
        self.connect_retries = connect_retries
        self.result_margin_s = result_margin_s
        self.sleep = sleep
        self.client = client or httpx.Client(base_url=self.base_url, timeout=request_timeout_s,
                                             headers={"Authorization": f"Bearer {token}"})

    def health(self) -> dict[str, object]:
        return self._request("GET", "/health").json()

    def wait_healthy(self, timeout_s: float) -> dict[str, object]:
        """Until the service answers /health (a host just started needs a while)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.client.get("/health").raise_for_status().json()
            except (httpx.HTTPError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise TransportError(f"executor service at {self.base_url} not healthy: {exc}") from exc
                self.sleep(self.poll_interval_s)

    def submit(self, bundle: Bundle) -> dict[str, object]:
        return self._request("POST", "/v1/runs", content=bundle.to_json().encode("utf-8"),
                             headers={"Content-Type": "application/json"}).json()

    def state(self, sha256: str) -> dict[str, object]:
        return self._request("GET", f"/v1/runs/{sha256}").json()

    def execute(self, bundle: Bundle) -> Outcome:
        doc = self.submit(bundle)
        deadline = time.monotonic() + bundle.timeout_s + self.result_margin_s
        while doc.get("state") != "done":
            if time.monotonic() > deadline:
                raise TransportError(f"run {bundle.sha256[:12]} not done on {self.base_url} by its deadline")
            self.sleep(self.poll_interval_s)
            doc = self.state(bundle.sha256)
        try:
            return Outcome.from_json(json.dumps(doc["result"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransportError(f"unreadable result from {self.base_url}: {exc}") from exc

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        for attempt in range(self.connect_retries + 1):
            try:
                response = self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
            except RETRYABLE as exc:
                if attempt == self.connect_retries:
                    raise TransportError(f"{method} {self.base_url}{path}: {exc}") from exc
                self.sleep(min(30.0, self.poll_interval_s * 2**attempt))
                continue
            if response.status_code == 401:
                raise TransportError(f"executor service at {self.base_url} refused the bearer token")
            if response.status_code >= 400:
                raise TransportError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()
