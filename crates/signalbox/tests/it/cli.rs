//! `signalbox check-config` and `hash-key`.

use crate::BIN;
use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("node.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(BIN).arg("check-config").arg(&p).output().unwrap();
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), all.replace(&p.display().to_string(), "node.toml"))
}

#[test]
fn the_example_config_checks_clean() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/signalbox.toml");
    let out = Command::new(BIN).arg("check-config").arg(example).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_problem_is_reported_with_line_and_key() {
    let (ok, out) = check(
        "[gateway]\nlisten = \"nowhere\"\nworkers = \"many\"\n\n[[gateway.services]]\nname = \"a\"\nendpoints = [\"no-port\"]\n\n[[gateway.routes]]\nservice = \"ghost\"\n[gateway.routes.match]\npath_prefix = \"api\"\n",
    );
    assert!(!ok);
    for expected in [
        "node.toml:3: gateway.workers: invalid type: string \"many\", expected usize",
        "node.toml:2: gateway.listen: `nowhere` is not an address like 127.0.0.1:8080",
        "node.toml:7: gateway.services[0].endpoints[0]: `no-port` needs a port",
        "node.toml:10: gateway.routes[0].service: unknown service `ghost`",
        "node.toml:12: gateway.routes[0].match.path_prefix: must start with `/`",
        "5 problems found",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_line() {
    let (ok, out) = check("[gateway\nlisten = 1\n");
    assert!(!ok);
    assert!(out.contains("node.toml:1: : invalid TOML"), "{out}");
    let (ok, out) = check("[gateway.limits]\nmax_headerz = 5\n");
    assert!(!ok);
    assert!(out.contains("node.toml:2: gateway.limits.max_headerz: unknown field `max_headerz`"), "{out}");
}

#[test]
fn control_on_etcd_problems_name_the_key() {
    let (ok, out) = check(
        "[control]\nbackend = \"etcd\"\n[control.etcd]\nendpoints = [\"10.0.0.1:2379\"]\nprefix = \"sb\"\nusername = \"root\"\n",
    );
    assert!(!ok);
    for expected in [
        "node.toml:4: control.etcd.endpoints[0]: `10.0.0.1:2379` is not an http:// or https:// URL",
        "node.toml:5: control.etcd.prefix: must be non-empty and end with `/`",
        "node.toml:6: control.etcd.username: `username` and `password` go together",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let (ok, out) = check("[control]\nbackend = \"zookeeper\"\n");
    assert!(!ok);
    assert!(out.contains("node.toml:2: control.backend: unknown variant `zookeeper`"), "{out}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(BIN).args(["check-config", "/nonexistent/signalbox.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
}

#[test]
fn hash_key_prints_the_sha256() {
    let out = Command::new(BIN).args(["hash-key", "abc"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
