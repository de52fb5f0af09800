//! Integration tests of telepath-presence: the service runs in-process on a
//! free port, with the memory store or a real `redis-server`.

mod access;
mod events;
mod expiry;
mod helpers;
mod online;
mod outage;
mod query;
mod repair;
mod typing;
