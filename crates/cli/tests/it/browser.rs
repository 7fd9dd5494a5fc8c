//! A small W3C WebDriver client for the browser tests: it starts Debian's `chromedriver` on a
//! free 127.0.0.1 port and drives headless Chromium sessions against a test server.
//!
//! It speaks the protocol directly over HTTP (reqwest and serde_json are already built for the
//! other tests; a WebDriver crate would cost minutes of build on two cores). Failures panic with
//! the command, the page's address and the driver's message, as test helpers do. Sessions end
//! and chromedriver is killed on drop, also when a test panics.
//!
//! Screenshots go to `target/screenshots/NAME.png` (the workspace's target folder, found from
//! the test binary's own path; `CAIRN_SCREENSHOTS` overrides it).
//!
//! When `chromium` or `chromedriver` is missing, [`Chromedriver::start`] says so and returns
//! `None` so the test can skip, unless `CAIRN_REQUIRE_BROWSER` is set (scripts/test sets it
//! after installing both): then it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client as Http;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::wait_until;

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Keys as WebDriver spells them (in the Unicode private use area).
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

/// A running chromedriver; sessions borrow it, so they end before it is killed.
pub struct Chromedriver {
    child: Child,
    url: String,
    http: Http,
    chromium: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver, or returns `None` after saying why when the browser is not
    /// installed and not required.
    pub fn start() -> Option<Chromedriver> {
        let (Some(driver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium")) else {
            let why = "chromium or chromedriver is not installed (scripts/test-servers installs \
                       Debian's chromium and chromium-driver)";
            assert!(
                std::env::var_os("CAIRN_REQUIRE_BROWSER").is_none(),
                "CAIRN_REQUIRE_BROWSER is set but {why}"
            );
            eprintln!("skipping a browser test: {why}");
            return None;
        };
        // reqwest is built with rustls and no default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Http::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client for chromedriver");
        // The port is free when asked for; another process may take it before chromedriver
        // binds it, so a driver that exits at once is started again on another.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let mut d = Chromedriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
                http: http.clone(),
                chromium: chromium.clone(),
            };
            if d.wait_ready() {
                return Some(d);
            }
        }
        panic!("chromedriver did not start (tried three ports)");
    }

    /// Polls `/status` until the driver is ready; false when it exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let ready = self
                .http
                .get(format!("{}/status", self.url))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chromedriver at {} was not ready within 120 s", self.url);
    }

    /// A new headless browser with no cookies, its pages relative to `base` (the server's URL).
    /// It accepts the test server's self-signed certificate and saves downloads in a folder of
    /// its own.
    pub fn session(&self, base: &str) -> Session<'_> {
        let downloads = tempfile::tempdir().expect("a download folder");
        let mut args = vec![
            "--headless=new",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "--lang=en-US",
        ];
        if running_as_root() {
            // Chromium's sandbox refuses to run as root.
            args.push("--no-sandbox");
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let answer = call(
            &self.http,
            Method::POST,
            &format!("{}/session", self.url),
            caps,
        )
        .unwrap_or_else(|e| panic!("new browser session: {e}"));
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session answer without an id: {answer}"))
            .to_string();
        Session {
            driver: self,
            id,
            base: base.trim_end_matches('/').to_string(),
            downloads,
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window with its own cookies.
pub struct Session<'d> {
    driver: &'d Chromedriver,
    id: String,
    base: String,
    downloads: tempfile::TempDir,
}

/// An element of the current page.
pub struct Element<'s, 'd> {
    session: &'s Session<'d>,
    id: String,
}

impl<'d> Session<'d> {
    /// A WebDriver command of this session; panics with the page's address on an error.
    fn cmd(&self, method: Method, path: &str, body: Value) -> Value {
        self.try_cmd(method.clone(), path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.current_url()))
    }

    fn try_cmd(&self, method: Method, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.driver.url, self.id);
        call(&self.driver.http, method, &url, body)
    }

    /// The page's address, or why it is unknown (for error messages).
    fn current_url(&self) -> String {
        self.try_cmd(Method::GET, "/url", Value::Null)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "(unknown page)".into())
    }

    /// Opens `path` on the server (or a whole URL) and waits for the page to load.
    pub fn goto(&self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.cmd(Method::POST, "/url", json!({ "url": url }));
    }

    /// The address of the page, without the server part when it is the server's.
    pub fn path(&self) -> String {
        let url = self.current_url();
        url.strip_prefix(&self.base)
            .map(str::to_string)
            .unwrap_or(url)
    }

    pub fn title(&self) -> String {
        str_of(self.cmd(Method::GET, "/title", Value::Null))
    }

    /// The visible text of the whole page.
    pub fn text(&self) -> String {
        self.find("body").text()
    }

    /// The first element matching the CSS selector; panics when there is none.
    pub fn find(&self, css: &str) -> Element<'_, 'd> {
        self.try_find(css).unwrap_or_else(|| {
            panic!(
                "no element {css:?} on {}: {}",
                self.current_url(),
                self.text()
            )
        })
    }

    /// The page's visible text, or `None` while it is being replaced (a reload the page's
    /// own script started): for polling a page that may reload itself.
    pub fn try_text(&self) -> Option<String> {
        let body = self.try_find("body")?;
        let text = self
            .try_cmd(
                Method::GET,
                &format!("/element/{}/text", body.id),
                Value::Null,
            )
            .ok()?;
        text.as_str().map(str::to_string)
    }

    pub fn try_find(&self, css: &str) -> Option<Element<'_, 'd>> {
        self.try_cmd(
            Method::POST,
            "/element",
            json!({ "using": "css selector", "value": css }),
        )
        .ok()
        .map(|v| self.element(&v))
    }

    pub fn find_all(&self, css: &str) -> Vec<Element<'_, 'd>> {
        let found = self.cmd(
            Method::POST,
            "/elements",
            json!({ "using": "css selector", "value": css }),
        );
        found
            .as_array()
            .map(|a| a.iter().map(|v| self.element(v)).collect())
            .unwrap_or_default()
    }

    /// The link or button whose text is exactly `text` (spaces trimmed).
    pub fn find_text(&self, text: &str) -> Element<'_, 'd> {
        let lit = xpath_literal(text);
        let xpath = format!(
            "//a[normalize-space()={lit}] | //button[normalize-space()={lit}] | //input[@type='submit' and @value={lit}]"
        );
        match self.try_cmd(
            Method::POST,
            "/element",
            json!({ "using": "xpath", "value": xpath }),
        ) {
            Ok(v) => self.element(&v),
            Err(e) => panic!(
                "no link or button {text:?} on {} ({e}): {}",
                self.current_url(),
                self.text()
            ),
        }
    }

    /// Clicks the link or button whose text is `text` and waits for the page it loads. (For
    /// one that loads no page, a download say, use `find_text(text).click()`.)
    pub fn click_text(&self, text: &str) {
        self.new_page(&format!("clicking {text:?}"), || {
            self.find_text(text).click()
        });
    }

    /// Runs `act` (a click, a key press) and waits until the browser has left the page: a
    /// click on a form's button or a key press can return before that.
    pub fn new_page(&self, what: &str, act: impl FnOnce()) {
        let old = self.find("html").id;
        act();
        wait_until(60, &format!("a new page after {what}"), || {
            let path = format!("/element/{old}/name");
            self.try_cmd(Method::GET, &path, Value::Null)
                .is_err_and(|e| e.contains("stale element reference"))
        });
    }

    /// Types `value` into the form field named `name`, replacing what it held.
    pub fn fill(&self, name: &str, value: &str) {
        let field = self.find(&format!("[name=\"{name}\"]"));
        field.clear();
        field.send_keys(value);
    }

    /// Sets a field's value by script: for inputs such as `datetime-local` whose typing
    /// depends on the locale. (WebDriver's scripts are not subject to the page's CSP.)
    pub fn set_value(&self, name: &str, value: &str) {
        let field = self.find(&format!("[name=\"{name}\"]"));
        self.execute(
            "arguments[0].value = arguments[1];",
            json!([field.reference(), value]),
        );
    }

    /// Presses keys (text or [`TAB`], [`ENTER`]...) on whatever has the focus.
    pub fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({ "type": "keyDown", "value": k.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": k.to_string() }));
        }
        self.cmd(
            Method::POST,
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        );
        self.cmd(Method::DELETE, "/actions", Value::Null);
    }

    /// The element that has the keyboard focus.
    pub fn focused(&self) -> Element<'_, 'd> {
        let v = self.cmd(Method::GET, "/element/active", Value::Null);
        self.element(&v)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Resizes the window (CSS pixels of the outer window).
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            json!({ "width": width, "height": height }),
        );
    }

    /// Whether the page fits the window's width (no sideways scrolling).
    pub fn fits_width(&self) -> bool {
        self.execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            json!([]),
        ) == true
    }

    /// Saves a PNG of the window as `target/screenshots/NAME.png`; its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = str_of(self.cmd(Method::GET, "/screenshot", Value::Null));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .expect("WebDriver sends screenshots in base64");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Logs in on the login page, waiting out the throttle a failure just before costs.
    pub fn login(&self, user: &str, password: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.goto("/login");
            self.fill("user", user);
            self.fill("password", password);
            self.click_text("Log in");
            if self.path() == "/ui" {
                return;
            }
            let text = self.text();
            assert!(
                text.contains("try again") && Instant::now() < deadline,
                "login of {user} failed on {}: {text}",
                self.path()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn logout(&self) {
        self.click_text("Log out");
    }

    /// Runs `start` (a click on a download link, say) and waits for the browser to finish
    /// downloading the one file it starts: its name and bytes.
    pub fn download(&self, start: impl FnOnce()) -> (String, Vec<u8>) {
        let dir = self.downloads.path();
        for entry in std::fs::read_dir(dir).expect("download folder").flatten() {
            std::fs::remove_file(entry.path()).expect("empty the download folder");
        }
        start();
        // Seen twice in a row, so a moment between Chromium's renames is not taken for the end.
        let (mut last, mut done) = (None, None);
        wait_until(60, "the browser's download", || {
            let now = finished_download(dir);
            if now.is_some() && now == last {
                done = now;
            } else {
                last = now;
            }
            done.is_some()
        });
        let (path, _) = done.expect("wait_until returned when found");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (name, bytes)
    }

    fn element(&self, v: &Value) -> Element<'_, 'd> {
        let id = v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {v}"))
            .to_string();
        Element { session: self, id }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.driver.url, self.id);
        let _ = call(&self.driver.http, Method::DELETE, &url, Value::Null);
    }
}

