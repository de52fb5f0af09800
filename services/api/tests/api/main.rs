//! Integration tests of the api service, in process, on a temp SQLite file.

mod access;
mod connections;
mod helpers;
mod messages;
mod rooms;
