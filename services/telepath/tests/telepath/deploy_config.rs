//! The deployment's files, checked with the real tools and without running
//! anything: the compose file (health checks, start order), HAProxy's
//! config, Prometheus's config and alert rules (with their unit tests), and
//! the Grafana dashboard. deploy.rs runs the same files as processes.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

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

/// A throwaway certificate and key in one PEM file (HAProxy's format), in `dir`.
fn throwaway_certificate(dir: &std::path::Path) -> std::path::PathBuf {
    require("openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    succeeds(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let both = dir.join("haproxy.pem");
    let pem = [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&both, pem).unwrap();
    both
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
    // HAProxy's config with both public addresses, TLS included.
    let tls = tempfile::tempdir().unwrap();
    let cert = throwaway_certificate(tls.path());
    succeeds(
        Command::new("haproxy")
            .args(["-c", "-q", "-f", "deploy/haproxy/haproxy.cfg"])
            .args(["-f", "deploy/haproxy/compose.cfg"])
            .env("TELEPATH_LB_BIND", "127.0.0.1:1")
            .env("TELEPATH_LB_TLS_BIND", "127.0.0.1:3")
            .env("TELEPATH_LB_TLS_CERT", &cert)
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

/// The compose file as docker-compose resolves it (anchors merged, the
/// services of every profile), as JSON.
fn compose_config() -> Value {
    require("docker-compose");
    let out = succeeds(
        Command::new("docker-compose")
            .env("TELEPATH_JWT_SECRET", "validation-only")
            .args(["--profile", "tracing", "-f", "docker-compose.yml", "config"]),
    );
    // docker-compose prints YAML; python3's yaml module comes with it.
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let json = python.wait_with_output().unwrap();
    assert!(json.status.success(), "the compose config converts to JSON");
    serde_json::from_slice(&json.stdout).unwrap()
}

/// The health check command of compose service `name` (after `CMD`).
pub(crate) fn compose_health_check(name: &str) -> Vec<String> {
    let compose = compose_config();
    let test = compose["services"][name]["healthcheck"]["test"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no health check"))
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(test[0], "CMD", "{name}: exec form, no shell assumed");
    test[1..].to_vec()
}

#[test]
fn every_compose_service_has_a_health_check_and_starts_once_what_it_needs_is_healthy() {
    let compose = compose_config();
    let services = compose["services"].as_object().unwrap();
    // The collector's image is its binary alone: nothing to probe it with.
    let unprobed = ["otel-collector"];
    for (name, service) in services {
        let check = &service["healthcheck"];
        if unprobed.contains(&name.as_str()) {
            // `disable: true`, which docker-compose writes as test [NONE].
            assert_eq!(check["test"], json!(["NONE"]), "{name}: off on purpose");
            continue;
        }
        let test = check["test"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no health check"));
        assert!(
            test.len() > 1 && test[0] == "CMD",
            "{name}: a command to run: {test:?}"
        );
    }
    // Telepath's services are healthy when ready, not merely alive.
    for name in ["api", "presence", "gateway"] {
        let test = compose_health_check(name).join(" ");
        assert!(test.contains("/readyz"), "{name}: {test}");
    }

    // Start order: each waits for what it calls to be healthy.
    let needs: [(&str, &[&str]); 6] = [
        ("api", &["redis"]),
        ("presence", &["redis"]),
        ("gateway", &["api", "presence", "redis"]),
        ("haproxy", &["api", "gateway", "presence"]),
        ("grafana", &["prometheus"]),
        ("otel-collector", &["jaeger"]),
    ];
    for (name, service) in services {
        let deps = service["depends_on"].as_object();
        let got: Vec<&str> = deps
            .map(|d| d.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let want = needs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.to_vec())
            .unwrap_or_default();
        assert_eq!(got, want, "{name} depends on");
        for (dep, how) in deps.into_iter().flatten() {
            assert_eq!(
                how["condition"], "service_healthy",
                "{name} waits for {dep} to be healthy"
            );
        }
    }

    // The alert rules are mounted next to prometheus.yml, the certificate
    // where haproxy.cfg's TLS bind reads it.
    let mounts = |name: &str| services[name]["volumes"].to_string();
    assert!(
        mounts("prometheus").contains("deploy/prometheus:/etc/prometheus:ro"),
        "{}",
        mounts("prometheus")
    );
    let haproxy = &services["haproxy"];
    let cert = haproxy["environment"]["TELEPATH_LB_TLS_CERT"]
        .as_str()
        .unwrap();
    let cert_dir = std::path::Path::new(cert).parent().unwrap();
    assert!(
        mounts("haproxy").contains(&format!("deploy/tls:{}:ro", cert_dir.display())),
        "{}",
        mounts("haproxy")
    );
    assert!(haproxy["ports"].to_string().contains("8443"));
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
