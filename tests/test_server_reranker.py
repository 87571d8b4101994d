"""``hybridsearch serve --reranker ...``: the reranker of ``/v1/search`` chosen on the command line, on real servers.

The scoring API is a second real server on 127.0.0.1 (the Workers AI route of ``hybridsearch serve`` with the tiny
bge-m3); local rerankers are the tiny bge-m3 and the tiny cross-encoder built at test time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_index import build_index, copy_index
from tiny_reranker import build_tiny_reranker

from hybridsearch.cli import build_parser
from hybridsearch.errors import ConfigError
from hybridsearch.index import HybridIndex
from hybridsearch.retriever import Retriever
from hybridsearch.server import ServerConfig, ServerThread
from hybridsearch.server.cli import config_from_args
from hybridsearch.server.reranking import build_reranker
from hybridsearch.workers_ai import WorkersAIClient

pytestmark = pytest.mark.timeout(300)
QUERY = "the sun moon protein gene"


@pytest.fixture(scope="module")
def enc(tiny_bge_m3_encoder):
    return tiny_bge_m3_encoder


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, enc, tiny_bge_m3_dir):
    return build_index(tmp_path_factory.mktemp("served") / "index", enc, tiny_bge_m3_dir)


@pytest.fixture(scope="module")
def scorer(enc):
    """The scoring API: a real server answering Workers AI ``{query, contexts}`` with the tiny bge-m3's cosine."""
    s = ServerThread(ServerConfig(port=0, shutdown_timeout_s=10.0), encoder=enc).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _no_server_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("HYBRIDSEARCH_") and key not in ("HYBRIDSEARCH_DATA",):
            monkeypatch.delenv(key)


def config(*flags: str):
    return config_from_args(build_parser().parse_args(["serve", "--port", "0", "--shutdown-timeout-s", "10", *flags]))


def serve(cfg, enc):
    return ServerThread(cfg, encoder=enc, index_encoder=enc).start()


