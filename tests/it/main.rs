//! Integration tests: a real forebay on port 0 (in-process through `forebay::run`, or the
//! real binary where a process must die), real SQLite files, a real HTTP client.

mod about;
mod admin;
mod archive;
mod brokers;
mod browser;
mod challenges;
mod cli;
mod config;
mod container;
mod crash;
mod dashboard;
mod dedup;
mod deliver;
mod encryption;
mod expr;
mod flow_control;
mod ingest;
mod logs;
mod metrics;
mod openapi;
mod postgres;
mod presets;
mod redaction;
mod reload;
mod retention;
mod retry_clock;
mod routing;
mod sdk;
mod search;
mod send;
mod shutdown;
mod size_cap;
mod support;
mod systemd;
mod verify;
