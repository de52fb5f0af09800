//! The OpenAPI document covers every route, and every documented route is served.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::spawn_node;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path literal passed to axum's `.route(...)` in the services' sources.
fn routed_paths() -> BTreeSet<String> {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for crate_dir in ["api", "gateway", "presence", "telepath"] {
        rust_files(&services.join(crate_dir).join("src"), &mut files);
    }
    let mut paths = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let trimmed = rest.trim_start();
            if let Some(literal) = trimmed.strip_prefix('"') {
                let end = literal.find('"').unwrap();
                paths.insert(literal[..end].to_owned());
            }
        }
    }
    assert!(paths.len() >= 5, "the scan found the routes: {paths:?}");
    paths
}

#[test]
fn every_route_the_services_register_is_in_the_openapi_document() {
    let doc = telepath_api::openapi();
    let documented: BTreeSet<String> = doc.paths.paths.keys().cloned().collect();
    let missing: Vec<_> = routed_paths()
        .into_iter()
        .filter(|p| !documented.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without an OpenAPI path: {missing:?}"
    );
}

#[tokio::test]
async fn the_document_is_served_and_every_documented_operation_is_routed() {
    let node = spawn_node(|_| {}).await;
    let served: Value = node
        .http
        .get(format!("{}/openapi.json", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["openapi"], "3.1.0");
    let generated: Value =
        serde_json::from_str(&telepath_api::public_openapi().to_json().unwrap()).unwrap();
    assert_eq!(served, generated);
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    for (path, item) in served["paths"].as_object().unwrap() {
        let url = format!(
            "{}{}",
            node.url,
            path.replace("{id}", &id).replace("{user_id}", &id)
        );
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = node
                .http
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !(status == 404 && body.contains("no such route")),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[test]
fn every_operation_id_is_unique_in_every_document() {
    for (name, doc) in [
        ("whole", telepath_api::openapi()),
        ("public", telepath_api::public_openapi()),
        ("internal", telepath_api::internal_openapi()),
    ] {
        let doc = serde_json::to_value(&doc).unwrap();
        let mut seen = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let ops = item.as_object().unwrap().iter().filter(|(m, _)| {
                [
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&m.as_str())
            });
            for (method, op) in ops {
                let Some(id) = op["operationId"].as_str() else {
                    panic!("{name}: {method} {path} has no operationId");
                };
                assert!(
                    seen.insert(id.to_owned()),
                    "{name}: operationId {id} twice ({method} {path})"
                );
            }
        }
        assert!(seen.len() > 5, "{name}: {seen:?}");
    }
}
