//! A real browser for end-to-end tests of the web workbench: Debian's headless Chromium
//! driven through ChromeDriver (WebDriver, via fantoccini over plain HTTP on loopback).
//! `make browser` installs both. Each [`Browser`] runs its own `chromedriver` on a free
//! port with a fresh profile, and ends both when dropped.
//!
//! The helpers are synchronous (a private Tokio runtime) and wait for what a person would
//! wait for: a click that submits a form waits for the next page, a lookup polls the DOM
//! up to [`PATIENCE`]. A failed wait names what it waited for, where the browser was and
//! what the page said, and leaves a screenshot `failed-<what>.png`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait polls the page before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The answer to a request made with `fetch()` from the page.
#[derive(Debug)]
pub struct Fetched {
    /// The HTTP status; 303 for a redirect (which `fetch` was told not to follow).
    pub status: u16,
    pub body: String,
}

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// `http://host:port` of the site under test; paths are relative to it.
    base: String,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session for the site at `base`
    /// (`http://127.0.0.1:1234`).
    pub fn start(base: &str) -> Browser {
        for exe in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(exe).exists(),
                "{exe} is missing: run `make browser` (Debian's chromium and chromium-driver)"
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let (driver, port) = spawn_driver();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let client = rt
            .block_on(builder.connect(&format!("http://127.0.0.1:{port}")))
            .unwrap_or_else(|e| panic!("chromedriver on port {port} opened no Chromium session: {e}"));
        Browser { rt, client: Some(client), driver, base: base.trim_end_matches('/').to_string(), _profile: profile }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Resizes the window (a tablet is 768 × 1024).
    pub fn resize(&self, width: u32, height: u32) {
        self.rt.block_on(self.client().set_window_size(width, height)).unwrap_or_else(|e| panic!("resizing: {e}"));
    }

    /// The absolute URL of `path` on the site.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Loads `path` (and waits for it, as the address bar would).
    pub fn goto(&self, path: &str) {
        let url = self.url(path);
        self.rt.block_on(self.client().goto(&url)).unwrap_or_else(|e| panic!("loading {url}: {e}"));
    }

    /// The path (and query) the browser is on now.
    pub fn path(&self) -> String {
        let u = self.rt.block_on(self.client().current_url()).unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// The HTTP status of the page being shown (after any redirect), as the browser got it.
    pub fn status(&self) -> u16 {
        let v = self.js("const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0;");
        v.as_u64().unwrap_or(0) as u16
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn js(&self, script: &str) -> Value {
        self.rt.block_on(self.client().execute(script, vec![])).unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Whether an element matches `css` now.
    pub fn exists(&self, css: &str) -> bool {
        // A page being replaced answers with an error: nothing there yet.
        self.rt.block_on(self.client().find_all(Locator::Css(css))).is_ok_and(|found| !found.is_empty())
    }

    /// Waits until an element matches `css`.
    pub fn wait_for(&self, css: &str) {
        self.wait_until(&format!("an element {css}"), || self.exists(css));
    }

    /// The text of the first element matching `css`, once there is one.
    pub fn text(&self, css: &str) -> String {
        self.dom(&format!("the text of {css}"), || async { self.client().find(Locator::Css(css)).await?.text().await })
    }

    /// The texts of every element matching `css` now.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.dom(&format!("the texts of {css}"), || async {
            let mut out = Vec::new();
            for e in self.client().find_all(Locator::Css(css)).await? {
                out.push(e.text().await?);
            }
            Ok(out)
        })
    }

    /// Waits until the first element matching `css` has a text containing `needle`, and
    /// returns that text.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        let mut last = String::new();
        self.wait_until(&format!("{css} to say {needle:?}"), || {
            last = self.texts(css).into_iter().next().unwrap_or_default();
            last.contains(needle)
        });
        last
    }

    /// The attribute `name` of every element matching `css` now.
    pub fn attrs(&self, css: &str, name: &str) -> Vec<Option<String>> {
        self.dom(&format!("attribute {name} of every {css}"), || async {
            let mut out = Vec::new();
            for e in self.client().find_all(Locator::Css(css)).await? {
                out.push(e.attr(name).await?);
            }
            Ok(out)
        })
    }

    /// Types `value` into the field called `name` (the first on the page), replacing what
    /// it held.
    pub fn fill(&self, name: &str, value: &str) {
        self.fill_css(&format!("[name=\"{name}\"]"), value);
    }

    /// Types `value` into the field called `name` inside `form` (`form#approve`).
    pub fn fill_in(&self, form: &str, name: &str, value: &str) {
        self.fill_css(&format!("{form} [name=\"{name}\"]"), value);
    }

    fn fill_css(&self, css: &str, value: &str) {
        self.dom(&format!("typing into {css}"), || async {
            let e = self.client().find(Locator::Css(css)).await?;
            e.clear().await?;
            e.send_keys(value).await
        })
    }

    /// Sets the value of the field matching `css` behind the page's back (a hidden input,
    /// as if the page had been open for a while).
    pub fn set_value(&self, css: &str, value: &str) {
        self.wait_for(css);
        let script = "document.querySelector(arguments[0]).value = arguments[1]; return true;";
        self.rt
            .block_on(self.client().execute(script, vec![json!(css), json!(value)]))
            .unwrap_or_else(|e| panic!("setting {css} to {value:?}: {e}"));
    }

    /// Clicks the element matching `css` — a link or a form's button — and waits for the
    /// page it leads to.
    pub fn click(&self, css: &str) {
        // Mark the document; the next one does not carry the mark. (Should the page reload
        // by itself meanwhile, the element is found again on the new one.)
        self.dom(&format!("clicking {css}"), || async {
            let e = self.client().find(Locator::Css(css)).await?;
            let mark = "document.documentElement.setAttribute('data-left-behind', '1'); return true;";
            self.client().execute(mark, vec![]).await?;
            e.click().await
        });
        self.wait_until(&format!("the page after clicking {css}"), || {
            let script = "return document.readyState === 'complete' \
                          && !document.documentElement.hasAttribute('data-left-behind');";
            // While the next page loads, scripts may fail: not there yet.
            self.rt.block_on(self.client().execute(script, vec![])).is_ok_and(|v| v == json!(true))
        });
    }

    /// Runs a WebDriver exchange with the page until it succeeds: an element that is not
    /// there yet, or went stale because the page reloaded, is looked up again.
    fn dom<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.rt.block_on(f()) {
                Ok(v) => return v,
                Err(e) if Instant::now() > deadline => self.fail(what, &e.to_string()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Polls `ready` until it holds, failing after [`PATIENCE`] with `what` and the page.
    pub fn wait_until(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !ready() {
            if Instant::now() > deadline {
                self.fail(what, "");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails the test: what it waited for, where the browser is, what the page says; and
    /// a screenshot `failed-<what>.png`.
    fn fail(&self, what: &str, error: &str) -> ! {
        let name: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(60).collect();
        let shot = self.screenshot(&format!("failed-{name}"));
        let (path, body) = (self.path(), self.body());
        panic!(
            "waited {PATIENCE:?} for {what} {error}\nthe browser is on {path} (screenshot {}), which says:\n{body}",
            shot.display()
        );
    }

    /// Everything the page says, as text.
    pub fn body(&self) -> String {
        self.js("return document.body ? document.body.innerText : document.documentElement.outerHTML;")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The value of the page's first CSRF field (`input[name=csrf]`).
    pub fn csrf(&self) -> String {
        self.attrs("input[name=csrf]", "value").into_iter().flatten().next().expect("the page has no csrf field")
    }

    /// Sends a hand-made form POST to `path` from the page with `fetch()`, carrying the
    /// browser's cookies as a form submission would (redirects are not followed).
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Fetched {
        let form: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let script = r#"
            const [path, fields, done] = arguments;
            fetch(path, {
                method: 'POST',
                credentials: 'same-origin',
                redirect: 'manual',
                body: new URLSearchParams(fields),
            })
                .then(async (r) => done({ status: r.type === 'opaqueredirect' ? 303 : r.status, body: await r.text() }))
                .catch((e) => done({ status: -1, body: String(e) }));
        "#;
        let v = self
            .rt
            .block_on(self.client().execute_async(script, vec![json!(path), Value::Object(form)]))
            .unwrap_or_else(|e| panic!("posting to {path}: {e}"));
        let status = v["status"].as_i64().unwrap_or(-1);
        assert!(status > 0, "fetch() of {path} failed: {v}");
        Fetched { status: status as u16, body: v["body"].as_str().unwrap_or_default().to_string() }
    }

    /// The browser's cookies for the current page's site, with their attributes.
    pub fn cookies(&self) -> Vec<Cookie<'static>> {
        self.rt.block_on(self.client().get_all_cookies()).unwrap()
    }

    /// Puts `cookie` (back) into the browser, for the current page's site.
    pub fn add_cookie(&self, cookie: Cookie<'static>) {
        self.rt.block_on(self.client().add_cookie(cookie)).unwrap();
    }

    /// Saves what the browser shows as `<target>/ui-screenshots/<name>.png`, and returns
    /// the file's path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = target_dir().join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.rt.block_on(self.client().screenshot()).unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium; then ChromeDriver can go.
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where cargo builds: `CARGO_TARGET_DIR` (relative to the workspace) or the workspace's
/// `target/`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).unwrap();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// Starts `chromedriver` on a free loopback port and waits until it accepts connections.
fn spawn_driver() -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}; run `make browser`"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Another process took the port between our probe and its bind: try again.
                last = format!("chromedriver --port={port} exited with {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last = format!("chromedriver --port={port} accepted no connection within {PATIENCE:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("could not start chromedriver: {last}");
}
