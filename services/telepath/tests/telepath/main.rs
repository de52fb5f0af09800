//! Integration tests of the all-in-one node (in process) and of the split
//! deployment (real processes over a real redis-server).

mod admin;
mod asyncapi;
mod backup;
mod cluster;
mod delivery;
mod deploy;
mod deploy_config;
mod dms;
mod drain;
mod edge;
mod faults;
mod helpers;
mod idp;
mod limits;
mod live;
mod local;
mod logs;
mod manage;
mod marks;
mod multinode;
mod notify;
mod openapi;
mod presence;
mod rates;
mod rest_send;
mod retention;
mod revoke;
mod roundtrip;
mod server_api;
mod surface;
mod tickets;
mod tls;
mod traces;
mod webhooks;
