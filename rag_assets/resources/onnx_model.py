"""A sentence-transformers model run by ONNX Runtime, int8-quantized (LocalEmbedder's
`runtime="onnx-int8"`, docs/decisions.md D19).

The ONNX files are made on this machine from the packaged weights the first time they are
needed (torch.onnx export of the transformer with mean pooling and normalization, then
onnxruntime's dynamic int8 quantization) and kept in a cache folder keyed by the weights and
the versions that made them; nothing is downloaded. Later processes only open the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Per-channel int8 weights of the matrix products only: mean cosine 0.994 to the torch
# vectors, where onnxruntime's defaults (per tensor, every op) give 0.943 (docs/decisions.md D19).
QUANTIZATION = {"per_channel": True, "op_types_to_quantize": ["MatMul"]}


def default_cache_dir() -> Path:
    """~/.cache/rag_assets/models (XDG_CACHE_HOME honoured), unless RAG_MODEL_CACHE says."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag_assets" / "models"


def weights_digest(model_dir: str) -> str:
    """What the exported file depends on: the weights' files (name, size, mtime) and the
    versions of the tools that export and quantize."""
    parts = [
        (p.name, p.stat().st_size, int(p.stat().st_mtime))
        for p in sorted(Path(model_dir).iterdir())
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt"}
    ]
    tools = [version(p) for p in ("torch", "transformers", "onnxruntime", "onnx")]
    made = [str(Path(model_dir).resolve()), parts, tools, QUANTIZATION]
    return hashlib.sha256(json.dumps(made).encode()).hexdigest()[:16]


def check_mean_pooled(model) -> None:
    """Only Transformer -> mean Pooling (-> Normalize) models are exported: other pooling
    would silently give other vectors."""
    kinds = [type(m).__name__ for m in model]
    pooling = model[1].get_config_dict().get("pooling_mode") if len(kinds) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or pooling != "mean" or any(k != "Normalize" for k in kinds[2:]):
        raise ValueError(
            f"ONNX runtime: only mean-pooled models are supported, this one is {kinds} ({pooling}); use runtime torch"
        )


def _export(model, target: Path) -> None:
    import torch

    check_mean_pooled(model)
    transformer = model[0].auto_model.eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    sample = model.tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes: the export is checked against torch in tests
        torch.onnx.export(
            MeanPooled(),
            tuple(sample[name] for name in INPUTS),
            str(target),
            input_names=list(INPUTS),
            output_names=["embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in INPUTS}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript, and it handles BERT as is
        )


def int8_model_path(model_dir: str, load_model, cache_dir: Path | None = None) -> Path:
    """The int8 ONNX file of the model in `model_dir`, made (and cached) if missing.
    `load_model()` returns the loaded sentence-transformers model, only called to export."""
    folder = (cache_dir or default_cache_dir()) / f"{Path(model_dir).name}-{weights_digest(model_dir)}"
    target = folder / "model-int8.onnx"
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # concurrent makers never see half a file
        fp32, int8 = Path(scratch) / "model.onnx", Path(scratch) / "model-int8.onnx"
        _export(load_model(), fp32)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, **QUANTIZATION)
        os.replace(int8, target)
    return target


def load_session(onnx_path: str, model_dir: str):
    """(ONNX Runtime session, the model's tokenizer, its window in tokens)."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    window = json.loads((Path(model_dir) / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    return session, tokenizer, int(window)


def encode(session, tokenizer, window: int, texts: Sequence[str]) -> np.ndarray:
    """Unit-length float32 vectors of `texts`, in their order. Each text runs alone: int8
    activations are scaled per run, so in a padded batch a vector would depend on the texts
    beside it (cosine down to 0.97 between two batchings of one text; alone, it is always
    the same vector)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    encoded = tokenizer(list(texts), truncation=True, max_length=window)
    runs = ({name: np.asarray([encoded[name][i]], dtype=np.int64) for name in INPUTS} for i in range(len(texts)))
    return np.stack([session.run(None, feeds)[0][0] for feeds in runs]).astype(np.float32)
