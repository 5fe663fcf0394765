"""Static checks of the deployment: terraform/*.tf (parsed with python-hcl2), cloudbuild.yaml,
the functions source archive, and checkov when it is installed.

They tie the infrastructure to the code: every functions_framework entry point has a Cloud Function,
every job family of providers.yml a Cloud Run job `cloudact-{family}`, every bus topic a topic and a
dead-letter topic; and they hold the security rules: only run_pipeline and stripe_webhook are public,
no account is owner/editor, every runtime account holds exactly its listed grants (the identity that
reads tenant sources holds none in the platform project; the jobs may mint tokens for it alone), the
runtimes are multi-tenant and refuse orgs without a plan, every delivering subscription dead-letters.
Resources written once with for_each are checked per instance, as Terraform plans them, and every
instance of one that used to be a resource of its own moves there from its old address.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
PUBLIC_FUNCTIONS = {"run_pipeline", "stripe_webhook"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
FORBIDDEN_ROLES = {"roles/owner", "roles/editor"}
# Roles that let their holder act as, or mint credentials of, a service account. (The deployer's
# serviceAccountAdmin manages accounts and their IAM; RUNTIME_GRANTS keeps it off every runtime account.)
IDENTITY_ROLES = {"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser",
                  "roles/iam.serviceAccountOpenIdTokenCreator", "roles/iam.workloadIdentityUser",
                  "roles/iam.serviceAccountKeyAdmin"}
hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed (pip install python-hcl2)")


# -- parsing ----------------------------------------------------------------------------------


def _clean(value):
    """python-hcl2 output without its quoting and block markers."""
    if isinstance(value, dict):  # also drops __comments__ and __inline_comments__
        return {_clean(k): _clean(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _load_tf() -> dict[str, list]:
    merged: dict[str, list] = {}
    files = sorted(TF_DIR.glob("*.tf"))
    assert files, "terraform/ has no .tf files"
    for path in files:
        with path.open() as f:
            doc = _clean(hcl2.load(f))
        for key, blocks in doc.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


TF = _load_tf()


def resources(rtype: str) -> dict[str, dict]:
    out = {}
    for block in TF.get("resource", []):
        for t, named in block.items():
            if t == rtype:
                out.update(named)
    return out


def all_resources() -> list[tuple[str, str, dict]]:
    return [(t, n, body) for block in TF.get("resource", []) for t, named in block.items()
            for n, body in named.items()]


def locals_() -> dict:
    out = {}
    for block in TF.get("locals", []):
        out.update(block)
    return out


def first(body: dict, key: str) -> dict:
    value = body[key]
    return value[0] if isinstance(value, list) else value


def variables(**overrides) -> dict:
    """The variables' defaults, with overrides (variables without a default are left out)."""
    defaults = {k: v["default"] for block in TF["variable"] for k, v in block.items() if "default" in v}
    assert set(overrides) <= set(defaults), set(overrides) - set(defaults)
    return {**defaults, **overrides}


# Every optional resource on, resp. off: the instances that exist either way are the unconditional ones.
ALL_ON = {"run_pipeline_allow_unauthenticated": True, "alert_email": "oncall@example.com"}
ALL_OFF = {"run_pipeline_allow_unauthenticated": False, "alert_email": "", "sync_schedules_cron": ""}


# -- for_each, as Terraform expands it ------------------------------------------------------------
# A small evaluator for exactly the expression forms terraform/ uses; any other form fails an assert,
# so a new form has to be taught here rather than slip past the checks.

_FOR = re.compile(r"\$\{\{for (\w+), (\w+) in local\.(\w+) : \1 => (.+?)(?: if (.+))?\}\}", re.S)
_VAR_CHOICE = re.compile(r'\$\{var\.(\w+) \? "([^"]*)" : "([^"]*)"\}')


def _known(value, var: dict):
    """A value as planned: a choice on a variable is made (it is known before apply), the rest stays as written."""
    if isinstance(value, dict):
        return {k: _known(v, var) for k, v in value.items()}
    m = _VAR_CHOICE.fullmatch(value) if isinstance(value, str) else None
    if m:
        return m.group(2) if var[m.group(1)] else m.group(3)
    return value


def local_value(name: str, var: dict):
    """A local, with its for expressions evaluated."""
    return _evaluate(locals_()[name], var, f"local.{name}")


def _evaluate(value, var: dict, what: str):
    if isinstance(value, dict):
        return _known(value, var)
    m = _FOR.fullmatch(value)
    assert m, f"cannot evaluate {what} = {value!r}"
    key_name, item_name, source, produce, condition = m.groups()
    merge = re.fullmatch(rf"merge\(local\.(\w+), {item_name}\)", produce)
    assert produce == item_name or merge, f"{what}: cannot evaluate {produce!r}"
    out = {}
    for key, item in local_value(source, var).items():
        item = {**local_value(merge.group(1), var), **item} if merge else item
        if condition is None or _holds(condition, {key_name: key, item_name: item}, var):
            out[key] = item
    return out


def _holds(condition: str, names: dict, var: dict) -> bool:
    m = re.fullmatch(r'(\w+)(?:\.(\w+))? != "(\w*)"', condition)
    assert m, f"cannot evaluate the condition {condition!r}"
    name, attr, other = m.groups()
    value = var[attr] if name == "var" else names[name][attr] if attr else names[name]
    if isinstance(value, str) and (v := re.fullmatch(r"\$\{var\.(\w+)\}", value)):
        value = var[v.group(1)]
    return value != other


def _for_each(expr, var: dict) -> dict | None:
    """{each.key: each.value}, or None for a for_each over another resource (each.value.x then stays as written)."""
    if isinstance(expr, dict):
        return expr
    if expr.startswith("${toset(["):
        return {s: s for s in re.findall(r'"([^"]+)"', expr)}
    if (m := re.fullmatch(r"\$\{local\.(\w+)\}", expr)):
        return local_value(m.group(1), var)
    if _FOR.fullmatch(expr):
        return _evaluate(expr, var, "for_each")
    assert re.fullmatch(r"\$\{google_\w+\.\w+\}", expr), f"cannot expand for_each {expr!r}"
    return None


