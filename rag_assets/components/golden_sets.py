"""The golden-set check: after vector_index writes, each tenant it wrote that has a golden set
(RAG_GOLDEN_SETS/TENANT.jsonl, `rag-assets eval`'s format) is evaluated against that tenant's
index, and a drop from the previous evaluation or below a floor is a warning
(docs/decisions.md D32)."""

from pathlib import Path

import dagster as dg

from rag_assets.lib.display import printable
from rag_assets.lib.errors import describe_error
from rag_assets.lib.keys import is_valid_tenant
from rag_assets.lib.retrieval_eval import BadEvalFile, eval_digest, parse_floors, read_eval_file, regressions
from rag_assets.resources.config import GoldenConfig
from rag_assets.resources.state import GoldenState
from rag_assets.search import evaluate, mode_for

GOLDEN_CHECK = "golden_sets"
GOLDEN_K = 5  # recall@5
TENANTS_WRITTEN = "batch_tenants_written"  # vector_index's batch metadata: the tenants whose rows it wrote or deleted


def golden_files(folder: str | Path) -> tuple[dict[str, Path], list[str]]:
    """tenant -> its golden set, from the file names (TENANT.jsonl); and the .jsonl files whose
    name is not a tenant name (lib.keys.TENANT_RULE), which are not read."""
    if not Path(folder).is_dir():
        raise ValueError(f"RAG_GOLDEN_SETS {folder} is not a folder")
    found, skipped = {}, []
    for path in sorted(Path(folder).glob("*.jsonl")):
        if is_valid_tenant(path.stem) and path.is_file():
            found[path.stem] = path
        else:
            skipped.append(path.name)
    return found, skipped


def tenants_written(instance: dg.DagsterInstance, run_id: str, index_key: dg.AssetKey) -> list[str] | None:
    """The tenants the run's materialization of `index_key` wrote; None if the run did not
    materialize it (the check was launched on its own)."""
    cursor = None
    while True:
        page = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100, ascending=False
        )
        for record in page.records:
            materialization = record.event_log_entry.asset_materialization
            if materialization and materialization.asset_key == index_key:
                written = materialization.metadata.get(TENANTS_WRITTEN)
                return list(written.value) if written is not None else []
        if not page.has_more:
            return None
        cursor = page.cursor


def evaluate_golden_sets(
    context: dg.AssetCheckExecutionContext, config: GoldenConfig, store, embedder, index_key: dg.AssetKey
) -> dg.AssetCheckResult:
    floors = parse_floors(config.floors)
    files, skipped = golden_files(config.folder)
    written = tenants_written(context.instance, context.run.run_id, index_key)
    tenants = sorted(files) if written is None else sorted(set(files).intersection(written))
    check_key = f"{index_key.to_user_string()}:{GOLDEN_CHECK}"
    mode = mode_for(store)  # the store's default mode: what `rag-assets query` searches with
    metadata: dict = {"mode": mode, "tenants": dg.MetadataValue.json(tenants)}
    found, errors, previous = [], [], {}
    with GoldenState(Path(config.state_dir) / "golden-sets.sqlite") as state:
        for tenant in tenants:
            try:
                queries = read_eval_file(files[tenant])
            except BadEvalFile as e:
                errors.append(f"{tenant}: {e}")
                continue
            # The tenant is the file's name: a golden set searches its own tenant's rows only.
            now = evaluate(store, embedder, tenant, queries, k=GOLDEN_K, modes=[mode])[mode]
            digest = eval_digest(queries)
            before = state.previous(check_key, tenant, mode, digest)
            found += [f"{tenant}: {problem}" for problem in regressions(now, before, floors, config.tolerance)]
            state.record(check_key, tenant, mode, digest, now, context.run.run_id)
            metadata |= {f"{tenant}/{name}": round(value, 4) for name, value in now.items()}
            metadata[f"{tenant}/queries"] = len(queries)
            previous[tenant] = before and {name: round(value, 4) for name, value in before.items()}
            context.log.info(
                f"golden set of {tenant}: {len(queries)} queries, " + ", ".join(f"{n} {v:.3f}" for n, v in now.items())
            )
    metadata |= {
        "previous": dg.MetadataValue.json(previous),
        "regressions": dg.MetadataValue.json(found),
        **({"errors": dg.MetadataValue.json(errors)} if errors else {}),
        **({"skipped_files": dg.MetadataValue.json(skipped)} if skipped else {}),
    }
    if not tenants:
        description = (
            "no tenant with a golden set was written" if written is not None else "no golden set in the folder"
        )
    else:
        description = "; ".join(found + errors) or f"{len(tenants)} golden set(s) held up"
    return dg.AssetCheckResult(
        passed=not found and not errors, severity=dg.AssetCheckSeverity.WARN, metadata=metadata, description=description
    )


def build_golden_check(index: dg.AssetsDefinition, store_key: str, embedder_key: str) -> dg.AssetChecksDefinition:
    """The golden_sets check of a family's vector_index (its own store and embedder)."""

    @dg.asset_check(
        asset=index,
        name=GOLDEN_CHECK,
        blocking=False,
        required_resource_keys={store_key, embedder_key, "golden_config"},
        description=(
            "Each tenant the run wrote that has a golden set (RAG_GOLDEN_SETS/TENANT.jsonl) is evaluated on its own "
            "index "
            "(recall@5, MRR, nDCG@10 by document); a warning when a metric is lower than the previous evaluation's "
            "(by more "
            "than RAG_GOLDEN_TOLERANCE) or below its RAG_GOLDEN_FLOORS. Executed alone, it evaluates every golden set."
        ),
    )
    def golden_sets(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        resources = context.resources
        try:
            return evaluate_golden_sets(
                context,
                resources.golden_config,
                getattr(resources, store_key),
                getattr(resources, embedder_key),
                index.key,
            )
        except Exception as e:  # noqa: BLE001 - never the run's failure: a warning that says why
            reason = printable(describe_error(e))
            context.log.warning(f"golden sets not evaluated: {reason}")
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"not evaluated: {reason}",
                metadata={"error": reason},
            )

    return golden_sets
