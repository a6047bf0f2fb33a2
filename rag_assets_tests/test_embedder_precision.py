"""The local model's precision (docs/decisions.md D29): the decision from the CPU's flags, the
probe's verdict and its cache file (pure), then the real model in bfloat16 and float32."""

import json

import numpy as np
import pytest

from rag_assets.lib import precision
from rag_assets.lib.precision import Verdict, bf16_native, cached_verdict, cpu_identity, probe_texts, probe_verdict
from rag_assets.resources import embedders
from rag_assets.resources.embedders import EmbedStats, LocalEmbedder, embedder_from_spec

EPYC = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi2 sha_ni"  # this machine's kind: no bf16
SKYLAKE_X = "sse4_2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl"
COOPER_LAKE = SKYLAKE_X + " avx512_vnni avx512_bf16"
SAPPHIRE_RAPIDS = COOPER_LAKE + " amx_bf16 amx_tile amx_int8"
GENOA = SKYLAKE_X + " avx512_bf16 avx512_vnni"  # AMD Zen 4
GRAVITON3 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve i8mm bf16"


@pytest.mark.parametrize(
    "flags, capability, native",
    [
        (EPYC, "AVX2", False),
        (SKYLAKE_X, "AVX512", False),  # AVX512 alone is not bf16
        (COOPER_LAKE, "AVX512", True),
        (SAPPHIRE_RAPIDS, "AVX512", True),
        (GENOA, "AVX512", True),
        (GRAVITON3, "DEFAULT", True),
        ("amx_tile", "", True),
        ("AVX512_BF16", "", True),  # as a flag, in any case
        ("", "", False),
        ("", "AVX512_BF16", True),  # a torch that names it
        ("", "AMX", True),
    ],
)
def test_bf16_native_from_the_flags(flags, capability, native):
    assert bf16_native(flags.split(), capability) is native


def test_cpu_identity_reads_proc_cpuinfo():
    x86 = (
        f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {EPYC}\n\nprocessor\t: 1\nmodel name\t: AMD "
        f"EPYC\nflags\t\t: {EPYC}\n"
    )
    assert cpu_identity(x86) == ("AMD EPYC", frozenset(EPYC.split()))
    arm = f"processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: {GRAVITON3}\nCPU part\t: 0xd40\n"
    model, flags = cpu_identity(arm)
    assert model == "" and "bf16" in flags and bf16_native(flags)
    assert precision.host_cpu("/nonexistent/cpuinfo") == ("", frozenset())


@pytest.mark.parametrize(
    "float32_seconds, bf16_seconds, cosine_min, chosen",
    [
        (1.52, 1.0, 0.9999, "bfloat16"),  # an AMX host: 45.8 vs 30.1 chunks/s, cosine 0.9999
        (10.3, 77.0, 0.99992, "float32"),  # this host: bf16 emulated, 7.5x slower
        (1.0, 0.95, 0.9999, "float32"),  # faithful but not clearly faster: a tie keeps float32
        (2.0, 1.0, 0.999, "float32"),  # faster but a vector moved too far
        (1.1, 1.0, 0.9995, "bfloat16"),  # both thresholds exactly met
    ],
)
def test_probe_verdict(float32_seconds, bf16_seconds, cosine_min, chosen):
    assert probe_verdict(float32_seconds, bf16_seconds, cosine_min) == chosen


def test_probe_texts_are_fixed_and_of_varied_length():
    texts = probe_texts()
    assert texts == probe_texts() and len(texts) == precision.PROBE_TEXTS == len(set(texts))
    lengths = sorted(len(t) for t in texts)
    assert lengths[0] == 60 and lengths[-1] == 1400 and all(t.strip() for t in texts)


class Probe:
    """A probe that counts its calls and gives a fixed verdict."""

    def __init__(self, verdict: Verdict):
        self.verdict, self.calls = verdict, 0

    def __call__(self) -> Verdict:
        self.calls += 1
        return self.verdict


HOST = {"cpu": "Fake Xeon", "flags": "abc", "torch": "2.13.0", "weights": "w1", "probe": 1}
BF16 = Verdict("bfloat16", cosine_min=0.99991, cosine_mean=0.99995, float32_seconds=1.5, bf16_seconds=1.0)


def test_the_verdict_is_probed_once_and_reused(tmp_path):
    path, probe = tmp_path / "models" / "bf16-probe.json", Probe(BF16)
    assert cached_verdict(path, HOST, probe) == (BF16, False)
    assert cached_verdict(path, HOST, probe) == (BF16, True)
    assert probe.calls == 1
    (entry,) = json.loads(path.read_text()).values()
    assert entry["depends_on"] == HOST and entry["verdict"]["precision"] == "bfloat16"
    # Another torch on the same host probes again; both verdicts are kept.
    other = Probe(Verdict("float32", cosine_min=0.9999, float32_seconds=1.0, bf16_seconds=1.0))
    assert cached_verdict(path, {**HOST, "torch": "2.14.0"}, other)[0].precision == "float32"
    assert cached_verdict(path, HOST, probe) == (BF16, True) and (probe.calls, other.calls) == (1, 1)
    assert len(json.loads(path.read_text())) == 2


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({precision.probe_key(HOST): {"verdict": {"precision": "fp8"}}}),
        json.dumps({precision.probe_key(HOST): {"verdict": {"precision": "bfloat16", "speed": 2}}}),
        json.dumps({precision.probe_key(HOST): "bfloat16"}),
    ],
)
def test_a_corrupt_cache_file_is_probed_again_and_rewritten(tmp_path, content):
    path, probe = tmp_path / "bf16-probe.json", Probe(BF16)
    path.write_text(content)
    assert cached_verdict(path, HOST, probe) == (BF16, False)
    assert cached_verdict(path, HOST, probe) == (BF16, True) and probe.calls == 1
    assert [p.name for p in tmp_path.iterdir()] == ["bf16-probe.json"]  # no scratch file left


