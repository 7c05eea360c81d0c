"""docs/monitoring/: the alert rules and their unit tests run by the real promtool, `promtool check metrics` on a
real scrape, and every PromQL expression of the rules and the Grafana dashboard naming only metrics the server
exports (docs/monitoring.md)."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.collections_config import PASSWORD, version_path, write_collections_config
from tests.support import ROOT, pgp_message

MONITORING = ROOT / "docs" / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
TOKEN = "metrics-token-for-tests"
#: Metrics of Prometheus itself that the rules may use.
PROMETHEUS_OWN = {"up"}


def promtool(*args, stdin: str = None) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is needed: install Debian's prometheus package (.ci/run does)")
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, cwd=str(MONITORING),
                          timeout=120)


def alerts() -> list:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0 and f"SUCCESS: {len(alerts())} rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    cases = [case for group in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in group["alert_rule_test"]]
    for rule in alerts():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"{rule['alert']} is never shown firing"
        assert any(not case.get("exp_alerts") for case in mine), f"{rule['alert']} is never shown quiet"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_unit_tests_can_fail(tmp_path):
    """The same tests against rules with one threshold changed: promtool reports the failure."""
    changed = tmp_path / "alerts.yaml"
    changed.write_text(RULES.read_text().replace("> 0.9\n", "> 0.99\n"))
    tests = tmp_path / "alerts.test.yaml"
    tests.write_text(RULE_TESTS.read_text())
    result = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True,
                            cwd=str(tmp_path), timeout=120)
    assert result.returncode != 0 and "BackupRepositoryCollectionNearlyFull" in result.stdout + result.stderr


# --- a real scrape -------------------------------------------------------------------------------------------

@pytest.fixture
def scrape(make_backend, config, start_server):
    """The text of a scrape of a server that stored a version (so every collection gauge has a sample)."""
    write_collections_config(config)
    server = start_server(make_backend("sqlite", "local"), config, f"--metrics-token={TOKEN}",
                          "--metrics-refresh-interval=0.2s")
    token = server.login("writer", PASSWORD)
    assert server.request("POST", version_path("docs"), token, data=pgp_message(b"x" * 100)).status_code == 200

    def text():
        return server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text

    from tests.support import wait_until
    assert wait_until(lambda: 'backup_repository_collection_latest_version_timestamp_seconds{collection="docs"}'
                      in text())
    return text()


def test_promtool_finds_no_problem_in_a_real_scrape(scrape):
    checked = promtool("check", "metrics", stdin=scrape)
    assert checked.returncode == 0 and checked.stdout.strip() == "" and checked.stderr.strip() == "", (
        checked.stdout + checked.stderr)


def exported_names(text: str) -> set:
    """Every series name a scrape offers: each family's samples, and the names its type implies (a family without
    samples yet still has its HELP and TYPE)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                "bool", "inf", "nan"}


def metric_names(expr: str) -> set:
    """The metric names of a PromQL expression: what is left after strings, label matchers, ranges, grouping
    clauses, function names, keywords and numbers are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    expr = re.sub(r"\b[a-zA-Z_]\w*\s*\(", "(", expr)  # functions and aggregations
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {word for word in words if word.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]", word)}


def dashboard_expressions() -> list:
    def walk(panels):
        for panel in panels:
            yield from (target["expr"] for target in panel.get("targets", ()) if target.get("expr"))
            yield from walk(panel.get("panels", ()))
    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def test_rules_and_dashboard_name_only_exported_metrics(scrape):
    exported = exported_names(scrape) | PROMETHEUS_OWN
    expressions = [rule["expr"] for rule in alerts()] + dashboard_expressions()
    assert len(expressions) > 40
    used = set()
    for expr in expressions:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{sorted(names - exported)} in {expr!r} are not exported"
        used |= names
    # the expression reader is not blind: a misspelt name is caught
    assert metric_names('sum by (collection) (rate(backup_repository_uploadz_total{outcome="stored"}[5m])) > 0') == {
        "backup_repository_uploadz_total"}
    # the collection gauges and the freshness signal are all on the dashboard or in the rules
    assert {name for name in exported if name.startswith("backup_repository_collection_")} - used == set()


def test_the_dashboard_covers_fleet_traffic_security_and_instances():
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == ["Fleet overview", "Traffic", "Login security", "Instances"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"] if panel["type"] != "row")


def test_every_exported_metric_is_documented(scrape):
    """docs/monitoring.md's tables name each family of the scrape (the process metrics as a group)."""
    documented = (ROOT / "docs" / "monitoring.md").read_text()
    families = {family.name for family in text_string_to_metric_families(scrape)}
    assert len(families) > 30
    counters = {family.name for family in text_string_to_metric_families(scrape) if family.type == "counter"}
    missing = [name for name in sorted(families) if not name.startswith(("process_", "python_"))
               and f"`{name}{'_total' if name in counters else ''}`" not in documented]
    assert missing == []
