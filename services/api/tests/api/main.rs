//! Integration tests of the api service, in process, on a temp SQLite file.

mod helpers;
mod messages;
mod rooms;
