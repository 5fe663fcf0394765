"""A loopback stand-in for Google Cloud Monitoring `projects.timeSeries.list` over real HTTP.

    points = gemini_metric_points(gemini_demo_usage(start, 30, seed=7)) + vertex_metric_points(...)
    with GcpMonitoringStub(access_token="ya29.test", points=points) as api:
        api.base_url                          # http://127.0.0.1:PORT  (paths start with /v3)
        api.fail_next(status=429, retry_after="0", times=2)
        api.requests                          # [{"method", "path", "params", "status"}, ...]

Serves `GET /v3/projects/{project}/timeSeries` in the documented shape:
  filter               exactly one `metric.type="..."` clause (optionally AND-ed with `resource.type="..."`)
  interval.startTime / interval.endTime   RFC 3339; endTime required; both at UTC midnight (the stub
                       only holds daily data, so it only answers day-aligned questions)
  aggregation.alignmentPeriod=86400s, aggregation.perSeriesAligner=ALIGN_SUM|ALIGN_DELTA,
  aggregation.crossSeriesReducer=REDUCE_SUM|REDUCE_NONE, aggregation.groupByFields (repeated,
  `metric.label.X` / `resource.label.X`), view=FULL, pageSize (points per page, default 100000),
  pageToken
Answers `{"timeSeries": [{"metric": {"type", "labels"}, "resource": {"type", "labels"}, "metricKind":
"DELTA", "valueType": "INT64", "points": [{"interval": {"startTime", "endTime"}, "value": {"int64Value":
"<string>"}}]}], "nextPageToken": "..."}`, newest point first as the real API does; a page boundary may
cut one series in two (its remaining points come first on the next page). No data -> `{}`.

Points are `{"date", "project", "metric_type", "metric_labels", "resource_type", "resource_labels",
"value"}` (see `stubs.genai_data.gemini_metric_points` / `vertex_metric_points`). Requests need
`Authorization: Bearer <access_token>` (else 401 UNAUTHENTICATED); an unknown project gets 403
PERMISSION_DENIED like the real API.
"""
from __future__ import annotations

import re
from typing import Mapping

from stubs.http_stub import (DAY, BadRequest, LoopbackStub, day_ts, decode_cursor, encode_cursor, last_param,
                             parse_rfc3339, rfc3339)

PATH = re.compile(r"^/v3/projects/([^/]+)/timeSeries$")
_METRIC_CLAUSE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
_RESOURCE_CLAUSE = re.compile(r'resource\.type\s*=\s*"([^"]+)"')
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
MAX_PAGE_SIZE = 100_000


def _parse_time(name: str, raw: str) -> int:
    return parse_rfc3339(raw, invalid=f"Invalid value at '{name}' ({raw!r}): not an RFC 3339 timestamp",
                         no_zone=f"Invalid value at '{name}': a time zone offset is required")


