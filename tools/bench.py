"""`make bench`: ingest + FOCUS conversion throughput and memory, beside focus-converter and DuckDB's floor.

    python -m tools.bench [--quick] [--clouds aws,azure,gcp,oci] [--rows N,...] [--formats csv,parquet]
                          [--no-focus-converter] [--fc-max-rows N] [--workdir .bench] [--out docs/benchmarks.md]

The cases, each input generated in one billing month (March 2024) by its tools/ generator:

* aws-cur-csv, aws-cur2-parquet (tools.cur_generator): a legacy CUR CSV and a CUR 2.0 Parquet file, at
  1M and 5M rows by default (`--formats` picks AWS's formats);
* azure-ea-csvgz (tools.azure_export_generator): an EA ActualCost cost-details export run, one gzip CSV part
  plus its manifest.json;
* gcp-detailed-parquet (tools.gcp_export_generator): the detailed billing export table dumped to one
  Parquet file (nested columns); its FOCUS rows outnumber the export rows by the credit rows;
* oci-cost-csvgz (tools.oci_report_generator): a month of cost reports, one gzip CSV per six hours (124);

the other clouds at 1M rows by default. `--rows` sets the row counts of every selected cloud, `--clouds`
which clouds run (a registered cloud pipeline that is not available is listed as skipped).

For every case three things run, each in its own subprocess, measured for wall time and peak RSS (the
kernel's ru_maxrss of the process tree's largest process, from wait4, as GNU time reports it; plus the summed
RSS of the whole tree, sampled every 50 ms):

* ours: a fresh embedded warehouse (DuckDB file), org + credential {"source": "file://DIR"}, a queued
  run of cloud/<provider>/cost/billing, jobs.runner.run_job (extract + land), then shared.convert.convert
  (procedure chain + FOCUS gate + reconciliation). "ours s" is ingest + conversion as timed inside the
  process (no interpreter start, no bootstrap); rows/s counts the input rows.
* floor: DuckDB's own copy of the same file(s) to Parquet (`COPY (SELECT * FROM read_csv([...], all_varchar))
  TO ... (FORMAT parquet)`, or read_parquet for Parquet input).
* focus-converter 1.0.0 in its own venv (.venv-focus-converter, created on first use with
  `pip install focus-converter==1.0.0 "multimethod<2" "click<8.2"`), FOCUS columns only, where it reads the
  input: `--provider aws-cur --data-format csv` (CUR CSV), `--provider aws --data-format parquet
  --parquet-data-format dataset` (CUR 2.0), `--provider azure --data-format csv` (the EA export part; it reads
  gzip), `--provider gcp --data-format parquet --parquet-data-format dataset` (the export dump). Not for OCI:
  it takes one CSV per run (a glob of gzip files fails with "cannot scan compressed csv") and a month is 124
  report files. Its time is the whole CLI's wall time.

The export case (`--export-rows`, default 1M; 100k with --quick; 0 skips it): an AWS CUR CSV of that many rows run
through the pipeline as above into an org, then `shared.export.export` of the whole org to Parquet and to CSV, each
in its own subprocess at the default settings (CLOUDACT_DUCKDB_MEMORY_LIMIT 320MB), measured for wall time and
peak RSS; the rows in each file are counted afterwards and must equal the org's FOCUS rows.

Targets (issue 17, which replaced issue 3's): at least 2x faster than focus-converter on every input it reads;
CSV (and gzip CSV) within 1.3x of the floor; peak RSS < 512 MiB and flat from 1M to 5M rows; an export of 1M rows
under 512 MiB peak RSS, every row in the file. Each case's run is also timed by step (STEPS: each function doing
a step is wrapped in the measured process), and the HTTP API case (`--api-requests`, 0 skips it) gives the
latency of the cost routes on the demo's state.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools import (
    azure_export_generator,
    cur_generator,
    gcp_export_generator,
    oci_report_generator,
)
from tools.generator_core import next_month

ROOT = Path(__file__).resolve().parent.parent
FC_VENV = ROOT / ".venv-focus-converter"
FC_PINS = ["focus-converter==1.0.0", "multimethod<2", "click<8.2"]
MONTH = dt.date(2024, 3, 1)
MEM_TARGET_MIB = 512
TARGETS = {"csv_floor_ratio": 1.3, "fc_speedup": 2.0}


# --------------------------------------------------------------------------------------------------
# Measuring a subprocess
# --------------------------------------------------------------------------------------------------
@dataclass
class Measured:
    ok: bool
    wall_s: float
    maxrss_mib: float  # largest single process of the tree (ru_maxrss via wait4)
    tree_mib: float  # peak of the summed RSS of the process and its descendants (sampled)
    out: dict = field(default_factory=dict)
    error: str = ""


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += _rss_kib(p)
        stack.extend(_children(p))
    return total


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None, timeout: float = 1800) -> Measured:
    """Run cmd; wall time, ru_maxrss of the tree's largest process, sampled tree RSS; JSON from its last line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: dict[str, str] = {}
    readers = [threading.Thread(target=lambda s=s, k=k: out_chunks.__setitem__(k, s.read()), daemon=True)
               for k, s in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    for r in readers:
        r.join()
    stdout, stderr = out_chunks.get("out", ""), out_chunks.get("err", "")
    info: dict = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                info = json.loads(line)
            except ValueError:
                pass
            break
    ok = proc.returncode == 0 and info.get("ok", True)
    err = "" if ok else (info.get("error") or (stderr.strip().splitlines() or ["?"])[-1])[:300]
    return Measured(ok, wall, usage.ru_maxrss / 1024, peak[0] / 1024, info, err)


# --------------------------------------------------------------------------------------------------
# The measured programs (run as `python -m tools.bench _ours|_floor ...` in a subprocess)
# --------------------------------------------------------------------------------------------------
def _ours(src_dir: str, home: str, provider: str) -> dict:
    """Fresh embedded warehouse; the full run through jobs.runner and shared.convert, timed per phase."""
    os.environ["CLOUDACT_HOME"] = home
    os.environ["CLOUDACT_BACKEND"] = "embedded"
    t0 = time.perf_counter()
    from jobs.runner import run_job
    from shared import registry, runs
    from shared.bus.local import LocalBus
    from shared.config import settings
    from shared.convert import convert
    from shared.launcher.local import LocalLauncher
    from shared.runtime import Runtime, use
    from shared.secrets import CredentialStore
    from shared.tenants import bootstrap, create_org, sync_reference_data
    from shared.warehouse.duckdb import DuckDBWarehouse

    steps = _time_steps()
    s = settings()
    # No subscriptions on the bus: the completion event is converted here, synchronously, to time it apart.
    rt = Runtime(s, DuckDBWarehouse(s.warehouse_path), LocalBus(), LocalLauncher(run_job))
    use(rt)
    wh = rt.warehouse
    bootstrap(wh)
    sync_reference_data(wh)
    create_org(wh, "bench")
    pipeline = registry.get(f"cloud/{provider}/cost/billing")
    cred = CredentialStore(wh, s).add("bench", pipeline.credential, {"source": f"file://{src_dir}"})
    end = next_month(MONTH) - dt.timedelta(days=1)
    run_id = runs.create_run(wh, org_slug="bench", pipeline_id=pipeline.path, credential_id=cred,
                             start_date=MONTH, end_date=end, trigger="bench")
    t_setup = time.perf_counter()
    result = run_job({"run_id": run_id, "org_slug": "bench", "pipeline_id": pipeline.path, "credential_id": cred,
                      "start_date": MONTH.isoformat(), "end_date": end.isoformat()})
    t_ingest = time.perf_counter()
    if result.get("status") != "ingested":
        return {"ok": False, "error": f"ingest: {result}"}
    event = {"run_id": run_id, "org_slug": "bench", "pipeline_id": pipeline.path, "credential_id": cred,
             "start_date": MONTH.isoformat(), "end_date": end.isoformat(), "status": "ingested"}
    status = convert(event)
    t_convert = time.perf_counter()
    run = runs.get_run(wh, "bench", run_id)
    rows = result["rows"].get(pipeline.raw_tables[0], 0)
    rt.close()
    steps["extract"] = (t_ingest - t_setup) - steps["write"]
    steps["convert_other"] = (t_convert - t_ingest) - steps["focus"] - steps["gate"] - steps["reconcile"]
    return {"ok": status == "succeeded", "error": run.get("error") or "", "rows_ingested": rows,
            "rows_converted": run.get("rows_converted"), "setup_s": t_setup - t0, "ingest_s": t_ingest - t_setup,
            "convert_s": t_convert - t_ingest, "total_s": t_convert - t_setup,
            **{f"step_{k}_s": v for k, v in steps.items()}}


STEPS = {  # what the bench times inside a run (wrapping the functions that do it), in run order
    "extract": "listing, reading headers and planning the files (the ingest outside the slice write)",
    "write": "the raw slice write: the files' scan, casts and raw rows in one INSERT ... SELECT per file",
    "focus": "the FOCUS procedure: FOCUS rows computed and written (one INSERT ... SELECT per input kind)",
    "gate": "the FOCUS 1.3 gate over the written rows",
    "reconcile": "reconciliation of the source totals with the FOCUS BilledCost",
    "convert_other": "the rest of the conversion (run bookkeeping, warnings)",
}


def _time_steps() -> dict[str, float]:
    """Seconds per step of STEPS, filled while the run goes: each function that does a step is wrapped."""
    from shared import convert, focus
    from shared.warehouse.duckdb import DuckDBWarehouse

    spent = dict.fromkeys(STEPS, 0.0)

    def timed(owner, name: str, step: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[step] += time.perf_counter() - t
        setattr(owner, name, wrapper)

    timed(DuckDBWarehouse, "replace_slices", "write")
    timed(DuckDBWarehouse, "call_procedure", "focus")
    timed(focus, "check", "gate")
    timed(convert, "reconcile_cloud", "reconcile")
    return spent


def _export(home: str, out: str) -> dict:
    """The whole org `bench` exported by shared.export to `out` (format by extension), at the default settings."""
    os.environ["CLOUDACT_HOME"] = home
    os.environ["CLOUDACT_BACKEND"] = "embedded"
    from shared import export
    from shared.config import settings
    from shared.warehouse.duckdb import DuckDBWarehouse

    wh = DuckDBWarehouse(settings().warehouse_path)
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        rows = export.export(wh, "bench", f, export.format_of(out))
    elapsed = time.perf_counter() - t0
    expected = export.count(wh, "bench")
    wh.close()
    return {"ok": rows == expected, "error": f"wrote {rows} of {expected} rows" if rows != expected else "",
            "rows": rows, "expected": expected, "total_s": elapsed}


# The routes the API case times on the demo's state: what the dashboard and a BI tool ask most.
API_ROUTES = {
    "costs (defaults: this month by provider)": "/api/v1/costs/acme",  # the demo month is October 2026
    "costs by day and provider": "/api/v1/costs/acme?group_by=day&group_by=provider&from=2026-10-01&to=2026-10-31",
    "costs by service and account": "/api/v1/costs/acme?group_by=service&group_by=account&from=2026-10-01&to=2026-10-31",
    "runs": "/api/v1/pipelines/runs/acme",
}


def _api(home: str, requests: int) -> dict:
    """p50/p99 latency of API_ROUTES over real HTTP on the demo's state in `home` (the server in this process)."""
    import statistics

    import httpx

    os.environ["CLOUDACT_HOME"] = home
    os.environ["CLOUDACT_BACKEND"] = "embedded"
    from cli.server import start_background
    from jobs.runner import wire
    from shared import runtime
    from shared.auth import create_key

    wire()  # as `cloudact serve` does: the embedded runtime, its jobs and functions in this process
    key = create_key(runtime.get().warehouse, "acme")
    server, url = start_background()
    out: dict = {"ok": True, "routes": {}}
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as http:
            for name, path in API_ROUTES.items():
                first = http.get(path)  # also the warm-up: the first query plans its SQL
                if first.status_code != 200:
                    return {"ok": False, "error": f"{path} answered {first.status_code}"}
                times = []
                for _ in range(requests):
                    t = time.perf_counter()
                    http.get(path).raise_for_status()
                    times.append((time.perf_counter() - t) * 1000)
                q = statistics.quantiles(times, n=100, method="inclusive")
                out["routes"][name] = {"p50_ms": q[49], "p99_ms": q[98], "n": requests}
    finally:
        server.shutdown()
        runtime.get().close()
    return out


def run_api_case(requests: int, work: Path, log) -> Measured | None:
    """The demo's state (`cloudact demo`), then API_ROUTES timed `requests` times each in a fresh process."""
    case_dir = work / "api"
    shutil.rmtree(case_dir, ignore_errors=True)
    case_dir.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLOUDACT_HOME": str(case_dir)}
    py = sys.executable
    demo = subprocess.run([py, "-m", "cli.main", "demo"], capture_output=True, text=True, env=env, cwd=str(ROOT),
                          check=False)
    if demo.returncode != 0:
        log(f"[api] the demo failed, no API case: {(demo.stdout.strip().splitlines() or ['?'])[-1]}")
        return None
    m = measure([py, "-m", "tools.bench", "_api", str(case_dir / "demo"), str(requests)], env=env, cwd=str(ROOT))
    for name, r in m.out.get("routes", {}).items():
        log(f"[api] {name}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
    shutil.rmtree(case_dir, ignore_errors=True)
    return m


def api_table(m: Measured) -> list[str]:
    lines = ["| route | requests | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, r in m.out.get("routes", {}).items():
        lines.append(f"| {name} | {r['n']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return lines if m.ok else [f"API case failed: {m.error or m.out.get('error')}"]


def _rows_in(path: Path) -> int:
    """Rows in an exported file, counted from the file itself."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    import csv
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1  # the header


@dataclass
class ExportResult:
    fmt: str
    rows: int
    measured: Measured
    file_rows: int | None = None
    file_mb: float = 0.0


def run_export_case(rows: int, work: Path, log) -> list[ExportResult]:
    """An org of `rows` FOCUS rows (an AWS CUR CSV through the pipeline), exported to Parquet and to CSV."""
    case_dir = work / f"export-{_size(rows)}"
    shutil.rmtree(case_dir, ignore_errors=True)
    src, home = case_dir / "src", case_dir / "home"
    src.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    gen = subprocess.run([py, "-m", "tools.bench", "_generate", "aws-cur-csv", str(rows), str(src)],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    if gen.returncode != 0:
        raise RuntimeError(f"generating the export case failed: {(gen.stderr.strip().splitlines() or ['?'])[-1]}")
    landed = measure([py, "-m", "tools.bench", "_ours", str(src), str(home), "aws"], env=env, cwd=str(ROOT))
    if not landed.ok:
        raise RuntimeError(f"loading the export case failed: {landed.error}")
    shutil.rmtree(src, ignore_errors=True)
    log(f"[export-{_size(rows)}] org loaded: {landed.out.get('rows_converted')} FOCUS rows")
    results = []
    for fmt in ("parquet", "csv"):
        out = case_dir / f"focus.{fmt}"
        m = measure([py, "-m", "tools.bench", "_export", str(home), str(out)], env=env, cwd=str(ROOT))
        r = ExportResult(fmt, rows, m)
        if m.ok:
            r.file_rows, r.file_mb = _rows_in(out), out.stat().st_size / 1e6
        log(f"[export-{_size(rows)}] {fmt}: {'ok' if m.ok else 'FAILED ' + m.error} {m.out.get('total_s', 0):.2f} s, "
            f"peak {m.maxrss_mib:.0f} MiB (tree {m.tree_mib:.0f}), {r.file_rows} rows in the file")
        results.append(r)
        out.unlink(missing_ok=True)
    shutil.rmtree(case_dir, ignore_errors=True)
    return results


def export_table(results: list[ExportResult]) -> list[str]:
    lines = ["| export | FOCUS rows | rows in file | file MB | s | peak MiB | targets |", "|---|---|---|---|---|---|---|"]
    for r in results:
        m, expected = r.measured, r.measured.out.get("expected")
        every = m.ok and r.file_rows is not None and r.file_rows == expected
        verdict = (f"{'PASS' if m.ok and m.maxrss_mib < MEM_TARGET_MIB else 'FAIL'} mem {m.maxrss_mib:.0f} MiB (< 512); "
                   f"{'PASS' if every else 'FAIL'} every row")
        lines.append(f"| {r.fmt}-{_size(r.rows)} | {expected if expected is not None else '–'} | "
                     f"{r.file_rows if r.file_rows is not None else '–'} | {r.file_mb:,.0f} | "
                     f"{m.out.get('total_s', 0):.2f} | {m.maxrss_mib:.0f} | {verdict} |")
    return lines


def _floor(out: str, fmt: str, *paths: str) -> dict:
    import duckdb

    con = duckdb.connect()
    t0 = time.perf_counter()
    files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    src = f"read_parquet({files})" if fmt == "parquet" else f"read_csv({files}, all_varchar = true, header = true)"
    con.execute(f"COPY (SELECT * FROM {src}) TO '{out}' (FORMAT parquet)")
    return {"ok": True, "total_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------------
# focus-converter
# --------------------------------------------------------------------------------------------------
def focus_converter_cli(log) -> Path | None:
    cli = FC_VENV / "bin" / "focus-converter"
    if cli.exists():
        return cli
    log(f"installing focus-converter 1.0.0 into {FC_VENV} ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(FC_VENV)], check=True, capture_output=True)
        subprocess.run([str(FC_VENV / "bin" / "pip"), "install", "--quiet", *FC_PINS], check=True,
                       capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as e:
        log(f"focus-converter not available: {e}")
        return None
    return cli if cli.exists() else None


def _fc_cmd(cli: Path, c: Case, files: list[Path], out: Path) -> list[str] | str:
    """focus-converter's command line for the case's input, or why it cannot read that input."""
    if c.provider == "oci":
        return (f"not run: a month of OCI cost reports is {len(files)} gzip CSV files; focus-converter reads one "
                "CSV per run (a glob of gzip files fails: cannot scan compressed csv)")
    if len(files) != 1:
        return f"not run: the input is {len(files)} files"
    provider = {("aws", "csv"): "aws-cur"}.get((c.provider, c.fmt), c.provider)
    if c.fmt == "parquet":  # the folder as a dataset: streamed in batches, as for the CUR 2.0 export
        where = ["--data-format", "parquet", "--parquet-data-format", "dataset", "--data-path", str(files[0].parent)]
    else:
        where = ["--data-format", "csv", "--data-path", str(files[0])]
    return [str(cli), "convert", "--provider", provider, *where, "--export-path", f"{out}/",
            "--no-export-include-source-columns"]


def _fc_rows(out: Path) -> int | None:
    try:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in out.rglob("*.parquet"))
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """One generated input: case-name prefix, file format (picks the floor's reader and the targets), generator."""
    provider: str
    name: str
    fmt: str  # csv | csv.gz | parquet
    generate: Callable[[int, Path], list[Path]]  # (rows, empty folder) -> the data files written


def _cur(fmt: str) -> Callable[[int, Path], list[Path]]:
    name = "cur.parquet" if fmt == "parquet" else "cur.csv"
    return lambda rows, src: [cur_generator.generate(rows, fmt, src / name, seed=1, month=MONTH)]


SHAPES = {
    "aws": [Shape("aws", "aws-cur-csv", "csv", _cur("csv")), Shape("aws", "aws-cur2-parquet", "parquet", _cur("parquet"))],
    "azure": [Shape("azure", "azure-ea-csvgz", "csv.gz",
                    lambda rows, src: azure_export_generator.generate(rows, src, seed=1, month=MONTH))],
    "gcp": [Shape("gcp", "gcp-detailed-parquet", "parquet",
                  lambda rows, src: gcp_export_generator.generate(rows, src, seed=1, month=MONTH))],
    "oci": [Shape("oci", "oci-cost-csvgz", "csv.gz",
                  lambda rows, src: oci_report_generator.generate(rows, src, seed=1, month=MONTH))],
}
DEFAULT_ROWS = {"aws": [1_000_000, 5_000_000]}  # every other cloud: 1M


@dataclass
class Case:
    name: str
    provider: str
    fmt: str  # csv | csv.gz | parquet
    rows: int
    shape: Shape | None = None
    ours: Measured | None = None
    floor: Measured | None = None
    fc: Measured | None = None
    fc_note: str = ""
    input_mb: float = 0.0
    skipped: str = ""

    @property
    def ours_s(self) -> float | None:
        return self.ours.out.get("total_s") if self.ours and self.ours.ok else None

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.ours_s if self.ours_s else None


def cloud_pipelines() -> dict[str, str]:
    """Cloud provider -> why its billing pipeline cannot be benchmarked ('' when it can), from the registry."""
    from shared import registry

    out = {}
    for path, p in sorted(registry.pipelines().items()):
        if p.category == "cloud":
            out[p.provider] = (f"{path} is {p.status}: its extractor is not built yet" if not p.available
                               else "" if p.provider in SHAPES else f"tools/ has no {p.provider} export generator")
    return out


def _size(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def plan(clouds: list[str], rows: list[int] | None, formats: list[str], quick: bool) -> list[Case]:
    """The cases to run, in table order; clouds whose pipeline cannot run become one skipped row each."""
    status = cloud_pipelines()
    unknown = [c for c in clouds if c not in status]
    if unknown:
        raise SystemExit(f"unknown cloud(s) {', '.join(unknown)}: the registry has {', '.join(sorted(status))}")
    cases = []
    for cloud in clouds:
        counts = [100_000] if quick else rows or DEFAULT_ROWS.get(cloud, [1_000_000])
        if status[cloud]:
            cases.append(Case(f"{cloud}-{_size(counts[0])}", cloud, "-", counts[0], skipped=status[cloud]))
            continue
        shapes = [s for s in SHAPES[cloud] if cloud != "aws" or s.fmt in formats]
        cases += [Case(f"{s.name}-{_size(n)}", cloud, s.fmt, n, s) for s in shapes for n in counts]
    return cases


def run_case(c: Case, work: Path, fc_cli: Path | None, log, fc_missing: str = "not available",
             fc_max_rows: int | None = None) -> None:
    case_dir = work / c.name
    shutil.rmtree(case_dir, ignore_errors=True)
    src = case_dir / "src"
    src.mkdir(parents=True)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    # Generated in a child: the generators' DuckDB would grow this process, and Linux counts the parent's RSS
    # at spawn time into every later child's ru_maxrss, which would then misreport their peaks.
    gen = subprocess.run([py, "-m", "tools.bench", "_generate", c.shape.name, str(c.rows), str(src)],
                         capture_output=True, text=True, env=env, cwd=str(ROOT), check=False)
    if gen.returncode != 0:
        raise RuntimeError(f"generating {c.name} failed: {(gen.stderr.strip().splitlines() or ['?'])[-1]}")
    files = [Path(x) for x in json.loads(gen.stdout.strip().splitlines()[-1])]
    c.input_mb = sum(f.stat().st_size for f in files) / 1e6
    log(f"[{c.name}] generated {c.rows:,} rows, {c.input_mb:,.0f} MB in {len(files)} file(s) "
        f"in {time.perf_counter() - t0:.1f} s")
    c.floor = measure([py, "-m", "tools.bench", "_floor", str(case_dir / "floor.parquet"), c.fmt,
                       *map(str, files)], env=env, cwd=str(ROOT))
    log(f"[{c.name}] floor: {c.floor.out.get('total_s', c.floor.wall_s):.2f} s, {c.floor.maxrss_mib:.0f} MiB "
        f"{'' if c.floor.ok else c.floor.error}")
    c.ours = measure([py, "-m", "tools.bench", "_ours", str(src), str(case_dir / "home"), c.provider], env=env,
                     cwd=str(ROOT))
    o = c.ours.out
    log(f"[{c.name}] ours: {'ok' if c.ours.ok else 'FAILED ' + c.ours.error} ingest {o.get('ingest_s', 0):.2f} s "
        f"+ convert {o.get('convert_s', 0):.2f} s, peak {c.ours.maxrss_mib:.0f} MiB (tree {c.ours.tree_mib:.0f})")
    shutil.rmtree(case_dir / "home", ignore_errors=True)
    cmd = _fc_cmd(fc_cli or Path("focus-converter"), c, files, case_dir / "fc_out")
    if not isinstance(cmd, str) and fc_cli is None:
        cmd = fc_missing
    elif not isinstance(cmd, str) and fc_max_rows is not None and c.rows > fc_max_rows:
        cmd = f"not run above {fc_max_rows:,} rows (--fc-max-rows)"
    if isinstance(cmd, str):
        c.fc_note = cmd
        log(f"[{c.name}] focus-converter: {cmd}")
    else:
        fc_out = case_dir / "fc_out"
        c.fc = measure(cmd, cwd=str(case_dir))
        n = _fc_rows(fc_out) if c.fc.ok else None
        if c.fc.ok and n is not None and n != c.rows:
            c.fc_note = f"wrote {n:,} of {c.rows:,} rows"
        if not c.fc.ok:
            c.fc_note = f"failed: {c.fc.error}"
        log(f"[{c.name}] focus-converter: {c.fc.wall_s:.2f} s, {c.fc.maxrss_mib:.0f} MiB (tree {c.fc.tree_mib:.0f}) "
            f"{c.fc_note}")
        shutil.rmtree(fc_out, ignore_errors=True)
    shutil.rmtree(case_dir, ignore_errors=True)


def _verdicts(c: Case) -> list[str]:
    out = []
    ours, floor = c.ours_s, (c.floor.out.get("total_s") if c.floor and c.floor.ok else None)
    fc = c.fc.wall_s if c.fc and c.fc.ok else None
    if ours is None:
        return ["FAIL: pipeline did not succeed"]
    if c.fmt.startswith("csv") and floor:
        r = ours / floor
        out.append(f"{'PASS' if r <= TARGETS['csv_floor_ratio'] else 'FAIL'} floor {r:.2f}x "
                   f"(<= {TARGETS['csv_floor_ratio']}x)")
    if fc:
        r = fc / ours
        out.append(f"{'PASS' if r >= TARGETS['fc_speedup'] else 'FAIL'} fc {r:.1f}x (>= {TARGETS['fc_speedup']:.0f}x)")
    mem = c.ours.maxrss_mib
    out.append(f"{'PASS' if mem < MEM_TARGET_MIB else 'FAIL'} mem {mem:.0f} MiB (< 512)")
    return out


def table(cases: list[Case]) -> list[str]:
    head = ("| case | rows | input MB | ours s | ours rows/s | ours peak MiB | floor s | focus-converter s | "
            "fc peak MiB | ours ÷ floor | fc ÷ ours | targets |")
    lines = [head, "|" + "---|" * 12]
    for c in cases:
        if c.skipped:
            lines.append(f"| {c.name} | – | – | skipped: {c.skipped} |" + " |" * 8)
            continue
        floor = c.floor.out.get("total_s") if c.floor and c.floor.ok else None
        fc = c.fc.wall_s if c.fc and c.fc.ok else None
        ours = c.ours_s
        cell = lambda v, f: f.format(v) if v is not None else "–"
        verdicts = _verdicts(c)
        lines.append(
            f"| {c.name} | {c.rows:,} | {c.input_mb:,.0f} | {cell(ours, '{:.2f}')} | "
            f"{cell(c.rows_per_s, '{:,.0f}')} | {cell(c.ours.maxrss_mib if c.ours else None, '{:.0f}')} | "
            f"{cell(floor, '{:.2f}')} | {cell(fc, '{:.2f}') if fc else (c.fc_note or '–')} | "
            f"{cell(c.fc.maxrss_mib if c.fc and c.fc.ok else None, '{:.0f}')} | "
            f"{cell(ours / floor if ours and floor else None, '{:.2f}')} | "
            f"{cell(fc / ours if ours and fc else None, '{:.1f}')} | {'; '.join(verdicts)} |")
    # flat memory: the largest row count against the smallest, per input shape
    for shape in dict.fromkeys(c.shape for c in cases if c.shape):
        runs = [c for c in cases if c.shape == shape and c.ours and c.ours.ok]
        if len(runs) >= 2 and len({c.rows for c in runs}) >= 2:
            lo, hi = min(runs, key=lambda c: c.rows), max(runs, key=lambda c: c.rows)
            growth = hi.ours.maxrss_mib / lo.ours.maxrss_mib
            lines.append("")
            lines.append(f"Memory {shape.name}: {lo.ours.maxrss_mib:.0f} MiB at {lo.rows:,} rows -> {hi.ours.maxrss_mib:.0f} "
                         f"MiB at {hi.rows:,} rows ({growth:.2f}x): "
                         f"{'PASS' if growth <= 1.25 and hi.ours.maxrss_mib < MEM_TARGET_MIB else 'FAIL'} flat and < 512 MiB")
    return lines


def phases(cases: list[Case]) -> list[str]:
    names = " | ".join(f"{k} s" for k in STEPS)
    lines = [f"| case | setup s (not counted) | {names} | ours s | floor s | process wall s | tree peak MiB | "
             "rows converted |", "|---|---|" + "---|" * len(STEPS) + "---|---|---|---|---|"]
    for c in cases:
        if c.ours and c.ours.out:
            o = c.ours.out
            floor = c.floor.out.get("total_s") if c.floor and c.floor.ok else None
            steps = " | ".join(f"{o.get(f'step_{k}_s', 0):.2f}" for k in STEPS)
            lines.append(f"| {c.name} | {o.get('setup_s', 0):.2f} | {steps} | {o.get('total_s', 0):.2f} | "
                         f"{f'{floor:.2f}' if floor else '–'} | {c.ours.wall_s:.2f} | {c.ours.tree_mib:.0f} | "
                         f"{o.get('rows_converted')} |")
    lines += ["", "Steps: " + "; ".join(f"**{k}**: {v}" for k, v in STEPS.items()) + "."]
    return lines


def machine() -> dict[str, str]:
    import duckdb
    import pyarrow

    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": str(os.cpu_count()),
            "cpu": cpu, "ram": mem, "python": platform.python_version(), "duckdb": duckdb.__version__,
            "pyarrow": pyarrow.__version__, "os": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_ours":
        try:
            print(json.dumps(_ours(argv[1], argv[2], argv[3])))
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
            return 1
        return 0
    if argv and argv[0] == "_generate":
        shape = next(x for shapes in SHAPES.values() for x in shapes if x.name == argv[1])
        print(json.dumps([str(f) for f in shape.generate(int(argv[2]), Path(argv[3]))]))
        return 0
    if argv and argv[0] == "_export":
        try:
            print(json.dumps(_export(argv[1], argv[2])))
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
            return 1
        return 0
    if argv and argv[0] == "_api":
        try:
            print(json.dumps(_api(argv[1], int(argv[2]))))
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
            return 1
        return 0
    if argv and argv[0] == "_floor":
        print(json.dumps(_floor(argv[1], argv[2], *argv[3:])))
        return 0
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k rows only, no docs update (a smoke test)")
    ap.add_argument("--clouds", default=",".join(SHAPES), help="comma-separated clouds (default: all)")
    ap.add_argument("--rows", default=None,
                    help="comma-separated row counts for every selected cloud (default: AWS 1M and 5M, others 1M)")
    ap.add_argument("--formats", default="csv,parquet", help="AWS input formats (default: csv,parquet)")
    ap.add_argument("--no-focus-converter", action="store_true")
    ap.add_argument("--fc-max-rows", type=int, default=1_000_000,
                    help="run focus-converter only up to this many rows (default 1,000,000: it holds the whole "
                         "input in memory, 3.7 GiB for a 1M-row CUR CSV); 0 for no limit")
    ap.add_argument("--export-rows", type=int, default=None,
                    help="rows of the export case (default 1,000,000; 100,000 with --quick; 0 skips it)")
    ap.add_argument("--api-requests", type=int, default=None,
                    help="requests per route of the HTTP API case on the demo's state (default 200; 20 with "
                         "--quick; 0 skips it)")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary folder)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    a = ap.parse_args(argv)
    rows = [int(x) for x in a.rows.split(",")] if a.rows else None
    cases = plan([x.strip() for x in a.clouds.split(",") if x.strip()], rows,
                 [f.strip() for f in a.formats.split(",")], a.quick)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for c in cases:
        if c.skipped:
            log(f"[{c.name}] skipped: {c.skipped}")
    fc_cli = None if a.no_focus_converter else focus_converter_cli(log)
    fc_missing = "not run (--no-focus-converter)" if a.no_focus_converter else "not available"
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="cloudact-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    export_rows = a.export_rows if a.export_rows is not None else 100_000 if a.quick else 1_000_000
    exports: list[ExportResult] = []
    api_requests = a.api_requests if a.api_requests is not None else 20 if a.quick else 200
    api = None
    try:
        for c in cases:
            if not c.skipped:
                run_case(c, work, fc_cli, log, fc_missing, a.fc_max_rows or None)
        if export_rows:
            exports = run_export_case(export_rows, work, log)
        if api_requests:
            api = run_api_case(api_requests, work, log)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    m = machine()
    report = [(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, Python {m['python']}, DuckDB {m['duckdb']}, "
              f"pyarrow {m['pyarrow']}, {m['os']}; {m['date']}."), "", *table(cases), "",
              "Our pipeline by phase:", "", *phases(cases),
              *(["", "Export of a whole org (`cloudact export`, default settings):", "", *export_table(exports)]
                if exports else []),
              *(["", "The HTTP API on the demo's state (`cloudact demo`, then each route over loopback HTTP):", "",
                 *api_table(api)] if api else [])]
    print("\n".join(report))
    if not a.quick:
        write_doc(Path(a.out), report)
        log(f"results written to {a.out}")
    failed = any(not c.skipped and (c.ours is None or not c.ours.ok) for c in cases) or \
        any(not r.measured.ok for r in exports) or (api is not None and not api.ok)
    return 1 if failed else 0


MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_doc(path: Path, report: list[str]) -> None:
    """Replace the generated block in docs/benchmarks.md (or create the file with it)."""
    block = "\n".join([MARK_BEGIN, "## Latest `make bench` run", "", *report, MARK_END])
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