def _literal(value) -> str:
    """A value as it reads inside an expression."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
        return m.group(1) if m else json.dumps(value)
    return str(value)


def _render(node, key, value, var: dict):
    """A resource body with each.key and each.value resolved, and the expressions that then read
    only literals (replace, ==, a literal alone in ${...}) evaluated."""
    if isinstance(node, dict):
        return {k: _render(v, key, value, var) for k, v in node.items()}
    if isinstance(node, list):
        return [_render(v, key, value, var) for v in node]
    if not isinstance(node, str):
        return node
    if node == "${each.key}":
        return key
    if node == "${each.value}":
        return value
    if (m := re.fullmatch(r"\$\{each\.value\.(\w+)\}", node)):
        return value[m.group(1)]
    s = re.sub(r"\beach\.key\b", json.dumps(key), node)
    s = re.sub(r"\beach\.value\.(\w+)", lambda m: _literal(value[m.group(1)]), s)
    s = re.sub(r'\blocal\.(\w+)\["(\w+)"\]\.(\w+)', lambda m: _literal(local_value(m.group(1), var)[m.group(2)][m.group(3)]), s)
    s = re.sub(r'replace\("([^"]*)", "([^"]*)", "([^"]*)"\)', lambda m: json.dumps(m.group(1).replace(m.group(2), m.group(3))), s)
    if (m := re.fullmatch(r'\$\{"([^"]*)" == "([^"]*)" \? (.+?) : (.+)\}', s)):
        chosen = m.group(3) if m.group(1) == m.group(2) else m.group(4)
        s = chosen[1:-1] if re.fullmatch(r'"[^"]*"', chosen) else "${" + chosen + "}"
    return re.sub(r'\$\{"([^"]*)"\}', r"\1", s)


def instances(rtype: str, name: str, var: dict | None = None) -> dict:
    """{each.key (None without for_each): the body Terraform plans for that instance}."""
    var = variables() if var is None else var
    body = {k: v for k, v in resources(rtype)[name].items() if k != "for_each"}
    if "for_each" not in resources(rtype)[name]:
        return {None: body}
    each = _for_each(resources(rtype)[name]["for_each"], var)
    if each is None:
        return {None: body}
    return {k: _render(body, k, v, var) for k, v in each.items()}


def reference(expr: str):
    """The value of `${type.name["key"].attribute}`, an argument the configuration sets."""
    m = re.fullmatch(r'\$\{(\w+)\.(\w+)\["(\w+)"\]\.(\w+)\}', expr)
    assert m, f"not a reference to an instance's argument: {expr!r}"
    rtype, name, key, attr = m.groups()
    return instances(rtype, name, variables(**ALL_ON))[key][attr]


def fn_ref(entry_point: str, attr: str = "name") -> str:
    return f'${{google_cloudfunctions2_function.fn["{entry_point}"].{attr}}}'


def env_map(expr) -> dict[str, str]:
    """An environment map as the .tf writes it: a literal map, `${local.x}` or `${merge(local.x, {K = V})}`."""
    if isinstance(expr, dict):
        return expr
    m = re.fullmatch(r"\$\{local\.(\w+)\}", expr)
    if m:
        return env_map(locals_()[m.group(1)])
    m = re.fullmatch(r"\$\{merge\(local\.(\w+), \{(.*)\}\)\}", expr, re.S)
    assert m, f"cannot read the environment {expr!r}"
    extra = {k: v.strip('"') for k, v in re.findall(r'(\w+)\s*=\s*("[^"]*"|[\w.]+)', m.group(2))}
    return {**env_map(locals_()[m.group(1)]), **extra}


def function_env(entry_point: str) -> dict[str, str]:
    return env_map(first(functions()[entry_point], "service_config")["environment_variables"])


def job_env() -> dict[str, str]:
    """The env of the jobs' container: its env blocks, or the for_each of its dynamic "env" block."""
    (job,) = resources("google_cloud_run_v2_job").values()
    container = first(first(first(job, "template"), "template"), "containers")
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    for dyn in container.get("dynamic", []):
        if "env" in dyn:
            content = first(dyn["env"], "content")
            assert (content["name"], content["value"]) == ("${env.key}", "${env.value}")
            env.update(env_map(dyn["env"]["for_each"]))
    return env


def entry_points() -> dict[str, str]:
    """functions_framework-decorated functions of functions/main.py -> decorator name."""
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id == "functions_framework"):
                    found[node.name] = target.attr
    return found


def functions(var: dict | None = None) -> dict[str, dict]:
    """{entry point: the planned body of its function}: the instances of the one for_each resource."""
    assert set(resources("google_cloudfunctions2_function")) == {"fn"}, "one resource, a for_each over local.functions"
    fns = instances("google_cloudfunctions2_function", "fn", var)
    for key, body in fns.items():
        assert first(body, "build_config")["entry_point"] == key, f"{key}: the key is the entry point"
    return fns


# -- code <-> infrastructure --------------------------------------------------------------------


def test_every_entry_point_has_a_gen2_function():
    eps = entry_points()
    assert {"run_pipeline", "dispatch_run", "convert_on_completion", "schedule_tick"} <= set(eps)
    fns = functions()
    missing = sorted(set(eps) - set(fns))
    assert not missing, f"no google_cloudfunctions2_function for {missing}"
    stray = sorted(set(fns) - set(eps))
    assert not stray, f"functions whose entry point is not in functions/main.py: {stray}"
    for ep, body in fns.items():
        assert first(body, "build_config")["runtime"] == "python311", ep
        env = first(body, "service_config")["environment_variables"]
        assert env == "${local.function_env}", f"{ep} must use the shared function env"
    env = env_map("${local.function_env}")
    assert env["CLOUDACT_BACKEND"] == "gcp"
    assert set(env) >= {"GOOGLE_CLOUD_PROJECT", "CLOUDACT_REGION"}


