//! End-to-end tests: the real `cairn` binary as server and client on 127.0.0.1.

mod agent;
mod api;
mod backup;
mod bad_input;
mod cloud;
mod cloud_faults;
mod cloud_options;
mod cloud_rules;
mod cloud_servers;
mod commit_stream;
mod connection;
mod drive;
mod explorer;
mod harness;
mod hostile;
mod hostile_server;
mod journal_stream;
mod readme;
mod replica;
mod replica_edges;
mod security;
mod server_admin;
mod server_cloud;
mod shares;
mod traffic;
mod web;
