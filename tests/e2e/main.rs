//! End-to-end tests: the real `rsgi` binary, real Python apps, real sockets (and a real
//! nginx). One test binary with a module per topic; the harness is the `rsgi_e2e` crate
//! (`tests/src/lib.rs`). Run them with `scripts/test.sh`, which installs what they need.
//!
//! The topics sit inside `mod e2e` so that test names read `e2e::<topic>::<test>`, and
//! `scripts/test.sh e2e::flask` runs one topic. (`#[path = "."]` keeps the topic files
//! beside this one.)

#[path = "."]
mod e2e {
    mod artifacts;
    mod attach;
    mod autoreload;
    mod cheaper;
    mod close_on_exec;
    mod close_path;
    mod config;
    mod config_bounds;
    mod cron;
    mod ctl;
    mod dialect;
    mod django;
    mod emperor;
    mod etcd;
    mod etcd_cluster;
    mod examples;
    mod flask;
    mod hardening;
    mod health;
    mod hooks;
    mod http_options;
    mod http_rules;
    mod log_format;
    mod log_options;
    mod master;
    mod master_policy;
    mod metrics;
    mod mount;
    mod on_demand;
    mod pid1;
    mod process;
    mod projected;
    mod protocols;
    mod rel_paths;
    mod req_logging;
    mod slow_clients;
    mod static_map;
    mod static_options;
    mod touch;
    mod tyrant;
    mod unprivileged;
    mod upgrade;
    mod wsgi;
}
