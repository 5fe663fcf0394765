output "run_pipeline_url" {
  description = "Base URL of the pipelines API (POST {url}/api/v1/pipelines/run/{org}/{pipeline})."
  value       = google_cloudfunctions2_function.fn["run_pipeline"].service_config[0].uri
}

output "stripe_webhook_url" {
  description = "The endpoint to register in Stripe's dashboard."
  value       = google_cloudfunctions2_function.fn["stripe_webhook"].service_config[0].uri
}

output "sync_schedules_url" {
  value = google_cloudfunctions2_function.fn["sync_schedules"].service_config[0].uri
}

output "source_reader_service_account" {
  description = "Tenants grant this account roles/iam.serviceAccountTokenCreator on their own service account so their GCP sources are read as them (docs/deploy.md)."
  value       = google_service_account.account["source_reader"].email
}

output "topics" {
  description = "Topic names (shared/bus/base.py TOPICS)."
  value       = [for t in google_pubsub_topic.topic : t.name]
}

output "dead_letter_topics" {
  value = [for t in google_pubsub_topic.dead_letter : t.name]
}

output "subscriptions" {
  value = concat([for s in google_pubsub_subscription.push : s.name], [for s in google_pubsub_subscription.dead_letter : s.name])
}

output "jobs" {
  description = "Cloud Run jobs, one per job family."
  value       = [for j in google_cloud_run_v2_job.family : j.name]
}

output "image_repository" {
  value = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

# The build identity is left out: nothing outside the functions' builds uses it.
output "service_accounts" {
  value = { for key, account in google_service_account.account : key => account.email if key != "fn_builder" }
}
