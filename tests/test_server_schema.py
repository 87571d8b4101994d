"""schemathesis against the running server's own OpenAPI document: no 5xx, and every answer (status code, content
type, body) matches the schema. Bounded: a few examples per operation and a time limit."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from loopback import start_server
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_index import build_index

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, tiny_bge_m3_encoder, tiny_bge_m3_dir):
    path = build_index(tmp_path_factory.mktemp("schema") / "index", tiny_bge_m3_encoder, tiny_bge_m3_dir)
    srv = start_server(tiny_bge_m3_encoder, index_encoder=tiny_bge_m3_encoder, index=str(path), max_texts=100,
                       max_contexts=50, max_documents=20)  # fmt: skip
    yield schemathesis.openapi.from_url(srv.url + "/openapi.json"), srv
    srv.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_answer_follows_the_schema(api_schema):
    api_schema, srv = api_schema
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 11
    failures = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def run(case):
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{op.method.upper()} {op.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    answered = {}
    for metric in srv.state.metrics.requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                answered[sample.labels["status"]] = answered.get(sample.labels["status"], 0) + sample.value
    assert sum(answered.values()) >= 8 * len(operations) and answered.get("200", 0) >= len(operations)
    samples = [m for metric in srv.state.metrics.requests.collect() for m in metric.samples if m.name.endswith("_total")]
    # /ready answers 503 while the server warms up, before the test starts; nothing else may answer 5xx.
    fives = [(m.labels, m.value) for m in samples if m.labels["status"].startswith("5") and m.labels["route"] != "/ready"]
    assert not fives, fives