impl Element<'_, '_> {
    fn cmd(&self, method: Method, what: &str, body: Value) -> Value {
        self.session
            .cmd(method, &format!("/element/{}{what}", self.id), body)
    }

    /// The reference to pass to [`Session::execute`].
    pub fn reference(&self) -> Value {
        json!({ ELEMENT: self.id })
    }

    pub fn click(&self) {
        self.cmd(Method::POST, "/click", json!({}));
    }

    pub fn clear(&self) {
        self.cmd(Method::POST, "/clear", json!({}));
    }

    pub fn send_keys(&self, text: &str) {
        self.cmd(Method::POST, "/value", json!({ "text": text }));
    }

    /// The element's visible text.
    pub fn text(&self) -> String {
        str_of(self.cmd(Method::GET, "/text", Value::Null))
    }

    /// An attribute as written in the page (`None` when absent).
    pub fn attr(&self, name: &str) -> Option<String> {
        self.cmd(Method::GET, &format!("/attribute/{name}"), Value::Null)
            .as_str()
            .map(str::to_string)
    }
}

/// One WebDriver request; the answer's `value`, or the driver's error and message.
fn call(http: &Http, method: Method, url: &str, body: Value) -> Result<Value, String> {
    let mut req = http.request(method, url);
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().map_err(|e| format!("chromedriver: {e}"))?;
    let ok = resp.status().is_success();
    let answer: Value = resp
        .json()
        .map_err(|e| format!("chromedriver answered no JSON: {e}"))?;
    let value = answer["value"].clone();
    if ok {
        Ok(value)
    } else {
        Err(format!("{}: {}", value["error"], value["message"]))
    }
}

