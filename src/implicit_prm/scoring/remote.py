"""An HTTP client of `implicit-prm serve` with the scorer interface search needs (`score_samples`)."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from ..core.errors import UserError


class RemoteScorer:
    """POST /score for whole partial solutions: `score_samples(samples)` -> the server's records."""

    ref = None

    def __init__(self, url: str, api_key_env: str = "IMPLICIT_PRM_API_KEY", timeout: float = 600.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.key = os.environ.get(api_key_env)

    def _post(self, path: str, body) -> object:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise UserError(f"{self.url}{path}: HTTP {e.code}: {e.read().decode(errors='replace')}") from None
        except urllib.error.URLError as e:
            raise UserError(f"{self.url}: cannot reach the reward server ({e.reason}); is `implicit-prm serve` "
                            "running?") from None

    def score_samples(self, samples) -> list[dict]:
        return self._post("/score", [{"prompt": s.prompt, "steps": s.steps} if s.steps is not None
                                     else {"prompt": s.prompt, "response": s.response} for s in samples])
