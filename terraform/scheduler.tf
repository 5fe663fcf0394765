# Per-org schedules live in organizations.org_schedules and are mirrored into Cloud Scheduler jobs
# (cloudact-{org}-{schedule_id}, publishing a tick to pipeline-schedule-ticks) by sync_schedules at
# runtime, so Terraform creates none of them: only the invoker accounts (iam.tf), the function their
# ticks are pushed to (schedule_tick, functions.tf), this daily reconcile and the run sweep.

# Functions Cloud Scheduler calls, keyed by entry point (local.functions). Each job is named after its
# function and calls it with the OIDC token of the function's invoker, so the account that may invoke
# a function and the one that calls it cannot drift apart.
locals {
  scheduled_calls = {
    sync_schedules = {
      cron        = var.sync_schedules_cron # empty = no job
      description = "Reconcile per-org Cloud Scheduler jobs with organizations.org_schedules"
      retries     = 3
      min_backoff = "30s"
    }
    # Leases on GCP: a Cloud Run task that times out or runs out of memory never marks its run ended,
    # so sweep_runs ends such runs `failed` (lease expired, or queued past the queue timeout) on this
    # tick. Always on (the variable refuses an empty cron): without it a dead job's slice stays busy
    # and its run counts against the plan forever.
    sweep_runs = {
      cron        = var.sweep_runs_cron
      description = "End runs whose job stopped without finishing (expired lease, queue timeout)"
      retries     = 0    # the next tick is minutes away, and a sweep has nothing to finish
      min_backoff = null # no retries, so no backoff to set
    }
  }
}

resource "google_cloud_scheduler_job" "call" {
  for_each = { for entry_point, job in local.scheduled_calls : entry_point => job if job.cron != "" }

  name        = google_cloudfunctions2_function.fn[each.key].name
  region      = var.region
  description = each.value.description
  schedule    = each.value.cron
  time_zone   = "Etc/UTC"

  retry_config {
    retry_count          = each.value.retries
    min_backoff_duration = each.value.min_backoff
  }

  http_target {
    uri         = google_cloudfunctions2_function.fn[each.key].service_config[0].uri
    http_method = "POST"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.account[local.functions[each.key].invoker].email
      audience              = google_cloudfunctions2_function.fn[each.key].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker]
}

# Where these lived before the for_each fold (see functions.tf).
moved {
  from = google_cloud_scheduler_job.sync_schedules[0]
  to   = google_cloud_scheduler_job.call["sync_schedules"]
}

moved {
  from = google_cloud_scheduler_job.sweep_runs
  to   = google_cloud_scheduler_job.call["sweep_runs"]
}
