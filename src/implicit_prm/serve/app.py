"""The `implicit-prm serve` command: a reward server over HTTP (FastAPI under uvicorn), the model loaded once.

Endpoints:
  POST /score       {prompt, response} or {prompt, steps}, or a list of them -> the `score` command's fields
                    (step_spans, step_rewards, q_values, scores, reward_schema) for each, in the same shape.
  POST /get_reward  OpenRLHF's remote reward model protocol: {"query": [str], "prompts": [str], ...} ->
                    {"rewards": [float]}. A query is the full decoded text (chat template and special tokens
                    included) and starts with its prompt; the response is the rest, scored after the prompt's
                    own tokens (the template is not applied again; a trailing EOS/pad text is dropped). Without
                    "prompts" (older OpenRLHF sends queries only), a query is split after its last assistant-turn
                    opening of the PRM's chat template. The reward is the response's `--reward` score (default
                    min). Implicit PRMs only.
  GET  /health      status, the scorer, and batching counters.
Requests that arrive within --batch-window-ms are scored together (batcher.py), up to --batch-tokens, with
`score`'s batching, prompt sharing and caches. Safety: binds 127.0.0.1 by default; --max-request-bytes,
--max-items and --max-length bound a request; a malformed one gets a 4xx JSON {"error", "field"} and the server
goes on; a client that disconnects is dropped from its batch; with $IMPLICIT_PRM_API_KEY (--api-key-env) set,
every request needs `Authorization: Bearer <key>` (or `X-API-Key: <key>`).
"""

import hmac
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from ..core.config import field
from ..core.errors import InputError, UserError
from ..data.formats import Sample
from ..models.chat import assistant_opening
from ..scoring.load import load_scorer
from ..scoring.protocol import LocalScorer
from ..scoring.settings import ScorerSettings
from ..steps.encoding import Encoded, Encoder, encode_samples
from .batcher import Batcher


