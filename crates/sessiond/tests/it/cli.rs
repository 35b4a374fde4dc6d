//! The command line as a user meets it: errors are one or two plain
//! sentences naming what to fix, and the debug form only with `-v`.

use std::process::{Command, Output};

fn sessiond(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(args)
        .envs(envs.iter().copied())
        // Even when a user has backtraces on for other programs.
        .env("RUST_BACKTRACE", "1")
        .current_dir(dir.path())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unreachable_redis_is_named_without_a_backtrace_or_its_password() {
    let out = sessiond(
        &["--store", "redis://app:hunter2@127.0.0.1:1", "user", "list"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.starts_with("error: cannot use the Redis store at redis://***@127.0.0.1:1\n"),
        "{text}"
    );
    assert!(text.contains("because: Connection refused"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("data directory"), "{text}");
    assert!(
        !text.contains("backtrace") && !text.contains("Caused by"),
        "{text}"
    );
    assert!(text.lines().count() <= 4, "{text}");
}

#[test]
fn verbose_adds_the_debug_form_of_the_error() {
    let out = sessiond(
        &["-v", "--store", "redis://127.0.0.1:1", "user", "list"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Caused by"), "{}", stderr(&out));
}

#[test]
fn a_mistyped_setting_stops_the_server_naming_the_key_and_what_is_accepted() {
    let out = sessiond(&["serve"], &[("SESSIOND_TOKENS__ALGORITHM", "RS512")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.starts_with("error: invalid configuration\n"), "{text}");
    assert!(text.contains("TOKENS.ALGORITHM"), "{text}");
    assert!(text.contains("EdDSA, ES256, RS256 or HS256"), "{text}");
    let old = sessiond(&["serve"], &[("SESSIOND_IDLE_TIMEOUT_SECS", "900")]);
    assert!(
        stderr(&old).contains("SESSIOND_SESSION__IDLE_TIMEOUT"),
        "{}",
        stderr(&old)
    );
}
