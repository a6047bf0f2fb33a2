"""`rag-assets query -` and `rag-assets eval` as people and scripts run them (a real process,
an index made by `rag-assets ingest` in LanceDB on disk), and the golden_sets asset check
through a real Dagster instance."""

from __future__ import annotations

import json
import os
import select
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.definitions import build_definitions
from rag_assets.defs.resources import build_resources
from rag_assets.ingest import discover, ingest
from rag_assets.resources.object_store import ObjectStore
from rag_assets.search import DEFAULT_MODE
from rag_assets.settings import Settings
from rag_assets_tests.test_cli import CLI, run_cli

# Each document is one chunk; acme has two, so a query's other acme document is its second.
CORPUS = {
    "acme/vacation.md": "# Vacation\nEvery employee gets twenty five days of paid vacation per year.\n",
    "acme/parking.md": "# Parking\nThe parking garage under the office closes at eleven in the evening.\n",
    "globex/security.txt": "Report a stolen laptop to the security team within one hour.\n",
}
VACATION, PARKING, STOLEN = "how many vacation days do I get", "when does the parking garage close", "I lost my laptop"
LOG3 = 0.6309297535714575  # nDCG@10 of one expected document at rank 2: 1/log2(3)


def write_corpus(root: Path, files: dict[str, str]) -> Path:
    for key, text in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(text)
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> dict[str, str]:
    """The environment of an index made once for this module's commands by `rag-assets ingest`
    (a DAGSTER_HOME, a work dir, LanceDB on disk)."""
    base = tmp_path_factory.mktemp("indexed")
    (base / "catchup.yaml").write_text("sources: {}\n")
    env = {**os.environ, "DAGSTER_HOME": str(base / "dagster_home"), "RAG_WORK_DIR": str(base / "rag")}
    env |= {"RAG_INDEX_URI": str(base / "rag" / "index"), "RAG_CATCHUP_CONFIG": str(base / "catchup.yaml")}
    for name in ("RAG_EMBEDDER", "RAG_GOLDEN_SETS"):
        env.pop(name, None)
    done = run_cli("ingest", str(write_corpus(base / "inbox", CORPUS)), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["ingested"]) == 3
    return env


def write_jsonl(path: Path, items: list) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def test_query_lines_answer_each_line_in_order(indexed):
    stdin = (
        f"{VACATION}\n\n{PARKING}\r\n".encode()
        + b"x" * (50 << 20)  # 50 MB on one line
        + b"\n\xff\xfe not UTF-8\n"
        + STOLEN.encode()  # the last line has no line end
    )
    command = [*CLI, "query", "-", "--tenant", "acme", "-k", "2", "--json"]
    done = subprocess.run(command, input=stdin, check=False, capture_output=True, env=indexed, timeout=300)
    assert done.returncode == 1  # some lines were not queries
    out = done.stdout.decode().splitlines()
    assert len(out) == 6  # one line per line, in order
    answers = [json.loads(line) for line in out]
    assert [hit["key"] for hit in answers[0]] == ["acme/vacation.md", "acme/parking.md"]
    assert answers[1] == []  # an empty line
    assert answers[2][0]["key"] == "acme/parking.md"
    assert answers[3] == {"error": "longer than 65,536 bytes (52,428,800)", "line": 4}
    assert answers[4] == {"error": "not UTF-8 (byte 0xff at position 0)", "line": 5}
    assert {hit["tenant"] for hit in answers[5]} == {"acme"}  # never another tenant's rows
    stderr = done.stderr.decode()
    assert "rag-assets query: line 4: longer than 65,536 bytes" in stderr and "line 5: not UTF-8" in stderr

    # The same hits, with the same fields, as `query TEXT --json` gives.
    single = run_cli("query", VACATION, "--tenant", "acme", "-k", "2", "--json", env=indexed)
    assert single.returncode == 0, single.stderr
    assert json.loads(single.stdout) == answers[0]
    assert [set(hit) for hit in answers[0]] == [{"key", "tenant", "page", "score", "text"}] * 2


