"""The configuration layer (docs/configuration.md): one typed reading of the environment,
defaults written once, the config resources built from it by name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from rag_assets.resources.config import GoldenConfig, RagConfig, SyncConfig
from rag_assets.settings import BadSetting, Settings, env_name, loading_settings, loading_with

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_setting_is_in_the_configuration_table():
    documented = set(re.findall(r"`(RAG_[A-Z0-9_]+)`", DOC.read_text()))
    missing = {env_name(f.name) for f in dataclasses.fields(Settings)} - documented
    assert not missing


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("RAG_MAX_OCR_PAGES", "7", "max_ocr_pages", 7),
        ("RAG_MAX_OCR_PAGES", " 7 ", "max_ocr_pages", 7),
        ("RAG_GOLDEN_TOLERANCE", "0.5", "golden_tolerance", 0.5),
        ("RAG_MAX_SECONDS_PER_DOCUMENT", "12", "max_seconds_per_document", 12.0),
        ("RAG_ECS_SUBNETS", "subnet-1, subnet-2,", "ecs_subnets", ("subnet-1", "subnet-2")),
        ("RAG_SQS_QUEUE_URL", "http://queue", "sqs_queue_url", "http://queue"),
        ("RAG_CSV_TEXT_COLUMN", " text ", "csv_text_column", " text "),  # text is taken as it is
        ("RAG_BATCH_SIZE", "", "batch_size", Settings().batch_size),  # empty: the default
    ],
)
def test_a_variable_sets_its_field_by_type(variable, value, field, expected):
    assert getattr(Settings.from_env({variable: value}), field) == expected


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RAG_BATCH_SIZE", "ten", "RAG_BATCH_SIZE='ten': must be a whole number"),
        ("RAG_MAX_OCR_PAGES", "1.5", "RAG_MAX_OCR_PAGES='1.5': must be a whole number"),
        ("RAG_PURGE_GUARD_FRACTION", "half", "RAG_PURGE_GUARD_FRACTION='half': must be a number"),
    ],
)
def test_a_bad_value_names_its_variable(variable, value, message):
    with pytest.raises(BadSetting) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value) == message


def test_no_environment_is_the_defaults():
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"UNRELATED": "1", "rag_batch_size": "3"}) == Settings()


def test_the_config_resources_defaults_are_the_settings_defaults():
    assert RagConfig.from_settings(Settings()) == RagConfig()
    assert SyncConfig.from_settings(Settings()) == SyncConfig(state_dir=Settings().state_dir)
    assert GoldenConfig.from_settings(Settings()) is None


def test_the_config_resources_take_the_settings_of_their_names():
    settings = Settings.from_env(
        {
            "RAG_CHUNK_TOKENS": "100",
            "RAG_MAX_PDF_PAGES": "9",
            "RAG_IMAGE_ANALYZER": "openai:gpt-4o-mini",
            "RAG_TENANT_FROM_KEY": "fixed:acme",
            "RAG_SQS_QUEUE_URL": "http://queue",
            "RAG_RECONCILE_SECONDS": "60",
            "RAG_WORK_DIR": "/w",
            "RAG_GOLDEN_SETS": "/golden",
            "RAG_GOLDEN_FLOORS": "mrr=0.5",
        }
    )
    rag, sync, golden = (c.from_settings(settings) for c in (RagConfig, SyncConfig, GoldenConfig))
    assert (rag.chunk_tokens, rag.max_pdf_pages, rag.image_analyzer) == (100, 9, "openai:gpt-4o-mini")
    assert (sync.tenant_rule, sync.reconcile_interval_seconds, sync.state_dir) == ("fixed:acme", 60.0, "/w/state")
    assert (golden.folder, golden.floors, golden.state_dir) == ("/golden", "mrr=0.5", "/w/state")
    # without an event queue the listing sensor lists pass after pass: no reconciliation interval
    assert SyncConfig.from_settings(dataclasses.replace(settings, sqs_queue_url=None)).reconcile_interval_seconds == 0


def test_the_defs_folder_reads_the_settings_of_its_load_only():
    with pytest.raises(RuntimeError, match="build_definitions"):
        loading_settings()
    given = Settings(batch_size=3)
    with loading_with(given):
        assert loading_settings() is given
    with pytest.raises(RuntimeError):
        loading_settings()
