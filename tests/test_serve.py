"""The reward server: each endpoint against offline scoring, bad requests (4xx naming the field, the server going
on), the API key, and a load test of a real server process: 32 concurrent clients, batched and single requests,
malformed ones, clients killed mid-request; no request lost, every answer equal to offline scoring."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from implicit_prm.scoring.implicit import ImplicitPRM  # noqa: E402
from implicit_prm.serve.app import ServeConfig, create_app  # noqa: E402

PROMPT = "Janet has 3 apples and buys 4 more. How many?"
STEPS = ["She starts with 3 apples.", "3 + 4 = 7, so she has 7.", "The answer is 7."]


@pytest.fixture(scope="module")
def prm(tiny_model, tiny_model_b):
    return ImplicitPRM.from_pretrained(tiny_model_b, ref=tiny_model, beta=0.5, precision="fp32", device="cpu")


@pytest.fixture
def client(prm, tiny_model_b):
    with TestClient(create_app(ServeConfig(prm=tiny_model_b, max_items=4, max_request_bytes=4000,
                                           max_length=200), scorer=prm)) as c:
        yield c


def test_score_matches_offline_scoring(client, prm):
    want = prm.score(PROMPT, STEPS)
    one = client.post("/score", json={"prompt": PROMPT, "steps": STEPS})
    assert one.status_code == 200
    assert one.json()["step_rewards"] == pytest.approx(want["step_rewards"], abs=1e-4)
    assert one.json()["scores"]["min"] == pytest.approx(want["scores"]["min"], abs=1e-4)
    many = client.post("/score", json=[{"prompt": PROMPT, "steps": STEPS},
                                       {"prompt": PROMPT, "response": "\n\n".join(STEPS)}])
    assert many.status_code == 200 and len(many.json()) == 2
    for rec in many.json():  # a response as text is split at its blank lines: the same steps
        assert rec["q_values"] == pytest.approx(want["q_values"], abs=1e-4)
    assert client.get("/health").json()["status"] == "ok"


def test_get_reward_follows_openrlhf_with_templated_queries(client, prm):
    """OpenRLHF sends each query as the decoded prompt + response (chat template and special tokens included) and
    the prompts as decoded; the reward is the min score of the response after the prompt, as offline scoring of
    (prompt, response) with the PRM's own template gives."""
    tok = prm.tok
    prompts, queries, want = [], [], []
    for user, steps in [(PROMPT, STEPS), ("What is 2 + 2?", ["2 + 2 = 4.", "The answer is 4."])]:
        p = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        prompts.append(p)
        queries.append(p + "\n\n".join(steps) + tok.eos_token)
        want.append(prm.score(user, steps)["scores"]["min"])
    r = client.post("/get_reward", json={"query": queries, "prompts": prompts, "labels": ["7", "4"]})
    assert r.status_code == 200
    assert r.json()["rewards"] == pytest.approx(want, abs=1e-4)
    # Older OpenRLHF sends the queries only: each is split after its last assistant-turn opening.
    r = client.post("/get_reward", json={"query": queries})
    assert r.status_code == 200 and r.json()["rewards"] == pytest.approx(want, abs=1e-4)


def test_assistant_opening_from_the_chat_template(prm):
    from implicit_prm.models.chat import assistant_opening
    from implicit_prm.serve.app import parse_reward_request

    opening = assistant_opening(prm.tok)
    assert opening == "<|im_start|>assistant\n"  # the tiny models carry SmolLM2's ChatML template
    q = "<|im_start|>user\nsay <|im_start|>assistant\nhi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>"
    assert parse_reward_request({"query": [q]}, 4, opening) == ([q[:-len("Hello.<|im_end|>")]], ["Hello.<|im_end|>"])


@pytest.mark.parametrize("body, status, field", [
    (b"{not json", 400, "body"),
    ({"steps": STEPS}, 400, "prompt"),
    ({"prompt": PROMPT}, 400, "response"),
    ([{"prompt": PROMPT, "steps": STEPS}, {"prompt": PROMPT, "steps": ["ok", 3]}], 400, "[1].steps[1]"),
    ([{"prompt": PROMPT, "steps": STEPS}] * 5, 413, "body"),
    ({"prompt": PROMPT, "response": "x " * 3000}, 413, "body"),
    ({"prompt": PROMPT, "response": "word " * 500}, 400, "response"),
])
def test_bad_score_requests_get_a_4xx_naming_the_field(client, body, status, field):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/score", content=data, headers={"Content-Type": "application/json"})
    assert r.status_code == status and r.json()["field"] == field and r.json()["error"]
    assert client.post("/score", json={"prompt": PROMPT, "steps": STEPS}).status_code == 200  # it goes on


