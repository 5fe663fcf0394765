"""The console a user reads: one unknown-org error, readable log lines (JSON kept in the log file), `run --help`
listing the pipelines, run times and durations, progress during a run, a warning for a run that lands 0 rows,
and a demo without tracebacks."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from shared import logs, registry

REPO = Path(__file__).resolve().parent.parent
AWS = (REPO / "data" / "samples" / "aws").as_uri()
UNKNOWN = "error: no organization 'nosuch'; create it with `cloudact orgs create nosuch`"


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture()
def aws_credential(rt, acme, tmp_path):
    path = tmp_path / "aws.json"
    path.write_text(json.dumps({"source": AWS}))
    done = run("credentials", "add", "acme", "aws", "--from-json", str(path))
    assert done.exit_code == 0, done.output
    return done.output.strip().splitlines()[-1]


# -- one unknown-org error -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["runs", "nosuch"],  # listed nothing, exit 0
    ["verify", "nosuch"],  # a DuckDB CatalogException
    ["export", "nosuch", "--out", "x.parquet"],  # a DuckDB CatalogException
    ["plans", "show", "nosuch"],  # an "active" default plan
    ["keys", "create", "nosuch"],  # the friendly error: now every command's
    ["keys", "list", "nosuch"],
    ["credentials", "list", "nosuch"],
    ["subscriptions", "list", "nosuch"],
    ["schedules", "list", "nosuch"],
    ["prices", "override", "list", "nosuch"],
    ["run", "nosuch", "genai/payg/openai"],
    ["runs", "cancel", "nosuch", "run_1"],
])
def test_an_unknown_org_gets_one_friendly_error_everywhere(rt, acme, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = run(*args)
    assert done.exit_code == 1, done.output
    assert one_line(done.output) == UNKNOWN
    assert not list(tmp_path.glob("x.*"))


def test_orgs_create_is_the_one_command_whose_slug_is_new(rt):
    done = run("orgs", "create", "newco")
    assert done.exit_code == 0 and "created organization newco" in done.output


# -- run --help, runs ------------------------------------------------------------------------------


def test_run_help_lists_every_pipeline(rt):
    done = run("run", "--help")
    assert done.exit_code == 0
    assert "Pipelines:" in done.output
    for path, p in registry.pipelines().items():
        assert re.search(rf"^\s+{re.escape(path)}\s", done.output, re.M), path
        assert p.provider in done.output


def test_runs_show_when_and_how_long_and_counts_never_none(rt, aws_credential):
    done = run("run", "acme", "cloud/aws/cost/billing", "--start", "2023-11-01", "--end", "2023-11-30", "--wait")
    assert done.exit_code == 0, done.output
    listed = one_line(run("runs", "acme").output)
    m = re.search(r"succeeded run_\w+ cloud/aws/cost/billing 2023-11-01\.\.2023-11-30 \((\d{4}-\d\d-\d\d "
                  r"\d\d:\d\d:\d\d) UTC, took (\d+\.\d)s\) rows: 1,295 ingested, 1,281 converted", listed)
    assert m, listed
    from shared import runs

    [row] = runs.list_runs(rt.warehouse, "acme")
    assert m[1] == row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
    assert abs(float(m[2]) - (row["finished_at"] - row["started_at"]).total_seconds()) <= 0.05
    assert "None" not in listed and "0E-9" not in listed
    assert "difference 0.000000000 ok" in listed


def test_a_queued_run_shows_no_counts_as_dashes(rt, acme):
    from cli.main import print_run
    from shared import runs

    run_id = runs.create_run(rt.warehouse, org_slug="acme", pipeline_id="genai/payg/openai", credential_id="c",
                             start_date=dt.date(2026, 1, 1), end_date=dt.date(2026, 1, 2), trigger="test")
    runner = CliRunner()
    with runner.isolation() as (out, _err, _):
        import cli.main as m

        saved, m.console = m.console, m._consoles(False, 200)[0]
        try:
            print_run(runs.public_view(runs.get_run(rt.warehouse, "acme", run_id)))
        finally:
            m.console = saved
        text = out.getvalue().decode()
    assert re.search(r"queued run_\w+ .* UTC, queued for \d+\.\ds\) rows: – ingested, – converted", one_line(text)), text


# -- progress and the 0-row warning ----------------------------------------------------------------


def test_a_run_shows_its_progress_as_it_goes(rt, aws_credential):
    done = run("run", "acme", "cloud/aws/cost/billing", "--start", "2023-11-01", "--end", "2023-11-30")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert "cloud/aws/cost/billing: reading aws data for 2023-11-01..2023-11-30" in lines
    assert "cloud/aws/cost/billing: landed 1,295 rows; converting to FOCUS" in lines
    # the progress records carry the counts, for the log file and the status line
    log = [json.loads(x) for x in logs.log_file().read_text().splitlines()]
    assert any(e["logger"] == "cloudact.progress" and e["message"].startswith("landed") for e in log)


def test_progress_counts_files_and_rows_of_a_file_scan(rt, aws_credential, caplog):
    from jobs.runner import run_job
    from shared import runs

    run_id = runs.create_run(rt.warehouse, org_slug="acme", pipeline_id="cloud/aws/cost/billing",
                             credential_id=aws_credential, start_date=dt.date(2023, 11, 1), end_date=dt.date(2023, 11, 30), trigger="test")
    import jobs.runner as runner

    caplog.set_level(logging.INFO, logger="cloudact.progress")
    real = runner.Progress.__init__
    try:
        runner.Progress.__init__ = lambda self, context, every=0.0: real(self, context, every)  # every update
        run_job({"run_id": run_id, "org_slug": "acme", "pipeline_id": "cloud/aws/cost/billing",
                 "credential_id": aws_credential, "start_date": "2023-11-01", "end_date": "2023-11-30"})
    finally:
        runner.Progress.__init__ = real
    reading = [r for r in caplog.records if r.name == "cloudact.progress" and r.phase.startswith("reading")]
    # the sample's one file with its 1,281 CUR rows (the warehouse sums the source totals from them: nothing read)
    assert [(r.files, r.rows) for r in reading if r.rows] == [(1, 1281)]
    assert all(r.run_id == run_id for r in reading)


def test_a_run_that_lands_nothing_says_so(rt, aws_credential):
    done = run("run", "acme", "cloud/aws/cost/billing", "--start", "2024-01-01", "--end", "2024-01-31", "--wait")
    assert done.exit_code == 0, done.output
    text = one_line(done.output)
    assert "warning: the run landed 0 rows for 2024-01-01..2024-01-31" in text
    from shared import runs

    [row] = [runs.public_view(r) for r in runs.list_runs(rt.warehouse, "acme")]
    assert row["status"] == "succeeded" and any("landed 0 rows" in w for w in row["warnings"])


# -- log lines -------------------------------------------------------------------------------------


def test_console_lines_are_readable_and_the_file_keeps_json_with_the_traceback(rt, acme, tmp_path):
    path = tmp_path / "aws.json"
    path.write_text(json.dumps({"source": (tmp_path / "no-such-folder").as_uri()}))
    run("credentials", "add", "acme", "aws", "--from-json", str(path))
    done = run("run", "acme", "cloud/aws/cost/billing", "--start", "2023-11-01", "--end", "2023-11-30")
    assert done.exit_code == 1
    errors = [x for x in done.output.splitlines() if " error " in x[:20]]
    assert errors and all(re.match(r"^\d\d:\d\d:\d\d error   acme cloud/aws/cost/billing: run failed during ingest: "
                                   r"\w+: .*\(traceback in .*cloudact\.log\)$", x) for x in errors), done.output
    assert '{"severity"' not in done.output and "Traceback" not in done.output
    entries = [json.loads(x) for x in logs.log_file().read_text().splitlines()]
    failed = [e for e in entries if e["message"] == "run failed during ingest"]
    assert failed and "Traceback (most recent call last)" in failed[0]["exception"]
    assert failed[0]["org"] == "acme" and failed[0]["run_id"].startswith("run_")

    machine = run("--log-format", "json", "run", "acme", "cloud/aws/cost/billing", "--start", "2023-11-01",
                  "--end", "2023-11-30")
    lines = [json.loads(x) for x in machine.output.splitlines() if x.startswith('{"severity"')]
    assert any(e["severity"] == "ERROR" and "exception" in e for e in lines)


def test_gcp_logs_json_on_stdout_and_keeps_no_file(tmp_path, capsys):
    try:
        assert logs.setup(logging.WARNING, backend="gcp") is None
        logging.getLogger("cloudact.run").info("landed", extra={"org": "acme", "run_id": "run_1"})
        entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert entry["severity"] == "INFO" and entry["org"] == "acme" and entry["message"] == "landed"
        assert logs.log_file() is None
    finally:
        logs.setup(logging.WARNING, home=tmp_path, backend="embedded")


def test_other_libraries_reach_the_console_from_warning_up_only(tmp_path, capsys):
    logs.setup(logging.INFO, home=tmp_path, backend="embedded")
    logging.getLogger("azure.core.pipeline").info("Request URL: https://x.blob.core.windows.net/...")
    logging.getLogger("cloudact.run").info("ours")
    err = capsys.readouterr().err
    assert "ours" in err and "Request URL" not in err


# -- the demo --------------------------------------------------------------------------------------


def test_the_demo_prints_no_traceback(tmp_path):
    pytest.importorskip("moto")
    env = {**os.environ, "CLOUDACT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    env.pop("CLOUDACT_BACKEND", None)
    done = subprocess.run([sys.executable, "-m", "cli.main", "demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    both = done.stdout + done.stderr
    assert "Traceback" not in both and "Error on request" not in both and '{"severity"' not in both
    assert "MotoServer" not in both
    # moto's unimplemented GetInferenceProfile calls are kept in the log file, not lost
    kept = (tmp_path / "home" / "logs" / "cloudact.log").read_text()
    assert "get_inference_profile" in kept
