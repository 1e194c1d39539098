//! The S3 server the integration tests talk to: `s3s-fs` on 127.0.0.1,
//! installed with `cargo install` when the binary is missing, started on a
//! free port over a fresh directory, stopped when the run ends.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::Tool;

/// The server, installed when missing (about 3 minutes, once).
const S3S_FS: Tool = Tool {
    krate: "s3s-fs",
    version: "0.14.1",
    bin: "s3s-fs",
    features: &["binary"],
};
const ACCESS_KEY: &str = "bae-test-access";
const SECRET_KEY: &str = "bae-test-secret-key";
/// The bucket the tests use; each test works under its own prefix in it.
pub const BUCKET: &str = "bae-test";

/// A running s3s-fs; killed on drop.
pub struct S3Server {
    child: Child,
    port: u16,
    _root: PathBuf,
}

impl S3Server {
    /// Installs (when missing) and starts the server, waiting until it accepts
    /// connections.
    pub fn start(workspace: &Path) -> super::Result<Self> {
        let bin = S3S_FS.ensure_installed()?;
        let root = workspace.join("target").join("s3s-fs-data");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(BUCKET))
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let port = free_port()?;
        let log = std::fs::File::create(workspace.join("target").join("s3s-fs.log"))
            .map_err(|e| format!("cannot create s3s-fs log: {e}"))?;
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let server = S3Server {
            child,
            port,
            _root: root,
        };
        server.wait_ready()?;
        eprintln!("xtask: s3s-fs listening on 127.0.0.1:{port}");
        Ok(server)
    }

    fn wait_ready(&self) -> super::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "s3s-fs did not listen on port {} within 30 s",
            self.port
        ))
    }

    /// Tells a test process where the server is.
    pub fn export_env(&self, cmd: &mut Command) {
        cmd.env(
            "BAE_TEST_S3_ENDPOINT",
            format!("http://127.0.0.1:{}", self.port),
        )
        .env("BAE_TEST_S3_BUCKET", BUCKET)
        .env("BAE_TEST_S3_ACCESS_KEY", ACCESS_KEY)
        .env("BAE_TEST_S3_SECRET_KEY", SECRET_KEY);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> super::Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port on loopback: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port on loopback: {e}"))
}
