//! The split deployment as real processes for tests: a redis-server the
//! test owns, presence replicas, the api and gateways, each on a free port.

use std::time::Duration;

use reqwest::Client;
use telepath_shared::testing::proxy::Proxy;
use telepath_shared::testing::{RedisServer, WsClient};

use crate::helpers::{Service, TestUser, create_room, login};

/// Heartbeat of every process in a test cluster.
pub(crate) const HEARTBEAT_MS: u64 = 500;
/// Presence grace before an offline event.
pub(crate) const GRACE_MS: u64 = 300;
/// Typing indicators expire after this long without a refresh.
pub(crate) const TYPING_TTL_MS: u64 = 1000;

/// Fields drop in order: gateways first, Redis last, so no service sees Redis vanish.
pub(crate) struct Cluster {
    pub(crate) gateways: Vec<Service>,
    /// Gateway i's way to Redis, when the cluster was started proxied.
    pub(crate) proxies: Vec<Proxy>,
    pub(crate) presence: Vec<Service>,
    pub(crate) api: Service,
    pub(crate) redis: RedisServer,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The api's SQLite database file.
    pub(crate) fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("api.db")
    }

    /// The heartbeat interval.
    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_millis(HEARTBEAT_MS)
    }
}

/// Starts Redis, `replicas` presence processes, the api and `gateways`
/// gateways; gateway i reports to presence replica i % replicas.
pub(crate) async fn start_cluster(gateways: usize, replicas: usize) -> Cluster {
    start_cluster_with(gateways, replicas, &[]).await
}

/// [`start_cluster`] with extra environment for every process (later entries win).
pub(crate) async fn start_cluster_with(
    gateways: usize,
    replicas: usize,
    extra: &[(&str, String)],
) -> Cluster {
    start(gateways, replicas, extra, false).await
}

/// [`start_cluster`], but each gateway reaches Redis through a proxy of its
/// own (`cluster.proxies[i]`) that the test can fault.
pub(crate) async fn start_cluster_proxied(gateways: usize, replicas: usize) -> Cluster {
    start(gateways, replicas, &[], true).await
}

async fn start(
    gateways: usize,
    replicas: usize,
    extra: &[(&str, String)],
    proxied: bool,
) -> Cluster {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("api.db").display());
    let mut presence = Vec::new();
    for i in 0..replicas {
        let env = [
            ("REDIS_URL", redis.url()),
            ("TELEPATH_NODE_ID", format!("presence{i}")),
            ("TELEPATH_HEARTBEAT_MS", HEARTBEAT_MS.to_string()),
            ("TELEPATH_PRESENCE_GRACE_MS", GRACE_MS.to_string()),
            ("TELEPATH_TYPING_TTL_MS", TYPING_TTL_MS.to_string()),
        ];
        presence.push(Service::start("telepath-presence", &[&env[..], extra].concat()).await);
    }
    let api_env = [
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", db),
        ("TELEPATH_DEV_LOGIN", "1".into()),
        // Tests log in and create rooms fast from one address; the limits'
        // own tests set them (later entries win).
        ("TELEPATH_IP_LOGIN_RATE_PER_S", "0".into()),
        ("TELEPATH_IP_ROOM_RATE_PER_S", "0".into()),
        ("TELEPATH_DEV_ADMINS", "*".into()),
        ("TELEPATH_NODE_ID", "api".into()),
        ("TELEPATH_PRESENCE_URL", presence[0].internal_url.clone()),
    ];
    let api = Service::start("telepath-api", &[&api_env[..], extra].concat()).await;
    let mut gws = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..gateways {
        let redis_url = if proxied {
            let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
            let url = format!("redis://{}", proxy.addr());
            proxies.push(proxy);
            url
        } else {
            redis.url()
        };
        let env = [
            ("REDIS_URL", redis_url),
            ("TELEPATH_API_URL", api.internal_url.clone()),
            (
                "TELEPATH_PRESENCE_URL",
                presence[i % replicas].internal_url.clone(),
            ),
            ("TELEPATH_NODE_ID", format!("gw{i}")),
            ("TELEPATH_HEARTBEAT_MS", HEARTBEAT_MS.to_string()),
            // Tests send fast as one user; the budget's own tests set it.
            ("TELEPATH_USER_RATE_PER_S", "0".into()),
        ];
        gws.push(Service::start("telepath-gateway", &[&env[..], extra].concat()).await);
    }
    Cluster {
        gateways: gws,
        proxies,
        presence,
        api,
        redis,
        _dir: dir,
    }
}

/// Ada on gateway 0 and bob on gateway 1, both in one room.
pub(crate) struct Pair {
    pub(crate) ada: TestUser,
    pub(crate) bob: TestUser,
    pub(crate) room: String,
    pub(crate) a: WsClient,
    pub(crate) b: WsClient,
}

pub(crate) async fn ada_and_bob(cluster: &Cluster) -> Pair {
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let bob = login(&http, &cluster.api.url, "bob").await;
    let room = create_room(&http, &cluster.api.url, &ada, "seance").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    a.join(&room).await;
    b.join(&room).await;
    Pair {
        ada,
        bob,
        room,
        a,
        b,
    }
}
