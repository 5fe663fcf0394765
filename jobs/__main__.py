"""Cloud Run job entry point: `python -m jobs run --run-id ... --org ... --pipeline ...`."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from shared.logs import setup

    setup()
    parser = argparse.ArgumentParser(prog="python -m jobs", description="Run one pipeline ingest job.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="ingest one run's slice and publish its completion")
    for flag in ("--run-id", "--org", "--pipeline", "--credential-id", "--start", "--end"):
        run.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    from jobs.runner import run_job, wire

    wire()  # on the embedded backend the completion is converted in this process
    result = run_job({"run_id": args.run_id, "org_slug": args.org, "pipeline_id": args.pipeline,
                      "credential_id": args.credential_id, "start_date": args.start, "end_date": args.end})
    return 0 if result["status"] in ("ingested", "duplicate") else 1


if __name__ == "__main__":
    sys.exit(main())
