"""The API keeps its OpenAPI schema's promises: schemathesis generates requests from the
schema, valid and invalid, and every answer must be one the schema declares (no
undeclared status, no 5xx, every error a JSON reason), with queries open and protected,
against a real store and a real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from retailstream.config import Settings
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.topics import create_topics
from retailstream.serve.app import create_app
from retailstream.serve.commands import RatingPublisher
from retailstream.views.store import SqliteStore
from retailstream.world.records import TOPIC_RATINGS

TOKEN = "schema-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRODUCT = {"sku": "SKU-000001", "name": "Shirt", "category": "shirts", "season": "all",
           "brand": "Norda", "price": 39.95}  # fmt: skip
# Generated requests per operation and mode: enough to find the earlier schema's 14
# failures (a run of 497 cases), few enough for a test of seconds.
EXAMPLES = 15


def _app(settings: Settings, tmp: Path, broker: LocalBroker, protect_queries: bool) -> FastAPI:
    create_topics(broker.bootstrap, {TOPIC_RATINGS: settings.kafka.topics[TOPIC_RATINGS]})
    serve = settings.serve.model_copy(
        update={"api_token": TOKEN, "consistency_wait_s": 0.2, "protect_queries": protect_queries}
    )
    store = SqliteStore(tmp / "views.db")
    store.replace("products", [PRODUCT])
    publisher = RatingPublisher(broker.bootstrap, timeout_s=5.0)
    return create_app(settings.model_copy(update={"serve": serve}), store, publisher)


@pytest.mark.parametrize("protect_queries", [False, True], ids=["open-queries", "protected"])
def test_every_answer_is_one_the_schema_declares(
    settings: Settings, kafka_broker: LocalBroker, tmp_path: Path, protect_queries: bool
) -> None:
    app = _app(settings, tmp_path, kafka_broker, protect_queries)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, str] = {}
    for found in schema.get_all_operations():
        assert isinstance(found, Ok), found.err()  # every operation of the schema loads
        operation = found.ok()
        # A well-formed consistency token the API did not issue is refused with its
        # declared 400 and reason: the schema cannot tell issued tokens apart.
        excluded = [positive_data_acceptance] if operation.label == "GET /v1/items/{sku}" else []
        secured = bool(operation.definition.raw.get("security"))
        for mode in GenerationMode:
            # Invalid requests go as generated to a route that needs the token: one
            # that leaves it out must be refused, which ours would hide.
            headers = {} if mode is GenerationMode.NEGATIVE and secured else AUTH
            try:
                _fuzz(operation, mode, headers, excluded)
            except Unsatisfiable:  # no parameters or body to make invalid
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # gathered, reported together
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:1500]
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())


def _fuzz(operation: Any, mode: GenerationMode, headers: dict, excluded: list) -> None:
    """Send `EXAMPLES` generated requests to `operation`; raise what schemathesis finds."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case: Any) -> None:
        answer = case.call(headers=headers)
        case.validate_response(answer, excluded_checks=excluded, headers=headers)
        if answer.status_code >= 400:
            assert "error" in answer.json(), answer.text

    check()
