"""The embedders: the real ONNX model (checksummed, no download) and the test double."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.embeddings import HashingEmbedder, OnnxMiniLMEmbedder, verify_sha256
from assistant.errors import ModelFileError


@pytest.fixture(scope="module")
def onnx() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder(threads=1, batch_size=4)


@pytest.mark.model
def test_vectors_are_normalised_and_meaningful(onnx: OnnxMiniLMEmbedder) -> None:
    vectors = onnx.embed(["How do I reset my password?", "I forgot my password",
                          "What is the price of the Pro plan?"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.6 > sims[0, 2]


@pytest.mark.model
def test_batching_and_length_sorting_keep_order(onnx: OnnxMiniLMEmbedder) -> None:
    texts = ["short", "a much longer sentence about invoices and billing " * 3, "mid length text",
             "x", "another one about single sign-on"]
    together = onnx.embed(texts)
    alone = np.vstack([onnx.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)
    assert onnx.embed([]).shape == (0, 384)


@pytest.mark.model
def test_long_input_is_truncated_not_rejected(onnx: OnnxMiniLMEmbedder) -> None:
    assert onnx.embed(["word " * 5000]).shape == (1, 384)


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        verify_sha256(fake, "0" * 64)
    with pytest.raises(ModelFileError, match="missing"):
        verify_sha256(tmp_path / "absent.onnx", "0" * 64)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        OnnxMiniLMEmbedder(model_path=fake)


def test_hashing_embedder_is_deterministic() -> None:
    a, b = HashingEmbedder().embed(["refund my plan"]), HashingEmbedder().embed(["refund my plan"])
    assert np.array_equal(a, b)
    assert np.isclose(np.linalg.norm(a), 1.0)
