"""The int8 ONNX runtime of the local embedder: made from the packaged weights, cached, and
close to the torch vectors (docs/decisions.md D19)."""


import numpy as np
import pytest

from rag_assets.resources import onnx_model
from rag_assets.resources.embedders import LocalEmbedder, default_local_model_path

TEXTS = [
    "The with statement calls __enter__ before the block and __exit__ after it.",
    "Vacation days are approved by the manager of the team.",
    "x",
    "A much longer text about harbours, cranes and tariffs " * 12,
    "Les congés sont approuvés par le responsable.",
    "",
]


def module(name: str, pooling: str | None = None):
    return type(name, (), {"get_config_dict": lambda self: {"pooling_mode": pooling}})()


@pytest.mark.parametrize(
    "modules, ok",
    [
        ([module("Transformer"), module("Pooling", "mean"), module("Normalize")], True),
        ([module("Transformer"), module("Pooling", "mean")], True),
        ([module("Transformer"), module("Pooling", "cls"), module("Normalize")], False),
        ([module("Transformer"), module("Pooling", "mean"), module("Dense")], False),
        ([module("Transformer")], False),
    ],
)
def test_only_mean_pooled_models_are_exported(modules, ok):
    if ok:
        onnx_model.check_mean_pooled(modules)
    else:
        with pytest.raises(ValueError, match="only mean-pooled models"):
            onnx_model.check_mean_pooled(modules)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def test_int8_vectors_are_close_to_torch_in_any_order(model_cache):
    int8 = LocalEmbedder(runtime="onnx-int8", model_cache=str(model_cache))
    vectors = int8.embed(TEXTS)
    reference = LocalEmbedder().embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() > 0.97 and cosines.mean() > 0.985, cosines
    # A text's vector does not depend on the texts embedded with it.
    order = [3, 0, 5, 2, 4, 1]
    np.testing.assert_array_equal(int8.embed([TEXTS[i] for i in order]), vectors[order])
    np.testing.assert_array_equal(int8.embed(TEXTS[2:3]), vectors[2:3])
    assert len(list(model_cache.rglob("model-int8.onnx"))) == 1


def test_the_export_is_made_once_and_reused(model_cache):
    weights = default_local_model_path("all-MiniLM-L6-v2")
    first = onnx_model.int8_model_path(weights, lambda: LocalEmbedder()._model, model_cache)

    def must_not_export():
        raise AssertionError("exported again")

    assert onnx_model.int8_model_path(weights, must_not_export, model_cache) == first
    assert not [p for p in first.parent.iterdir() if p != first], "scratch files left behind"


def test_a_changed_weights_folder_gets_its_own_export(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"one")
    before = onnx_model.weights_digest(str(folder))
    (folder / "model.safetensors").write_bytes(b"other")
    assert onnx_model.weights_digest(str(folder)) != before


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime 'cuda'"):
        _ = LocalEmbedder(runtime="cuda").model_id


def test_the_int8_model_is_another_model_id():
    assert LocalEmbedder(runtime="onnx-int8").model_id != LocalEmbedder().model_id
