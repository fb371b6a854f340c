//! The canary binary's command line: `--help` prints the usage and exits, an unknown argument is
//! refused; neither starts the Lambda runtime (which would wait for a runtime API that is not
//! there).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the canary binary with these arguments and no Lambda runtime API, and returns its
/// exit code and output; fails when it does not exit within a few seconds.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the canary binary runs");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            child.kill().ok();
            panic!("canary {args:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_prints_the_usage_and_exits() {
    for flag in ["--help", "-h"] {
        let (code, stdout, _) = run(&[flag]);
        assert_eq!(code, Some(0), "canary {flag}");
        assert!(stdout.starts_with("usage: canary"), "{stdout}");
        assert!(
            stdout.contains("canary --local [--rounds N] [--interval-ms MS]"),
            "{stdout}"
        );
        assert!(stdout.contains("CANARY_WAIT_MS"), "{stdout}");
    }
}

#[test]
fn an_unknown_argument_is_refused() {
    let (code, _, stderr) = run(&["--rounds"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown argument \"--rounds\""), "{stderr}");
    assert!(stderr.contains("usage: canary"), "{stderr}");
}
