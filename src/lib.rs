//! leadgate: a self-hosted IMAP/SMTP gateway in front of a shared sales
//! mailbox. See DESIGN in the README for the shape of the system.

pub mod admin;
pub mod auth;
pub mod compose;
pub mod config;
pub mod imap;
pub mod imap_wire;
pub mod index;
pub mod leads;
pub mod metrics;
pub mod model;
pub mod net;
pub mod policy;
pub mod rfc5322;
pub mod secret;
pub mod section;
pub mod serve;
pub mod smtp;
pub mod store;
pub mod upstream;
