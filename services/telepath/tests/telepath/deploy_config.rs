//! The deployment's files, checked with the real tools and without running
//! anything: the compose file, HAProxy's config, Prometheus's config and
//! alert rules (with their unit tests), and the Grafana dashboard.
//! deploy.rs runs the same files as processes.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use serde_json::Value;

use crate::local::{repo, require};

/// Runs `cmd` in the repository and asserts it succeeds; returns its output.
fn succeeds(cmd: &mut Command) -> Output {
    let out = cmd.current_dir(repo()).output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Grafana dashboard the deployment provisions.
fn dashboard() -> Value {
    let path = repo().join("deploy/grafana/dashboards/telepath.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard.
pub(crate) fn dashboard_queries() -> Vec<String> {
    dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// The alert rules Prometheus loads (deploy/prometheus/alerts.yml).
pub(crate) fn alert_rules() -> String {
    std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap()
}

/// The names of the alerts in alerts.yml.
pub(crate) fn alert_names() -> BTreeSet<String> {
    alert_rules()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect()
}

/// The metric names in a PromQL expression, or in a whole rules file (ours,
/// HAProxy's and the process ones).
pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            ["telepath_", "haproxy_", "process_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_compose_file_and_every_deploy_config_validate() {
    for tool in ["docker-compose", "haproxy", "promtool"] {
        require(tool);
    }
    for profile in [None, Some("tracing")] {
        let mut cmd = Command::new("docker-compose");
        cmd.env("TELEPATH_JWT_SECRET", "validation-only");
        if let Some(p) = profile {
            cmd.args(["--profile", p]);
        }
        succeeds(cmd.args(["-f", "docker-compose.yml", "config", "-q"]));
    }
    succeeds(
        Command::new("haproxy")
            .args(["-c", "-q", "-f", "deploy/haproxy/haproxy.cfg"])
            .args(["-f", "deploy/haproxy/compose.cfg"])
            .env("TELEPATH_LB_BIND", "127.0.0.1:1")
            .env("TELEPATH_LB_METRICS_BIND", "127.0.0.1:2")
            .env("TELEPATH_LB_MAXCONN", "1000"),
    );
    let checked = succeeds(Command::new("promtool").args([
        "check",
        "config",
        "deploy/prometheus/prometheus.yml",
    ]));
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        report.contains("alerts.yml"),
        "prometheus.yml loads the alert rules:\n{report}"
    );

    // The dashboard: at least 12 panels, each with a query.
    let dash = dashboard();
    let panels: Vec<&Value> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(panels.len() >= 12, "only {} panels", panels.len());
    for p in &panels {
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{} has no query",
            p["title"]
        );
    }
    let datasource = std::fs::read_to_string(
        repo().join("deploy/grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    assert!(
        datasource.contains("uid: prometheus") && datasource.contains("http://prometheus:9090")
    );

    // The image holds every binary the compose file runs.
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    for bin in ["telepath-api", "telepath-presence", "telepath-gateway"] {
        assert!(
            compose.contains(&format!("[\"{bin}\"]")),
            "compose runs {bin}"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{bin}")),
            "image has {bin}"
        );
    }
}

/// Every `datasource` object in `v`, and every `uid` anywhere below it.
fn walk<'a>(v: &'a Value, datasources: &mut Vec<&'a Value>, uids: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "datasource" => datasources.push(child),
                    "uid" => uids.push(child),
                    _ => {}
                }
                walk(child, datasources, uids);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, datasources, uids)),
        _ => {}
    }
}

#[test]
fn the_dashboard_takes_its_datasource_from_a_variable_and_names_no_datasource_uid() {
    let dash = dashboard();
    let variable = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(variable["type"], "datasource");
    assert_eq!(
        variable["query"], "prometheus",
        "it offers Prometheus datasources"
    );

    // Every panel and every query takes the variable; no uid is written in.
    let (mut datasources, mut uids) = (Vec::new(), Vec::new());
    walk(&dash["panels"], &mut datasources, &mut uids);
    let queries = dashboard_queries().len();
    assert!(
        datasources.len() > queries,
        "panels and queries name their datasource"
    );
    for ds in &datasources {
        assert_eq!(ds["type"], "prometheus", "{ds}");
        assert_eq!(ds["uid"], "${datasource}", "{ds}");
    }
    assert!(
        uids.iter().all(|u| *u == "${datasource}"),
        "a hard-coded uid is left: {uids:?}"
    );
}

#[test]
fn the_alert_rules_check_and_each_alert_fires_on_a_synthetic_series() {
    require("promtool");
    succeeds(Command::new("promtool").args(["check", "rules", "deploy/prometheus/alerts.yml"]));
    // Each alert fires on trouble and stays quiet without (alerts.test.yml).
    succeeds(Command::new("promtool").args(["test", "rules", "deploy/prometheus/alerts.test.yml"]));
    let tests = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.test.yml")).unwrap();
    let names = alert_names();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "alerts.test.yml shows {name} firing"
        );
    }

    // "Near full" is near the writer's real queue (services/api/src/writer.rs).
    let writer = std::fs::read_to_string(repo().join("services/api/src/writer.rs")).unwrap();
    let queue: f64 = writer
        .lines()
        .find_map(|l| l.strip_prefix("const QUEUE: usize = "))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .expect("the writer's QUEUE constant");
    let rules = alert_rules();
    let threshold: f64 = rules
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("expr: telepath_api_writer_queue_messages > ")
        })
        .and_then(|v| v.parse().ok())
        .expect("the writer queue alert");
    assert!(
        (0.7 * queue..queue).contains(&threshold),
        "{threshold} of {queue}"
    );
    assert!(
        rules.contains(&format!("of {queue}")),
        "the summary says {queue}"
    );
}
