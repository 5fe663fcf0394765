"""Balance-delta reconciliation: what a prepaid account's balance says was spent, beside the cost computed
from usage (DeepSeek, whose only money API is `GET /user/balance`).

Each run keeps the balance it read (`genai_balance_samples`, one row per currency). For a run's sample
and the credential's previous sample in the same currency:

- spent = previous total_balance - this total_balance. A top-up or a grant between them (topped_up or
  granted balance went up) hides spend behind new money, so that pair is reported, not compared.
- computed = SUM(BilledCost) of the credential's FOCUS rows in that currency over the whole UTC days
  from the day of the previous sample to the day before this one. Balances move continuously and usage
  is per day, so the two cover the same span only up to the samples' times of day: runs at the same
  hour each day (a schedule) shift both ends alike. Days with no FOCUS rows yet (an export not imported)
  are counted, so a gap shows rather than passing as a difference.

The balance is account-wide (every key), so it is a cross-check, never a gate: the result goes to the
run's quality record (`cloudact runs` shows it).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from shared.naming import table_ref


def reconcile(wh, dataset: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per currency this run sampled (JSON-ready: money as decimal strings)."""
    samples = table_ref(dataset, "genai_balance_samples")
    pairs = wh.query(
        f"""SELECT cur.currency, cur.sampled_at, cur.total_balance, cur.granted_balance, cur.topped_up_balance,
                   prev.sampled_at AS prev_sampled_at, prev.total_balance AS prev_total_balance,
                   prev.granted_balance AS prev_granted_balance, prev.topped_up_balance AS prev_topped_up_balance
            FROM {samples} AS cur
            LEFT JOIN {samples} AS prev
              ON prev.x_org_slug = cur.x_org_slug AND prev.x_pipeline_id = cur.x_pipeline_id
             AND prev.x_credential_id = cur.x_credential_id AND prev.currency = cur.currency
             AND prev.sampled_at < cur.sampled_at
            WHERE cur.x_org_slug = @org_slug AND cur.x_pipeline_id = @pipeline_id
              AND cur.x_credential_id = @credential_id AND cur.x_run_id = @run_id
            QUALIFY ROW_NUMBER() OVER (PARTITION BY cur.currency ORDER BY prev.sampled_at DESC) = 1
            ORDER BY cur.currency""",
        params,
    )
    out = []
    for p in pairs:
        entry: dict[str, Any] = {"currency": p["currency"], "sampled_at": p["sampled_at"].isoformat(),
                                 "balance": _text(p["total_balance"])}
        if p["prev_sampled_at"] is None:
            out.append({**entry, "status": "first sample", "note": "the next run's sample is compared with this one"})
            continue
        first, end = p["prev_sampled_at"].date(), p["sampled_at"].date()
        entry.update(previous_sampled_at=p["prev_sampled_at"].isoformat(), previous_balance=_text(p["prev_total_balance"]),
                     days_from=first.isoformat(), days_to=(end - dt.timedelta(days=1)).isoformat())
        added = [f for f in ("topped_up_balance", "granted_balance")
                 if (p[f] or 0) > (p[f"prev_{f}"] or 0)]
        if added:
            out.append({**entry, "status": "not compared",
                        "note": f"{' and '.join(f.split('_balance')[0].replace('_', ' ') for f in added)} balance went "
                                "up between the samples: new money hides the spend"})
            continue
        if end <= first:
            out.append({**entry, "status": "not compared", "note": "both samples are on the same UTC day"})
            continue
        cost = wh.query(
            f"""SELECT SUM(BilledCost) AS computed, COUNT(DISTINCT DATE(ChargePeriodStart)) AS days_with_usage
                FROM {table_ref(dataset, 'cost_data_standard_1_3')}
                WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
                  AND BillingCurrency = @currency
                  AND ChargePeriodStart >= TIMESTAMP(@first) AND ChargePeriodStart < TIMESTAMP(@end)""",
            {**params, "currency": p["currency"], "first": first, "end": end},
        )[0]
        spent = p["prev_total_balance"] - p["total_balance"]
        computed = cost["computed"] if cost["computed"] is not None else Decimal(0)
        out.append({**entry, "status": "compared", "spent": _text(spent), "computed": _text(computed),
                    "difference": _text(computed - spent), "days": (end - first).days,
                    "days_with_usage": cost["days_with_usage"]})
    return out


def _text(d: Decimal | None) -> str | None:
    return None if d is None else format(d, "f")