def test_the_for_each_plans_every_function_with_its_settings():
    """Each instance of the for_each is a whole function: its own name, the defaults filled in where its
    entry sets nothing, and the settings that keep it working with what calls it."""
    fns = functions()
    names = [body["name"] for body in fns.values()]
    assert len(set(names)) == len(names), f"two functions share a name: {names}"
    for ep, body in fns.items():
        assert re.fullmatch(r"cloudact-[a-z][a-z0-9-]{0,53}[a-z0-9]", body["name"]), f"{ep}: {body['name']!r}"
        assert body["description"], ep
        config = first(body, "service_config")
        assert re.fullmatch(r"\d+(Mi|Gi)", config["available_memory"]), (ep, config["available_memory"])
        assert isinstance(config["timeout_seconds"], int) and 0 < config["timeout_seconds"] <= 3600, ep  # gen2's bound
        assert config["max_instance_count"] in (1, "${var.function_max_instances}"), ep
        assert config["service_account_email"] == '${google_service_account.account["functions"].email}', ep
    # a pushed function finishes before Pub/Sub gives up on the delivery and redelivers it
    for spec in local_value("topics", variables()).values():
        ep = re.fullmatch(r'\$\{google_cloudfunctions2_function\.fn\["(\w+)"\]\.service_config\[0\]\.uri\}',
                          spec["push_url"]).group(1)
        assert first(fns[ep], "service_config")["timeout_seconds"] <= spec["ack_seconds"], ep
    # what Cloud Scheduler calls runs one instance at a time (one reconciler, one sweeper) and within its tick
    for ep in local_value("scheduled_calls", variables()):
        config = first(fns[ep], "service_config")
        assert config["max_instance_count"] == 1, f"{ep}: two at once would race on the same rows"
    assert first(fns["sweep_runs"], "service_config")["timeout_seconds"] < 5 * 60


def test_cloud_event_functions_are_pushed_from_their_topics():
    """Each cloud_event function is the push endpoint of exactly one topic's subscription."""
    from shared.bus.base import TOPICS

    fns = functions()
    pushed = {}
    for spec in locals_()["topics"].values():
        m = re.fullmatch(r'\$\{google_cloudfunctions2_function\.fn\["(\w+)"\]\.service_config\[0\]\.uri\}', spec["push_url"])
        assert m and m.group(1) in fns, spec
        pushed[m.group(1)] = spec["name"]
    for ep, kind in entry_points().items():
        if kind == "cloud_event":
            assert ep in pushed, f"{ep} is a CloudEvent function no subscription pushes to"
    assert set(pushed.values()) == set(TOPICS)


def test_every_job_family_has_a_cloud_run_job():
    from shared import registry

    families = {p["job_family"] for p in yaml.safe_load((ROOT / "providers.yml").read_text())["pipelines"].values()}
    assert families, "providers.yml declares no job families"
    jobs = resources("google_cloud_run_v2_job")
    names = set()
    for body in jobs.values():
        name = body["name"]
        if "${each.key}" in name:
            m = re.fullmatch(r"\$\{toset\(local\.(\w+)\)\}", body["for_each"])
            assert m, f"cannot resolve for_each {body['for_each']!r}"
            names |= {name.replace("${each.key}", k) for k in locals_()[m.group(1)]}
        else:
            names.add(name)
    assert {f"cloudact-{f}" for f in families} <= names
    # and the launcher asks for exactly these names
    from shared.launcher.cloudrun import CloudRunLauncher

    launcher = CloudRunLauncher("p", "r", client=object())
    for pid, pipeline in registry.pipelines().items():
        if pipeline.status == "available":
            assert launcher.job_name(pid).rsplit("/", 1)[1] in names, pid
    container = first(first(first(next(iter(jobs.values())), "template"), "template"), "containers")
    env = job_env()
    assert env["CLOUDACT_BACKEND"] == "gcp" and "GOOGLE_CLOUD_PROJECT" in env and "CLOUDACT_REGION" in env
    assert env["CLOUDACT_JOB_FAMILY"] == "each.key"
    assert container["image"] == "${var.image}"


def test_every_topic_has_a_dead_letter_topic_and_subscriptions():
    from shared.bus.base import TOPICS
    from shared.bus.pubsub import dead_letter_topic, subscription_name

    topics = locals_()["topics"]
    names = {spec["name"] for spec in topics.values()}
    assert names == set(TOPICS)
    topic_res = resources("google_pubsub_topic")
    assert topic_res["topic"]["name"] == "${each.value.name}"
    assert topic_res["dead_letter"]["name"] == "${each.value.name}-dead-letter"
    subs = resources("google_pubsub_subscription")
    assert subs["push"]["name"] == "${each.value.name}-sub"
    assert subs["dead_letter"]["name"] == "${each.value.name}-dead-letter-sub"
    # the names the code uses for the same things
    for t in TOPICS:
        assert dead_letter_topic(t) == f"{t}-dead-letter"
        assert subscription_name(t) == f"{t}-sub"


def test_delivering_subscriptions_dead_letter_and_retry():
    """Every subscription that delivers to a consumer has dead_letter_policy and retry_policy.

    Subscriptions on a dead-letter topic are exempt: they only keep dead letters for inspection,
    nothing consumes them automatically, so nothing can fail on them.
    """
    for name, body in resources("google_pubsub_subscription").items():
        if "dead_letter" in body["topic"]:
            assert "push_config" not in body, f"{name}: dead letters must not be pushed anywhere"
            continue
        policy = first(body, "dead_letter_policy")
        assert "google_pubsub_topic.dead_letter" in policy["dead_letter_topic"], name
        assert "retry_policy" in body, name
        push = first(body, "push_config")
        assert "oidc_token" in push, f"{name}: pushes must carry an OIDC identity"


def test_pubsub_service_agent_can_dead_letter():
    agent = locals_()["pubsub_service_agent"]
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in agent
    topic_grants = resources("google_pubsub_topic_iam_member")
    sub_grants = resources("google_pubsub_subscription_iam_member")
    assert any(g["member"] == "${local.pubsub_service_agent}" and g["role"] == "roles/pubsub.publisher"
               and "dead_letter" in g["topic"] for g in topic_grants.values())
    assert any(g["member"] == "${local.pubsub_service_agent}" and g["role"] == "roles/pubsub.subscriber"
               and "google_pubsub_subscription.push" in g["subscription"] for g in sub_grants.values())


