//! Integration tests of the all-in-one node (in process) and of the split
//! deployment (real processes over a real redis-server).

mod admin;
mod cluster;
mod delivery;
mod dms;
mod helpers;
mod multinode;
mod openapi;
mod presence;
mod roundtrip;
mod session;
