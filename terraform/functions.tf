# Cloud Functions (2nd gen), one per entry point in functions/main.py, all from one source archive
# (terraform/scripts/package_functions.py: the repo's packages and data files, a root main.py that
# re-exports functions/main.py, and requirements.txt from pyproject.toml).
#
# Public (allUsers may invoke): run_pipeline (authenticates X-API-Key itself; see
# var.run_pipeline_allow_unauthenticated) and stripe_webhook (Stripe cannot send an identity token;
# the function verifies Stripe's signature with STRIPE_WEBHOOK_SECRET). Nothing else is public:
# dispatch_run and convert_on_completion are invoked by Pub/Sub push as cloudact-push, sync_schedules
# by Cloud Scheduler as cloudact-scheduler, sweep_runs by Cloud Scheduler as cloudact-sweeper.

locals {
  # What every runtime (functions and jobs) reads from its environment (shared/config.py,
  # shared/plans.py). One platform hosts many orgs, so tenancy is multi, and an org without a
  # subscription gets the default plan: var.default_plan, which refuses by default.
  runtime_env = {
    CLOUDACT_BACKEND           = "gcp"
    GOOGLE_CLOUD_PROJECT       = var.project_id
    CLOUDACT_REGION            = var.region
    CLOUDACT_BIGQUERY_LOCATION = var.bigquery_location # every dataset the code creates, and every job, is here
    CLOUDACT_ENVIRONMENT       = var.environment
    CLOUDACT_TENANCY           = "multi"
    CLOUDACT_DEFAULT_PLAN      = var.default_plan
    CLOUDACT_SOURCE_READER_SA  = google_service_account.source_reader.email # the functions only name it to tenants
  }
  function_env  = merge(local.runtime_env, { LOG_EXECUTION_ID = "true" })
  source_bucket = var.functions_source_bucket != "" ? var.functions_source_bucket : "${var.project_id}-cloudact-functions-source"
}

resource "google_storage_bucket" "functions_source" {
  #checkov:skip=CKV_GCP_62:Holds only build archives of this repo's code (public access prevented, versioned); Cloud Audit Logs record access, no separate access-log bucket.
  name                        = local.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 90 # an archive is content-addressed; old ones only matter for rollback
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions-source-${filemd5(var.functions_source_zip)}.zip"
  bucket = google_storage_bucket.functions_source.name
  source = var.functions_source_zip
}

# -- public ---------------------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "run_pipeline" {
  #checkov:skip=CKV_GCP_124:Intended: the public pipelines API; every request is authenticated by its X-API-Key (hashed, bound to one org). Switch off with var.run_pipeline_allow_unauthenticated.
  name        = "cloudact-run-pipeline"
  location    = var.region
  description = "Pipelines API: POST /api/v1/pipelines/run/{org}/{pipeline}, GET /api/v1/pipelines/runs/{org}/{run_id}"

  build_config {
    runtime         = "python311"
    entry_point     = "run_pipeline"
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
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_env
  }

  depends_on = [google_project_iam_member.fn_builder_roles, google_storage_bucket_iam_member.fn_builder_reads_source]
}

resource "google_cloud_run_v2_service_iam_member" "run_pipeline_public" {
  count = var.run_pipeline_allow_unauthenticated ? 1 : 0

  name     = google_cloudfunctions2_function.run_pipeline.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloudfunctions2_function" "stripe_webhook" {
  #checkov:skip=CKV_GCP_124:Intended: Stripe cannot present a Google identity; the function rejects any request whose Stripe-Signature does not verify against STRIPE_WEBHOOK_SECRET.
  name        = "cloudact-stripe-webhook"
  location    = var.region
  description = "Stripe webhook: verifies the signature, upserts plans and subscriptions (idempotent by event id)"

  build_config {
    runtime         = "python311"
    entry_point     = "stripe_webhook"
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
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_env

    # Resolved when an instance starts: after a rotation, redeploy (docs/deploy.md).
    secret_environment_variables {
      key        = "STRIPE_WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.stripe_webhook.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_iam_member.fn_builder_roles,
    google_storage_bucket_iam_member.fn_builder_reads_source,
    google_secret_manager_secret_iam_member.functions_read_stripe,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "stripe_webhook_public" {
  name     = google_cloudfunctions2_function.stripe_webhook.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# -- private: Pub/Sub push (pubsub.tf) ------------------------------------------------------------

resource "google_cloudfunctions2_function" "dispatch_run" {
  name        = "cloudact-dispatch-run"
  location    = var.region
  description = "pipeline-run-requests -> start the pipeline's Cloud Run job"

  build_config {
    runtime         = "python311"
    entry_point     = "dispatch_run"
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

resource "google_cloud_run_v2_service_iam_member" "dispatch_run_push" {
  name     = google_cloudfunctions2_function.dispatch_run.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloudfunctions2_function" "convert_on_completion" {
  name        = "cloudact-convert-on-completion"
  location    = var.region
  description = "pipeline-run-completed -> procedure chain, run result"

  build_config {
    runtime         = "python311"
    entry_point     = "convert_on_completion"
    service_account = google_service_account.fn_builder.id
    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory               = "1Gi"
    timeout_seconds                = 540 # below the subscription's 600 s ack deadline
    max_instance_count             = var.function_max_instances
    ingress_settings               = var.private_function_ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_env
  }

  depends_on = [google_project_iam_member.fn_builder_roles, google_storage_bucket_iam_member.fn_builder_reads_source]
}

resource "google_cloud_run_v2_service_iam_member" "convert_on_completion_push" {
  name     = google_cloudfunctions2_function.convert_on_completion.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# -- private: Cloud Scheduler (scheduler.tf) ------------------------------------------------------

resource "google_cloudfunctions2_function" "sync_schedules" {
  name        = "cloudact-sync-schedules"
  location    = var.region
  description = "Mirror organizations.org_schedules into Cloud Scheduler jobs cloudact-{org}-{schedule_id}"

  build_config {
    runtime         = "python311"
    entry_point     = "sync_schedules"
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
    timeout_seconds                = 300
    max_instance_count             = 1 # one reconciler at a time
    ingress_settings               = var.private_function_ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_env
  }

  depends_on = [google_project_iam_member.fn_builder_roles, google_storage_bucket_iam_member.fn_builder_reads_source]
}

resource "google_cloud_run_v2_service_iam_member" "sync_schedules_scheduler" {
  name     = google_cloudfunctions2_function.sync_schedules.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloudfunctions2_function" "sweep_runs" {
  name        = "cloudact-sweep-runs"
  location    = var.region
  description = "End runs whose lease expired or that waited past their queue timeout (failed, with a message), freeing their slice and quota"

  build_config {
    runtime         = "python311"
    entry_point     = "sweep_runs"
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
    timeout_seconds                = 120 # a few UPDATEs; well inside the 5-minute tick
    max_instance_count             = 1   # one sweeper at a time
    ingress_settings               = var.private_function_ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.function_env
  }

  depends_on = [google_project_iam_member.fn_builder_roles, google_storage_bucket_iam_member.fn_builder_reads_source]
}

resource "google_cloud_run_v2_service_iam_member" "sweep_runs_sweeper" {
  name     = google_cloudfunctions2_function.sweep_runs.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.sweeper.member
}
