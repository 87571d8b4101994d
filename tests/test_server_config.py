"""Server configuration from flags and HYBRIDSEARCH_* environment variables (no server started)."""

from __future__ import annotations

import pytest

from hybridsearch.cli import build_parser
from hybridsearch.errors import ConfigError
from hybridsearch.server.cli import config_from_args
from hybridsearch.server.config import ServerConfig


def test_environment_then_flags(monkeypatch):
    env = {"HYBRIDSEARCH_PORT": "9001", "HYBRIDSEARCH_MICRO_BATCHING": "false", "HYBRIDSEARCH_SCORE_WEIGHTS": "1,0,0",
           "HYBRIDSEARCH_API_TOKEN": "t", "HYBRIDSEARCH_BATCH_MAX_WAIT_MS": "2.5", "HYBRIDSEARCH_INDEX": "idx"}  # fmt: skip
    cfg = ServerConfig.from_env(env)
    assert (cfg.port, cfg.micro_batching, cfg.score_weights, cfg.api_token, cfg.batch_max_wait_ms, cfg.index) == (
        9001, False, (1.0, 0.0, 0.0), "t", 2.5, "idx")  # fmt: skip
    assert ServerConfig.from_env(env, port=9002).port == 9002
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = build_parser().parse_args(["serve", "--port", "9003", "--max-texts", "10", "-o", "batch_size=4",
                                      "--encoder", "minilm", "--no-micro-batching"])  # fmt: skip
    cfg = config_from_args(args)
    assert (cfg.port, cfg.max_texts, cfg.encoder_options, cfg.index, cfg.micro_batching) == (9003, 10, {"batch_size": 4}, "idx", False)


@pytest.mark.parametrize(
    "env",
    [{"HYBRIDSEARCH_PORT": "eighty"}, {"HYBRIDSEARCH_MICRO_BATCHING": "maybe"}, {"HYBRIDSEARCH_MAX_TEXTS": "0"},
     {"HYBRIDSEARCH_SCORE": "cosine"}, {"HYBRIDSEARCH_SCORE_WEIGHTS": "1,2"}, {"HYBRIDSEARCH_API_TOKEN": " "},
     {"HYBRIDSEARCH_QUEUE_RETENTION_S": "-1"}, {"HYBRIDSEARCH_MAX_INPUT_TOKENS": "2"}],
)  # fmt: skip
def test_bad_settings_say_what_to_fix(env):
    with pytest.raises(ConfigError):
        ServerConfig.from_env(env)


def test_serve_needs_an_index_or_an_encoder(monkeypatch):
    monkeypatch.delenv("HYBRIDSEARCH_INDEX", raising=False)
    monkeypatch.delenv("HYBRIDSEARCH_ENCODER", raising=False)
    with pytest.raises(ConfigError, match="--index"):
        config_from_args(build_parser().parse_args(["serve"]))
    with pytest.raises(ConfigError, match="score-weights"):
        config_from_args(build_parser().parse_args(["serve", "--index", "x", "--score-weights", "a,b,c"]))


def test_option_flags_have_environment_variables(monkeypatch):
    monkeypatch.setenv("HYBRIDSEARCH_OPTION", "batch_size=4 device=cpu")
    monkeypatch.setenv("HYBRIDSEARCH_RERANKER_OPTION", "time_budget=2 'combine=minmax(retrieval=0.3,rerank=0.7)'")
    base = ["serve", "--index", "idx", "--encoder", "minilm", "--reranker", "scoring-api",
            "--reranker-url", "http://127.0.0.1:9/ai/run"]  # fmt: skip
    cfg = config_from_args(build_parser().parse_args(base))
    assert cfg.encoder_options == {"batch_size": 4, "device": "cpu"}
    assert cfg.reranker_options == {"time_budget": 2, "combine": "minmax(retrieval=0.3,rerank=0.7)"}
    # flags win over the environment
    cfg = config_from_args(build_parser().parse_args([*base, "-o", "batch_size=8", "--reranker-option", "concurrency=2"]))
    assert cfg.encoder_options == {"batch_size": 8} and cfg.reranker_options == {"concurrency": 2}
    # an option for a reranker that is not chosen is refused, from the environment too
    with pytest.raises(ConfigError, match="without --reranker"):
        config_from_args(build_parser().parse_args(["serve", "--index", "idx"]))
    monkeypatch.setenv("HYBRIDSEARCH_OPTION", "no-equals-sign")
    with pytest.raises(ConfigError, match="HYBRIDSEARCH_OPTION"):
        config_from_args(build_parser().parse_args(base))
