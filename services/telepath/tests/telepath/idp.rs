//! Tokens from an identity provider: RS256 tokens checked against a JWKS
//! served by a local HTTP server (keys rotated during the test, the server
//! slow, down and huge), `aud`/`iss` required, name and role mapped from
//! other claims, and 401s that say why with `WWW-Authenticate`; ES256 with
//! a PEM public key on the all-in-one.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::{WsClient, WsError};

use crate::cluster::start_cluster_with;
use crate::helpers::{login, spawn_node};

const AUD: &str = "telepath-test";
const ISS: &str = "https://idp.test/";

/// A key pair made by openssl in `dir`: (private PEM, public PEM).
fn keypair(dir: &Path, name: &str, alg: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-out"])
        .arg(&private)
        .args(alg)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey -pubout");
    (
        std::fs::read(private).unwrap(),
        std::fs::read(public).unwrap(),
    )
}

fn rsa(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    keypair(
        dir,
        name,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
}

/// The JWK of an RSA public key (its modulus read by openssl).
fn rsa_jwk(dir: &Path, name: &str, kid: &str) -> Value {
    use base64::Engine as _;
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-pubin", "-modulus", "-noout", "-in"])
        .arg(dir.join(format!("{name}.pub")))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64.encode(n), "e": "AQAB"})
}

fn sign(alg: Algorithm, kid: Option<&str>, private: &[u8], claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(private).unwrap(),
        _ => EncodingKey::from_rsa_pem(private).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(sub: &str, name: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "preferred_username": name, "roles": ["reader"], "aud": AUD, "iss": ISS,
           "iat": now, "exp": now + 600})
}

/// What the JWKS server answers.
#[derive(Clone)]
enum Answer {
    Keys(Value),
    Slow(Duration),
    Down,
    Huge,
}

#[derive(Clone)]
struct Jwks {
    answer: Arc<Mutex<Answer>>,
    hits: Arc<Mutex<usize>>,
}

async fn serve_jwks(State(jwks): State<Jwks>) -> axum::response::Response {
    use axum::response::IntoResponse;
    *jwks.hits.lock().unwrap() += 1;
    let answer = jwks.answer.lock().unwrap().clone();
    match answer {
        Answer::Keys(keys) => axum::Json(keys).into_response(),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            axum::Json(json!({"keys": []})).into_response()
        }
        Answer::Down => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Answer::Huge => {
            let filler: Vec<Value> = (0..20_000)
                .map(|i| json!({"kty": "oct", "kid": i}))
                .collect();
            axum::Json(json!({"keys": filler})).into_response()
        }
    }
}

