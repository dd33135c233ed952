//! A real OCI registry for the push/pull tests: Debian's `docker-registry`
//! (distribution v2) on a free 127.0.0.1 port with a temporary config and
//! storage, optionally behind htpasswd; killed on drop.

use crate::prereq;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

pub fn have_registry() -> bool {
    prereq::require(Path::new(REGISTRY).is_file(), "docker-registry (apt-get install docker-registry)")
}

/// A registry process on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
}

impl Registry {
    /// `auth`: the htpasswd file to require, if any.
    pub fn start(dir: &Path, auth: Option<&Path>) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("storage").display()
        );
        if let Some(h) = auth {
            config += &format!("auth:\n  htpasswd:\n    realm: smolvm-test\n    path: {}\n", h.display());
        }
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).expect("config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

