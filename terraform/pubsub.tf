# The three topics of shared/bus/base.py, each with a dead-letter topic, and the subscriptions that
# deliver them (names as in shared/bus/pubsub.py: `{topic}-sub`, `{topic}-dead-letter`,
# `{topic}-dead-letter-sub`).
#
# Delivery is a push subscription straight to the function's URL, with an OIDC token of
# cloudact-push, rather than a function event_trigger: Eventarc would create and own its own
# subscription, on which Terraform cannot set a dead-letter policy. functions-framework turns the
# push body into the same messagePublished CloudEvent Eventarc delivers (the path carries the topic
# so the event's source is right), so the function code is the same either way
# (tests/test_pubsub_bus.py pushes to a CloudEvent function). A function error (5xx) is a nack:
# Pub/Sub redelivers with exponential backoff, then dead-letters after max_delivery_attempts.
# Each topic's publisher is the one account of ours that may publish to it ("" for none).

locals {
  topics = {
    run_requests = {
      name        = "pipeline-run-requests"
      push_url    = google_cloudfunctions2_function.fn["dispatch_run"].service_config[0].uri
      ack_seconds = 120         # dispatch_run only starts a job execution
      publisher   = "functions" # run_pipeline and schedule_tick
    }
    run_completed = {
      name        = "pipeline-run-completed"
      push_url    = google_cloudfunctions2_function.fn["convert_on_completion"].service_config[0].uri
      ack_seconds = 600 # the procedure chain may take minutes; keep >= the function timeout
      publisher   = "jobs"
    }
    schedule_ticks = {
      name        = "pipeline-schedule-ticks" # the per-org Cloud Scheduler jobs publish here (scheduler.tf)
      push_url    = google_cloudfunctions2_function.fn["schedule_tick"].service_config[0].uri
      ack_seconds = 120 # schedule_tick only queues the run
      publisher   = ""  # the Cloud Scheduler service agent, which needs no grant of ours
    }
  }
}

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption is enough for run envelopes (ids, slugs, dates; never a secret or billing row). Add kms_key_name here if policy demands CMEK.
  for_each = local.topics

  name                       = each.value.name
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Same envelopes as the source topics; Google-managed encryption, as there.
  for_each = local.topics

  name                       = "${each.value.name}-dead-letter"
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_subscription" "push" {
  for_each = local.topics

  name                       = "${each.value.name}-sub"
  topic                      = google_pubsub_topic.topic[each.key].id
  ack_deadline_seconds       = each.value.ack_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${each.value.push_url}/projects/${var.project_id}/topics/${each.value.name}"

    oidc_token {
      service_account_email = google_service_account.account["push"].email
      audience              = each.value.push_url
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire for inactivity
  }

  depends_on = [
    google_pubsub_topic_iam_member.agent_publishes_dead_letters,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# Dead letters are kept (7 days) on a pull subscription for inspection and replay
# (docs/deploy.md, "Reading a failed run"). A dead-letter subscription has no dead-letter policy of
# its own: nothing consumes it automatically, so nothing can fail on it.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.topics

  name                       = "${each.value.name}-dead-letter-sub"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent forwards undeliverable messages (publisher on the dead-letter topic) and
# acknowledges them on the source subscription (subscriber on it).
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  for_each = local.topics

  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "agent_subscribes" {
  for_each = local.topics

  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = { for key, topic in local.topics : key => topic if topic.publisher != "" }

  topic  = google_pubsub_topic.topic[each.key].name
  role   = "roles/pubsub.publisher"
  member = google_service_account.account[each.value.publisher].member
}

# Where these lived before the for_each fold (see functions.tf).
moved {
  from = google_pubsub_topic_iam_member.functions_publish_requests
  to   = google_pubsub_topic_iam_member.publisher["run_requests"]
}

moved {
  from = google_pubsub_topic_iam_member.jobs_publish_completions
  to   = google_pubsub_topic_iam_member.publisher["run_completed"]
}