def search(url: str, **body):
    r = httpx.post(url + "/v1/search", json={"query": QUERY, **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ scoring API
def test_scoring_api_reranker_from_flags_reorders_by_the_scoring_servers_scores(enc, index_dir, scorer, tmp_path):
    path = copy_index(index_dir, tmp_path / "index")
    cfg = config("--index", str(path), "--reranker", "scoring-api", "--reranker-url", scorer.url + "/ai/run",
                 "--reranker-token", "not-checked-by-this-scorer", "--rerank-depth", "8")  # fmt: skip
    assert cfg.rerank_depth == 8 and "not-checked" not in repr(cfg)
    s = serve(cfg, enc)
    try:
        ready = httpx.get(s.url + "/ready").json()
        assert ready["reranker"]["type"] == "ScoringAPIReranker"
        assert ready["reranker"]["run_url"] == scorer.url + "/ai/run/@cf/baai/bge-m3"
        first = search(s.url, k=8, mode="sparse", rerank=False)
        on = search(s.url, k=4, mode="sparse")
    finally:
        s.stop()
    assert first["reranked"] is False and first["reranker"] is None and len(first["hits"]) == 8
    assert on["reranked"] is True and on["reranker"] == "ScoringAPIReranker" and len(on["hits"]) == 4
    # The scoring server's own scores of the 8 first-stage hits (rerank depth 8) decide the order.
    with WorkersAIClient(base_url=scorer.url + "/ai/run") as client:
        want = client.score(QUERY, [h["text"] for h in first["hits"]], truncate_inputs=True)
    order = np.argsort(-want, kind="stable")[:4]
    assert [h["id"] for h in on["hits"]] == [first["hits"][i]["id"] for i in order]
    np.testing.assert_allclose([h["scores"]["rerank"] for h in on["hits"]], want[order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([h["score"] for h in on["hits"]], want[order], rtol=1e-5, atol=1e-6)
    assert [h["ranks"]["rerank"] for h in on["hits"]] == [1, 2, 3, 4]
    # A real reorder: the scorer (dense cosine) disagrees with the sparse first stage on this query.
    assert [h["id"] for h in on["hits"]] != [h["id"] for h in first["hits"][:4]]


def test_a_scoring_api_that_cannot_score_fails_the_start(enc, index_dir, scorer, tmp_path):
    path = copy_index(index_dir, tmp_path / "index")
    nobody = f"http://127.0.0.1:{free_port()}/ai/run"
    for url, why in ((nobody, "APIConnectionError"), (scorer.url, "NotFoundError")):  # nothing there; a wrong base URL
        s = ServerThread(config("--index", str(path), "--reranker", "scoring-api", "--reranker-url", url), encoder=enc, index_encoder=enc)
        with pytest.raises(RuntimeError, match=f"ConfigError: the scoring API at {url}/@cf/baai/bge-m3 did not score.*{why}"):
            s.start()


def test_the_reranker_token_reaches_a_scoring_api_with_auth(enc, index_dir, tmp_path):
    path = copy_index(index_dir, tmp_path / "index")
    guarded = ServerThread(ServerConfig(port=0, api_token="s3cret", shutdown_timeout_s=10.0), encoder=enc).start()
    try:
        flags = ["--index", str(path), "--reranker", "scoring-api", "--reranker-url", guarded.url + "/ai/run"]
        s = ServerThread(config(*flags), encoder=enc, index_encoder=enc)
        with pytest.raises(RuntimeError, match="did not score a test pair .AuthenticationError"):
            s.start()
        s = serve(config(*flags, "--reranker-token", "s3cret"), enc)
        try:
            assert search(s.url, k=3, mode="dense")["reranked"] is True
        finally:
            s.stop()
    finally:
        guarded.stop()


def test_scoring_api_reranker_check_raises_what_the_client_raised(scorer):
    from hybridsearch.errors import APIConnectionError
    from hybridsearch.rerankers import ScoringAPIReranker

    ok = ScoringAPIReranker(base_url=scorer.url + "/ai/run")
    ok.check()
    ok.close()
    down = ScoringAPIReranker(base_url=f"http://127.0.0.1:{free_port()}/ai/run", max_retries=0)
    with pytest.raises(APIConnectionError):
        down.check()
    down.close()


# ------------------------------------------------------------------------------------------ local models
def _in_process(enc, path: Path, reranker, k: int, depth: int, mode: str):
    retriever = Retriever(enc, HybridIndex.load(path), reranker=reranker, rerank_depth=depth)
    return [h.doc_id for h in retriever.retrieve(QUERY, k=k, mode=mode)[0]]


def test_bge_m3_reranker_reuses_the_index_model_or_loads_a_directory(enc, index_dir, tiny_bge_m3_dir, tmp_path):
    from hybridsearch.rerankers import BGEM3Reranker

    path = copy_index(index_dir, tmp_path / "index")
    want = _in_process(enc, path, BGEM3Reranker(enc), k=5, depth=12, mode="sparse")
    for extra in ([], ["--reranker-model", str(tiny_bge_m3_dir), "--reranker-option", "device=cpu"]):
        s = serve(config("--index", str(path), "--reranker", "bge-m3", "--rerank-depth", "12", *extra), enc)
        try:
            reranker = s.state.store.retriever.reranker
            assert (reranker.encoder is enc) == (not extra)
            on = search(s.url, k=5, mode="sparse")
        finally:
            s.stop()
        assert on["reranked"] is True and on["reranker"] == "BGEM3Reranker"
        assert [h["id"] for h in on["hits"]] == want


def test_cross_encoder_reranker_from_a_model_directory(enc, index_dir, tmp_path):
    from hybridsearch.rerankers import CrossEncoderReranker

    model = build_tiny_reranker(tmp_path / "tiny-reranker")
    path = copy_index(index_dir, tmp_path / "index")
    want = _in_process(enc, path, CrossEncoderReranker(str(model), device="cpu"), k=5, depth=10, mode="dense")
    s = serve(config("--index", str(path), "--reranker", "cross-encoder", "--reranker-model", str(model),
                     "--reranker-option", "device=cpu", "--reranker-option", "batch_size=4", "--rerank-depth", "10"), enc)  # fmt: skip
    try:
        assert s.state.store.retriever.reranker.batch_size == 4
        on = search(s.url, k=5, mode="dense")
        off = search(s.url, k=5, mode="dense", rerank=False)
    finally:
        s.stop()
    assert on["reranked"] is True and on["reranker"] == "CrossEncoderReranker" and "rerank" in on["hits"][0]["scores"]
    assert [h["id"] for h in on["hits"]] == want
    assert off["reranked"] is False and "rerank" not in off["hits"][0]["scores"]


def test_a_cross_encoder_without_its_head_never_turns_ready(enc, index_dir, tmp_path):
    model = build_tiny_reranker(tmp_path / "headless", head=False)
    path = copy_index(index_dir, tmp_path / "index")
    s = ServerThread(config("--index", str(path), "--reranker", "cross-encoder", "--reranker-model", str(model),
                            "--reranker-option", "device=cpu"), encoder=enc, index_encoder=enc)  # fmt: skip
    with pytest.raises(RuntimeError, match="ModelLoadError: .*random"):
        s.start()


def test_an_index_without_texts_cannot_be_reranked(enc, tiny_bge_m3_dir, tmp_path):
    from hybridsearch.encoders.stored import save_encoder

    path = tmp_path / "no-texts"
    index = HybridIndex()
    index.add(["a", "b"], enc.encode_corpus(["the cat", "the dog"], outputs=("dense", "sparse")))
    index.save(path)
    save_encoder(path, "bge-m3", {"model": str(tiny_bge_m3_dir), "device": "cpu"}, enc)
    s = ServerThread(config("--index", str(path), "--reranker", "bge-m3"), encoder=enc, index_encoder=enc)
    with pytest.raises(RuntimeError, match="ConfigError: the index's top 2 hits for a test query carry no document text"):
        s.start()


@pytest.mark.slow
def test_serve_command_exits_with_the_load_error(index_dir, tmp_path):
    """The real command: a reranker that cannot load stops the process with the error, not an unready server."""
    missing = tmp_path / "no-such-model"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "hybridsearch.cli", "serve", "--index", str(index_dir), "--port", str(free_port()),
           "--reranker", "cross-encoder", "--reranker-model", str(missing)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: no model directory at {missing}" in done.stderr


# ------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reranker", "scoring-api"], "needs --reranker-url"),
        (["--reranker", "scoring-api", "--reranker-url", "127.0.0.1:8001"], "http"),
        (["--reranker", "scoring-api", "--reranker-url", " "], "empty"),
        (["--reranker", "cross-encoder"], "needs --reranker-model"),
        (["--reranker", "bge-m3", "--reranker-url", "http://h/ai/run"], "only apply to --reranker scoring-api"),
        (["--reranker", "cross-encoder", "--reranker-model", "m", "--reranker-token", "t"], "only apply"),
        (["--reranker-url", "http://h/ai/run"], "without --reranker"),
        (["--reranker-option", "time_budget=2"], "without --reranker"),
        (["--rerank-depth", "20"], "without --reranker"),
        (["--reranker", "bge-m3", "--rerank-depth", "0"], "rerank_depth must be a positive integer"),
        (["--reranker", "bge-m3", "--reranker-option", "device"], "key=value"),
    ],
    ids=["api-no-url", "api-url-scheme", "api-url-empty", "ce-no-model", "local-with-url", "local-with-token",
         "url-alone", "option-alone", "depth-alone", "depth-0", "option-form"],
)  # fmt: skip
def test_bad_reranker_flags_say_what_to_fix(flags, message):
    with pytest.raises(ConfigError, match=message):
        config("--index", "idx", *flags)


def test_a_reranker_needs_an_index():
    with pytest.raises(ConfigError, match="needs --index"):
        config("--encoder", "minilm", "--reranker", "bge-m3")


def test_reranker_settings_from_the_environment(monkeypatch):
    env = {"HYBRIDSEARCH_INDEX": "idx", "HYBRIDSEARCH_RERANKER": "scoring-api", "HYBRIDSEARCH_RERANK_DEPTH": "30",
           "HYBRIDSEARCH_RERANKER_URL": "http://127.0.0.1:9/ai/run", "HYBRIDSEARCH_RERANKER_TOKEN": "s3cret"}  # fmt: skip
    cfg = ServerConfig.from_env(env)
    assert (cfg.reranker, cfg.rerank_depth, cfg.reranker_url, cfg.reranker_token) == ("scoring-api", 30, env["HYBRIDSEARCH_RERANKER_URL"], "s3cret")
    assert "s3cret" not in repr(cfg)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert config("--rerank-depth", "5").rerank_depth == 5  # a flag wins
    for bad in ({"HYBRIDSEARCH_RERANK_DEPTH": "many"}, {"HYBRIDSEARCH_RERANKER": "magic"}):
        with pytest.raises(ConfigError):
            ServerConfig.from_env({**env, **bad})


def test_reranker_options_are_checked_against_the_class():
    cfg = config("--index", "idx", "--reranker", "scoring-api", "--reranker-url", "http://127.0.0.1:9/ai/run",
                 "--reranker-option", "time_budget=1.5", "--reranker-option", "combine=rrf", "--reranker-model", "@cf/x/y")  # fmt: skip
    reranker = build_reranker(cfg)
    assert (reranker.time_budget, reranker.combine, reranker.run_url) == (1.5, "rrf(k=60)", "http://127.0.0.1:9/ai/run/@cf/x/y")
    reranker.close()
    for option, message in (("budget=2", "not an option of the scoring-api reranker"), ("time_budget=-1", "time_budget"),
                            ("api_token=x", "not an option")):  # fmt: skip
        cfg = config("--index", "idx", "--reranker", "scoring-api", "--reranker-url", "http://h/ai/run", "--reranker-option", option)
        with pytest.raises(ConfigError, match=message):
            build_reranker(cfg)
    with pytest.raises(ConfigError, match="reuses the index's encoder"):
        build_reranker(config("--index", "idx", "--reranker", "bge-m3"), index_encoder=None)


def test_a_reranker_object_and_a_reranker_setting_conflict(enc, index_dir):
    from hybridsearch.rerankers import BGEM3Reranker

    with pytest.raises(ConfigError, match="give one of them"):
        ServerThread(ServerConfig(port=0, index=str(index_dir), reranker="bge-m3"), encoder=enc, reranker=BGEM3Reranker(enc))
