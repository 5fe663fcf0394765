"""`make conformance`: run the external FOCUS validator (PyPI focus-validator 2.2.1) on a Parquet export.

    python -m tools.conformance --parquet FILE [--venv .venv-validator] [--strict]
                                [--model-1.3 FILE] [--criteria ALL|LIST] [--show-violations]

What it does, and the validator's traps it handles:
- focus-validator 2.2.1 needs Python >= 3.12 (under 3.11 pip silently installs the useless 1.0.0). We look
  for `python3.12` on PATH, then `$(pyenv root)/versions/3.12.*/bin/python3`. None: "SKIPPED: needs
  Python 3.12" and exit 0 (exit 1 with --strict).
- It gets its own venv (`--venv`, default .venv-validator) with `focus-validator==2.2.1 "pyarrow<23"`
  (pyarrow >= 23 refuses to import with the numpy<2 the validator pins).
- It opens `focus_validator/rules/currency_codes.csv` relative to the working directory: we run it from
  `<venv>/work`, which holds a `focus_validator` symlink to the installed package.
- Its default logging writes a DEBUG log into the working directory: LOGGING_CONFIG points it at
  `<venv>/work/focus_validator_detailed.log` instead, never the repo.
- Its exit code is 0 even when rules fail: we parse `Total: N | Pass: P | Fail: F | Skipped: S` and the
  `❌ <rule>: FAIL` lines, and exit 1 when a failure is not a known model defect (WHITELIST).

Rule sets:
- FOCUS 1.2: the model bundled in the package (model-1.2.0.1.json), run offline (`--block-download`).
  The 1.2 rules accept the extra 1.3 and x_ columns, so this is an offline smoke test of our 1.3 table.
- FOCUS 1.3: only when a `model-1.3*.json` is available locally: `--model-1.3 FILE`, $FOCUS_MODEL_1_3,
  `<venv>/focus-rules/`, or the package's own rules dir (where an online validator run caches it). No
  PyPI package ships it (checked: focus-data-toolkit 0.14.1 ships only its own 1.4 model; the old
  focus-spec-validator 0.5.0 predates 1.2), and the validator itself downloads it from the FOCUS_Spec
  GitHub release (asset `model-1.3.json`, CC-BY-4.0), which needs network. Without it, 1.3 is reported
  as not run and does not fail the gate.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

VALIDATOR_REQUIREMENTS = ("focus-validator==2.2.1", "pyarrow<23")
VALIDATOR_VERSION = "2.2.1"
RUN_TIMEOUT_S = 1800

# Applicability criteria we claim. `ALL` was tried first: on a valid GenAI/Tax/Credit export it fails
# rules for features our data does not have (578 rules: 351 pass, 17 fail), so we pass this explicit
# list. Not claimed, and why:
# - CAPACITY_RESERVATION_SUPPORTED: we map no capacity reservations (and CapacityReservationStatus-C-004-C
#   is malformed in both models and fires on every row).
# - MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED, MULTIPLE_SUB_ACCOUNT_TYPES_SUPPORTED: we do not fill
#   BillingAccountType / SubAccountType (each provider we ingest has a single account type).
# - PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED, VIRTUAL_CURRENCY_SUPPORTED: we price and bill in the
#   same (national) currency.
# - CONTRACT_COMMITMENTS_SUPPORTED (1.3): no ContractCommitment dataset / ContractApplied values.
# - DATA_GENERATOR_SPLIT_COST_ALLOCATION_SUPPORTED (1.3): we do no split cost allocation.
# The validator silently ignores names a model does not define; we still pass only the intersection
# with the model's own list and print what is left unclaimed.
CLAIMED_CRITERIA = (
    "ACCOUNT_NAMING_SUPPORTED",
    "AVAILABILITY_ZONE_SUPPORTED",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
    "COMMITMENT_DISCOUNT_SUPPORTED",
    "MULTIPLE_PRICING_CATEGORIES_SUPPORTED",
    "NEGOTIATED_PRICING_SUPPORTED",
    "PUBLIC_PRICE_LIST_SUPPORTED",
    "REGION_SUPPORTED",
    "RESOURCE_TYPE_ASSIGNMENT_SUPPORTED",
    "SUB_ACCOUNT_SUPPORTED",
    "TAGGING_SUPPORTED",
    "UNIT_PRICING_SUPPORTED",
    "USAGE_MEASUREMENT_SUPPORTED",
)

# Known model defects (rule ids without the 1.3 "CAU-" dataset prefix). A composite rule whose failed
# children are all whitelisted is whitelisted too.
WHITELIST: dict[str, dict[str, str]] = {
    "1.2": {
        "InvoiceId-C-004-C": "empty condition: with -C-005-C exactly one of the pair always fails",
        "InvoiceId-C-005-C": "empty condition: with -C-004-C exactly one of the pair always fails",
        "CommitmentDiscountStatus-C-004-C": "condition inverted in model 1.2.0.1 (fires when "
                                            "CommitmentDiscountId IS NULL)",
        "CapacityReservationStatus-C-004-C": "malformed condition, fires on every row",
        # "paid to a third party" modelled as ProviderName != InvoiceIssuerName: a provider's own invoicing
        # entity (Amazon Web Services EMEA SARL for Amazon Web Services) is no third party; 1.3 makes it Dynamic
        "BilledCost-C-005-C": "static stand-in for a third-party payee (ProviderName != InvoiceIssuerName) "
                              "that flags the provider's own invoicing entities; Dynamic in 1.3",
    },
    "1.3": {
        "CapacityReservationStatus-C-003-C": "malformed condition, fires on every row",
        "CapacityReservationStatus-C-004-C": "malformed condition, fires on every row",
        "PricingCurrencyContractedUnitPrice-C-012-C": "condition inverted in the 1.3 model",
    },
}

_TOTAL = re.compile(r"Total:\s*(\d+)\s*\|\s*Pass:\s*(\d+)\s*\|\s*Fail:\s*(\d+)\s*\|\s*Skipped:\s*(\d+)")
_FAIL = re.compile(r"^\S*\s*(?P<rule>[A-Za-z][\w.-]*):\s+FAIL\b\s*(?:\((?P<detail>.*)\))?\s*$")
_VIOLATIONS = re.compile(r"violations=(\d+)")
_CHILDREN = re.compile(r"(?:failed child rules|all child rules failed):\s*\[([^\]]*)\]")


def _say(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------
# Python 3.12 and the validator venv
# --------------------------------------------------------------------------------------------------
def _is_312(python: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=False,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "3.12"


def find_python312() -> str | None:
    candidates = []
    if shutil.which("python3.12"):
        candidates.append(shutil.which("python3.12"))
    pyenv = shutil.which("pyenv")
    roots = []
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], check=False, capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                roots.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    roots.append(os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv"))
    for root in dict.fromkeys(roots):
        found = glob.glob(os.path.join(root, "versions", "3.12.*", "bin", "python3"))
        found.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")], reverse=True)
        candidates.extend(found)
    for python in candidates:  # a pyenv shim on PATH may exist without the version installed
        if _is_312(python):
            return python
    return None


def ensure_venv(venv: Path, python312: str) -> Path:
    """Create/refresh the validator venv; return the focus_validator package directory."""
    stamp = venv / ".cloudact-validator"
    wanted = " ".join(VALIDATOR_REQUIREMENTS)
    py = venv / "bin" / "python"
    if not (py.exists() and stamp.exists() and stamp.read_text().strip() == wanted):
        if not py.exists() or not _is_312(str(py)):
            if venv.exists():
                shutil.rmtree(venv)
            _say(f"creating {venv} with {python312}")
            subprocess.run([python312, "-m", "venv", str(venv)], check=True)
        _say(f"installing {wanted} into {venv} (from PyPI)")
        pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *VALIDATOR_REQUIREMENTS], check=False, capture_output=True, text=True)
        if pip.returncode != 0:
            tail = "\n".join((pip.stderr or pip.stdout).strip().splitlines()[-10:])
            raise RuntimeError(f"pip install {wanted} failed:\n{tail}")
        stamp.write_text(wanted + "\n")
    probe = ("import importlib.metadata as m, os, focus_validator as f; "
             "print(m.version('focus-validator')); print(os.path.dirname(f.__file__))")
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True)
    version, pkg = out.stdout.split("\n")[:2]
    if version.strip() != VALIDATOR_VERSION:
        raise RuntimeError(f"{venv} has focus-validator {version.strip()}, need {VALIDATOR_VERSION}")
    return Path(pkg.strip())


def prepare_workdir(venv: Path, package: Path) -> tuple[Path, dict[str, str]]:
    """The working directory (with the `focus_validator` symlink) and the environment to run in."""
    work = venv / "work"
    work.mkdir(parents=True, exist_ok=True)
    link = work / "focus_validator"
    if (link.is_symlink() or link.exists()) and link.resolve() != package.resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(package, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    return work, env


def logging_config(work: Path, version: str) -> Path:
    """A LOGGING_CONFIG sending the validator's log to `<work>/focus_validator-<version>.log`.

    JSON is valid YAML, and main.py loads a *.yaml LOGGING_CONFIG with yaml.safe_load + dictConfig.
    """
    cfg = work / f"logging-{version}.yaml"
    cfg.write_text(json.dumps({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(work / f"focus_validator-{version}.log"),
                              "mode": "w", "formatter": "plain", "level": "INFO"}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }, indent=2))
    return cfg


# --------------------------------------------------------------------------------------------------
# Rule models and criteria
# --------------------------------------------------------------------------------------------------
def find_model_13(explicit: str | None, venv: Path, package: Path) -> Path | None:
    if explicit:
        p = Path(explicit).expanduser().resolve()
        if not p.is_file():
            raise FileNotFoundError(f"--model-1.3 {explicit}: no such file")
        return p
    if os.environ.get("FOCUS_MODEL_1_3") and Path(os.environ["FOCUS_MODEL_1_3"]).is_file():
        return Path(os.environ["FOCUS_MODEL_1_3"]).resolve()
    for d in (venv / "focus-rules", package / "rules"):
        found = sorted(d.glob("model-1.3*.json"))
        if found:
            return found[-1].resolve()
    return None


def rules_dir_for(model: Path, work: Path) -> Path:
    """A directory holding only `model` under a name the validator accepts (model-<version>.json)."""
    name = model.name if re.fullmatch(r"model-1\.3(\.\d+)*\.json", model.name) else "model-1.3.json"
    d = work / "rules-1.3"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    (d / name).symlink_to(model)
    return d


def model_criteria(model: Path) -> list[str]:
    try:
        return list(json.loads(model.read_text()).get("ApplicabilityCriteria", {}))
    except (OSError, ValueError):
        return []


# Claimed only when the data has such rows: with no commitment rows the validator would check its
# conditional rules against nothing but its own defects (CommitmentDiscountStatus-C-000/002/004-C).
DATA_DEPENDENT_CRITERIA = {"COMMITMENT_DISCOUNT_SUPPORTED": "CommitmentDiscountId"}


def default_criteria(parquet: Path) -> list[str]:
    """CLAIMED_CRITERIA, less the data-dependent ones whose column is empty in this file."""
    import pyarrow.parquet as pq

    names = set(pq.read_schema(parquet).names)
    claimed = []
    for c in CLAIMED_CRITERIA:
        column = DATA_DEPENDENT_CRITERIA.get(c)
        if column:
            if column not in names or pq.read_table(parquet, columns=[column]).column(0).null_count == \
                    pq.ParquetFile(parquet).metadata.num_rows:
                continue
        claimed.append(c)
    return claimed


def criteria_arg(requested: str | None, model: Path | None, default: list[str]) -> tuple[str, list[str]]:
    """(value for --applicability-criteria, available criteria we leave unclaimed)."""
    if requested and requested.upper() in ("ALL", "NONE"):
        return ("ALL" if requested.upper() == "ALL" else ""), []
    claimed = [c.strip() for c in requested.split(",") if c.strip()] if requested else list(default)
    available = model_criteria(model) if model else []
    if available:
        return ",".join(c for c in claimed if c in available), [c for c in available if c not in claimed]
    return ",".join(claimed), []


# --------------------------------------------------------------------------------------------------
# Running and parsing
# --------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    label: str
    total: int | None = None
    passed: int | None = None
    failed: int | None = None
    skipped: int | None = None
    failures: dict[str, str] = field(default_factory=dict)  # rule id -> detail
    whitelisted: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    note: str = ""
    error: str = ""
    output: str = ""

    @property
    def ran(self) -> bool:
        return self.total is not None


def _norm(rule_id: str) -> str:
    return rule_id.removeprefix("CAU-")


def parse_output(text: str, result: RunResult) -> RunResult:
    m = _TOTAL.search(text)
    if m:
        result.total, result.passed, result.failed, result.skipped = map(int, m.groups())
    for line in text.splitlines():
        f = _FAIL.match(line.strip())
        if f and f.group("rule") not in result.failures:
            result.failures[f.group("rule")] = (f.group("detail") or "").strip()
    return result


def model_dependencies(venv: Path, version: str, rules_dir: Path | None) -> dict[str, list[str]]:
    """Rule id -> the rules a composite depends on, from the model JSON the validator runs: an OR composite
    reports its children as `model_rule_reference#N`, not by id."""
    dirs = [rules_dir] if rules_dir else list(venv.glob("lib/python*/site-packages/focus_validator/rules"))
    for d in dirs:
        for f in sorted(d.glob(f"model-{version}*.json")):
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            rules = doc.get("ModelRules", doc) if isinstance(doc, dict) else {}
            if isinstance(rules, dict):
                return {k: list(v.get("Dependencies") or (v.get("ValidationCriteria") or {}).get("Dependencies") or [])
                        for k, v in rules.items() if isinstance(v, dict)}
    return {}


def classify(result: RunResult, whitelist: dict[str, str], dependencies: dict[str, list[str]] | None = None) -> RunResult:
    """Split failures into whitelisted (known defects, or composites failing only through them) and unexpected."""
    explained = {r for r in result.failures if _norm(r) in whitelist}
    changed = True
    while changed:
        changed = False
        for rule, detail in result.failures.items():
            if rule in explained:
                continue
            children = _CHILDREN.search(detail)
            if children:
                kids = [k.strip() for k in children.group(1).split(",") if k.strip()]
                if any(k.startswith("model_rule_reference") for k in kids):
                    kids = (dependencies or {}).get(_norm(rule), [])
                if kids and all(k in explained for k in kids):
                    explained.add(rule)
                    changed = True
    result.whitelisted = sorted(explained)
    result.unexpected = sorted(r for r in result.failures if r not in explained)
    return result


def run_validator(label: str, venv: Path, work: Path, env: dict[str, str], parquet: Path, version: str,
                  criteria: str, rules_dir: Path | None, show_violations: bool) -> RunResult:
    cmd = [str(venv / "bin" / "focus-validator"), "--data-file", str(parquet), "--validate-version", version,
           "--block-download", "--focus-dataset", "CostAndUsage", "--output-type", "console"]
    if criteria:
        cmd += ["--applicability-criteria", criteria]
    if rules_dir:
        cmd += ["--rule-set-path", str(rules_dir)]
    if show_violations:
        cmd.append("--show-violations")
    result = RunResult(label)
    try:
        proc = subprocess.run(cmd, check=False, cwd=work, env={**env, "LOGGING_CONFIG": str(logging_config(work, version))}, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        result.error = f"timed out after {RUN_TIMEOUT_S}s"
        return result
    result.output = proc.stdout
    (work / f"report-{version}.txt").write_text(proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
    parse_output(proc.stdout, result)
    if proc.returncode != 0 or not result.ran:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        result.error = f"focus-validator exited {proc.returncode} without a result:\n{tail}"
    return classify(result, WHITELIST.get(version, {}), model_dependencies(venv, version, rules_dir))


def run_gate(parquet: Path) -> bool:
    """Our per-row gate (shared.focus) on the same file: it catches bad enumerations in single rows,
    which the validator only checks dataset-wide."""
    import pyarrow.parquet as pq

    from shared.focus import check_arrow

    report = check_arrow(pq.read_table(parquet))
    _say(report.summary())
    return report.ok


def print_table(results: list[RunResult]) -> None:
    head = f"{'rule set':<10} {'total':>6} {'pass':>6} {'fail':>6} {'skipped':>8} {'known':>6} {'unexpected':>11}"
    _say(head)
    _say("-" * len(head))
    for r in results:
        if r.ran:
            _say(f"{r.label:<10} {r.total:>6} {r.passed:>6} {r.failed:>6} {r.skipped:>8} "
                 f"{len(r.whitelisted):>6} {len(r.unexpected):>11}")
        else:
            why = r.note or (r.error.splitlines()[0] if r.error else "")
            _say(f"{r.label:<10} not run: {why}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.conformance", description=__doc__.splitlines()[0])
    ap.add_argument("--parquet", required=True, help="FOCUS table exported to Parquet")
    ap.add_argument("--venv", default=".venv-validator", help="validator venv (Python 3.12); created if missing")
    ap.add_argument("--strict", action="store_true", help="fail (exit 1) instead of skipping when Python 3.12 is missing")
    ap.add_argument("--model-1.3", dest="model13", help="a local FOCUS 1.3 rule model (model-1.3.json)")
    ap.add_argument("--criteria", help="applicability criteria: ALL, NONE or a comma list (default: CLAIMED_CRITERIA)")
    ap.add_argument("--skip-gate", action="store_true", help="skip our own per-row gate (shared.focus.check_arrow)")
    ap.add_argument("--show-violations", action="store_true", help="print the validator's sample violations")
    args = ap.parse_args(argv)

    parquet = Path(args.parquet).expanduser().resolve()
    if not parquet.is_file():
        _say(f"conformance: {parquet} does not exist")
        return 2
    gate_ok = True
    if not args.skip_gate:
        gate_ok = run_gate(parquet)
    python312 = find_python312()
    if not python312:
        _say("SKIPPED: needs Python 3.12 (focus-validator 2.2.1 requires it; under 3.11 pip installs the "
             "unusable 1.0.0). Install it (e.g. `pyenv install 3.12`) or put python3.12 on PATH.")
        return 1 if (args.strict or not gate_ok) else 0
    venv = Path(args.venv).expanduser().absolute()
    try:
        package = ensure_venv(venv, python312)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
        _say(f"conformance: could not set up the validator in {venv}: {e}")
        return 1
    work, env = prepare_workdir(venv, package)
    _say(f"focus-validator {VALIDATOR_VERSION} ({venv}), data {parquet}")

    results: list[RunResult] = []
    model12 = max(package.joinpath("rules").glob("model-1.2*.json"), default=None)
    default = default_criteria(parquet)
    crit12, unclaimed12 = criteria_arg(args.criteria, model12, default)
    results.append(run_validator("FOCUS 1.2", venv, work, env, parquet, "1.2", crit12, None, args.show_violations))

    try:
        model13 = find_model_13(args.model13, venv, package)
    except FileNotFoundError as e:
        _say(f"conformance: {e}")
        return 2
    if model13:
        crit13, unclaimed13 = criteria_arg(args.criteria, model13, default)
        results.append(run_validator("FOCUS 1.3", venv, work, env, parquet, "1.3", crit13,
                                     rules_dir_for(model13, work), args.show_violations))
    else:
        unclaimed13 = []
        results.append(RunResult("FOCUS 1.3", note=(
            "no local model-1.3.json (no PyPI package ships it; the validator downloads it from the FOCUS_Spec "
            f"v1.3 GitHub release, which needs network). Put it in {venv / 'focus-rules'} or pass --model-1.3.")))

    _say("")
    print_table(results)
    _say(f"applicability criteria: {crit12 or 'none'}")
    unclaimed = sorted(set(unclaimed12) | set(unclaimed13))
    if unclaimed:
        _say(f"not claimed: {', '.join(unclaimed)}")
    bad = not gate_ok
    for r in results:
        if r.error:
            bad = True
            _say(f"\n{r.label}: {r.error}")
        if r.whitelisted:
            _say(f"{r.label} known model defects (ignored): {', '.join(r.whitelisted)}")
        if r.unexpected:
            bad = True
            _say(f"\n{r.label} FAILED rules:")
            for rule in r.unexpected:
                _say(f"  {rule}: {r.failures[rule]}")
            if args.show_violations and "--- Failures ---" in r.output:
                _say(r.output[r.output.index("--- Failures ---"):].rstrip())
    _say(f"\nreports and the validator log: {work}")
    _say("conformance: FAILED" if bad else "conformance: OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
