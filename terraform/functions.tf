# Cloud Functions (2nd gen), one per entry point in functions/main.py, all from one source archive
# (terraform/scripts/package_functions.py: the repo's packages and data files, a root main.py that
# re-exports functions/main.py, and requirements.txt from pyproject.toml).
#
# Public (allUsers may invoke): run_pipeline (authenticates X-API-Key itself; see
# var.run_pipeline_allow_unauthenticated) and stripe_webhook (Stripe cannot send an identity token;
# the function verifies Stripe's signature with STRIPE_WEBHOOK_SECRET). Nothing else is public:
# dispatch_run, convert_on_completion and schedule_tick are invoked by Pub/Sub push as cloudact-push,
# sync_schedules by Cloud Scheduler as cloudact-scheduler, sweep_runs by Cloud Scheduler as
# cloudact-sweeper.

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
    CLOUDACT_SOURCE_READER_SA  = google_service_account.account["source_reader"].email # the functions only name it to tenants
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

# One function per entry point of functions/main.py: the key is the entry point, the function is
# cloudact-{key, with dashes} (the rule of the service accounts, iam.tf), and an entry sets only what
# differs from local.function_defaults. Every function runs as cloudact-functions on local.function_env
# and may be invoked by its `invoker` alone: a service account of iam.tf by key, "allUsers", or "" for
# nobody.
locals {
  function_defaults = {
    memory        = "512Mi"
    timeout       = 60
    max_instances = var.function_max_instances
    ingress       = var.private_function_ingress
    secrets       = {} # env var -> Secret Manager secret id
  }

  function_settings = {
    # Public, as it authenticates X-API-Key itself; with the variable false it is behind IAM, and this
    # configuration grants its invoker role to nobody.
    run_pipeline = {
      description = "Pipelines API: POST /api/v1/pipelines/run/{org}/{pipeline}, GET /api/v1/pipelines/runs/{org}/{run_id}"
      ingress     = "ALLOW_ALL"
      invoker     = var.run_pipeline_allow_unauthenticated ? "allUsers" : ""
    }
    # Public, as Stripe cannot send an identity token; the function verifies Stripe's signature.
    stripe_webhook = {
      description = "Stripe webhook: verifies the signature, upserts plans and subscriptions (idempotent by event id)"
      ingress     = "ALLOW_ALL"
      invoker     = "allUsers"
      # Resolved when an instance starts: after a rotation, redeploy (docs/deploy.md).
      secrets = { STRIPE_WEBHOOK_SECRET = google_secret_manager_secret.stripe_webhook.secret_id }
    }

    # Pub/Sub push (pubsub.tf).
    dispatch_run = {
      description = "pipeline-run-requests -> start the pipeline's Cloud Run job"
      invoker     = "push"
    }
    convert_on_completion = {
      description = "pipeline-run-completed -> procedure chain, run result"
      memory      = "1Gi"
      timeout     = 540 # below the subscription's 600 s ack deadline
      invoker     = "push"
    }
    # A tick has its own topic and function: it queues the schedule's run in process (org, pipeline,
    # quota, credential and slice checks as for a posted run), and the run's request then goes on
    # pipeline-run-requests to dispatch_run like any other.
    schedule_tick = {
      description = "pipeline-schedule-ticks -> queue the schedule's run"
      invoker     = "push"
    }

    # Cloud Scheduler (scheduler.tf), each called by its own account.
    sync_schedules = {
      description   = "Mirror organizations.org_schedules into Cloud Scheduler jobs cloudact-{org}-{schedule_id}"
      timeout       = 300
      max_instances = 1 # one reconciler at a time
      invoker       = "scheduler"
    }
    sweep_runs = {
      description   = "End runs whose lease expired or that waited past their queue timeout (failed, with a message), freeing their slice and quota"
      timeout       = 120 # a few UPDATEs; well inside the 5-minute tick
      max_instances = 1   # one sweeper at a time
      invoker       = "sweeper"
    }
  }

  functions = { for entry_point, fn in local.function_settings : entry_point => merge(local.function_defaults, fn) }
}

