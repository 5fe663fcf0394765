variable "project_id" {
  description = "The GCP project to deploy into. Use a project dedicated to CloudAct: the runtime service accounts get project-level BigQuery and Secret Manager roles because org datasets and credential secrets are created at runtime (see iam.tf)."
  type        = string
}

variable "region" {
  description = "Region of the functions, jobs, Artifact Registry and scheduler. Exported to the code as CLOUDACT_REGION."
  type        = string
  default     = "us-central1"
}

variable "environment" {
  description = "A label (prod, staging, ...). Names are not suffixed: deploy one environment per project."
  type        = string
  default     = "prod"
}

variable "image" {
  description = "The job image (Dockerfile at the repo root), ideally by digest: REGION-docker.pkg.dev/PROJECT/cloudact/cloudact-jobs@sha256:..."
  type        = string
}

variable "functions_source_zip" {
  description = "Path of the functions source archive made by terraform/scripts/package_functions.py. The object name carries its MD5, so a changed archive redeploys the functions."
  type        = string
  default     = "../build/functions-source.zip"
}

variable "functions_source_bucket" {
  description = "Bucket for the functions source archives; empty = create PROJECT-cloudact-functions-source."
  type        = string
  default     = ""
}

variable "artifact_repository" {
  description = "Artifact Registry Docker repository (created here) that holds the job image."
  type        = string
  default     = "cloudact"
}

variable "bigquery_location" {
  description = "BigQuery location of the organizations dataset and, through CLOUDACT_BIGQUERY_LOCATION in the functions' and jobs' environment, of every {org}_prod dataset and query job (a multi-region such as US or EU, or a region such as europe-west3). Fixed once datasets exist: BigQuery cannot move a dataset."
  type        = string
  default     = "US"
}

variable "stripe_webhook_secret_name" {
  description = "Secret Manager secret id holding Stripe's webhook signing secret (whsec_...). Terraform creates the secret, never a version: add the value with gcloud (docs/deploy.md)."
  type        = string
  default     = "stripe-webhook-secret"
}

variable "run_pipeline_allow_unauthenticated" {
  description = "Let anyone reach run_pipeline over HTTP. It is the public pipelines API and authenticates every request itself (X-API-Key, hashed and bound to one org), so IAM cannot be the gate. Set false to put it behind IAM (callers then need roles/run.invoker and an identity token)."
  type        = bool
  default     = true
}

variable "private_function_ingress" {
  description = "Ingress of the non-public functions (dispatch_run, convert_on_completion, sync_schedules, sweep_runs). ALLOW_INTERNAL_ONLY still admits Pub/Sub push and Cloud Scheduler from the same project; IAM (roles/run.invoker) is required either way."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.private_function_ingress)
    error_message = "private_function_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "function_max_instances" {
  description = "Upper bound on instances per function (protects BigQuery quotas and cost)."
  type        = number
  default     = 20
}

variable "max_delivery_attempts" {
  description = "Deliveries of one Pub/Sub message before it goes to {topic}-dead-letter (5..100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "retry_minimum_backoff" {
  description = "Pub/Sub redelivery backoff, lower bound."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Pub/Sub redelivery backoff, upper bound (at most 600s)."
  type        = string
  default     = "600s"
}

variable "job_timeout" {
  description = "Longest one ingest job execution may run."
  type        = string
  default     = "3600s"
}

variable "job_cpu" {
  description = "CPU limit of a job task."
  type        = string
  default     = "1"
}

variable "job_memory" {
  description = "Memory limit of a job task (extractors stream Arrow batches, so this bounds batch size, not data size)."
  type        = string
  default     = "2Gi"
}

variable "sync_schedules_cron" {
  description = "Cron (UTC) of the Cloud Scheduler job that calls sync_schedules to reconcile the per-org scheduler jobs; empty = no such job."
  type        = string
  default     = "0 2 * * *"
}

variable "sweep_runs_cron" {
  description = "Cron (UTC) of the Cloud Scheduler job that calls sweep_runs, which ends runs whose lease expired (the job died) or that were never picked up. Keep it well under CLOUDACT_RUN_LEASE_S's minutes: a run is ended at most one tick after its lease expires."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.sweep_runs_cron))) == 5
    error_message = "sweep_runs_cron must be a five-field cron; the sweep cannot be switched off (dead jobs' runs would hold their slice and quota forever)."
  }
}

variable "default_plan" {
  description = "CLOUDACT_DEFAULT_PLAN of the functions and jobs: the plan of an org with no subscription (shared/plans.py). \"none\" (the default) refuses its runs with 402; a plan id of organizations.plans (e.g. a free Stripe product) gives that plan's limits. The built-in unlimited \"free-local\" is for local installs and is refused here."
  type        = string
  default     = "none"

  validation {
    condition     = trimspace(var.default_plan) != "" && lower(trimspace(var.default_plan)) != "free-local"
    error_message = "default_plan must be \"none\" or a plan id of organizations.plans: empty or \"free-local\" would make every org without a subscription unlimited."
  }
}

variable "alert_email" {
  description = "Optional address alerted when messages reach a dead-letter topic or a job execution fails; empty = no alerting."
  type        = string
  default     = ""
}

variable "github_owner" {
  description = "GitHub owner of the repository for the Cloud Build trigger (the Cloud Build GitHub app must be connected first); empty = no trigger."
  type        = string
  default     = ""
}

variable "github_repo" {
  description = "GitHub repository name for the Cloud Build trigger."
  type        = string
  default     = ""
}

variable "build_branch" {
  description = "Branch regex that triggers a deploy."
  type        = string
  default     = "^main$"
}

variable "tf_state_bucket" {
  description = "The Terraform state bucket, passed to builds as _TF_STATE_BUCKET."
  type        = string
  default     = ""
}

variable "deletion_protection" {
  description = "Protect the jobs against terraform destroy."
  type        = bool
  default     = true
}
