# Stripe's webhook signing secret. Terraform creates the secret and who may read it, never a value:
#   printf %s "whsec_..." | gcloud secrets versions add stripe-webhook-secret --data-file=-
# Provider credentials are separate secrets created at runtime (`cloudact credentials add`).

resource "google_secret_manager_secret" "stripe_webhook" {
  secret_id = var.stripe_webhook_secret_name

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "functions_read_stripe" {
  secret_id = google_secret_manager_secret.stripe_webhook.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.account["functions"].member
}
