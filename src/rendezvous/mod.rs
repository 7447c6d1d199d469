pub mod auth;
pub mod members;
pub mod proto;
pub mod topology;