def test_bad_reward_requests_and_the_api_key(client, monkeypatch):
    r = client.post("/get_reward", json={"query": ["abc"], "prompts": ["xyz"]})
    assert r.status_code == 400 and r.json()["field"] == "query[0]"
    r = client.post("/get_reward", json={"query": ["abc", "abd"], "prompts": ["ab"]})
    assert r.status_code == 400 and r.json()["field"] == "prompts"
    r = client.post("/get_reward", json={"query": ["no template here"]})  # no prompts, nothing to split at
    assert r.status_code == 400 and r.json()["field"] == "query[0]"
    monkeypatch.setenv("IMPLICIT_PRM_API_KEY", "s3cret")
    assert client.post("/score", json={"prompt": PROMPT, "steps": STEPS}).status_code == 401
    ok = client.post("/score", json={"prompt": PROMPT, "steps": STEPS}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def _search_through_the_server(port: int, prm) -> None:
    """`search --prm http://...`: whole partial solutions scored by the server, as offline scoring scores them."""
    from implicit_prm.data.benchmarks import Problem
    from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts
    from implicit_prm.search.run import SearchConfig, build, search_problem

    cfg = SearchConfig(problems="-", output="-", prm=f"http://127.0.0.1:{port}", strategy="beam", n=2,
                       beam_width=1, progress=False)
    rec = generate_rollouts(BuiltinDataConfig(output="-", n_problems=1, samples_per_problem=1, seed=5))[0]
    policy, scorer = build(cfg)
    out = search_problem(cfg, Problem("p0", rec["prompt"], str(rec["answer"]), "builtin"), policy, scorer)
    steps = out["steps"][:-1] + [out["steps"][-1] + ("" if out["finished"] else "\n\n")]
    assert out["step_rewards"] == pytest.approx(prm.score(rec["prompt"], steps)["step_rewards"], abs=1e-4)


def test_a_client_gone_before_its_batch_is_dropped_and_the_others_go_on():
    """While one batch is scored, two requests queue; one client disconnects. It gets None at once, its work is
    never scored, and the other request is answered in the next batch."""
    import asyncio

    from implicit_prm.serve.batcher import Batcher

    gate, seen = threading.Event(), []

    class Slow:
        def score_encoded(self, encs):
            seen.append(list(encs))
            gate.wait(10)
            return [{"x": e} for e in encs]

    async def gone():
        return True

    async def here():
        return False

    async def main():
        b = Batcher(Slow(), window_s=0.001)
        b.start()
        first = asyncio.create_task(b.submit(["a"]))
        while not seen:
            await asyncio.sleep(0.005)
        left = asyncio.create_task(b.submit(["bb"], gone, poll_s=0.01))
        stays = asyncio.create_task(b.submit(["ccc"], here, poll_s=0.01))
        assert await left is None and not gate.is_set()
        gate.set()
        assert await first == [{"x": "a"}] and await stays == [{"x": "ccc"}]
        await b.stop()
        return b

    b = asyncio.run(main())
    assert seen == [["a"], ["ccc"]]
    assert (b.batches, b.scored, b.dropped) == (2, 2, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: bytes, timeout: float = 120.0):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


ITEMS = [{"prompt": f"Start with {a}. Add {b}.", "steps": [f"{a} + {b} = {a + b}.", f"The answer is {a + b}."]}
         for a, b in [(3, 4), (10, 5), (7, 7), (2, 9), (12, 1), (6, 8)]]


@pytest.mark.subprocess
def test_load_32_clients_lose_no_request_and_match_offline(tmp_path, prm, tiny_model, tiny_model_b):
    """32 clients x 20 requests: single and batched /score requests, malformed ones, and 4 clients that drop their
    connection mid-request. Every other client gets exactly one answer per request; every 2xx equals offline
    scoring in fp32 within 1e-4; the server is stopped and leaves no process behind."""
    want = {json.dumps(it): prm.score(it["prompt"], it["steps"])["step_rewards"] for it in ITEMS}
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "implicit_prm", "serve", "--prm", tiny_model_b, "--ref",
                               tiny_model, "--beta", "0.5", "--precision", "fp32", "--port", str(port),
                               "--batch-window-ms", "10"], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
        answers: dict[int, list] = {}
        problems: list[str] = []

        def client(cid: int) -> None:
            rng = random.Random(cid)
            got = answers.setdefault(cid, [])
            for j in range(20):
                kind = rng.random()
                if cid >= 28 and j % 5 == 2:  # a killed client: half a request, then the connection is dropped
                    with socket.create_connection(("127.0.0.1", port)) as s:
                        body = json.dumps(ITEMS[0]).encode()
                        s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // (1 + j % 2)])
                    continue
                if kind < 0.1:
                    status, out = _post(port, "/score", b'{"prompt": 3}')
                    got.append(status)
                    if status != 400:
                        problems.append(f"malformed -> {status}")
                    continue
                items = rng.sample(ITEMS, rng.choice([1, 1, 2, 3])) if kind < 0.7 else [rng.choice(ITEMS)]
                body = items[0] if len(items) == 1 and kind >= 0.4 else items
                status, out = _post(port, "/score", json.dumps(body).encode())
                got.append(status)
                recs = out if isinstance(body, list) else [out]
                if status != 200 or len(recs) != len(items):
                    problems.append(f"{status}: {out}")
                    continue
                for it, rec in zip(items, recs):
                    if rec["step_rewards"] != pytest.approx(want[json.dumps(it)], abs=1e-4):
                        problems.append(f"mismatch {it}")

        threads = [threading.Thread(target=client, args=(c,)) for c in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads)
        assert not problems, problems[:5]
        for cid in range(32):
            expected = 20 if cid < 28 else 16
            assert len(answers[cid]) == expected  # exactly one answer per request that was not cut off
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read())
        assert health["scored"] >= 28 * 16 and health["batches"] < health["scored"]  # requests were batched
        _search_through_the_server(port, prm)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)  # no process of the server's group is left
