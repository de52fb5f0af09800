//! Token revocations, so `GET /presence/online` refuses a revoked token as
//! the api and the gateways do. In a split deployment presence reads the
//! api's list (`GET /internal/revocations` at `TELEPATH_API_URL`) until it
//! answers, follows the `nodes` bus channel for new ones, and reads the list
//! again every minute in case the bus lost one. The all-in-one hands it the
//! api's own list instead. Without either (presence's own tests), tokens
//! are checked for signature and expiry only.

use std::sync::Arc;
use std::time::Duration;

use telepath_shared::auth::RevocationList;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::http::client::InternalClient;
use telepath_shared::protocol::{NODES_CHANNEL, NodeControl, Revocations};

/// How often the whole list is read again.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Keeps `list` current from the api (`api`) and the bus (`bus`, whose
/// messages arrive on `inbound`), until the bus closes.
pub async fn follow(
    list: Arc<RevocationList>,
    api: InternalClient,
    bus: Arc<dyn Bus>,
    mut inbound: Inbound,
) {
    while let Err(e) = bus.subscribe(NODES_CHANNEL).await {
        tracing::warn!(error = %e, "subscribing to revocations failed; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut reload = tokio::time::interval(RELOAD_EVERY);
    let mut loaded = false;
    loop {
        tokio::select! {
            msg = inbound.recv() => {
                let Some(msg) = msg else { return };
                if msg.channel != NODES_CHANNEL {
                    continue;
                }
                if let Ok(NodeControl::Revoke { user_id, valid_after }) =
                    serde_json::from_slice::<NodeControl>(&msg.payload)
                {
                    list.record(&user_id, valid_after);
                }
            }
            _ = reload.tick() => {
                match api.get::<_, Revocations>("/internal/revocations", &()).await {
                    Ok(got) => {
                        list.load(&got.revocations);
                        loaded = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the revocations from the api");
                        if !loaded {
                            // Until the first answer, retry soon.
                            reload.reset_after(Duration::from_millis(500));
                        }
                    }
                }
            }
        }
    }
}