# -- security ---------------------------------------------------------------------------------


def _iam_grants(var: dict | None = None):
    """(resource type, name, each.key, planned body, members) of every instance of every IAM
    member/binding/policy resource."""
    for rtype, name, _ in all_resources():
        if not re.search(r"_iam_(member|binding|policy)$", rtype):
            continue
        for key, body in instances(rtype, name, var).items():
            members = []
            if "member" in body:
                members.append(body["member"])
            members.extend(body.get("members", []) or [])
            if "policy_data" in body:
                members.append(str(body["policy_data"]))
            yield rtype, name, key, body, members


def test_only_the_two_intended_functions_are_public():
    functions()  # the for_each resolves
    for var, expected in ((variables(**ALL_ON), PUBLIC_FUNCTIONS), (variables(**ALL_OFF), PUBLIC_FUNCTIONS - {"run_pipeline"})):
        public = []
        for rtype, name, key, body, members in _iam_grants(var):
            if not any(p in m for m in members for p in PUBLIC_MEMBERS):
                continue
            target = str(body.get("name") or body.get("cloud_function") or body.get("service") or "")
            m = re.fullmatch(r'\$\{google_cloudfunctions2_function\.fn\["(\w+)"\]\.name\}', target)
            assert rtype == "google_cloud_run_v2_service_iam_member" and m and m.group(1) in PUBLIC_FUNCTIONS, (
                f"{rtype}.{name}[{key}] makes {target or 'something'} public")
            assert body["role"] == "roles/run.invoker", f"{rtype}.{name}[{key}]: public grants may only invoke"
            public.append(m.group(1))
        # run_pipeline's public grant goes with var.run_pipeline_allow_unauthenticated
        assert sorted(public) == sorted(expected), var["run_pipeline_allow_unauthenticated"]


def test_private_functions_are_not_open_ingress():
    for ep, body in functions().items():
        ingress = first(body, "service_config")["ingress_settings"]
        if ep not in PUBLIC_FUNCTIONS:
            assert ingress == "${var.private_function_ingress}", ep
    variables_ = {k: v for block in TF["variable"] for k, v in block.items()}
    assert variables_["private_function_ingress"]["default"] == "ALLOW_INTERNAL_ONLY"


def test_no_owner_or_editor_roles():
    for rtype, name, key, body, _ in _iam_grants(variables(**ALL_ON)):
        assert body.get("role") not in FORBIDDEN_ROLES, f"{rtype}.{name}[{key}] grants {body.get('role')}"
    text = "\n".join(p.read_text() for p in TF_DIR.glob("*.tf"))
    assert not re.search(r'"roles/(owner|editor)"', text)


def _who(member: str) -> str:
    m = re.fullmatch(r'\$\{google_service_account\.account\["(\w+)"\]\.member\}', member)
    return m.group(1) if m else member


def grants(var: dict | None = None) -> list[tuple[str, str, str, str]]:
    """Every IAM grant, for_each expanded: (holder, resource type, target, role). The holder is the
    service account's key (`jobs`) or the member as written (`allUsers`, ...). A for_each over other
    resources stays as written (its grants name `each.value.x`)."""
    out = []
    for rtype, name, key, body, _ in _iam_grants(variables(**ALL_ON) if var is None else var):
        assert "member" in body, f"{rtype}.{name}: use *_iam_member (one member, additive), not bindings or policies"
        target_key = next((k for k in ("service_account_id", "dataset_id", "secret_id", "topic", "subscription",
                                       "bucket", "name", "project") if k in body), None)
        out.append((_who(body["member"]), rtype, str(body.get(target_key, "")), body["role"]))
    return out


def held_by(holder: str) -> set[tuple[str, str, str]]:
    return {(rtype, target, role) for who, rtype, target, role in grants() if who == holder}


PROJECT = "${var.project_id}"
# What each runtime account may do, and nothing else: a new grant must be argued for here.
RUNTIME_GRANTS = {
    "functions": {
        ("google_project_iam_member", PROJECT, "roles/bigquery.jobUser"),
        ("google_project_iam_member", PROJECT, "roles/bigquery.dataEditor"),
        ("google_project_iam_member", PROJECT, "roles/cloudscheduler.admin"),
        ("google_project_iam_member", PROJECT, "${google_project_iam_custom_role.credential_writer.id}"),
        ("google_bigquery_dataset_iam_member", "${google_bigquery_dataset.organizations.dataset_id}",
         "roles/bigquery.dataEditor"),
        ("google_secret_manager_secret_iam_member", "${google_secret_manager_secret.stripe_webhook.id}",
         "roles/secretmanager.secretAccessor"),
        ("google_pubsub_topic_iam_member", '${google_pubsub_topic.topic["run_requests"].name}', "roles/pubsub.publisher"),
        ("google_cloud_run_v2_job_iam_member", "${each.value.name}", "roles/run.jobsExecutorWithOverrides"),
    },
    "jobs": {
        ("google_project_iam_member", PROJECT, "roles/bigquery.jobUser"),
        ("google_project_iam_member", PROJECT, "roles/bigquery.dataEditor"),
        ("google_project_iam_member", PROJECT, "roles/secretmanager.secretAccessor"),
        ("google_bigquery_dataset_iam_member", "${google_bigquery_dataset.organizations.dataset_id}",
         "roles/bigquery.dataEditor"),
        ("google_pubsub_topic_iam_member", '${google_pubsub_topic.topic["run_completed"].name}', "roles/pubsub.publisher"),
        ("google_service_account_iam_member", '${google_service_account.account["source_reader"].name}',
         "roles/iam.serviceAccountTokenCreator"),
    },
    "source_reader": set(),  # tenants grant it Token Creator on their own accounts, outside this project
    "scheduler": {("google_cloud_run_v2_service_iam_member", fn_ref("sync_schedules"), "roles/run.invoker")},
    "sweeper": {("google_cloud_run_v2_service_iam_member", fn_ref("sweep_runs"), "roles/run.invoker")},
    "push": {("google_cloud_run_v2_service_iam_member", fn_ref("dispatch_run"), "roles/run.invoker"),
             ("google_cloud_run_v2_service_iam_member", fn_ref("convert_on_completion"), "roles/run.invoker"),
             ("google_cloud_run_v2_service_iam_member", fn_ref("schedule_tick"), "roles/run.invoker")},
    "fn_builder": {("google_project_iam_member", PROJECT, "roles/logging.logWriter"),
                   ("google_project_iam_member", PROJECT, "roles/artifactregistry.writer"),
                   ("google_storage_bucket_iam_member", "${google_storage_bucket.functions_source.name}",
                    "roles/storage.objectViewer")},
}


