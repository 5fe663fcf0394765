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

resource "google_monitoring_alert_policy" "dead_letters" {
  count = var.alert_email != "" ? 1 : 0

  display_name          = "CloudAct: messages dead-lettered"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email[0].id]

  conditions {
    display_name = "undelivered messages on a dead-letter subscription"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.label.subscription_id = monitoring.regex.full_match(\".*-dead-letter-sub\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "See docs/deploy.md, 'Reading a failed run': pull the dead-letter subscription, find the run id, read the function's logs."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "failed_jobs" {
  count = var.alert_email != "" ? 1 : 0

  display_name          = "CloudAct: ingest job failed"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email[0].id]

  conditions {
    display_name = "failed Cloud Run job executions"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\" AND metric.label.result = \"failed\" AND resource.label.job_name = starts_with(\"cloudact-\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_DELTA"
      }
    }
  }

  documentation {
    content   = "An ingest failed; its run record (GET /api/v1/pipelines/runs/{org}/{run_id}) has the error. See docs/deploy.md."
    mime_type = "text/markdown"
  }
}
