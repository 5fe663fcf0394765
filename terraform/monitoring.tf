# Optional alerting (var.alert_email): a message on a dead-letter subscription means a run request
# was never dispatched or a completion never converted; a failed job execution means an ingest
# failed (its run record says why).

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email != "" ? 1 : 0

  display_name = "CloudAct alerts (${var.environment})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.apis]
}

locals {
  alerts = {
    dead_letters = {
      display_name = "CloudAct: messages dead-lettered"
      condition    = "undelivered messages on a dead-letter subscription"
      filter       = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.label.subscription_id = monitoring.regex.full_match(\".*-dead-letter-sub\")"
      duration     = "300s"
      aligner      = "ALIGN_MAX"
      runbook      = "See docs/deploy.md, 'Reading a failed run': pull the dead-letter subscription, find the run id, read the function's logs."
    }
    failed_jobs = {
      display_name = "CloudAct: ingest job failed"
      condition    = "failed Cloud Run job executions"
      filter       = "resource.type = \"cloud_run_job\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\" AND metric.label.result = \"failed\" AND resource.label.job_name = starts_with(\"cloudact-\")"
      duration     = "0s"
      aligner      = "ALIGN_DELTA"
      runbook      = "An ingest failed; its run record (GET /api/v1/pipelines/runs/{org}/{run_id}) has the error. See docs/deploy.md."
    }
  }
}

resource "google_monitoring_alert_policy" "alert" {
  for_each = { for name, alert in local.alerts : name => alert if var.alert_email != "" }

  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email[0].id]

  conditions {
    display_name = each.value.condition
    condition_threshold {
      filter          = each.value.filter
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = each.value.duration
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = each.value.aligner
      }
    }
  }

  documentation {
    content   = each.value.runbook
    mime_type = "text/markdown"
  }
}

# Where these lived before the for_each fold (see functions.tf).
moved {
  from = google_monitoring_alert_policy.dead_letters[0]
  to   = google_monitoring_alert_policy.alert["dead_letters"]
}

moved {
  from = google_monitoring_alert_policy.failed_jobs[0]
  to   = google_monitoring_alert_policy.alert["failed_jobs"]
}