def service_accounts() -> dict[str, dict]:
    """{key: the planned google_service_account}: the instances of the one for_each resource."""
    assert set(resources("google_service_account")) == {"account"}, "one resource, a for_each over local.service_accounts"
    return instances("google_service_account", "account")


def test_every_runtime_account_holds_exactly_its_grants():
    accounts = set(service_accounts()) - {"deployer"}
    assert accounts == set(RUNTIME_GRANTS), "a new service account needs its grants listed in RUNTIME_GRANTS"
    for account, expected in RUNTIME_GRANTS.items():
        assert held_by(account) == expected, f"{account}: extra {held_by(account) - expected}, " \
                                             f"missing {expected - held_by(account)}"


def test_the_source_reader_is_its_own_account_holding_nothing_in_the_platform_project():
    """The identity that reads tenant sources cannot read or write any org's data or any secret here: a
    tenant who names another org's table (or a secret) gets only what the tenant itself was granted."""
    sas = service_accounts()
    ids = [sa["account_id"] for sa in sas.values()]
    assert len(set(ids)) == len(ids), f"two keys make the same account: {ids}"
    assert all(re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", i) for i in ids), ids  # IAM's rule for account ids
    assert held_by("source_reader") == set()
    assert not [g for g in grants() if "source_reader" in g[0]], "nothing may be granted to the source reader"
    # and on it only the jobs' token grant: nothing runs as it, so not even the deployer acts as it
    on_it = {(who, role) for who, _, target, role in grants()
             if target == '${google_service_account.account["source_reader"].name}'}
    assert on_it == {("jobs", "roles/iam.serviceAccountTokenCreator")}, on_it
    # no grant in any form: not through a group, a for_each map or a literal e-mail either
    source_reader_id = sas["source_reader"]["account_id"]
    for rtype, name, key, body, members in _iam_grants(variables(**ALL_ON)):
        text = json.dumps({k: v for k, v in body.items() if k != "service_account_id"})
        assert "source_reader" not in text and source_reader_id not in text, \
            f"{rtype}.{name}[{key}] grants the source reader"


def test_the_jobs_may_mint_tokens_for_the_source_reader_alone():
    for who, rtype, target, role in grants():
        if role in IDENTITY_ROLES:
            assert rtype == "google_service_account_iam_member", (
                f"{rtype} grants {role} to {who} on {target}: act-as and token roles are granted on one account, "
                "never on a project, folder or organization")
    minted = {(target, role) for who, rtype, target, role in grants() if who == "jobs" and role in IDENTITY_ROLES}
    assert minted == {('${google_service_account.account["source_reader"].name}', "roles/iam.serviceAccountTokenCreator")}
    # and the jobs run as themselves, told which account is the source reader
    (job,) = resources("google_cloud_run_v2_job").values()
    assert first(first(job, "template"), "template")["service_account"] == '${google_service_account.account["jobs"].email}'
    assert job_env()["CLOUDACT_SOURCE_READER_SA"] == '${google_service_account.account["source_reader"].email}'


def test_runtimes_are_multi_tenant_and_refuse_orgs_without_a_subscription(rt, acme, monkeypatch):
    from shared import registry
    from shared.plans import QuotaExceeded, check_static, entitlement

    variables = {k: v for block in TF["variable"] for k, v in block.items()}
    default_plan = variables["default_plan"]
    for env in (function_env("run_pipeline"), job_env()):
        assert env["CLOUDACT_TENANCY"] == "multi"
        assert env["CLOUDACT_DEFAULT_PLAN"] == "${var.default_plan}"
    # The variable's validation refuses the values that make a plan-less org unlimited.
    condition = first(default_plan, "validation")["condition"]
    assert '!= ""' in condition and '!= "free-local"' in condition and "lower(trimspace(var.default_plan))" in condition
    # What the default means to the code: an org with no subscription is refused.
    monkeypatch.setenv("CLOUDACT_DEFAULT_PLAN", default_plan["default"])
    ent = entitlement(rt.warehouse, "acme")
    today = dt.date.today()
    with pytest.raises(QuotaExceeded) as e:
        check_static(ent, registry.get("genai/payg/openai"), today, today)
    assert e.value.status == 402 and e.value.code == "no_subscription"


def scheduler_jobs(var: dict | None = None) -> dict[str, dict]:
    """{entry point: the planned Cloud Scheduler job that calls it}."""
    assert set(resources("google_cloud_scheduler_job")) == {"call"}, "one resource, a for_each over local.scheduled_calls"
    return instances("google_cloud_scheduler_job", "call", var)


def test_scheduler_jobs_call_their_function_as_its_invoker():
    """A job's OIDC identity is the one account allowed to invoke its function, and the job is named after it."""
    fns = functions()
    for ep, job in scheduler_jobs().items():
        uri = fn_ref(ep, "service_config[0].uri")
        target = first(job, "http_target")
        assert target["uri"] == uri and job["name"] == fn_ref(ep), ep
        invokers = {who for who, rtype, t, role in grants() if t == fn_ref(ep) and role == "roles/run.invoker"}
        (invoker,) = invokers
        oidc = first(target, "oidc_token")
        assert oidc == {"service_account_email": f'${{google_service_account.account["{invoker}"].email}}',
                        "audience": uri}, ep
        assert first(fns[ep], "service_config")["ingress_settings"] == "${var.private_function_ingress}", ep
    # sync_schedules' job goes with its cron
    assert set(scheduler_jobs(variables(sync_schedules_cron=""))) == set(scheduler_jobs()) - {"sync_schedules"}


def test_sweep_runs_is_private_and_called_every_five_minutes_by_its_own_invoker():
    eps = entry_points()
    assert eps["sweep_runs"] == "http"
    fn = functions()["sweep_runs"]
    assert first(fn, "service_config")["ingress_settings"] == "${var.private_function_ingress}"
    invokers = {(who, role) for who, rtype, target, role in grants() if target == fn_ref("sweep_runs")}
    assert invokers == {("sweeper", "roles/run.invoker")}, f"only cloudact-sweeper may call sweep_runs: {invokers}"
    # the sweep cannot be switched off: dead jobs' runs would hold their slice forever
    assert "sweep_runs" in scheduler_jobs(variables(**ALL_OFF))
    job = scheduler_jobs()["sweep_runs"]
    oidc = first(first(job, "http_target"), "oidc_token")
    assert oidc["service_account_email"] == '${google_service_account.account["sweeper"].email}'
    variables_ = {k: v for block in TF["variable"] for k, v in block.items()}
    assert job["schedule"] == "${var.sweep_runs_cron}" and variables_["sweep_runs_cron"]["default"] == "*/5 * * * *"
    condition = first(variables_["sweep_runs_cron"], "validation")["condition"]
    assert condition == '${length(split(" ", trimspace(var.sweep_runs_cron))) == 5}', "an empty cron must be refused"


def test_secrets_have_no_values_in_code():
    assert "google_secret_manager_secret_version" not in {t for t, _, _ in all_resources()}
    for ep, fn in functions().items():
        config = first(fn, "service_config")
        (dynamic,) = [d["secret_environment_variables"] for d in config.get("dynamic", [])
                      if "secret_environment_variables" in d]
        assert "secret_environment_variables" not in config, f"{ep}: secrets come from its entry's `secrets`"
        assert first(dynamic, "content") == {"key": "${secret_environment_variables.key}", "project_id": PROJECT,
                                             "secret": "${secret_environment_variables.value}", "version": "latest"}
        # the functions' account may read the Stripe secret and no other (secrets.tf)
        expected = {"STRIPE_WEBHOOK_SECRET": "${google_secret_manager_secret.stripe_webhook.secret_id}"}
        assert dynamic["for_each"] == (expected if ep == "stripe_webhook" else {}), ep


# -- the fold into for_each: old addresses move ----------------------------------------------------

# The resources that were one resource per function, account, grant, job or alert, and are now one for_each.
FOLDED = ("google_cloudfunctions2_function.fn", "google_cloud_run_v2_service_iam_member.invoker",
          "google_service_account.account", "google_project_iam_member.grant",
          "google_pubsub_topic_iam_member.publisher", "google_cloud_scheduler_job.call",
          "google_monitoring_alert_policy.alert")


def moves() -> list[tuple[str, str]]:
    def address(expr: str) -> str:
        m = re.fullmatch(r"\$\{(.+)\}", expr)
        assert m, expr
        return m.group(1)
    return [(address(m["from"]), address(m["to"])) for m in TF.get("moved", [])]


def _addresses(var: dict) -> set[str]:
    out = set()
    for address in FOLDED:
        rtype, name = address.split(".")
        out |= {f'{address}["{key}"]' for key in instances(rtype, name, var)}
    return out


def test_every_instance_of_a_folded_resource_moves_from_its_old_address():
    """A deployment made before the fold must plan moves, not a destroy and a create: a function would get a
    new URL, a service account would be a new principal that tenants' grants no longer name."""
    moved = moves()
    froms, tos = [f for f, _ in moved], [t for _, t in moved]
    assert len(set(froms)) == len(froms) and len(set(tos)) == len(tos), "one move per address"
    assert set(tos) == _addresses(variables(**ALL_ON)), "every instance comes from one old address"
    defined = {f"{t}.{n}" for t, n, _ in all_resources()}
    unconditional = _addresses(variables(**ALL_OFF))
    for old, new in moved:
        resource = re.sub(r"\[[^\]]*\]$", "", old)
        assert resource not in defined, f"{old} is still in the configuration"
        # what exists only with a variable set was a resource with a count, so its instance is [0]
        assert old.endswith("[0]") == (new not in unconditional), (old, new)
    # the functions and the accounts were resources named by their key
    for ep in functions():
        assert (f"google_cloudfunctions2_function.{ep}", f'google_cloudfunctions2_function.fn["{ep}"]') in moved, ep
    for key in service_accounts():
        assert (f"google_service_account.{key}", f'google_service_account.account["{key}"]') in moved, key


# -- build ------------------------------------------------------------------------------------


def test_cloudbuild_runs_tests_before_deploying():
    doc = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = doc["steps"]

    def text(step):
        return " ".join([step.get("entrypoint", ""), *map(str, step.get("args", []))])

    def index(pred, what):
        hits = [i for i, s in enumerate(steps) if pred(text(s))]
        assert hits, f"cloudbuild.yaml has no {what} step"
        return hits[0]

    test_i = index(lambda t: "make test" in t or "pytest" in t, "test")
    deploy_i = index(lambda t: "terraform" in t and " apply" in t, "terraform apply")
    image_i = index(lambda t: "docker" in t and "push" in t, "image push")
    boot_i = index(lambda t: "cli.main bootstrap" in t, "bootstrap")
    assert test_i < image_i < deploy_i < boot_i
    # no step jumps the queue (Cloud Build runs steps in order unless waitFor says otherwise)
    assert all("waitFor" not in s for s in steps)
    boot_env = steps[boot_i].get("env", [])
    assert "CLOUDACT_BACKEND=gcp" in boot_env
    for key in ("_REGION", "_TF_STATE_BUCKET"):
        assert key in doc["substitutions"]


def test_dockerfile_runs_the_jobs_module():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert 'ENTRYPOINT ["python", "-m", "jobs"]' in text
    assert re.search(r"^USER ", text, re.M), "the job image must not run as root"


def test_functions_source_archive(tmp_path):
    """The archive has a root main.py exporting every entry point and data files beside the code."""
    script = TF_DIR / "scripts" / "package_functions.py"
    out = tmp_path / "fs.zip"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    first_md5 = out.read_bytes()
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == first_md5, "the archive must be reproducible (Terraform names it by MD5)"
    src = tmp_path / "src"
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        zf.extractall(src)
    assert {"main.py", "requirements.txt", "providers.yml", "functions/main.py", "shared/registry.py"} <= names
    assert any(n.startswith("procedures/") for n in names) and any(n.startswith("schemas/") for n in names)
    assert not any("__pycache__" in n or n.split("/")[0] in ("tests", "jobs", "cli", "stubs") for n in names)
    reqs = (src / "requirements.txt").read_text()
    assert "functions-framework" in reqs and "google-cloud-bigquery" in reqs
    # the versions CI tested: requirements.lock's pins, one per locked package
    assert reqs.splitlines() == _package_functions().locked(LOCK)
    assert [line.split("==")[0] for line in reqs.splitlines()] == list(_pins(LOCK))
    # Import the shim from the extracted tree alone (the repo is kept off sys.path).
    probe = (
        "import json, sys, importlib, pkgutil, main, functions, shared, shared.registry as r, shared.config as c; "
        "[importlib.import_module(m.name) for p in (functions, shared) "
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]; "
        "print(json.dumps({'eps': sorted(main.__all__), 'root': str(c.ROOT), "
        "'callable': all(callable(getattr(main, n)) for n in main.__all__), "
        "'registry': str(r.REGISTRY_PATH)}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(src)!r}); {probe}"],
                         cwd=src, env=env, capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["eps"] == sorted(entry_points())
    assert got["callable"]
    assert Path(got["root"]).resolve() == src.resolve()
    assert Path(got["registry"]).exists()


