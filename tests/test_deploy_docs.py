"""docs/deploy.md against what it describes: the go-live query resolves in ZetaSQL (BigQuery's reference
analyzer) against the tables of schemas/, and the names its commands use exist in terraform/ and
cloudbuild.yaml."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.zetasql import Catalog, type_proto, zetasql  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "deploy.md").read_text()
PROJECT = "my-cloudact-prod"
ORG = "acme"


def _go_live_query() -> str:
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", DOC, re.S)
                if b.startswith("bq query") and "cost_data_standard_1_3" in b]
    m = re.fullmatch(r'bq query --location=\$BQ_LOCATION --use_legacy_sql=false --parameter=org::acme "\n(.*)"\n',
                     block, re.S)
    assert m, f"unexpected go-live command:\n{block}"
    return m.group(1).replace("\\`", "`").replace("$PROJECT", PROJECT)


def test_the_go_live_query_resolves_against_the_schemas(zetasql):  # noqa: F811
    from shared import schemas

    sql = _go_live_query()
    assert f"`{PROJECT}.{ORG}_prod.cost_data_standard_1_3`" in sql
    assert f"`{PROJECT}.organizations.org_pipeline_runs`" in sql
    catalog = Catalog(PROJECT)
    for s in schemas.all_schemas().values():
        dataset = "organizations" if s.scope == "meta" else f"{ORG}_prod"
        catalog.add_table(dataset, s.table, [(f.name, f.type) for f in s.fields])
    findings = zetasql.check(sql, catalog, {"org": type_proto("STRING")})
    assert findings and not [f.error for f in findings if f.error], [f.error for f in findings]
    # the analyzer is not a rubber stamp: a column the FOCUS table lacks is refused
    [bad] = zetasql.check(sql.replace("SUM(BilledCost)", "SUM(BilledCosts)"), catalog, {"org": type_proto("STRING")})
    assert bad.error


def _job_families() -> list[str]:
    from tests.test_deploy_config import locals_

    return locals_()["job_families"]


def test_the_commands_name_what_terraform_and_cloud_build_define():
    from tests.test_deploy_config import all_resources, functions, reference, scheduler_jobs

    defined = {f"{t}.{n}" for t, n, _ in all_resources()}
    targets = re.findall(r"-target=(\S+)", DOC)
    assert targets and set(targets) <= defined, set(targets) - defined
    cloudbuild = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    for flags in re.findall(r"--substitutions=(\S+)", DOC):
        named = {kv.split("=", 1)[0] for kv in flags.split(",")} - {"SHORT_SHA"}
        assert named <= set(cloudbuild["substitutions"]), named - set(cloudbuild["substitutions"])
    jobs = {f"cloudact-{family}" for family in _job_families()}
    assert set(re.findall(r"--job=(cloudact-\w+)", DOC)) | set(re.findall(r"jobs describe (cloudact-\w+)", DOC)) <= jobs
    fns = functions()
    count = ("zero one two three four five six seven eight nine ten".split())[len(fns)]
    assert f"the {count} functions" in DOC and f"# {count}, ACTIVE" in DOC, f"docs/deploy.md must count {count}"
    rows = {line.split("|")[1].strip(" `"): line for line in DOC.splitlines() if line.startswith("| `")}
    for entry, fn in fns.items():
        assert entry in rows, f"{entry} has no row in the table"
        assert f"`{fn['name']}`" in rows[entry], f"the row of {entry} names its function {fn['name']}"
    names = {reference(job["name"]) for job in scheduler_jobs().values()}
    assert {"cloudact-sync-schedules", "cloudact-sweep-runs"} <= names
    assert all(n in DOC for n in names)
    # every CLOUDACT_ setting the document names is one the code reads
    code = "\n".join(p.read_text() for d in ("shared", "jobs", "functions", "cli") for p in (ROOT / d).rglob("*.py"))
    for setting in set(re.findall(r"\bCLOUDACT_[A-Z0-9_]+", DOC)):
        assert f'"{setting}"' in code, f"docs/deploy.md names {setting}, which no code reads"
