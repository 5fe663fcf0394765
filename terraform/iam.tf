# Service accounts, one per role in the system, and what each may do.
#
#   cloudact-functions  runs every Cloud Function (the API, the dispatcher, the converter, Stripe, schedules)
#   cloudact-jobs       runs the ingest jobs (one image, one Cloud Run job per job family); writes org datasets
#   cloudact-source-reader  what tenants' GCP service accounts are impersonated through: holds nothing in
#                       this project; tenants grant it roles/iam.serviceAccountTokenCreator on their own
#                       service account, and the jobs may mint its tokens (the jobs' only token grant)
#   cloudact-scheduler  the OIDC identity the daily Cloud Scheduler job calls sync_schedules with
#   cloudact-sweeper    the OIDC identity the 5-minute Cloud Scheduler job calls sweep_runs with
#   cloudact-push       the OIDC identity Pub/Sub pushes with to dispatch_run, convert_on_completion, schedule_tick
#   cloudact-fn-builder builds the functions' containers (gen2 functions build with Cloud Build)
#   cloudact-deployer   runs cloudbuild.yaml (tests, image, terraform apply, bootstrap)
#
# No account gets roles/owner or roles/editor, and no account may mint tokens or act as others
# project-wide (tests/test_deploy_config.py checks both).

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Each account is cloudact-{key, with dashes}.
  service_accounts = {
    functions  = { display_name = "CloudAct Cloud Functions" }
    jobs       = { display_name = "CloudAct ingest jobs (Cloud Run)" }
    scheduler  = { display_name = "CloudAct Cloud Scheduler invoker" }
    sweeper    = { display_name = "CloudAct run sweep invoker" }
    push       = { display_name = "CloudAct Pub/Sub push invoker" }
    fn_builder = { display_name = "CloudAct functions build" }
    deployer   = { display_name = "CloudAct Cloud Build deployer" }
    source_reader = {
      display_name = "CloudAct tenant source reader"
      description  = "Impersonates tenants' service accounts (they grant it Token Creator on them). No roles in this project."
    }
  }

  # Every role an account holds on the project but the deployer's (below), keyed by what it is for.
  project_roles = {
    # BigQuery: both runtimes run queries (jobUser) and read/write tables in `organizations` (dataset
    # grant in bigquery.tf) and in every `{org}_prod` dataset. Org datasets do not exist when Terraform
    # runs: `cloudact orgs create` makes them later, and `cloudact bootstrap` upgrades them. BigQuery
    # has no "datasets whose name ends in _prod" grant, so the runtimes hold roles/bigquery.dataEditor
    # on the project, which also carries bigquery.datasets.create for orgs onboarded at runtime. This is
    # why the project must be dedicated to CloudAct. Not granted: dataOwner / admin (no dataset IAM
    # changes, no dataset deletion).
    functions_bq_job_user    = { account = "functions", role = "roles/bigquery.jobUser" }
    functions_bq_data_editor = { account = "functions", role = "roles/bigquery.dataEditor" }
    jobs_bq_job_user         = { account = "jobs", role = "roles/bigquery.jobUser" }
    jobs_bq_data_editor      = { account = "jobs", role = "roles/bigquery.dataEditor" }

    # Secret Manager: provider credentials are one secret per credential, `{org}--cred_{provider}_{hex}`,
    # created at runtime by `cloudact credentials add`; the jobs read them, so the jobs' accessor grant is
    # on the project. The functions read only the Stripe secret (granted on that secret in secrets.tf),
    # and write credentials through the custom role below.
    functions_credential_writer = { account = "functions", role = google_project_iam_custom_role.credential_writer.id }
    jobs_secret_accessor        = { account = "jobs", role = "roles/secretmanager.secretAccessor" }

    # Cloud Scheduler: sync_schedules mirrors org_schedules into jobs cloudact-{org}-{schedule_id}.
    # Scheduler jobs have no per-job IAM, so managing them needs the project-level admin role. The
    # per-org jobs publish to pipeline-run-requests (a Pub/Sub target, published by the Cloud Scheduler
    # service agent), so they carry no identity of ours and need no actAs.
    functions_scheduler_admin = { account = "functions", role = "roles/cloudscheduler.admin" }

    # Functions build: gen2 functions build with Cloud Build and push their image to gcf-artifacts.
    fn_builder_log_writer      = { account = "fn_builder", role = "roles/logging.logWriter" }
    fn_builder_artifact_writer = { account = "fn_builder", role = "roles/artifactregistry.writer" }
  }
}