class GcpMonitoringStub(LoopbackStub):
    name = "gcp-monitoring-stub"

    def __init__(self, access_token: str = "ya29.stub-token", points: list[dict] | None = None, *,
                 projects: list[str] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.access_token = access_token
        self.points = list(points or [])
        self.projects = set(projects) if projects is not None else {p["project"] for p in self.points}

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}

    def authorized(self, headers: Mapping[str, str]) -> tuple[int, dict] | None:
        return self.refuse_bearer(headers, self.access_token,
                                  "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                  "login cookie or other valid authentication credential.")

    def handle(self, path: str, params: dict[str, list[str]]) -> tuple[int, dict]:
        m = PATH.match(path)
        if not m:
            return 404, self.error_body(404, f"Not found: GET {path}")
        project = m.group(1)
        if project not in self.projects:
            return 403, self.error_body(403, f"Permission monitoring.timeSeries.list denied (or the resource may "
                                             f"not exist) for projects/{project}.")
        return 200, self._list(project, params)

    # -- the query ---------------------------------------------------------------------------------------
    def _list(self, project: str, params: dict[str, list[str]]) -> dict:
        flt = last_param(params, "filter") or ""
        metrics = _METRIC_CLAUSE.findall(flt)
        if len(metrics) != 1:
            raise BadRequest("The filter must specify exactly one metric type: metric.type=\"...\"")
        metric_type = metrics[0]
        resource_types = _RESOURCE_CLAUSE.findall(flt)
        raw_end = last_param(params, "interval.endTime")
        if not raw_end:
            raise BadRequest("Field interval.endTime is required")
        end = _parse_time("interval.endTime", raw_end)
        raw_start = last_param(params, "interval.startTime")
        start = _parse_time("interval.startTime", raw_start) if raw_start else end
        if start > end:
            raise BadRequest("The start time must be before the end time")
        if start % DAY or end % DAY:
            raise BadRequest("The stub only serves intervals that start and end at UTC midnight")
        period = last_param(params, "aggregation.alignmentPeriod")
        aligner = last_param(params, "aggregation.perSeriesAligner", "ALIGN_NONE")
        reducer = last_param(params, "aggregation.crossSeriesReducer", "REDUCE_NONE")
        group_by = params.get("aggregation.groupByFields", [])
        if period != "86400s":
            raise BadRequest("The stub only serves aggregation.alignmentPeriod=86400s")
        if aligner not in ("ALIGN_SUM", "ALIGN_DELTA"):
            raise BadRequest(f"The aligner {aligner} is not valid for a DELTA INT64 metric with this stub")
        if reducer not in ("REDUCE_SUM", "REDUCE_NONE"):
            raise BadRequest(f"The stub only serves REDUCE_SUM, not {reducer}")
        if group_by and reducer == "REDUCE_NONE":
            raise BadRequest("aggregation.groupByFields requires a crossSeriesReducer")
        bad = [g for g in group_by if not re.match(r"^(metric|resource)\.label\.[A-Za-z0-9_]+$", g)]
        if bad:
            raise BadRequest(f"Invalid groupByFields: {bad}")
        if last_param(params, "view", "FULL") != "FULL":
            raise BadRequest("The stub only serves view=FULL")
        try:
            page_size = int(last_param(params, "pageSize", MAX_PAGE_SIZE) or MAX_PAGE_SIZE)
        except ValueError:
            raise BadRequest("pageSize must be an integer") from None
        page_size = min(max(page_size, 1), MAX_PAGE_SIZE)

        wanted = [p for p in self.points if p["project"] == project and p["metric_type"] == metric_type
                  and (not resource_types or p["resource_type"] in resource_types)
                  and start <= day_ts(p["date"]) < end]
        series = self._aggregate(wanted, group_by if reducer == "REDUCE_SUM" else None)
        flat = [(header, point) for header, pts in series for point in pts]
        token = last_param(params, "pageToken")
        offset = decode_cursor("timeseries", token) if token else 0
        chunk = flat[offset:offset + page_size]
        out: list[dict] = []
        for header, point in chunk:
            if out and out[-1]["_key"] is header:
                out[-1]["points"].append(point)
            else:
                out.append({"_key": header, **header, "points": [point]})
        for s in out:
            del s["_key"]
        body: dict = {}
        if out:
            body["timeSeries"] = out
        if offset + page_size < len(flat):
            body["nextPageToken"] = encode_cursor("timeseries", offset + page_size)
        return body

    @staticmethod
    def _aggregate(points: list[dict], group_by: list[str] | None) -> list[tuple[dict, list[dict]]]:
        """Series headers with their daily points, newest first; grouped and summed when group_by is given."""
        groups: dict[tuple, dict] = {}
        for p in points:
            if group_by is None:
                mlabels, rlabels = dict(p["metric_labels"]), dict(p["resource_labels"])
            else:
                mlabels = {g.split(".", 2)[2]: p["metric_labels"][g.split(".", 2)[2]] for g in group_by
                           if g.startswith("metric.") and g.split(".", 2)[2] in p["metric_labels"]}
                rlabels = {g.split(".", 2)[2]: p["resource_labels"][g.split(".", 2)[2]] for g in group_by
                           if g.startswith("resource.") and g.split(".", 2)[2] in p["resource_labels"]}
            key = (p["resource_type"], tuple(sorted(mlabels.items())), tuple(sorted(rlabels.items())))
            g = groups.setdefault(key, {"header": {"metric": {"type": p["metric_type"], "labels": mlabels},
                                                   "resource": {"type": p["resource_type"], "labels": rlabels},
                                                   "metricKind": "DELTA", "valueType": "INT64"},
                                        "days": {}})
            g["days"][p["date"]] = g["days"].get(p["date"], 0) + int(p["value"])
        out = []
        for key in sorted(groups):
            g = groups[key]
            pts = [{"interval": {"startTime": rfc3339(day_ts(d)), "endTime": rfc3339(day_ts(d) + DAY)},
                    "value": {"int64Value": str(v)}} for d, v in sorted(g["days"].items(), reverse=True)]
            out.append((g["header"], pts))
        return out