# -- checkov ------------------------------------------------------------------------------------


def _checkov() -> str | None:
    local = ROOT / ".venv-checkov" / "bin" / "checkov"
    if local.exists():
        return str(local)
    return shutil.which("checkov")


def test_checkov_terraform_passes():
    """Static security scan; every skipped check carries a `#checkov:skip=ID:reason` in the .tf."""
    exe = _checkov()
    if not exe:
        pytest.skip("checkov is not installed (python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov)")
    res = subprocess.run([exe, "-d", str(TF_DIR), "--framework", "terraform", "-o", "json", "--quiet", "--compact", "--skip-download"],
                         capture_output=True, text=True, timeout=600)
    assert res.stdout.strip(), res.stderr[-2000:]
    report = json.loads(res.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})"
              for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, "checkov findings:\n" + "\n".join(failed)
    for r in reports:
        for c in r.get("results", {}).get("skipped_checks", []):
            assert (c.get("suppress_comment") or "").strip(), f"{c['check_id']} skipped without a reason"


def test_the_credentials_api_may_write_secrets_but_never_read_them():
    """POST/rotate /api/v1/credentials store tenant secrets from the functions' identity; reading them stays
    the jobs' alone, so a flaw in the API cannot hand a tenant another tenant's secret."""
    roles = resources("google_project_iam_custom_role")
    perms = set(roles["credential_writer"]["permissions"])
    assert {"secretmanager.secrets.create", "secretmanager.versions.add", "secretmanager.versions.disable"} <= perms
    assert not {p for p in perms if p.endswith((".access", ".get", ".list", "setIamPolicy"))}


