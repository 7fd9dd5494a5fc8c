//! Smoke tests of the local cloud servers the cloud conformance suite runs against
//! (`cairn_testkit::cloud`): each starts, has its bucket or folder ready, and stores and returns
//! one object through its own protocol with the credentials its handle gives, then once more
//! through the product's own OpenDAL operator (`cairn_cloud::connection::operator`, our HTTP
//! transport) built from the handle. A server that is not installed fails its test with the
//! script to run (`scripts/test-servers`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use reqwest::Method;

use crate::harness::cloud::{self, AzblobServer, S3Server};
use crate::harness::noise;

/// The value of a start function, or a panic with its error (which names the install script).
fn started<T>(server: cloud::Result<T>) -> T {
    match server {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// Reports how long the server took to answer (figures for docs/cloud-testing.md; no bound).
fn report(name: &str, process: &cloud::ServerProcess) {
    eprintln!("{name} ready after {:?}", process.ready_after());
}

fn body_of(response: reqwest::blocking::Response, what: &str) -> Vec<u8> {
    let status = response.status();
    let bytes = response.bytes().expect("a response body").to_vec();
    assert!(
        status.is_success(),
        "{what}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// A connection of `provider` with `options` and `secrets`, as `cairn cloud connect` saves one.
pub fn connection(
    provider: &str,
    options: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> (cairn_cloud::CloudConnection, cairn_cloud::Secrets) {
    let owned = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let conn = cairn_cloud::CloudConnection {
        provider: provider.into(),
        options: owned(options),
        secrets: secrets.iter().map(|(k, _)| k.to_string()).collect(),
        prompt: Vec::new(),
        ca_file: None,
        limit_upload: None,
        limit_download: None,
        public_only: false,
    };
    (conn, cairn_cloud::Secrets(owned(secrets)))
}

/// Writes a file into a new folder through the product's operator for this connection (root
/// `opendal`), reads it back and stats it; returns what was written.
fn operator_round_trip(
    provider: &str,
    options: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> Vec<u8> {
    let (conn, secrets) = connection(provider, options, secrets);
    let counters = Arc::new(cairn_cloud::transport::Counters::default());
    let op = cairn_cloud::connection::operator(&conn, &secrets, "opendal", counters)
        .unwrap_or_else(|e| panic!("{provider} operator from the handle: {e}"));
    let data = noise(16, 300_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let path = "nested/through opendal é.bin";
    let (got, size) = runtime.block_on(async {
        // WebDAV writes make no folders (connection::service_defaults: the replica makes them).
        if provider == "webdav" {
            op.create_dir("nested/")
                .await
                .unwrap_or_else(|e| panic!("{provider}: making the folder through OpenDAL: {e}"));
        }
        // The GCS emulator answers a write without a content type with a null field OpenDAL
        // cannot parse (docs/cloud-testing.md); real services default it.
        op.write_with(path, data.clone())
            .content_type("application/octet-stream")
            .await
            .unwrap_or_else(|e| panic!("{provider}: write through OpenDAL: {e}"));
        let got = op
            .read(path)
            .await
            .unwrap_or_else(|e| panic!("{provider}: read through OpenDAL: {e}"));
        let meta = op
            .stat(path)
            .await
            .unwrap_or_else(|e| panic!("{provider}: stat through OpenDAL: {e}"));
        (got.to_vec(), meta.content_length())
    });
    assert_eq!(got, data, "{provider}: content read back");
    assert_eq!(size, data.len() as u64, "{provider}: size in stat");
    data
}

fn s3_through_operator(s3: &S3Server) {
    operator_round_trip(
        "s3",
        &[
            ("endpoint", &s3.endpoint),
            ("bucket", &s3.bucket),
            ("region", &s3.region),
            ("access_key_id", &s3.access_key_id),
        ],
        &[("secret_access_key", &s3.secret_access_key)],
    );
}

/// A signed PUT then GET of an object with a space and a non-ASCII letter in its key.
fn s3_round_trip(s3: &S3Server) {
    let data = noise(8, 100_000);
    let key = "smoke/a file é.bin";
    let put = s3.request(Method::PUT, key, data.clone()).send();
    body_of(put.expect("PUT reaches the server"), "PUT");
    let get = s3.request(Method::GET, key, Vec::new()).send();
    assert_eq!(body_of(get.expect("GET reaches the server"), "GET"), data);
}

/// Three objects listed one per page through V2 continuation tokens: every key once, in order.
fn s3_paged_listing(s3: &S3Server) {
    for key in ["page/1", "page/2", "page/3"] {
        let put = s3.request(Method::PUT, key, key.as_bytes().to_vec()).send();
        body_of(put.expect("PUT reaches the server"), "PUT");
    }
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    for _page in 0..10 {
        let mut query = vec![("max-keys", "1"), ("prefix", "page/")];
        if let Some(t) = &token {
            query.push(("continuation-token", t));
        }
        let page = body_of(
            s3.list_v2(&query).send().expect("list reaches the server"),
            "list",
        );
        let page = String::from_utf8(page).expect("XML listing");
        keys.extend(xml_values(&page, "Key"));
        token = xml_values(&page, "NextContinuationToken").pop();
        if token.is_none() {
            break;
        }
    }
    assert_eq!(keys, ["page/1", "page/2", "page/3"]);
}

/// The texts of every `<tag>` element (enough for S3's flat listing answers).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next().map(str::to_string))
        .collect()
}

/// The status of a GET of the round trip's object signed with `creds`.
fn s3_get_as(s3: &S3Server, creds: &cloud::sign::SigV4) -> reqwest::StatusCode {
    let get = s3.request_as(creds, Method::GET, "smoke/a file é.bin", Vec::new());
    get.send().expect("GET reaches the server").status()
}

#[test]
fn moto_stores_lists_and_returns_objects_and_refuses_a_wrong_secret() {
    let s3 = started(cloud::start_moto());
    report("moto", &s3.process);
    s3_round_trip(&s3);
    s3_paged_listing(&s3);
    s3_through_operator(&s3);
    let mut wrong = s3.sigv4();
    wrong.secret_access_key.push('x');
    assert_eq!(s3_get_as(&s3, &wrong), reqwest::StatusCode::FORBIDDEN);
}

/// s3rver does not verify V4 signatures, only that the access key id is its own.
#[test]
fn s3rver_stores_lists_and_returns_objects_and_refuses_an_unknown_key() {
    let s3 = started(cloud::start_s3rver());
    report("s3rver", &s3.process);
    s3_round_trip(&s3);
    s3_paged_listing(&s3);
    s3_through_operator(&s3);
    let mut wrong = s3.sigv4();
    wrong.access_key_id = "SOMEONE-ELSE".into();
    assert_eq!(s3_get_as(&s3, &wrong), reqwest::StatusCode::FORBIDDEN);
}

fn azure(
    az: &AzblobServer,
    method: Method,
    name: &str,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    let blob_type: &[(&str, &str)] = if method == Method::PUT {
        &[("x-ms-blob-type", "BlockBlob")]
    } else {
        &[]
    };
    az.request(method, name, &[], blob_type, body)
        .expect("the development key is base64")
        .send()
        .expect("the request reaches azurite")
}

#[test]
fn azurite_stores_and_returns_a_blob_and_refuses_a_wrong_key() {
    let az = started(cloud::start_azurite());
    report("azurite", &az.process);
    let data = noise(9, 100_000);
    body_of(
        azure(&az, Method::PUT, "smoke/blob é.bin", data.clone()),
        "PUT",
    );
    let got = body_of(
        azure(&az, Method::GET, "smoke/blob é.bin", Vec::new()),
        "GET",
    );
    assert_eq!(got, data);
    operator_round_trip(
        "azblob",
        &[
            ("endpoint", &az.endpoint),
            ("container", &az.container),
            ("account_name", &az.account_name),
        ],
        &[("account_key", &az.account_key)],
    );
    let wrong = cloud::sign::SharedKey {
        account: az.account_name.clone(),
        key: "AAAA".repeat(22),
    };
    let status = az
        .request_as(
            &wrong,
            Method::GET,
            "smoke/blob é.bin",
            &[],
            &[],
            Vec::new(),
        )
        .expect("the key is base64")
        .send()
        .expect("the request reaches azurite")
        .status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
}

#[test]
fn gcs_emulator_stores_and_returns_an_object() {
    let gcs = started(cloud::start_gcs_emulator());
    report("gcp-storage-emulator", &gcs.process);
    let data = noise(10, 100_000);
    let name = "smoke/object é.bin";
    body_of(
        gcs.upload(name, data.clone()).send().expect("upload"),
        "upload",
    );
    let got = body_of(gcs.download(name).send().expect("download"), "download");
    assert_eq!(got, data);
    let missing = gcs.download("smoke/missing").send().expect("download");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    operator_round_trip(
        "gcs",
        &[
            ("endpoint", &gcs.endpoint),
            ("bucket", &gcs.bucket),
            ("skip_signature", "true"),
        ],
        &[],
    );
}

#[test]
fn wsgidav_stores_a_file_for_its_user_only() {
    let dav = started(cloud::start_wsgidav());
    report("wsgidav", &dav.process);
    let data = noise(11, 100_000);
    let put = dav
        .request(Method::PUT, "smoke.bin")
        .body(data.clone())
        .send();
    body_of(put.expect("PUT reaches wsgidav"), "PUT");
    assert_eq!(
        std::fs::read(dav.root.join("smoke.bin")).expect("stored file"),
        data
    );
    let get = dav.request(Method::GET, "smoke.bin").send();
    assert_eq!(body_of(get.expect("GET reaches wsgidav"), "GET"), data);
    let anonymous = crate::harness::http()
        .get(format!("{}/smoke.bin", dav.endpoint))
        .send()
        .expect("GET reaches wsgidav");
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    let data = operator_round_trip(
        "webdav",
        &[("endpoint", &dav.endpoint), ("username", &dav.user)],
        &[("password", &dav.password)],
    );
    let stored = dav.root.join("opendal/nested/through opendal é.bin");
    assert_eq!(std::fs::read(stored).expect("stored file"), data);
}

/// Python's ftplib (from the servers' own venv) stores `local` as `name` and reads it back into
/// `back`; exits non-zero on any FTP error, a wrong password included.
fn ftp_put_get(
    ftp: &cloud::FtpServer,
    password: &str,
    local: &Path,
    name: &str,
    back: &Path,
) -> bool {
    let script = "import ftplib, sys\n\
        port, user, pw, local, name, back = sys.argv[1:]\n\
        f = ftplib.FTP()\n\
        f.connect('127.0.0.1', int(port), timeout=60)\n\
        f.login(user, pw)\n\
        f.storbinary('STOR ' + name, open(local, 'rb'))\n\
        f.retrbinary('RETR ' + name, open(back, 'wb').write)\n\
        f.quit()\n";
    let out = Command::new(cloud::tools_dir().join("venv/bin/python"))
        .args(["-c", script, &ftp.port.to_string(), &ftp.user, password])
        .args([local.as_os_str(), name.as_ref(), back.as_os_str()])
        .output()
        .expect("python runs");
    if !out.status.success() {
        eprintln!("ftplib: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
fn pyftpdlib_stores_and_returns_a_file_for_its_user_only() {
    let ftp = started(cloud::start_pyftpdlib());
    report("pyftpdlib", &ftp.process);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (local, back) = (tmp.path().join("up.bin"), tmp.path().join("down.bin"));
    let data = noise(12, 100_000);
    std::fs::write(&local, &data).expect("local file");
    assert!(ftp_put_get(&ftp, &ftp.password, &local, "smoke.bin", &back));
    assert_eq!(
        std::fs::read(ftp.root.join("smoke.bin")).expect("stored file"),
        data
    );
    assert_eq!(std::fs::read(&back).expect("read back"), data);
    assert!(!ftp_put_get(&ftp, "wrong", &local, "other.bin", &back));
    assert!(!ftp.root.join("other.bin").exists());
}

/// The FTP handle's fields are what the product's ftp operator needs: a file written into a
/// new folder lands in the server's folder.
#[test]
fn pyftpdlib_serves_the_products_operator_from_its_handle() {
    let ftp = started(cloud::start_pyftpdlib());
    let data = operator_round_trip(
        "ftp",
        &[("endpoint", &ftp.endpoint), ("user", &ftp.user)],
        &[("password", &ftp.password)],
    );
    let stored = ftp.root.join("opendal/nested/through opendal é.bin");
    assert_eq!(std::fs::read(stored).expect("stored file"), data);
}

/// OpenSSH's sftp client in batch mode with the handle's key and known_hosts (strict host key
/// checking, so a wrong known_hosts line fails too).
fn sftp_batch(sftp: &cloud::SftpServer, key: &Path, batch: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let batch_file = dir.path().join("batch");
    std::fs::write(&batch_file, batch).expect("batch file");
    Command::new("sftp")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sftp.known_hosts.display()))
        .arg("-i")
        .arg(key)
        .args(["-P", &sftp.port.to_string(), "-b"])
        .arg(&batch_file)
        .arg(format!("{}@127.0.0.1", sftp.user))
        .output()
        .expect("sftp runs")
}

#[test]
fn sshd_stores_and_returns_a_file_over_sftp_for_its_key_only() {
    let sftp = started(cloud::start_sshd());
    report("sshd", &sftp.process);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (local, back) = (tmp.path().join("up.bin"), tmp.path().join("down.bin"));
    let data = noise(13, 100_000);
    std::fs::write(&local, &data).expect("local file");
    let remote = sftp.root.join("smoke.bin");
    let batch = format!(
        "put {} {}\nget {} {}\n",
        local.display(),
        remote.display(),
        remote.display(),
        back.display()
    );
    let out = sftp_batch(&sftp, &sftp.key, &batch);
    assert!(
        out.status.success(),
        "sftp: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sftp.process.log_tail()
    );
    assert_eq!(std::fs::read(&remote).expect("stored file"), data);
    assert_eq!(std::fs::read(&back).expect("read back"), data);

    let stranger = tmp.path().join("stranger");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen runs");
    assert!(keygen.success());
    let out = sftp_batch(&sftp, &stranger, "ls\n");
    assert!(
        !out.status.success(),
        "a key that is not authorized logged in"
    );
}

#[test]
fn swift_stores_and_returns_an_object_for_a_token_only() {
    let swift = started(cloud::start_swift());
    report("swift", &swift.process);
    let data = noise(14, 100_000);
    let name = "smoke/object é.bin";
    let put = swift.request(Method::PUT, name).body(data.clone()).send();
    body_of(put.expect("PUT reaches the proxy"), "PUT");
    let get = swift.request(Method::GET, name).send();
    assert_eq!(body_of(get.expect("GET reaches the proxy"), "GET"), data);
    let anonymous = crate::harness::http()
        .get(format!(
            "{}/{}/smoke/object%20%C3%A9.bin",
            swift.endpoint, swift.container
        ))
        .send()
        .expect("GET reaches the proxy");
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    operator_round_trip(
        "swift",
        &[
            ("endpoint", &swift.endpoint),
            ("container", &swift.container),
        ],
        &[("token", &swift.token)],
    );
}