@dataclass
class ServeConfig(ScorerSettings):
    host: str = field("127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    port: int = field(8000, help="port")
    batch_window_ms: float = field(5.0, help="requests arriving within this window are scored together")
    batch_tokens: int = field(16384, help="sequence tokens per scored batch at most")
    max_request_bytes: int = field(4 * 2 ** 20, help="largest request body")
    max_items: int = field(256, help="most responses in one request")
    max_length: int = field(4096, help="most tokens of prompt + response")
    reward: str = field("min", help="/get_reward: which score is the reward (min, last, sum, mean; prod for "
                                    "probability formats)")
    split: Literal["auto", "markers", "blank"] = field("auto", help="step boundaries of a response given as text")
    step_separator: str = field("\n\n", help="joins the steps of {prompt, steps} items")
    api_key_env: str = field("IMPLICIT_PRM_API_KEY", help="environment variable holding the API key (unset: no key)")
    log_level: str = field("warning", help="uvicorn's log level")


class RequestError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


GONE = RequestError(499, "client disconnected")  # the answer to a client that went away (nobody reads it)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, "expected a non-empty string", where)
    return value


def parse_items(body: Any, max_items: int, separator: str = "\n\n"):
    """The /score body as data.Samples (and whether it was a list); RequestError naming the bad field. Steps given
    as a list are joined by `separator` into the response."""

    many = isinstance(body, list)
    items = body if many else [body]
    if not items:
        raise RequestError(400, "expected at least one item", "body")
    if len(items) > max_items:
        raise RequestError(413, f"{len(items)} items; at most {max_items} per request", "body")
    samples = []
    for i, item in enumerate(items):
        at = f"[{i}]." if many else ""
        if not isinstance(item, dict):
            raise RequestError(400, "expected an object {prompt, response} or {prompt, steps}", at.rstrip(".") or "body")
        prompt = _text(item.get("prompt"), at + "prompt")
        if "steps" in item:
            steps = item["steps"]
            if not isinstance(steps, list) or not steps:
                raise RequestError(400, "expected a non-empty list of strings", at + "steps")
            for k, s in enumerate(steps):
                _text(s, f"{at}steps[{k}]")
            samples.append(Sample.api(prompt, separator.join(steps), list(steps), ("request", i + 1), i))
        elif "response" in item:
            samples.append(Sample.api(prompt, _text(item["response"], at + "response"), None, ("request", i + 1), i))
        else:
            raise RequestError(400, "missing: give 'response' (a string) or 'steps' (a list of strings)", at + "response")
    return samples, many


def parse_reward_request(body: Any, max_items: int, opening: str | None = None) -> tuple[list[str], list[str]]:
    """(prompts, responses) of an OpenRLHF /get_reward body; each query must start with its prompt. Without
    "prompts" (OpenRLHF versions that send the queries only), a query is split after the last `opening` (the
    chat template's assistant turn: assistant_opening) it holds."""
    if not isinstance(body, dict):
        raise RequestError(400, "expected an object {query: [str], prompts: [str]}", "body")
    queries, prompts = body.get("query"), body.get("prompts")
    if not isinstance(queries, list) or not queries:
        raise RequestError(400, "expected a non-empty list of strings", "query")
    if len(queries) > max_items:
        raise RequestError(413, f"{len(queries)} queries; at most {max_items} per request", "query")
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise RequestError(400, "expected a string", f"query[{i}]")
    if prompts is None and "prompts" not in body:
        if opening is None:
            raise RequestError(400, "missing: a list of prompts, one per query (this PRM's tokenizer has no chat "
                                    "template to find where a response starts)", "prompts")
        prompts = []
        for i, q in enumerate(queries):
            at = q.rfind(opening)
            if at < 0:
                raise RequestError(400, f"no 'prompts' given, and the query holds no {opening!r} (the chat "
                                        "template's assistant turn) to split it at", f"query[{i}]")
            prompts.append(q[:at + len(opening)])
    if not isinstance(prompts, list) or len(prompts) != len(queries):
        raise RequestError(400, f"expected a list of {len(queries)} strings, one per query", "prompts")
    responses = []
    for i, (q, p) in enumerate(zip(queries, prompts)):
        _text(p, f"prompts[{i}]")
        if not q.startswith(p):
            raise RequestError(400, "the query does not start with its prompt", f"query[{i}]")
        responses.append(q[len(p):])
    return prompts, responses


class RewardService:
    """What the endpoints do, apart from FastAPI: check the key and the size, parse, encode, batch, answer. Each
    handler returns a JSON body or raises RequestError."""

    def __init__(self, cfg: ServeConfig, scorer: LocalScorer):
        self.cfg, self.scorer = cfg, scorer
        self.batcher = Batcher(scorer, cfg.batch_window_ms / 1000, cfg.batch_tokens)
        # /get_reward reads a query after its own formatted prompt: raw encoding, implicit PRMs only
        self.raw = Encoder(scorer.tok, "raw", cfg.max_length, "error") if scorer.format == "implicit" else None
        self.opening = assistant_opening(scorer.tok)
        self.tail = [t for t in {scorer.tok.eos_token, scorer.tok.pad_token} if t]

    def authorize(self, headers) -> None:
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), key.encode()):
                raise RequestError(401, "missing or wrong API key (Authorization: Bearer <key>)", "authorization")

    async def read_json(self, request) -> Any:
        self.authorize(request.headers)
        limit = self.cfg.max_request_bytes
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limit:
            raise RequestError(413, f"request of {size} bytes; at most {limit}", "body")
        body = await request.body()
        if len(body) > limit:
            raise RequestError(413, f"request of {len(body)} bytes; at most {limit}", "body")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"malformed JSON: {e}", "body") from None

    def encode(self, samples: list[Sample], encoder: Encoder | None = None, many: bool = True) -> list[Encoded]:
        cfg = self.cfg
        try:
            if encoder is None:
                encs = self.scorer.encode(samples, cfg.split, None, cfg.step_separator)
            else:
                encs = encode_samples(encoder, samples, cfg.split, None, cfg.step_separator)
        except InputError as e:
            raise RequestError(400, e.message, f"[{e.line - 1}].{e.field}" if many and e.line else e.field) from None
        except UserError as e:
            raise RequestError(400, str(e)) from None
        for i, (s, e) in enumerate(zip(samples, encs)):
            if e is None or len(e) > cfg.max_length:
                what = "steps" if s.steps is not None else "response"
                raise RequestError(400, f"prompt + response exceed max_length {cfg.max_length} tokens",
                                   f"[{i}].{what}" if many else what)
        return encs

    def health(self) -> dict:
        b = self.batcher
        return {"status": "ok", "prm": self.cfg.prm, "format": self.scorer.format, "batches": b.batches,
                "scored": b.scored, "dropped": b.dropped, "queued": b.queue.qsize()}

    async def score(self, request) -> Any:
        samples, many = parse_items(await self.read_json(request), self.cfg.max_items, self.cfg.step_separator)
        encs = self.encode(samples, many=many)
        recs = await self.batcher.submit(encs, request.is_disconnected)
        if recs is None:  # the client went away; nobody reads this
            raise GONE
        out = [{"step_spans": [list(x) for x in e.spans[:e.n_steps]], **r} for e, r in zip(encs, recs)]
        return out if many else out[0]

    def reward_samples(self, body: Any) -> list[Sample]:
        """The /get_reward queries as Samples: each response after its prompt, without the EOS / padding text an
        RL trainer decodes after it."""
        if self.raw is None:
            raise RequestError(400, "/get_reward scores a query after its own formatted prompt, which needs an "
                                    "implicit PRM; use /score for this format", "prm")
        prompts, responses = parse_reward_request(body, self.cfg.max_items, self.opening)
        samples = []
        for i, (p, r) in enumerate(zip(prompts, responses)):
            for t in self.tail:
                while r.endswith(t):
                    r = r[:-len(t)]
            if not r.strip():
                raise RequestError(400, "the query has no response after its prompt", f"query[{i}]")
            samples.append(Sample.api(p, r, None, ("query", i + 1), i))
        return samples

    async def get_reward(self, request) -> dict:
        try:
            encs = self.encode(self.reward_samples(await self.read_json(request)), self.raw)
        except RequestError as e:
            if e.field and e.field.startswith("["):
                e.field = "query" + e.field.split(".")[0]
            raise
        recs = await self.batcher.submit(encs, request.is_disconnected)
        if recs is None:
            raise GONE
        try:
            return {"rewards": [float(r["scores"][self.cfg.reward]) for r in recs]}
        except KeyError:
            raise RequestError(400, f"no score '{self.cfg.reward}'; this scorer has {sorted(recs[0]['scores'])}",
                               "reward") from None


def create_app(cfg: ServeConfig, scorer: LocalScorer | None = None):
    """The FastAPI app; `scorer` (scoring.load_scorer) is loaded from cfg when not given."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    if scorer is None:
        scorer = load_scorer(cfg, max_length=cfg.max_length, batch_tokens=cfg.batch_tokens, overlong="error",
                             separator=cfg.step_separator)
    service = RewardService(cfg, scorer)

    @asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="implicit-prm reward server", lifespan=lifespan)

    async def answer(handler, request: Request):
        try:
            return await handler(request)
        except RequestError as e:
            return JSONResponse({"error": e.message, "field": e.field}, status_code=e.status)

    @app.get("/health")
    async def health():
        return service.health()

    @app.post("/score")
    async def score(request: Request):
        return await answer(service.score, request)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        return await answer(service.get_reward, request)

    app.state.service = service
    return app


def serve(cfg: ServeConfig) -> None:
    """Load the scorer once and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("`implicit-prm serve` needs FastAPI and uvicorn: pip install 'implicit-prm[serve]'") from None
    app = create_app(cfg)
    print(f"[implicit-prm] serving {cfg.prm} on http://{cfg.host}:{cfg.port} (POST /score, POST /get_reward, "
          "GET /health)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