def test_query_lines_answer_a_script_that_waits_for_each_answer(indexed):
    proc = subprocess.Popen(
        [*CLI, "query", "-", "--tenant", "acme", "-k", "1", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=indexed,
    )  # fmt: skip

    def ask(text: str) -> list:
        proc.stdin.write(text.encode() + b"\n")
        proc.stdin.flush()
        # A guard against a hang, not a timing check: the answer comes before stdin is closed.
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        assert ready, "no answer to a line while stdin stays open"
        return json.loads(proc.stdout.readline())

    try:
        assert ask(VACATION)[0]["key"] == "acme/vacation.md"
        assert ask(PARKING)[0]["key"] == "acme/parking.md"
        assert ask("") == []
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0 and proc.stdout.read() == b""


def test_query_lines_need_json(tmp_path):
    done = run_cli("query", "-", "--tenant", "acme", env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")})
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "rag-assets query: TEXT - reads a query a line and prints a JSON line each: add --json"
    )


def test_eval_scores_known_answers_by_document_in_every_mode(indexed, tmp_path):
    from rag_assets.search import MODES

    golden = write_jsonl(
        tmp_path / "acme.jsonl",
        [
            {"query": VACATION, "expected": ["acme/vacation.md"]},  # rank 1: 1, 1, 1
            {"query": PARKING, "expected": ["acme/vacation.md"]},  # rank 2 (acme's other document): 1, 1/2, 1/log2(3)
            {"query": STOLEN, "expected": ["globex/security.txt"]},  # another tenant's: never found, 0, 0, 0
        ],
    )
    done = run_cli("eval", str(golden), "--tenant", "acme", "--json", env=indexed)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tenant"] == "acme" and report["queries"] == 3 and report["k"] == 5
    assert set(report["modes"]) == set(MODES)
    assert report["modes"]["vector"] == pytest.approx(
        {"recall@5": 2 / 3, "mrr": 0.5, "ndcg@10": (1 + LOG3) / 3}, abs=1e-4
    )

    at_1 = run_cli("eval", str(golden), "--tenant", "acme", "-k", "1", env=indexed)
    assert at_1.returncode == 0, at_1.stderr
    lines = at_1.stdout.splitlines()
    assert lines[0] == "tenant acme: 3 queries, scored by document"
    assert lines[1].split() == ["mode", "recall@1", "mrr", "ndcg@10"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == list(MODES)  # one row a mode, in MODES' order
    assert rows["vector"] == ["0.333", "0.500", "0.544"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'{"query": "a", "expected": ["k"]}\n\nnot json\n', "line 3: not JSON (Expecting value at column 1)"),
        (b'{"query": "a"}\n', "line 1: missing 'expected'"),
        (b'{"query": ["a"], "expected": ["k"]}\n', 'line 1: "query" must be a non-empty string, not ["a"]'),
        (b'{"query": "a", "expected": "k"}\n', 'line 1: "expected" must be a non-empty list of document keys'),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1: not JSON this reader can read: nested too deeply"),
        (
            b'{"query": "a", "expected": ["k"]}\n' + b"x" * (50 << 20) + b"\n",
            "line 2: longer than 1,048,576 bytes (52,428,800)",
        ),
        (b"", 'holds no query (one JSON object a line: {"query": ..., "expected": [...]})'),
    ],
)
def test_a_bad_eval_file_is_one_line_naming_file_line_and_reason(tmp_path, content, reason):
    bad = tmp_path / "golden.jsonl"
    bad.write_bytes(content)
    done = run_cli("eval", str(bad), "--tenant", "acme", env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"rag-assets eval: {bad}{':' if reason.startswith('holds') else ''} {reason}\n"


def test_a_missing_eval_file_is_one_line(tmp_path):
    done = run_cli(
        "eval",
        str(tmp_path / "nope.jsonl"),
        "--tenant",
        "acme",
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 2
    assert done.stderr == f"rag-assets eval: {tmp_path / 'nope.jsonl'}: No such file or directory\n"


# The golden-set check.

CHECK = dg.AssetCheckKey(dg.AssetKey("vector_index"), "golden_sets")


def golden_evaluations(instance: dg.DagsterInstance, run_ids) -> list:
    return [
        r.event_log_entry.dagster_event.asset_check_evaluation_data
        for run_id in run_ids
        for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        if r.event_log_entry.dagster_event.asset_check_evaluation_data.asset_check_key == CHECK
    ]


def run_ingest(root: Path, instance: dg.DagsterInstance):
    """Ingest the folder (what the index holds at its version launches no run) and return the
    golden_sets check's evaluation and metadata."""
    settings = Settings.from_env()
    refs, unfound = discover([str(root)], ObjectStore(), None, settings.tenant_from_key)
    assert not unfound
    report = ingest(refs, defs=build_definitions(settings), instance=instance)
    assert not report.failed
    (evaluation,) = golden_evaluations(instance, report.runs)
    return evaluation, {k: v.value for k, v in evaluation.metadata.items()}


def test_the_golden_set_of_each_tenant_written_is_checked_and_a_drop_warns(rag_env, instance, tmp_path, monkeypatch):
    golden = tmp_path / "golden"
    golden.mkdir()
    write_jsonl(
        golden / "acme.jsonl",
        [{"query": VACATION, "expected": ["acme/vacation.md"]}, {"query": PARKING, "expected": ["acme/parking.md"]}],
    )
    write_jsonl(golden / "globex.jsonl", [{"query": STOLEN, "expected": ["globex/security.txt"]}])
    (golden / "not a tenant.jsonl").write_text("ignored\n")
    monkeypatch.setenv("RAG_GOLDEN_SETS", str(golden))
    root = write_corpus(tmp_path / "inbox", {k: v for k, v in CORPUS.items() if k.startswith("acme/")})

    # The first evaluation: acme's documents were written, and globex's golden set is not asked.
    evaluation, meta = run_ingest(root, instance)
    assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN and not evaluation.blocking
    assert meta["tenants"] == ["acme"] and meta["mode"] == DEFAULT_MODE and "globex/mrr" not in meta
    assert (meta["acme/recall@5"], meta["acme/mrr"], meta["acme/ndcg@10"], meta["acme/queries"]) == (1.0, 1.0, 1.0, 2)
    assert meta["previous"] == {"acme": None} and meta["regressions"] == []
    assert meta["skipped_files"] == ["not a tenant.jsonl"]

    # A new acme document answers the parking question better: acme/parking.md drops to rank 2.
    write_corpus(root, {"acme/garage.md": PARKING + "\n"})
    evaluation, meta = run_ingest(root, instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN  # a warning: the run went on
    assert (
        meta["acme/recall@5"] == 1.0
        and meta["acme/mrr"] == 0.75
        and meta["acme/ndcg@10"] == pytest.approx((1 + LOG3) / 2, abs=1e-4)
    )
    assert meta["previous"] == {"acme": {"recall@5": 1.0, "mrr": 1.0, "ndcg@10": 1.0}}
    assert meta["regressions"] == [
        "acme: mrr 0.750 dropped from 1.000 (tolerance 0.01)",
        "acme: ndcg@10 0.815 dropped from 1.000 (tolerance 0.01)",
    ]
    assert "acme: mrr 0.750 dropped from 1.000" in evaluation.description

    # globex's turn: its own set, on its own rows only; a floor met passes.
    monkeypatch.setenv("RAG_GOLDEN_FLOORS", "recall@5=0.5,mrr=1")
    write_corpus(root, {k: v for k, v in CORPUS.items() if k.startswith("globex/")})
    evaluation, meta = run_ingest(root, instance)
    assert meta["tenants"] == ["globex"] and "acme/mrr" not in meta
    assert (meta["globex/recall@5"], meta["globex/mrr"], meta["globex/queries"]) == (1.0, 1.0, 1)
    assert evaluation.passed

    # Executed on its own (as from the UI): every golden set. acme has not changed since its last
    # evaluation (no drop) but is below the floor now set.
    job = build_definitions(Settings.from_env()).resolve_job_def("ingest_documents")
    result = job.get_subset(asset_selection=set(), asset_check_selection={CHECK}).execute_in_process(instance=instance)
    assert result.success
    (evaluation,) = golden_evaluations(instance, [result.run_id])
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["tenants"] == ["acme", "globex"]
    assert meta["regressions"] == ["acme: mrr 0.750 is below the floor 1.000"]
    assert not evaluation.passed


def test_a_golden_set_that_cannot_be_read_warns_and_the_run_goes_on(rag_env, instance, tmp_path, monkeypatch):
    golden = tmp_path / "golden"
    golden.mkdir()
    (golden / "acme.jsonl").write_text('{"query": "vacation"}\n')
    monkeypatch.setenv("RAG_GOLDEN_SETS", str(golden))
    root = write_corpus(tmp_path / "inbox", {"acme/vacation.md": CORPUS["acme/vacation.md"]})
    evaluation, meta = run_ingest(root, instance)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert meta["errors"] == [f"acme: {golden / 'acme.jsonl'} line 1: missing 'expected'"]

    monkeypatch.setenv("RAG_GOLDEN_SETS", str(tmp_path / "nowhere"))
    write_corpus(root, {"acme/more.md": "More text.\n"})
    evaluation, meta = run_ingest(root, instance)
    assert not evaluation.passed
    assert (
        evaluation.description == f"not evaluated: ValueError: RAG_GOLDEN_SETS {tmp_path / 'nowhere'} is not a folder"
    )


def test_the_check_is_there_only_when_configured_and_bad_floors_fail_by_name(tmp_path):
    catchup = {"RAG_CATCHUP_CONFIG": str(Path(__file__).resolve().parents[1] / "catchup.yaml")}
    assert CHECK not in build_definitions(Settings.from_env(catchup)).resolve_asset_graph().asset_check_keys
    configured = Settings.from_env({**catchup, "RAG_GOLDEN_SETS": str(tmp_path)})
    checks = build_definitions(configured).resolve_asset_graph().asset_check_keys
    assert (
        CHECK in checks and dg.AssetCheckKey(dg.AssetKey("exports_vector_index"), "golden_sets") in checks
    )  # catchup's too
    with pytest.raises(ValueError, match="RAG_GOLDEN_FLOORS: 'mrr=2'"):
        build_resources(Settings.from_env({"RAG_GOLDEN_SETS": str(tmp_path), "RAG_GOLDEN_FLOORS": "mrr=2"}))
