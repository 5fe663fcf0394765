# The job image repository and the deploy trigger: a push to main runs cloudbuild.yaml as
# cloudact-deployer (tests, image, terraform apply, bootstrap).

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:The image holds only the open source code of this repo, no data or secrets; Google-managed encryption.
  repository_id = var.artifact_repository
  location      = var.region
  format        = "DOCKER"
  description   = "CloudAct job images"

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloudbuild_trigger" "deploy" {
  count = var.github_owner != "" && var.github_repo != "" ? 1 : 0

  name            = "cloudact-deploy-${var.environment}"
  location        = "global"
  description     = "Test, build the job image, terraform apply, bootstrap BigQuery"
  filename        = "cloudbuild.yaml"
  service_account = google_service_account.account["deployer"].id

  github {
    owner = var.github_owner
    name  = var.github_repo
    push {
      branch = var.build_branch
    }
  }

  # Everything terraform needs to reproduce this configuration on every build.
  substitutions = {
    _REGION          = var.region
    _BQ_LOCATION     = var.bigquery_location
    _ENVIRONMENT     = var.environment
    _AR_REPO         = var.artifact_repository
    _TF_STATE_BUCKET = var.tf_state_bucket
    _GITHUB_OWNER    = var.github_owner
    _GITHUB_REPO     = var.github_repo
    _ALERT_EMAIL     = var.alert_email
  }

  depends_on = [google_project_iam_member.deployer_roles]
}