fn str_of(v: Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string from WebDriver: {v}"))
        .to_string()
}

/// `text` as an XPath string literal (XPath 1 has no escapes: a text holding both quote
/// kinds is joined with concat).
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// The finished download in `dir`. Chromium writes into a hidden `.org.chromium.*` or a
/// `NAME.crdownload` file, may hold the final name with an empty file meanwhile, and renames the
/// partial file at the end: done is a file with no partial one beside it. With its size.
fn finished_download(dir: &Path) -> Option<(PathBuf, u64)> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    let partial = |p: &PathBuf| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
        name.starts_with('.') || name.ends_with(".crdownload")
    };
    if files.iter().any(partial) {
        return None;
    }
    let file = files.into_iter().next()?;
    let len = std::fs::metadata(&file).ok()?.len();
    Some((file, len))
}

/// `target/screenshots` of the workspace (the test binary is `target/<profile>/deps/it-*`).
fn screenshots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    exe.ancestors()
        .nth(3)
        .expect("tests run from target/<profile>/deps")
        .join("screenshots")
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn xpath_literals_quote_any_text() {
    assert_eq!(xpath_literal("Log in"), "'Log in'");
    assert_eq!(xpath_literal("it's"), "\"it's\"");
    assert_eq!(xpath_literal("a'b\"c"), "concat('a', \"'\", 'b\"c')");
}
