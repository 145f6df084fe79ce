//! graphfront: an edge proxy for GraphQL APIs (AppSync above all): custom-domain TLS,
//! GraphQL-aware forwarding, metrics. Modules in request order.

pub mod acme;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod config;
pub mod daemon;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod graphql;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod realtime;
pub mod rejection;
pub mod routing;
pub mod server;
pub mod site;
pub mod tls;
pub mod upstream;
