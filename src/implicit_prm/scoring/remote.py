"""An HTTP client of `implicit-prm serve`: a `Scorer` (protocol.py) whose model runs on the server."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Sequence

from ..core.errors import UserError
from ..data.formats import Sample


class RemoteScorer:
    """POST /score for whole responses: `score_samples(samples)` -> the server's records (each with the
    reward_schema of the server's scorer)."""

    format = "remote"

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

    def score_samples(self, samples: Sequence[Sample], split: str = "auto", step_regex: str | None = None,
                      separator: str = "\n\n") -> list[dict]:
        """The server splits a response given as text by its own --split; steps given as a list are sent as
        such (`split`, `step_regex` and `separator` are the server's settings, not the caller's)."""
        return self._post("/score", [{"prompt": s.prompt, "steps": s.steps} if s.steps is not None
                                     else {"prompt": s.prompt, "response": s.response} for s in samples])

    def score(self, prompt: str, steps: list[str] | str, separator: str = "\n\n", split: str = "auto") -> dict:
        body = {"prompt": prompt, "response": steps} if isinstance(steps, str) else {"prompt": prompt, "steps": steps}
        return self._post("/score", body)