# -- settings that match the deployment ------------------------------------------------------------


def test_the_runtimes_run_bigquery_where_terraform_puts_the_datasets(monkeypatch):
    from shared.config import settings

    variables = {k: v for block in TF["variable"] for k, v in block.items()}
    assert resources("google_bigquery_dataset")["organizations"]["location"] == "${var.bigquery_location}"
    for env in (*(function_env(ep) for ep in entry_points()), job_env()):
        assert env["CLOUDACT_BIGQUERY_LOCATION"] == "${var.bigquery_location}"
    # the code's default is the variable's default
    monkeypatch.delenv("CLOUDACT_BIGQUERY_LOCATION", raising=False)
    assert settings().bigquery_location == variables["bigquery_location"]["default"]

    # Cloud Build passes the same location to terraform and to the bootstrap, and the trigger sets it
    doc = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    assert doc["substitutions"]["_BQ_LOCATION"] == variables["bigquery_location"]["default"]
    envs = [s.get("env", []) for s in doc["steps"]]
    assert any("TF_VAR_bigquery_location=${_BQ_LOCATION}" in e for e in envs)
    (boot,) = [s for s in doc["steps"] if "cli.main bootstrap" in " ".join(map(str, s.get("args", [])))]
    assert "CLOUDACT_BIGQUERY_LOCATION=${_BQ_LOCATION}" in boot["env"]
    (trigger,) = resources("google_cloudbuild_trigger").values()
    assert trigger["substitutions"]["_BQ_LOCATION"] == "${var.bigquery_location}"


# -- pinned dependencies -------------------------------------------------------------------------------

LOCK, TEST_LOCK = ROOT / "requirements.lock", ROOT / "requirements-test.lock"


