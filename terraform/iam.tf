# Service accounts, one per role in the system, and what each may do.
#
#   cloudact-functions  runs every Cloud Function (the API, the dispatcher, the converter, Stripe, schedules)
#   cloudact-jobs       runs the ingest jobs (one image, one Cloud Run job per job family); writes org datasets
#   cloudact-source-reader  what tenants' GCP service accounts are impersonated through: holds nothing in
#                       this project; tenants grant it roles/iam.serviceAccountTokenCreator on their own
#                       service account, and the jobs may mint its tokens (the jobs' only token grant)
#   cloudact-scheduler  the OIDC identity the daily Cloud Scheduler job calls sync_schedules with
#   cloudact-sweeper    the OIDC identity the 5-minute Cloud Scheduler job calls sweep_runs with
#   cloudact-push       the OIDC identity Pub/Sub pushes with to dispatch_run / convert_on_completion
#   cloudact-fn-builder builds the functions' containers (gen2 functions build with Cloud Build)
#   cloudact-deployer   runs cloudbuild.yaml (tests, image, terraform apply, bootstrap)
#
# No account gets roles/owner or roles/editor, and no account may mint tokens or act as others
# project-wide (tests/test_deploy_config.py checks both).

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_service_account" "functions" {
  account_id   = "cloudact-functions"
  display_name = "CloudAct Cloud Functions"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "jobs" {
  account_id   = "cloudact-jobs"
  display_name = "CloudAct ingest jobs (Cloud Run)"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "source_reader" {
  account_id   = "cloudact-source-reader"
  display_name = "CloudAct tenant source reader"
  description  = "Impersonates tenants' service accounts (they grant it Token Creator on them). No roles in this project."
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "scheduler" {
  account_id   = "cloudact-scheduler"
  display_name = "CloudAct Cloud Scheduler invoker"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "sweeper" {
  account_id   = "cloudact-sweeper"
  display_name = "CloudAct run sweep invoker"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "push" {
  account_id   = "cloudact-push"
  display_name = "CloudAct Pub/Sub push invoker"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "fn_builder" {
  account_id   = "cloudact-fn-builder"
  display_name = "CloudAct functions build"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "deployer" {
  account_id   = "cloudact-deployer"
  display_name = "CloudAct Cloud Build deployer"
  depends_on   = [google_project_service.apis]
}

# -- BigQuery ------------------------------------------------------------------------------
# Both runtimes run queries (jobUser) and read/write tables in `organizations` (dataset grant in
# bigquery.tf) and in every `{org}_prod` dataset. Org datasets do not exist when Terraform runs:
# `cloudact orgs create` makes them later, and `cloudact bootstrap` upgrades them. BigQuery has no
# "datasets whose name ends in _prod" grant, so the runtimes hold roles/bigquery.dataEditor on the
# project, which also carries bigquery.datasets.create for orgs onboarded at runtime. This is why
# the project must be dedicated to CloudAct. Not granted: dataOwner / admin (no dataset IAM changes,
# no dataset deletion).

resource "google_project_iam_member" "functions_bq_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.functions.member
}

resource "google_project_iam_member" "functions_bq_data_editor" {
  project = var.project_id
  role    = "roles/bigquery.dataEditor"
  member  = google_service_account.functions.member
}

resource "google_project_iam_member" "jobs_bq_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.jobs.member
}

resource "google_project_iam_member" "jobs_bq_data_editor" {
  project = var.project_id
  role    = "roles/bigquery.dataEditor"
  member  = google_service_account.jobs.member
}

# -- Secret Manager ----------------------------------------------------------------------------
# Provider credentials are one secret per credential, `{org}--cred_{provider}_{hex}`, created at
# runtime by `cloudact credentials add`; the jobs read them, so the jobs' accessor grant is on the
# project. The functions read only the Stripe secret (granted on that secret in secrets.tf).

# The credentials API (POST/rotate under the org key) stores a tenant's secret as a new Secret Manager secret or
# version and disables the rotated-out version; it never reads one (only the jobs do).
resource "google_project_iam_custom_role" "credential_writer" {
  project     = var.project_id
  role_id     = "cloudactCredentialWriter"
  title       = "CloudAct credential writer"
  description = "Create credential secrets, add and disable their versions; no read access"
  permissions = [
    "secretmanager.secrets.create",
    "secretmanager.versions.add",
    "secretmanager.versions.disable",
  ]
}

resource "google_project_iam_member" "functions_credential_writer" {
  project = var.project_id
  role    = google_project_iam_custom_role.credential_writer.id
  member  = google_service_account.functions.member
}

resource "google_project_iam_member" "jobs_secret_accessor" {
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.jobs.member
}

# -- Tenant sources: through cloudact-source-reader only ---------------------------------------
# The jobs write every org's dataset, so they must never read a tenant's source with their own
# identity: a tenant naming another org's table (or anything else in this project) would then be
# read with the platform's rights. A GCP source is read as the tenant's own service account,
# impersonated through a chain that starts at cloudact-source-reader (delegates = [source reader]):
# the jobs may mint tokens for that one account and no other, and the source reader holds no role
# in this project (no BigQuery data, no secrets), so all the chain can yield is the token of a tenant
# account that granted it Token Creator, with that account's rights. The extractors find it in
# CLOUDACT_SOURCE_READER_SA (jobs.tf).

resource "google_service_account_iam_member" "jobs_mint_source_reader" {
  service_account_id = google_service_account.source_reader.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.jobs.member
}

# -- Cloud Run jobs: dispatch_run starts them with per-run overrides --------------------------------
# roles/run.jobsExecutorWithOverrides is the narrowest role with run.jobs.runWithOverrides (the
# launcher overrides args and env), granted per job in jobs.tf.

# -- Cloud Scheduler: sync_schedules mirrors org_schedules into jobs cloudact-{org}-{schedule_id} ---
# Scheduler jobs have no per-job IAM, so managing them needs the project-level admin role. The
# per-org jobs publish to pipeline-run-requests (a Pub/Sub target, published by the Cloud Scheduler
# service agent), so they carry no identity of ours and need no actAs.

resource "google_project_iam_member" "functions_scheduler_admin" {
  project = var.project_id
  role    = "roles/cloudscheduler.admin"
  member  = google_service_account.functions.member
}

# -- Pub/Sub push identity ------------------------------------------------------------------------
# The Pub/Sub service agent mints the push OIDC tokens for cloudact-push.

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# -- Functions build ------------------------------------------------------------------------------

resource "google_project_iam_member" "fn_builder_roles" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer", # gen2 functions push their built image to gcf-artifacts
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.fn_builder.member
}

resource "google_storage_bucket_iam_member" "fn_builder_reads_source" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.fn_builder.member
}

# -- Deployer (Cloud Build) -------------------------------------------------------------------
# `terraform apply` manages service accounts, IAM bindings, functions, jobs, topics, datasets and
# secrets, and `cloudact bootstrap` creates tables and procedures. roles/resourcemanager.projectIamAdmin
# is as strong as owner in practice: only the main branch may trigger this build (cloudbuild.tf), and
# who can push there is who can deploy.

resource "google_project_iam_member" "deployer_roles" {
  #checkov:skip=CKV_GCP_49:The deployer is Terraform itself: it must create the runtime service accounts and their grants. Only builds of the protected main branch run as it.
  for_each = toset([
    "roles/artifactregistry.admin",
    "roles/bigquery.dataOwner",
    "roles/bigquery.jobUser",
    "roles/cloudbuild.builds.editor",
    "roles/cloudfunctions.admin",
    "roles/cloudscheduler.admin",
    "roles/iam.roleAdmin",
    "roles/iam.serviceAccountAdmin",
    "roles/logging.logWriter",
    "roles/monitoring.editor",
    "roles/pubsub.admin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/run.admin",
    "roles/secretmanager.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.deployer.member
}

# Deploying a function or job that runs as an account, or a scheduler job that calls with its OIDC
# token, needs actAs on that account (and only those: nothing runs as cloudact-source-reader).
resource "google_service_account_iam_member" "deployer_act_as" {
  for_each = {
    functions  = google_service_account.functions.name
    jobs       = google_service_account.jobs.name
    scheduler  = google_service_account.scheduler.name
    sweeper    = google_service_account.sweeper.name
    push       = google_service_account.push.name
    fn_builder = google_service_account.fn_builder.name
    deployer   = google_service_account.deployer.name # the build trigger runs as it
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer.member
}
