//! Real Python clients: pinned PyPI packages that `scripts/test-deps.sh` installs into
//! `target/python/<package>` (one directory each, since some import under the same name),
//! and a runner for the scripts that drive them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/test-deps.sh` installed `package` (for `PYTHONPATH`).
pub fn package_dir(package: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("target/python").join(package)
}

/// Runs `python3 script args…` with `package`'s directory on `PYTHONPATH` (an empty
/// `package`: the system's packages, where the OpenTelemetry SDK is installed), waiting at
/// most `timeout` without blocking the runtime; returns stdout. Panics with stderr if the
/// package is missing or the script fails.
pub async fn run(package: &str, script: &str, args: &[&str], timeout: Duration) -> String {
    let mut cmd = Command::new("python3");
    if !package.is_empty() {
        let dir = package_dir(package);
        assert!(dir.is_dir(), "{} is missing: run scripts/test-deps.sh", dir.display());
        cmd.env("PYTHONPATH", &dir);
    }
    let mut child = cmd
        .arg(script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait for python3").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("python3 output");
            panic!("{script} with {package} did not finish in {timeout:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("python3 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} with {package} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
