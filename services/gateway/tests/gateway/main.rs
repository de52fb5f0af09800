//! Integration tests of the gateway in process: two gateway nodes, the api
//! and presence on their own ports, joined by one in-memory bus.

mod fanout;
mod helpers;
