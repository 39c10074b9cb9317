"""The embedding backends: numpy MiniLM (the real model), hashing, and an OpenAI-compatible
endpoint served by a real fake server on loopback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.contrib.auth.models import User
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from agents_registry import embeddings
from agents_registry.selectors import match_agents
from agents_registry.services import profile_embed
from tests.agents_registry.conftest import current_profile, make_agent


def test_minilm_reproduces_the_published_reference_similarities() -> None:
    # sentence-transformers' quickstart for all-MiniLM-L6-v2 prints 0.6660, 0.1046, 0.1411.
    vectors = embeddings.embed_texts(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    similarities = vectors @ vectors.T
    assert similarities[0, 1] == pytest.approx(0.6660, abs=5e-4)
    assert similarities[0, 2] == pytest.approx(0.1046, abs=5e-4)
    assert similarities[1, 2] == pytest.approx(0.1411, abs=5e-4)


def test_vectors_are_float32_unit_rows_and_batching_does_not_change_them() -> None:
    texts = ["short", "a much longer text " * 20, "x" * 5000, ""]
    together = embeddings.embed_texts(texts)
    assert together.shape == (4, 384)
    assert together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    for index, text in enumerate(texts):
        assert np.allclose(embeddings.embed_text(text), together[index], atol=1e-5)
    assert embeddings.embedding_model_id() == "minilm-l6-v2/numpy-1"


def test_wrong_dimension_or_norm_is_refused() -> None:
    with pytest.raises(embeddings.InvalidEmbedding, match="384 dimensions"):
        embeddings.validate_embedding([0.5] * 383)
    with pytest.raises(embeddings.InvalidEmbedding, match="unit-normalised"):
        embeddings.validate_embedding([0.5] * 384)
    with pytest.raises(embeddings.InvalidEmbedding, match="NaN"):
        embeddings.validate_embedding([float("nan")] * 384)
    with pytest.raises(embeddings.InvalidEmbedding):
        match_agents(embedding=[1.0] * 384, budget=10)


def test_hashing_backend_is_word_based(settings) -> None:
    settings.EMBEDDING_BACKEND = "hashing"
    assert embeddings.embedding_model_id() == "hashing-384/1"
    a, b, c = embeddings.embed_texts(
        ["translate german contracts", "german contracts translated", "bake bread"]
    )
    assert float(a @ b) > 0.3
    assert abs(float(a @ c)) < 0.3
    assert np.linalg.norm(embeddings.embed_text("")) == pytest.approx(1.0)


@pytest.fixture
def openai_server(httpserver: HTTPServer, settings):
    calls: list[dict] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.data)
        calls.append({"body": body, "auth": request.headers.get("Authorization")})
        data = []
        for index, text in enumerate(body["input"]):
            vector = np.zeros(384)
            vector[len(text) % 384] = 3.0  # deliberately not normalised: we normalise
            data.append({"object": "embedding", "index": index, "embedding": vector.tolist()})
        return Response(
            json.dumps({"object": "list", "data": data[::-1]}), content_type="application/json"
        )

    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(handler)
    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_OPENAI_BASE_URL = httpserver.url_for("/v1")
    settings.EMBEDDING_OPENAI_MODEL = "text-embedding-3-small"
    settings.EMBEDDING_OPENAI_API_KEY = "sk-test"
    return calls


def test_openai_backend_calls_the_endpoint_and_keeps_the_order(openai_server) -> None:
    vectors = embeddings.embed_texts(["ab", "abc"])
    assert openai_server == [
        {
            "body": {"model": "text-embedding-3-small", "input": ["ab", "abc"], "dimensions": 384},
            "auth": "Bearer sk-test",
        }
    ]
    assert vectors[0][2] == pytest.approx(1.0) and vectors[1][3] == pytest.approx(1.0)
    assert embeddings.embedding_model_id() == "openai:text-embedding-3-small@384"


def test_openai_backend_failures_are_clear(httpserver: HTTPServer, settings) -> None:
    settings.EMBEDDING_BACKEND = "openai"
    settings.EMBEDDING_OPENAI_BASE_URL = httpserver.url_for("/v1")
    httpserver.expect_request("/v1/embeddings").respond_with_data("nope", status=500)
    with pytest.raises(embeddings.EmbeddingError, match="HTTP 500"):
        embeddings.embed_text("hello")


@pytest.mark.django_db
def test_vectors_of_different_models_are_never_compared(settings, alice: User) -> None:
    settings.EMBEDDING_BACKEND = "hashing"
    agent = make_agent(alice, "Hashed", "Translates German contracts into English for lawyers.")
    assert current_profile(agent).embedding_model == "hashing-384/1"
    settings.EMBEDDING_BACKEND = "minilm"
    assert match_agents(text="Translate a German contract", budget=500).candidates == []
    # Re-embedding with the model now in use makes it matchable again.
    assert profile_embed(profile_id=current_profile(agent).pk) is True
    assert current_profile(agent).embedding_model == "minilm-l6-v2/numpy-1"
    assert [
        c.agent.pk for c in match_agents(text="Translate a German contract", budget=500).candidates
    ] == [agent.pk]
    assert profile_embed(profile_id=current_profile(agent).pk) is False  # idempotent
