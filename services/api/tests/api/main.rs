//! Integration tests of the api service, in process, on a temp SQLite file.

mod access;
mod batches;
mod catchup;
mod connections;
mod helpers;
mod manage;
mod messages;
mod outage;
mod retention;
mod rooms;
mod semantics;
