//! OpenStack Swift from Debian's packages as a one-node cluster: one ring device per ring
//! (account, container, object) under the temp folder, the three storage servers, a proxy with
//! tempauth (the v1 auth protocol), and the memcached tempauth keeps its tokens in.

use std::path::Path;
use std::process::Command;

use super::{free_ports, http_answers, Error, Result, ServerProcess};

const NAME: &str = "swift";
const PYTHON: &str = "/usr/bin/python3";
const MEMCACHED: &str = "/usr/bin/memcached";
const STORAGE: [&str; 3] = ["account", "container", "object"];

/// A running one-node Swift cluster with one empty container and a token for it.
#[derive(Debug)]
pub struct SwiftServer {
    /// The storage URL, `http://127.0.0.1:PORT/v1/AUTH_test`.
    pub endpoint: String,
    /// tempauth's v1 endpoint, `http://127.0.0.1:PORT/auth/v1.0`.
    pub auth_url: String,
    /// `account:user` as v1 auth takes it.
    pub user: String,
    pub key: String,
    /// A token the auth endpoint gave for `user`.
    pub token: String,
    pub container: String,
    pub process: ServerProcess,
}

pub fn start_swift() -> Result<SwiftServer> {
    let programs = [
        "/usr/bin/swift-proxy-server",
        "/usr/bin/swift-account-server",
        "/usr/bin/swift-container-server",
        "/usr/bin/swift-object-server",
        MEMCACHED,
        PYTHON,
    ];
    if let Some(missing) = programs.iter().find(|p| !Path::new(p).is_file()) {
        return Err(Error::Missing {
            server: NAME,
            program: missing.to_string(),
        });
    }
    let [memcache, account, container, object, proxy] = free_ports::<5>(NAME)?;
    let dir = tempfile::tempdir().map_err(|e| io(e, "creating its temp folder"))?;
    let d = dir.path().to_path_buf();
    std::fs::create_dir_all(d.join("devices/d1")).map_err(|e| io(e, "creating its device"))?;
    write(&d.join("swift.conf"), SWIFT_CONF)?;
    for (kind, port) in STORAGE.iter().zip([account, container, object]) {
        write(
            &d.join(format!("{kind}-server.conf")),
            &storage_conf(&d, kind, port),
        )?;
    }
    write(
        &d.join("proxy-server.conf"),
        &proxy_conf(&d, proxy, memcache),
    )?;
    build_rings(&d, [account, container, object])?;

    let mut cmd = Command::new("/usr/bin/swift-proxy-server");
    cmd.arg(d.join("proxy-server.conf"));
    let mut process = ServerProcess::spawn(NAME, dir, &mut cmd)?;
    let user = super::sftp::current_user()?;
    process.spawn_companion(Command::new(MEMCACHED).args([
        "-l",
        "127.0.0.1",
        "-p",
        &memcache.to_string(),
        "-U",
        "0",
        "-u",
        &user,
    ]))?;
    for kind in STORAGE {
        process.spawn_companion(
            Command::new(format!("/usr/bin/swift-{kind}-server"))
                .arg(d.join(format!("{kind}-server.conf"))),
        )?;
    }
    let origin = format!("http://127.0.0.1:{proxy}");
    let info = format!("{origin}/info");
    process.wait_ready(|| {
        // memcached answers no greeting: a connection is enough.
        std::net::TcpStream::connect(("127.0.0.1", memcache)).is_ok()
            && [account, container, object]
                .iter()
                .all(|p| http_answers(&format!("http://127.0.0.1:{p}/")))
            && http_answers(&info)
    })?;
    let (endpoint, token) = authenticate(&process, &origin)?;
    let swift = SwiftServer {
        endpoint,
        auth_url: format!("{origin}/auth/v1.0"),
        user: "test:tester".into(),
        key: "testing".into(),
        token,
        container: "cairn-test".into(),
        process,
    };
    let answer = swift
        .request(reqwest::Method::PUT, "")
        .send()
        .map_err(|e| {
            swift
                .process
                .setup_error(format!("creating container: {e}"))
        })?;
    if !answer.status().is_success() {
        let status = answer.status();
        return Err(swift
            .process
            .setup_error(format!("creating container: {status}")));
    }
    Ok(swift)
}

