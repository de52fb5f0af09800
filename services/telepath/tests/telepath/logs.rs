//! What a service writes to its log when the log is not a terminal.

use std::process::Stdio;

use crate::helpers::Service;

#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telepath.log");
    let log = std::fs::File::create(&path).unwrap();
    let db = format!("sqlite://{}", dir.path().join("telepath.db").display());
    let mut node = Service::start_logging_to(
        "telepath",
        &[
            ("DATABASE_URL", db),
            ("TELEPATH_LOG_FORMAT", "text".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            // The all-in-one waits this long for its presence reporter on SIGTERM.
            ("TELEPATH_DRAIN_SECS", "2".to_owned()),
        ],
        Stdio::from(log),
    )
    .await;
    // SIGTERM: the shutdown is logged too.
    node.terminate();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("listening") && text.contains("shutdown signal received"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "colour codes (ESC) in a log file: {text:?}"
    );
}
