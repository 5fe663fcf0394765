# The meta dataset. Per-org `{org}_prod` datasets are created at runtime (`cloudact orgs create`),
# and their tables and procedures by `cloudact bootstrap` (the last step of cloudbuild.yaml).

resource "google_bigquery_dataset" "organizations" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption. CMEK would also be needed on every runtime-created {org}_prod dataset, which the code does not set; add default_encryption_configuration here and in the code together if required.
  dataset_id                 = "organizations"
  friendly_name              = "CloudAct meta tables"
  description                = "Organizations, API keys, credentials, runs, plans, subscriptions, Stripe events, schedules, GenAI prices."
  location                   = var.bigquery_location
  delete_contents_on_destroy = false

  depends_on = [google_project_service.apis]
}

# Explicit even though the project-level dataEditor grant (iam.tf) covers it: the meta dataset is
# the one both runtimes can never work without.
resource "google_bigquery_dataset_iam_member" "organizations_editors" {
  for_each = {
    functions = google_service_account.account["functions"].member
    jobs      = google_service_account.account["jobs"].member
  }

  dataset_id = google_bigquery_dataset.organizations.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value
}
