# One Cloud Run job per job family (providers.yml `job_family`), all on the same image. The launcher
# (shared/launcher/cloudrun.py) starts `cloudact-{family}` with the run's arguments
# (`python -m jobs run --run-id ... --org ... --pipeline ...`) and identifying env vars as overrides,
# so the job itself has no args. tests/test_deploy_config.py checks this list against providers.yml.
# The jobs run as cloudact-jobs, which writes org datasets; they read tenant sources only as
# cloudact-source-reader's delegate (iam.tf), named to them in CLOUDACT_SOURCE_READER_SA.

locals {
  job_families = ["cloud", "genai", "subscription"]
}

resource "google_cloud_run_v2_job" "family" {
  for_each = toset(local.job_families)

  name                = "cloudact-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = { job_family = each.key }

  template {
    task_count = 1

    template {
      service_account = google_service_account.account["jobs"].email
      timeout         = var.job_timeout
      max_retries     = 0 # a failed ingest is recorded on its run; re-running is the caller's choice

      containers {
        image = var.image

        resources {
          limits = {
            cpu    = var.job_cpu
            memory = var.job_memory
          }
        }

        # The runtime env of functions.tf, plus the family.
        dynamic "env" {
          for_each = merge(local.runtime_env, { CLOUDACT_JOB_FAMILY = each.key })
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# dispatch_run (cloudact-functions) starts executions with overrides, on these jobs only.
resource "google_cloud_run_v2_job_iam_member" "dispatch" {
  for_each = google_cloud_run_v2_job.family

  name     = each.value.name
  location = var.region
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = google_service_account.account["functions"].member
}
