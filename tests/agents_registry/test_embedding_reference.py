"""The numpy MiniLM forward pass gives the same vectors as the reference implementation.

The reference vectors were computed once with sentence-transformers on torch (CPU) from the same
weights (see ``data/minilm_reference.json``); torch is not a dependency of the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from django.test import override_settings

from agents_registry.embeddings import embed_texts

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@override_settings(EMBEDDING_BACKEND="minilm")
def test_numpy_minilm_matches_sentence_transformers() -> None:
    texts = [item["text"] for item in REFERENCE["vectors"]]
    expected = np.array([item["embedding"] for item in REFERENCE["vectors"]], dtype=np.float32)
    ours = embed_texts(texts)
    assert ours.shape == (5, 384)
    assert np.abs(ours - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
