# Per-org schedules live in organizations.org_schedules and are mirrored into Cloud Scheduler jobs
# (cloudact-{org}-{schedule_id}, publishing a tick to pipeline-schedule-ticks) by sync_schedules at
# runtime, so Terraform creates none of them: only the invoker accounts (iam.tf), the function their
# ticks are pushed to, this daily reconcile and the run sweep.

# A tick has its own topic and function: it queues the schedule's run in process (org, pipeline, quota,
# credential and slice checks as for a posted run), and the run's request then goes on
# pipeline-run-requests to dispatch_run like any other.
resource "google_cloudfunctions2_function" "schedule_tick" {
  name        = "cloudact-schedule-tick"
  location    = var.region
  description = "pipeline-schedule-ticks -> queue the schedule's run"

  build_config {
    runtime         = "python311"
    entry_point     = "schedule_tick"
    service_account = google_service_account.fn_builder.id
    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory               = "512Mi"
    timeout_seconds                = 60
    max_instance_count             = var.function_max_instances
    ingress_settings               = var.private_function_ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_env
  }

  depends_on = [google_project_iam_member.fn_builder_roles, google_storage_bucket_iam_member.fn_builder_reads_source]
}

resource "google_cloud_run_v2_service_iam_member" "schedule_tick_push" {
  name     = google_cloudfunctions2_function.schedule_tick.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

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