impl SwiftServer {
    /// A request on `object` in the container (the container itself when empty), with the token.
    pub fn request(
        &self,
        method: reqwest::Method,
        object: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let mut url = format!("{}/{}", self.endpoint, self.container);
        if !object.is_empty() {
            url = format!("{url}/{}", super::sign::uri_encode_path(object));
        }
        crate::http()
            .request(method, url)
            .header("x-auth-token", &self.token)
    }
}

/// v1 auth: the storage URL and a token for tempauth's test user.
fn authenticate(process: &ServerProcess, origin: &str) -> Result<(String, String)> {
    let answer = crate::http()
        .get(format!("{origin}/auth/v1.0"))
        .header("x-auth-user", "test:tester")
        .header("x-auth-key", "testing")
        .send()
        .map_err(|e| process.setup_error(format!("v1 auth: {e}")))?;
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match (header("x-storage-url"), header("x-auth-token")) {
        (Some(url), Some(token)) if answer.status().is_success() => Ok((url, token)),
        _ => Err(process.setup_error(format!("v1 auth answered {}", answer.status()))),
    }
}

const SWIFT_CONF: &str = "[swift-hash]\n\
    swift_hash_path_suffix = cairn-test\n\
    swift_hash_path_prefix = cairn-test\n\
    [storage-policy:0]\n\
    name = gold\n\
    default = yes\n";

/// One storage server; `mount_check` off because the device is a plain folder.
fn storage_conf(d: &Path, kind: &str, port: u16) -> String {
    let d = d.display();
    format!(
        "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\n\
         devices = {d}/devices\nmount_check = false\nswift_dir = {d}\n\
         [pipeline:main]\npipeline = {kind}-server\n\
         [app:{kind}-server]\nuse = egg:swift#{kind}\n"
    )
}

/// The proxy with tempauth: user `test:tester`, key `testing`, an admin of account `AUTH_test`;
/// static and dynamic large objects on, as in Swift's sample proxy configuration (OpenDAL sends
/// a file of several parts as segments and an SLO manifest).
fn proxy_conf(d: &Path, port: u16, memcache: u16) -> String {
    let d = d.display();
    format!(
        "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nswift_dir = {d}\n\
         [pipeline:main]\n\
         pipeline = catch_errors proxy-logging cache tempauth slo dlo proxy-logging proxy-server\n\
         [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\
         [filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n\
         [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{memcache}\n\
         [filter:catch_errors]\nuse = egg:swift#catch_errors\n\
         [filter:slo]\nuse = egg:swift#slo\n[filter:dlo]\nuse = egg:swift#dlo\n\
         [filter:proxy-logging]\nuse = egg:swift#proxy_logging\n"
    )
}

/// The three rings, one device each, in one Python run (swift-ring-builder would take nine).
fn build_rings(d: &Path, ports: [u16; 3]) -> Result<()> {
    const SCRIPT: &str = "import sys\n\
        from swift.common.ring import RingBuilder\n\
        d = sys.argv[1]\n\
        for kind, port in zip(('account', 'container', 'object'), sys.argv[2:5]):\n\
        \x20   b = RingBuilder(0, 1, 1)\n\
        \x20   b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1',\n\
        \x20              'port': int(port), 'device': 'd1', 'weight': 1})\n\
        \x20   b.rebalance()\n\
        \x20   b.get_ring().save(d + '/' + kind + '.ring.gz')\n";
    let out = Command::new(PYTHON)
        .args(["-c", SCRIPT])
        .arg(d)
        .args(ports.map(|p| p.to_string()))
        .output()
        .map_err(|e| io(e, "building its rings"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Setup {
            server: NAME,
            what: format!(
                "building its rings: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| io(e, &format!("writing {}", path.display())))
}

fn io(source: std::io::Error, what: &str) -> Error {
    Error::Io {
        server: NAME,
        what: what.into(),
        source,
    }
}