def test_a_cache_that_cannot_be_written_only_probes_again(tmp_path):
    path, probe = tmp_path / "bf16-probe.json", Probe(BF16)
    path.mkdir()  # a folder where the file should be: neither readable nor writable as one
    assert cached_verdict(path, HOST, probe) == (BF16, False)
    assert cached_verdict(path, HOST, probe) == (BF16, False) and probe.calls == 2
    assert [p.name for p in tmp_path.iterdir()] == ["bf16-probe.json"]  # its scratch file removed


@pytest.fixture
def fresh_auto():
    """runtime auto decides again (it decides once per process)."""
    embedders._auto_precision.cache_clear()
    yield
    embedders._auto_precision.cache_clear()


def test_auto_probes_once_per_host_where_the_cpu_has_bf16(fresh_auto, tmp_path, monkeypatch):
    probe = Probe(BF16)
    monkeypatch.setattr(precision, "host_cpu", lambda: ("Fake Xeon", frozenset(SAPPHIRE_RAPIDS.split())))
    monkeypatch.setattr(embedders, "_probe", lambda weights, batch_size: probe())
    embedder = LocalEmbedder(model_cache=str(tmp_path))
    assert embedder.torch_precision() == BF16
    embedders._auto_precision.cache_clear()  # as a later process on the host
    assert embedder.torch_precision() == BF16 and probe.calls == 1
    assert [p.name for p in tmp_path.iterdir()] == ["bf16-probe.json"]
    assert LocalEmbedder(runtime="torch", model_cache=str(tmp_path)).torch_precision() == Verdict("float32")


def test_auto_without_bf16_flags_is_float32_without_a_probe(fresh_auto, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "host_cpu", lambda: ("AMD EPYC", frozenset(EPYC.split())))
    monkeypatch.setattr(embedders, "_probe", lambda weights, batch_size: pytest.fail("probed"))
    assert LocalEmbedder(model_cache=str(tmp_path)).torch_precision() == Verdict("float32")
    assert not list(tmp_path.iterdir())


def test_auto_on_this_host_is_float32_by_its_flags(fresh_auto, tmp_path):
    if embedders.host_bf16():
        pytest.skip("this host's CPU has bfloat16 instructions: auto probes here")
    stats = EmbedStats()
    LocalEmbedder(model_cache=str(tmp_path)).embed(["one short text"], stats)
    assert stats.runtimes == {"torch-float32"} and stats.bf16_probe_cosine_min is None
    assert not list(tmp_path.iterdir())


TEXTS = [
    "Vacation days are approved by the manager of the team.",
    "x",
    "A much longer text about harbours, cranes and tariffs " * 12,
]


def test_float32_gives_the_vectors_it_always_gave():
    vectors = LocalEmbedder(runtime="torch").embed(TEXTS)
    model = embedders._load_sentence_transformer(embedders.default_local_model_path("all-MiniLM-L6-v2"))
    np.testing.assert_array_equal(vectors, model.encode(TEXTS, batch_size=8, normalize_embeddings=True))
    # The first values of the first vector, as the torch runtime gave them before D29.
    np.testing.assert_allclose(vectors[0][:6], [0.00806, 0.03903, 0.05849, 0.05689, 0.0062, 0.01028], atol=2e-5)


def test_bf16_vectors_are_the_float32_ones_to_0_999():
    stats = EmbedStats()
    bf16 = LocalEmbedder(runtime="bf16").embed(TEXTS, stats)
    float32 = LocalEmbedder(runtime="torch").embed(TEXTS)
    assert stats.runtimes == {"torch-bfloat16"} and bf16.dtype == np.float32 and bf16.shape == float32.shape
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    assert (bf16 * float32).sum(axis=1).min() >= 0.999


@pytest.mark.parametrize("runtime", ["auto", "torch", "bf16", "onnx-int8"])
def test_each_runtime_has_a_spec_and_auto_torch_bf16_share_a_model_id(runtime):
    embedder = LocalEmbedder(runtime=runtime)
    again = embedder_from_spec(embedder.spec)
    assert (again.runtime, again.model_id) == (runtime, embedder.model_id)
    assert embedder.model_id == ("local:all-MiniLM-L6-v2+int8" if runtime == "onnx-int8" else "local:all-MiniLM-L6-v2")


def test_stats_keep_every_runtime_and_the_lowest_probe_cosine():
    stats = EmbedStats()
    stats.ran_on("torch-float32")
    stats.ran_on("torch-bfloat16", 0.99993)
    stats.ran_on("torch-bfloat16", 0.99991)
    stats.ran_on(None)
    assert stats.runtimes == {"torch-float32", "torch-bfloat16"} and stats.bf16_probe_cosine_min == 0.99991
