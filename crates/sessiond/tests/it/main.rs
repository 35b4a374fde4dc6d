//! The integration tests of sessiond, in one binary (it links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod browser;
mod cli;
mod common;
mod faults;
mod gateway;
mod hostile;
mod logs;
mod malformed;
mod observability;
mod openapi;
mod pages;
mod policies;
mod redis;
mod restart;
mod service;
mod tokens;