def _package_functions():
    import importlib.util

    spec = importlib.util.spec_from_file_location("package_functions", TF_DIR / "scripts" / "package_functions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins(lock: Path) -> dict[str, str]:
    """{canonical name: version} of a lock; every requirement is `name==version` and carries hashes."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = lock.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])  # one entry per requirement line
    hashed = {canonicalize_name(e.split("==", 1)[0]) for e in entries if "--hash=sha256:" in e}
    pins = {}
    for line in _package_functions().locked(lock):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{lock.name}: {line} is not pinned"
        pins[canonicalize_name(req.name)] = spec.version
    assert set(pins) == hashed, f"{lock.name}: requirements without hashes: {sorted(set(pins) - hashed)}"
    return pins


def _declared() -> dict[str, list]:
    """pyproject.toml's requirements per group (dependencies, gcp, test), the project itself left out."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    return {g: [Requirement(r) for r in reqs if Requirement(r).name != project["name"]] for g, reqs in groups.items()}


def test_the_locks_pin_every_dependency_pyproject_names_within_its_range():
    from packaging.utils import canonicalize_name

    declared = _declared()
    for lock, groups in ((LOCK, ("dependencies", "gcp")), (TEST_LOCK, ("dependencies", "gcp", "test"))):
        pins = _pins(lock)
        for group in groups:
            for req in declared[group]:
                name = canonicalize_name(req.name)
                assert name in pins, f"{req} ({group}) is not in {lock.name}: run `make lock`"
                assert req.specifier.contains(pins[name], prereleases=True), \
                    f"{lock.name} pins {name}=={pins[name]}, outside pyproject's {req}: run `make lock`"
    assert "pytest" not in _pins(LOCK), "the image's lock holds test tools"


def test_ci_tests_exactly_the_versions_the_image_installs():
    runtime, test = _pins(LOCK), _pins(TEST_LOCK)
    differ = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert not differ, f"requirements-test.lock differs from requirements.lock (image, CI): {differ}; run `make lock`"


def test_the_locks_hold_every_transitive_dependency():
    """Walks the installed distributions' own metadata from pyproject's requirements: every package they need
    (markers evaluated for this Python) is pinned. Distributions installed at another version than the lock's
    are not walked: their metadata may differ from the locked version's."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = _declared()
    for lock, groups in ((LOCK, ("dependencies", "gcp")), (TEST_LOCK, ("dependencies", "gcp", "test"))):
        pins = _pins(lock)
        todo = [(r, frozenset(r.extras)) for g in groups for r in declared[g]]
        seen, missing, walked = set(), [], 0
        while todo:
            req, extras = todo.pop()
            name = canonicalize_name(req.name)
            if (name, extras) in seen:
                continue
            seen.add((name, extras))
            if name not in pins:
                missing.append(str(req))
                continue
            try:
                dist = md.distribution(name)
            except md.PackageNotFoundError:
                continue
            if dist.version != pins[name]:
                continue
            walked += 1
            for text in dist.requires or []:
                dep = Requirement(text)
                if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (extras or {""})):
                    todo.append((dep, frozenset(dep.extras)))
        assert not missing, f"{lock.name} lacks {sorted(set(missing))}: run `make lock`"
        assert walked >= len(pins) // 2, f"only {walked} of {len(pins)} locked packages are installed at their pin"


def _recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert m, f"the Makefile has no {target} recipe"
    return m.group(1)


def test_the_image_and_ci_install_from_the_locks_then_the_project_without_deps():
    # CI (`make test`, .ci/run): the test lock, hash-checked, then the project alone
    install = [line.strip() for line in _recipe("$(STAMP)").splitlines() if "pip install" in line]
    assert install == ["$(BIN)/python -m pip install --quiet --require-hashes -r $(TEST_LOCK)",
                       "$(BIN)/python -m pip install --quiet --no-deps -e ."]
    makefile = (ROOT / "Makefile").read_text()
    assert "TEST_LOCK := requirements-test.lock" in makefile
    assert re.search(r"^STAMP := .*\$\(TEST_LOCK\)", makefile, re.M), "a changed lock must reinstall"
    assert re.search(r"^test: \$\(STAMP\)$", makefile, re.M)

    # the image: the runtime lock, hash-checked, before the code; then the project alone
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    runs = [line for line in lines if line.startswith("RUN") and "pip install" in line]
    assert runs == ["RUN pip install --require-hashes -r requirements.lock", "RUN pip install --no-deps -e ."]
    assert lines.index("COPY requirements.lock ./") < lines.index(runs[0]) < lines.index("COPY shared ./shared")

    # the bootstrap step installs from the lock when `make test` left no .venv
    doc = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    (boot,) = [s for s in doc["steps"] if "cli.main bootstrap" in " ".join(map(str, s.get("args", [])))]
    script = " ".join(map(str, boot["args"]))
    assert "--require-hashes -r requirements.lock" in script and "--no-deps -e ." in script


# -- the image's build context ------------------------------------------------------------------------


def _dockerfile_copy_sources() -> list[str]:
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_dockerignore_keeps_every_copy_source_and_drops_the_heavy_folders(tmp_path):
    docker_build = pytest.importorskip("docker.utils.build", reason="the docker package (test extra) is not installed")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    tracked = [p for p in listed.stdout.splitlines() if (ROOT / p).is_file()]
    # what a Cloud Build workspace holds after `make test` (and what a developer's checkout holds)
    heavy = [".venv/bin/python", ".venv/lib/python3.11/site-packages/duckdb/__init__.py", ".venv-checkov/bin/checkov",
             ".cloudact/warehouse.duckdb", ".cloudact/demo/secret.key", ".azurite/__blobstorage__/x",
             ".zetasql/node_modules/@fivetrandevelopers/zetasql/package.json", ".git/HEAD", ".git/objects/pack/p.pack",
             "shared/__pycache__/config.cpython-311.pyc", "jobs/cloud/__pycache__/gcp.cpython-311.pyc",
             ".pytest_cache/v/cache/lastfailed", "build/functions-source.zip", "cloudact_pipelines.egg-info/PKG-INFO",
             "bench-out/result.json", "warehouse.duckdb", "warehouse.duckdb.wal"]
    for rel in (*tracked, *heavy):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    context = set(docker_build.exclude_paths(str(tmp_path), patterns))

    sources = _dockerfile_copy_sources()
    assert {"requirements.lock", "shared", "procedures", "pyproject.toml"} <= set(sources)
    for src in sources:
        files = [p for p in tracked if p == src or p.startswith(src.rstrip("/") + "/")]
        assert files, f"COPY {src}: nothing in the repository"
        dropped = [p for p in files if p not in context]
        assert not dropped, f".dockerignore drops what `COPY {src}` needs: {dropped[:5]}"
    heavy_dirs = {h.split("/", 1)[0] for h in heavy if "/" in h and not h.startswith(("shared/", "jobs/"))}
    leaked = sorted(p for p in context if p in heavy or p.split("/", 1)[0] in heavy_dirs)
    assert not leaked, f"the build context holds {leaked[:10]}"
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]
