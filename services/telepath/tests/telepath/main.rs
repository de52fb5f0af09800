//! Integration tests of the all-in-one node (in process) and of the split
//! deployment (real processes over a real redis-server).

mod admin;
mod cluster;
mod delivery;
mod deploy;
mod dms;
mod drain;
mod edge;
mod faults;
mod helpers;
mod local;
mod multinode;
mod openapi;
mod presence;
mod revoke;
mod roundtrip;
mod surface;
mod traces;
