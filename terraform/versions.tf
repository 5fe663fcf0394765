terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }

  # State lives in a GCS bucket created once by hand (docs/deploy.md, step 2):
  #   terraform init -backend-config=bucket=BUCKET -backend-config=prefix=cloudact/ENV
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app         = "cloudact"
    environment = var.environment
  }
}

data "google_project" "this" {
  project_id = var.project_id
}
