//! Integration tests of the gateway in process: gateway nodes, the api and
//! presence on their own ports, joined by one in-memory bus.

mod delivery;
mod fanout;
mod helpers;
mod presence;
mod rooms;
mod session;