resource "google_service_account" "account" {
  for_each = local.service_accounts

  account_id   = "cloudact-${replace(each.key, "_", "-")}"
  display_name = each.value.display_name
  description  = lookup(each.value, "description", null)
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "grant" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.account[each.value.account].member
}

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
  service_account_id = google_service_account.account["source_reader"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.account["jobs"].member
}

# -- Cloud Run jobs: dispatch_run starts them with per-run overrides --------------------------------
# roles/run.jobsExecutorWithOverrides is the narrowest role with run.jobs.runWithOverrides (the
# launcher overrides args and env), granted per job in jobs.tf.

# -- Pub/Sub push identity ------------------------------------------------------------------------
# The Pub/Sub service agent mints the push OIDC tokens for cloudact-push.

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.account["push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# -- Functions build ------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "fn_builder_reads_source" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.account["fn_builder"].member
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
  member  = google_service_account.account["deployer"].member
}

# Deploying a function or job that runs as an account, or a scheduler job that calls with its OIDC
# token, needs actAs on that account (and only those: nothing runs as cloudact-source-reader). The build
# trigger runs as the deployer itself.
resource "google_service_account_iam_member" "deployer_act_as" {
  for_each = toset(["functions", "jobs", "scheduler", "sweeper", "push", "fn_builder", "deployer"])

  service_account_id = google_service_account.account[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.account["deployer"].member
}

# Where these lived before the for_each fold (see functions.tf). A service account created again
# would be a new principal under the old e-mail: every grant tenants made to cloudact-source-reader
# on their own accounts would stop working.
moved {
  from = google_service_account.functions
  to   = google_service_account.account["functions"]
}

moved {
  from = google_service_account.jobs
  to   = google_service_account.account["jobs"]
}

moved {
  from = google_service_account.scheduler
  to   = google_service_account.account["scheduler"]
}

moved {
  from = google_service_account.sweeper
  to   = google_service_account.account["sweeper"]
}

moved {
  from = google_service_account.push
  to   = google_service_account.account["push"]
}

moved {
  from = google_service_account.fn_builder
  to   = google_service_account.account["fn_builder"]
}

moved {
  from = google_service_account.deployer
  to   = google_service_account.account["deployer"]
}

moved {
  from = google_service_account.source_reader
  to   = google_service_account.account["source_reader"]
}

moved {
  from = google_project_iam_member.functions_bq_job_user
  to   = google_project_iam_member.grant["functions_bq_job_user"]
}

moved {
  from = google_project_iam_member.functions_bq_data_editor
  to   = google_project_iam_member.grant["functions_bq_data_editor"]
}

moved {
  from = google_project_iam_member.jobs_bq_job_user
  to   = google_project_iam_member.grant["jobs_bq_job_user"]
}

moved {
  from = google_project_iam_member.jobs_bq_data_editor
  to   = google_project_iam_member.grant["jobs_bq_data_editor"]
}

moved {
  from = google_project_iam_member.functions_credential_writer
  to   = google_project_iam_member.grant["functions_credential_writer"]
}

moved {
  from = google_project_iam_member.jobs_secret_accessor
  to   = google_project_iam_member.grant["jobs_secret_accessor"]
}

moved {
  from = google_project_iam_member.functions_scheduler_admin
  to   = google_project_iam_member.grant["functions_scheduler_admin"]
}

moved {
  from = google_project_iam_member.fn_builder_roles["roles/logging.logWriter"]
  to   = google_project_iam_member.grant["fn_builder_log_writer"]
}

moved {
  from = google_project_iam_member.fn_builder_roles["roles/artifactregistry.writer"]
  to   = google_project_iam_member.grant["fn_builder_artifact_writer"]
}
