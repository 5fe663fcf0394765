# Per-org schedules live in organizations.org_schedules and are mirrored into Cloud Scheduler jobs
# (cloudact-{org}-{schedule_id}, publishing to pipeline-run-requests) by sync_schedules at runtime,
# so Terraform creates none of them: only the invoker accounts (iam.tf), this daily reconcile and the
# run sweep.

resource "google_cloud_scheduler_job" "sync_schedules" {
  count = var.sync_schedules_cron != "" ? 1 : 0

  name        = "cloudact-sync-schedules"
  region      = var.region
  description = "Reconcile per-org Cloud Scheduler jobs with organizations.org_schedules"
  schedule    = var.sync_schedules_cron
  time_zone   = "Etc/UTC"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
  }

  http_target {
    uri         = google_cloudfunctions2_function.sync_schedules.service_config[0].uri
    http_method = "POST"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.sync_schedules.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.sync_schedules_scheduler]
}

# Leases on GCP: a Cloud Run task that times out or runs out of memory never marks its run ended, so
# sweep_runs ends such runs `failed` (lease expired, or queued past the queue timeout) on this tick.
# Always on: without it a dead job's slice stays busy and its run counts against the plan forever.
resource "google_cloud_scheduler_job" "sweep_runs" {
  name        = "cloudact-sweep-runs"
  region      = var.region
  description = "End runs whose job stopped without finishing (expired lease, queue timeout)"
  schedule    = var.sweep_runs_cron
  time_zone   = "Etc/UTC"

  retry_config {
    retry_count = 0 # the next tick is minutes away, and a sweep has nothing to finish
  }

  http_target {
    uri         = google_cloudfunctions2_function.sweep_runs.service_config[0].uri
    http_method = "POST"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.sweeper.email
      audience              = google_cloudfunctions2_function.sweep_runs.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.sweep_runs_sweeper]
}
