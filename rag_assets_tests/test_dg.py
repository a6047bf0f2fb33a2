"""`dg` (dagster-dg-cli) on this project, as Dagster 1.13 recommends: `dg check defs` loads and
validates the definitions, `dg list defs` lists them, and a bad setting fails the check with
the file and the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rag_assets_tests.live import REPO

DG = str(Path(sys.executable).with_name("dg"))


def dg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DG, *args], cwd=REPO, env=env or os.environ.copy(), check=False, capture_output=True, text=True, timeout=300
    )


def test_dg_checks_and_lists_the_definitions(rag_env):
    checked = dg("check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = dg("list", "defs", "--json", env={**os.environ, "RAG_CATCHUP_CONFIG": str(REPO / "catchup.yaml")})
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assert {"raw_documents", "chunks", "embeddings", "vector_index"} <= {a["asset_key"] for a in defs["assets"]}
    assert "ingest_documents" in {j["name"] for j in defs["jobs"]}
    assert "daily_reconciliation_record" in {s["name"] for s in defs["schedules"]}
    # the catchup families, made by the CatchupSources component of defs/catchup/defs.yaml
    families = {"exports_records", "exports_vector_index", "tickets_vector_index"}
    assert families <= {a["asset_key"] for a in defs["assets"]}
    assert {"exports_catchup", "tickets_catchup"} <= {j["name"] for j in defs["jobs"]}


def test_dg_lists_the_catchup_component(rag_env):
    listed = dg("list", "components", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = {c["key"] for c in json.loads(listed.stdout)["items"]}
    assert "rag_assets.components.CatchupSources" in keys


def test_dg_check_fails_on_a_bad_catchup_file(rag_env, tmp_path):
    bad = tmp_path / "catchup.yaml"
    bad.write_text("sources:\n  broken: {kind: nothing}\n")
    checked = dg("check", "defs", env={**os.environ, "RAG_CATCHUP_CONFIG": str(bad)})
    assert checked.returncode != 0
    assert f"{bad}: sources.broken.kind" in checked.stdout + checked.stderr


def test_an_installed_package_loads_the_same_definitions(rag_env, tmp_path):
    """The deployment's image installs the package (`pip install .`): the defs folder's
    component YAML must be in it, and the tree must load without a pyproject.toml above it."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "rag_assets", source / "rag_assets", ignore=ignore)
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    listing = (
        "import json, rag_assets; from rag_assets.definitions import defs; "
        "print(json.dumps([rag_assets.__file__, sorted(j.name for j in defs.get_repository_def().get_all_jobs())]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "RAG_CATCHUP_CONFIG": str(REPO / "catchup.yaml")}
    done = subprocess.run([sys.executable, "-c", listing], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, jobs = json.loads(done.stdout.strip().splitlines()[-1])
    assert where.startswith(str(tmp_path / "site"))
    assert {"ingest_documents", "exports_catchup", "tickets_catchup"} <= set(jobs)
