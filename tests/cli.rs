//! `graphfront check`: a good configuration passes; a bad one fails naming the key and line.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{binary, eventually, SiteCerts};

fn check(config: &str, dir: &std::path::Path) -> (i32, String, String) {
    let path = dir.join("graphfront.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(upstream: &str) -> String {
    format!(
        "[listeners]\nhttps = [\"127.0.0.1:8443\"]\n\n[[site]]\nname = \"a\"\ndomains = [\"a.test\"]\nupstream = \"{upstream}\"\ntls = {{ cert = \"a.pem\", key = \"a.key\" }}\n"
    )
}

#[test]
fn check_accepts_a_good_config() {
    let certs = SiteCerts::new();
    certs.write("a", &["a.test"]);
    let (code, stdout, stderr) = check(&config("https://up.test/graphql"), certs.dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 sites)"), "{stdout}");
}

#[test]
fn check_names_key_and_line_of_each_problem() {
    let certs = SiteCerts::new();
    certs.write("a", &["a.test"]);
    let (code, _, stderr) = check(&config("gopher://up.test/graphql"), certs.dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("site[0].upstream (line 7)"), "{stderr}");

    let (code, _, stderr) = check(
        &config("https://up.test/graphql").replace("a.pem", "missing.pem"),
        certs.dir.path(),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("site[0].tls.cert (line 8)"), "{stderr}");
}

#[test]
fn check_refuses_a_key_that_does_not_match_its_certificate() {
    let certs = SiteCerts::new();
    certs.write("a", &["a.test"]);
    let other = SiteCerts::new();
    let (_, k) = other.write("b", &["a.test"]);
    std::fs::copy(k, certs.dir.path().join("a.key")).unwrap();
    let (code, _, stderr) = check(&config("https://up.test/graphql"), certs.dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("site a: certificate"), "{stderr}");
    assert!(stderr.contains("does not belong"), "{stderr}");
}

#[test]
fn version_names_the_build() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    // "graphfront 0.1.0 (<commit> <target> <profile>)"
    let expected = format!("graphfront {} (", env!("CARGO_PKG_VERSION"));
    assert!(v.starts_with(&expected), "{v}");
    let build: Vec<&str> = v
        .trim()
        .trim_end_matches(')')
        .split(" (")
        .nth(1)
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(build.len(), 3, "{v}");
    assert!(build[1].contains("linux"), "target in {v}");
}

/// The build script watches only files that exist: cargo reruns a script (and re-links the
/// binary) on every build while a path it watches is missing. Read from what the script printed
/// when this test's binary was built.
#[test]
fn the_build_script_watches_only_existing_files() {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/cli-<hash> → target/<profile>/build/graphfront-*/output
    let build = exe.parent().unwrap().parent().unwrap().join("build");
    let newest = std::fs::read_dir(&build)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("output"))
        .filter(|p| {
            p.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("graphfront-")
                && p.is_file()
        })
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .expect("the build script's output");
    let output = std::fs::read_to_string(&newest).unwrap();
    let watched: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .collect();
    assert!(watched.contains(&"src/build.rs"), "{output}");
    for path in watched {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        assert!(
            full.exists(),
            "the build script watches {path}, which does not exist"
        );
    }
}

/// A child process, killed when the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_taken_port_stops_the_start_with_one_line_and_check_warns() {
    let certs = SiteCerts::new();
    let (c, k) = certs.write("a", &["a.test"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let (_r1, http) = common::reserve_addr();
    let (_r2, admin) = common::reserve_addr();
    let sites = common::site("a", &["a.test"], "https://up.test/graphql", &c, &k, "");
    let config = common::edge_config(certs.dir.path(), [busy, http, admin], "0s", "", &sites);
    let path = certs.dir.path().join("graphfront.toml");
    std::fs::write(&path, config).unwrap();

    let mut child = KillOnDrop(
        Command::new(binary())
            .args(["run", "-c"])
            .arg(&path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let what = "graphfront kept running with its https port taken";
    let status = eventually(Duration::from_secs(20), what, async || {
        if let Some(status) = child.0.try_wait().unwrap() {
            return Ok(status);
        }
        // It must never have answered on its admin port meanwhile.
        assert!(
            std::net::TcpStream::connect(admin).is_err(),
            "the admin listener answered"
        );
        Err("still running")
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, format!("cannot listen on {busy}: address in use\n"));

    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: cannot listen on {busy}: address in use")),
        "{stderr}"
    );
    drop(taken);
}