resource "google_cloudfunctions2_function" "fn" {
  #checkov:skip=CKV_GCP_124:Intended for run_pipeline (the public pipelines API; every request is authenticated by its X-API-Key, hashed and bound to one org; switch off with var.run_pipeline_allow_unauthenticated) and stripe_webhook (Stripe cannot present a Google identity; a request whose Stripe-Signature does not verify against STRIPE_WEBHOOK_SECRET is rejected). Every other function has the private ingress and one invoking service account.
  for_each = local.functions

  name        = "cloudact-${replace(each.key, "_", "-")}"
  location    = var.region
  description = each.value.description

  build_config {
    runtime         = "python311"
    entry_point     = each.key
    service_account = google_service_account.account["fn_builder"].id
    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory               = each.value.memory
    timeout_seconds                = each.value.timeout
    max_instance_count             = each.value.max_instances
    ingress_settings               = each.value.ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.account["functions"].email
    environment_variables          = local.function_env

    dynamic "secret_environment_variables" {
      for_each = each.value.secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # The Stripe read grant only matters to stripe_webhook; one ordering for all costs nothing.
  depends_on = [
    google_project_iam_member.grant,
    google_storage_bucket_iam_member.fn_builder_reads_source,
    google_secret_manager_secret_iam_member.functions_read_stripe,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = { for entry_point, fn in local.functions : entry_point => fn if fn.invoker != "" }

  name     = google_cloudfunctions2_function.fn[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value.invoker == "allUsers" ? "allUsers" : google_service_account.account[each.value.invoker].member
}

# Where the functions and their invoker grants lived before the for_each fold, so that a deployment
# made before plans moves, not a destroy and a create: a function created again gets a new URL, which
# Stripe's dashboard and the API's clients hold. A `from` that is not in state (run_pipeline's grant
# with var.run_pipeline_allow_unauthenticated false) moves nothing. The same holds for the moved
# blocks of iam.tf, pubsub.tf, scheduler.tf and monitoring.tf; drop them all once every deployment
# has applied them.
moved {
  from = google_cloudfunctions2_function.run_pipeline
  to   = google_cloudfunctions2_function.fn["run_pipeline"]
}

moved {
  from = google_cloudfunctions2_function.stripe_webhook
  to   = google_cloudfunctions2_function.fn["stripe_webhook"]
}

moved {
  from = google_cloudfunctions2_function.dispatch_run
  to   = google_cloudfunctions2_function.fn["dispatch_run"]
}

moved {
  from = google_cloudfunctions2_function.convert_on_completion
  to   = google_cloudfunctions2_function.fn["convert_on_completion"]
}

moved {
  from = google_cloudfunctions2_function.schedule_tick
  to   = google_cloudfunctions2_function.fn["schedule_tick"]
}

moved {
  from = google_cloudfunctions2_function.sync_schedules
  to   = google_cloudfunctions2_function.fn["sync_schedules"]
}

moved {
  from = google_cloudfunctions2_function.sweep_runs
  to   = google_cloudfunctions2_function.fn["sweep_runs"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.stripe_webhook_public
  to   = google_cloud_run_v2_service_iam_member.invoker["stripe_webhook"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.dispatch_run_push
  to   = google_cloud_run_v2_service_iam_member.invoker["dispatch_run"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.convert_on_completion_push
  to   = google_cloud_run_v2_service_iam_member.invoker["convert_on_completion"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.schedule_tick_push
  to   = google_cloud_run_v2_service_iam_member.invoker["schedule_tick"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.sync_schedules_scheduler
  to   = google_cloud_run_v2_service_iam_member.invoker["sync_schedules"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.sweep_runs_sweeper
  to   = google_cloud_run_v2_service_iam_member.invoker["sweep_runs"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.run_pipeline_public[0]
  to   = google_cloud_run_v2_service_iam_member.invoker["run_pipeline"]
}