/// `GET /rooms` with `token`: the status, the message and the challenge.
async fn rest(http: &Client, api: &str, token: &str) -> (u16, String, String) {
    let resp = http
        .get(format!("{api}/rooms"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
        challenge,
    )
}

/// The refusal of a handshake with `token`: its status and message.
async fn ws_refused(gw: &str, token: &str) -> (u16, String) {
    match WsClient::connect(gw, token).await {
        Ok(_) => panic!("the handshake was accepted"),
        Err(WsError::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (status, body)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn identity_provider_tokens_are_checked_against_a_rotating_jwks_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, _) = rsa(dir.path(), "k1");
    let (k2, _) = rsa(dir.path(), "k2");
    let (stranger, _) = rsa(dir.path(), "stranger");
    let jwks = Jwks {
        answer: Arc::new(Mutex::new(Answer::Keys(
            json!({"keys": [rsa_jwk(dir.path(), "k1", "k1")]}),
        ))),
        hits: Arc::new(Mutex::new(0)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/jwks.json", get(serve_jwks))
        .with_state(jwks.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cluster = start_cluster_with(
        2,
        1,
        &[
            ("TELEPATH_JWT_JWKS_URL", jwks_url),
            ("TELEPATH_JWT_AUDIENCE", AUD.into()),
            ("TELEPATH_JWT_ISSUER", ISS.into()),
            ("TELEPATH_JWT_NAME_CLAIM", "preferred_username".into()),
            ("TELEPATH_JWT_ROLE_CLAIM", "roles".into()),
        ],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let gw = &cluster.gateways[0].url;

    // A provider's token: REST and the handshake, name and id mapped.
    let ada = sign(
        Algorithm::RS256,
        Some("k1"),
        &k1,
        &claims("auth0|ada", "ada.l"),
    );
    assert_eq!(rest(&http, api, &ada).await.0, 200);
    let c = WsClient::connect(gw, &ada).await.unwrap();
    assert_eq!(c.welcome["user"]["name"], "ada.l");
    assert_eq!(c.welcome["user"]["role"], "user");
    let id = c.welcome["user"]["id"].as_str().unwrap().to_owned();
    assert!(telepath_shared::protocol::is_canonical_id(&id), "{id}");
    // The same subject is the same user on the other gateway too.
    let c = WsClient::connect(&cluster.gateways[1].url, &ada)
        .await
        .unwrap();
    assert_eq!(c.welcome["user"]["id"], id);
    // A UUID subject is kept; `admin` in the role claim makes an admin.
    let sub = "0b9f3c1e-7a2d-4c55-9e61-3f0a8d2b7c44";
    let mut admin = claims(sub, "root.r");
    admin["roles"] = json!(["reader", "admin"]);
    let root = sign(Algorithm::RS256, Some("k1"), &k1, &admin);
    let c = WsClient::connect(gw, &root).await.unwrap();
    assert_eq!(c.welcome["user"]["id"], sub);
    assert_eq!(c.welcome["user"]["role"], "admin");
    // Telepath's own HS256 tokens still work.
    let bob = login(&http, api, "bob").await;
    assert_eq!(rest(&http, api, &bob.token).await.0, 200);

    // Refusals say why, on REST (with the challenge) and at the handshake.
    let mut wrong_aud = claims("auth0|eve", "eve");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("auth0|eve", "eve");
    wrong_iss["iss"] = json!("https://evil.test/");
    let mut expired = claims("auth0|eve", "eve");
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let mut nameless = claims("auth0|eve", "eve");
    nameless
        .as_object_mut()
        .unwrap()
        .remove("preferred_username");
    let good = sign(
        Algorithm::RS256,
        Some("k1"),
        &k1,
        &claims("auth0|eve", "eve"),
    );
    let (head, rest_of) = good.rsplit_once('.').unwrap();
    // One signature character changed (a valid base64url character still).
    let flip = if rest_of.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flip}{}", &rest_of[1..]);
    let cases = [
        (
            sign(Algorithm::RS256, Some("k1"), &k1, &wrong_aud),
            "wrong_audience",
        ),
        (
            sign(Algorithm::RS256, Some("k1"), &k1, &wrong_iss),
            "wrong_issuer",
        ),
        (sign(Algorithm::RS256, Some("k1"), &k1, &expired), "expired"),
        (
            sign(Algorithm::RS256, Some("k1"), &k1, &nameless),
            "missing_claim: preferred_username",
        ),
        (tampered, "bad_signature"),
        (
            sign(
                Algorithm::RS256,
                Some("k1"),
                &stranger,
                &claims("auth0|eve", "eve"),
            ),
            "bad_signature",
        ),
        ("not.a.token".to_owned(), "malformed"),
    ];
    for (token, why) in &cases {
        let (status, message, challenge) = rest(&http, api, token).await;
        assert_eq!((status, message.as_str()), (401, *why));
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
            "{challenge}"
        );
        assert!(challenge.contains(why), "{challenge}");
        let (status, body) = ws_refused(gw, token).await;
        assert_eq!(status, 401);
        assert!(body.contains(why), "{why}: {body}");
    }
    // No token at all: the bare challenge.
    let resp = http.get(format!("{api}/rooms")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"telepath\""
    );

    // Rotation: the provider swaps k1 for k2. A token naming k2 makes the
    // services fetch the set again (not more than once per 2 s); k1's
    // tokens then name a key the set no longer has.
    *jwks.answer.lock().unwrap() = Answer::Keys(json!({"keys": [rsa_jwk(dir.path(), "k2", "k2")]}));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ada2 = sign(
        Algorithm::RS256,
        Some("k2"),
        &k2,
        &claims("auth0|ada", "ada.l"),
    );
    assert_eq!(rest(&http, api, &ada2).await.0, 200);
    let c = WsClient::connect(gw, &ada2).await.unwrap();
    assert_eq!(c.welcome["user"]["id"], id);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, message, _) = rest(&http, api, &ada).await;
    assert_eq!((status, message.as_str()), (401, "unknown_key"));
    // A key id nobody published: refused, and asking about it again and
    // again fetches the set at most once per 2 s.
    let before = *jwks.hits.lock().unwrap();
    let ghost = sign(
        Algorithm::RS256,
        Some("k9"),
        &k2,
        &claims("auth0|ada", "ada.l"),
    );
    for _ in 0..20 {
        assert_eq!(rest(&http, api, &ghost).await.1, "unknown_key");
    }
    let fetched = *jwks.hits.lock().unwrap() - before;
    assert!(fetched <= 2, "{fetched} fetches for 20 refusals");

    // The provider down, slow or huge: tokens of a new key are refused
    // within the fetch bound, known keys keep working.
    for answer in [
        Answer::Down,
        Answer::Slow(Duration::from_secs(10)),
        Answer::Huge,
    ] {
        *jwks.answer.lock().unwrap() = answer;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let started = Instant::now();
        let (status, _) = ws_refused(gw, &ghost).await;
        assert_eq!(status, 401);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let c = WsClient::connect(gw, &ada2).await.unwrap();
        assert_eq!(c.welcome["user"]["id"], id);
    }
}

#[tokio::test]
async fn the_all_in_one_takes_es256_tokens_with_a_pem_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ec, _) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (other, _) = rsa(dir.path(), "other");
    let public = dir.path().join("ec.pub");
    let node = spawn_node(|c| {
        c.common.jwt_public_key_file = Some(public);
        c.common.jwt_name_claim = "preferred_username".into();
    })
    .await;
    let http = Client::new();
    let token = sign(Algorithm::ES256, None, &ec, &claims("kc-user-1", "cy"));
    assert_eq!(rest(&http, &node.url, &token).await.0, 200);
    let c = WsClient::connect(&node.url, &token).await.unwrap();
    assert_eq!(c.welcome["user"]["name"], "cy");
    // RS256 against an EC key: refused, saying why.
    let rs = sign(Algorithm::RS256, None, &other, &claims("kc-user-1", "cy"));
    let (status, message, _) = rest(&http, &node.url, &rs).await;
    assert_eq!((status, message.as_str()), (401, "unsupported_algorithm"));
    // No aud/iss configured: neither is required.
    let mut bare = claims("kc-user-2", "dee");
    bare.as_object_mut().unwrap().remove("aud");
    bare.as_object_mut().unwrap().remove("iss");
    let token = sign(Algorithm::ES256, None, &ec, &bare);
    assert_eq!(rest(&http, &node.url, &token).await.0, 200);
}
