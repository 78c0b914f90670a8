//! A real browser for the console's tests: headless Chromium (Debian's `chromium`) driven
//! through `chromedriver` with the WebDriver client `fantoccini`.
//!
//! Every [`Browser`] has its own `chromedriver` (on a port it picks itself, so parallel tests
//! never race for one) and its own profile directory, so tests run in parallel without sharing
//! cookies. Dropping a `Browser` ends the WebDriver session (which quits Chromium) and kills its
//! `chromedriver`, also when the test panics. Every wait is bounded by [`WAIT`] and, when it
//! runs out, says what it waited for, the page's URL and the start of its text.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::TestApp;

/// The longest any wait of the browser tests lasts (a page, an element, an image, a driver).
pub const WAIT: Duration = Duration::from_secs(20);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A `chromedriver` child process, killed on drop.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    /// Starts `chromedriver --port=0` (it binds a free loopback port and prints it) and waits
    /// until it answers `/status` with `ready`. A chromedriver that has not printed its port
    /// within [`WAIT`] is killed and another one started, three times at most: in one
    /// fresh-clone CI run of many, one said nothing for 20 s on a machine busy with the other
    /// tests. That is the test harness failing, not the console.
    async fn start() -> Chromedriver {
        let mut attempt = 1;
        let (child, port) = loop {
            match Self::spawn() {
                Ok(started) => break started,
                Err(e) if attempt < 3 => {
                    eprintln!("{e}; starting another chromedriver");
                    attempt += 1;
                }
                Err(e) => panic!("{e}, three times"),
            }
        };
        let driver = Chromedriver { child, port };
        let status = format!("http://127.0.0.1:{port}/status");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = match client.get(&status).timeout(Duration::from_secs(2)).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return driver;
            }
            assert!(started.elapsed() < WAIT, "chromedriver on port {port} never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One `chromedriver --port=0` and the port it says it listens on, or why not (it was
    /// killed then).
    fn spawn() -> Result<(Child, u16), String> {
        let mut child = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{CHROMEDRIVER} starts (Debian package chromium-driver): {e}")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        // The port is on a line "ChromeDriver was started successfully on port N."; the thread
        // then keeps draining stdout so chromedriver never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split_once("started successfully on port ")
                    .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        match rx.recv_timeout(WAIT) {
            Ok(port) => Ok((child, port)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("chromedriver did not say which port it listens on within {WAIT:?}"))
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium, pointed at one app.
pub struct Browser {
    client: Client,
    /// The app's address, `http://127.0.0.1:PORT`.
    base: String,
    session_id: Option<String>,
    driver: Chromedriver,
    /// Chromium's `--user-data-dir`, removed after the browser has quit.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts a headless Chromium for `app`, signed in to nothing.
    pub async fn launch(app: &TestApp) -> Browser {
        let driver = Chromedriver::start().await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1440,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            // Quieter and faster on a CI machine: nothing of this is under test.
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-sync".to_owned(),
            "--password-store=basic".to_owned(),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let client = ClientBuilder::rustls()
            .expect("TLS roots for the WebDriver client")
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"));
        let session_id = client.session_id().await.expect("session id");
        Browser { client, base: app.address.clone(), session_id, driver, _profile: profile }
    }

    /// Starts a browser and signs in to the console of `app` with the API key `key`, as a
    /// person does: the login form, then the review queue.
    pub async fn sign_in(app: &TestApp, key: &str) -> Browser {
        let browser = Browser::launch(app).await;
        browser.open("/console/login").await;
        let field = browser.wait_for(selectors::LOGIN_KEY).await;
        field.send_keys(key).await.expect("type the key");
        browser.click(selectors::LOGIN_SUBMIT).await;
        browser.wait_for(selectors::SIGNED_IN).await;
        browser
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `path` of the app (e.g. `/console`) and waits until the page has loaded.
    pub async fn open(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client.goto(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The page's URL path (and query), e.g. `/console/cases/0196…`.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Presses and releases one key on whatever has the focus (the page when nothing does),
    /// as a reviewer's keyboard does: `press('j')`, `press(Key::Enter)`.
    pub async fn press(&self, key: impl Into<char>) {
        let key = key.into();
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(actions).await.expect("key press");
    }

    /// Waits until an element matches `css` and returns the first one.
    pub async fn wait_for(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                return element;
            }
            if started.elapsed() > WAIT {
                self.fail(&format!("an element matching `{css}`")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `condition` (a JavaScript expression) is truthy in the page.
    pub async fn wait_until(&self, what: &str, condition: &str) {
        let script = format!("return Boolean({condition});");
        let started = Instant::now();
        loop {
            if self.client.execute(&script, vec![]).await.is_ok_and(|v| v == true) {
                return;
            }
            if started.elapsed() > WAIT {
                self.fail(what).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element matching `css` (waiting for it to exist).
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        element.click().await.unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// The visible text of the first element matching `css` (waiting for it to exist).
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("element text")
    }

    /// Every element matching `css` now (no wait).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.expect("find elements")
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        self.text("body").await
    }

    /// Whether the image matching `css` has loaded a picture: waits until it exists and the
    /// browser is done with it (loaded or failed), then answers `naturalWidth > 0`.
    /// The image is scrolled into view first, as a reviewer would: a `loading="lazy"` image
    /// off screen is never fetched.
    pub async fn image_loaded(&self, css: &str) -> bool {
        let image = self.wait_for(css).await;
        let scroll = "arguments[0].scrollIntoView({block: 'center'});";
        let image = serde_json::to_value(image).expect("element reference");
        self.client.execute(scroll, vec![image]).await.expect("scroll to the image");
        let selector = serde_json::to_string(css).expect("JSON string");
        self.wait_until(
            &format!("the image `{css}` to finish loading"),
            &format!("document.querySelector({selector}).complete"),
        )
        .await;
        let script = "return document.querySelector(arguments[0]).naturalWidth > 0;";
        self.client.execute(script, vec![json!(css)]).await.expect("naturalWidth") == true
    }

    /// What the app answers this browser's session (its cookies) for a request, from inside
    /// the page: the status of `fetch(path, {method, body})` (redirects not followed). A
    /// `body` is sent as an HTML form (`application/x-www-form-urlencoded`).
    pub async fn fetch_status(
        &self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> u16 {
        let body = form.map(|fields| {
            fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()
        });
        let script = r#"
            const [method, path, fields] = arguments;
            const init = { method, redirect: 'manual', credentials: 'same-origin' };
            if (fields !== null) { init.body = new URLSearchParams(fields); }
            return fetch(path, init).then(r => r.type === 'opaqueredirect' ? 303 : r.status);
        "#;
        let answer = self
            .client
            .execute(script, vec![json!(method), json!(path), json!(body)])
            .await
            .unwrap_or_else(|e| panic!("fetch {method} {path} from the page: {e}"));
        answer.as_u64().and_then(|s| u16::try_from(s).ok()).expect("an HTTP status")
    }

    /// Saves a PNG of the window as `target/console-screenshots/NAME.png` and, when
    /// `OFFSIDE_SCREENSHOTS_DIR` is set (e.g. `docs/screenshots`, the README's copies), there
    /// too. Returns the first path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let mut dirs = vec![screenshots_dir()];
        if let Some(dir) = std::env::var_os("OFFSIDE_SCREENSHOTS_DIR").filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(dir));
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            let path = dir.join(format!("{name}.png"));
            std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        dirs[0].join(format!("{name}.png"))
    }

    /// [`Self::screenshot`] of the whole page and no more: the window takes the height of the
    /// page's content (at most 4000 px) for the picture, then returns to its size.
    pub async fn screenshot_page(&self, name: &str) -> PathBuf {
        let (width, height) = self.client.get_window_size().await.expect("window size");
        let sizes = self
            .client
            .execute("return [document.body.scrollHeight, window.innerHeight];", vec![])
            .await
            .expect("page height");
        let page = sizes[0].as_u64().expect("scrollHeight").max(200);
        let viewport = sizes[1].as_u64().expect("innerHeight");
        // The window is taller than its viewport by the (headless) browser's own bars.
        let tall = (page + height.saturating_sub(viewport)).min(4000);
        let to_u32 = |v: u64| u32::try_from(v).expect("a window size");
        self.client.set_window_size(to_u32(width), to_u32(tall)).await.expect("resize");
        // Two animation frames: the resized page has been laid out and painted.
        let painted =
            "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));";
        self.client.execute(painted, vec![]).await.expect("paint");
        let path = self.screenshot(name).await;
        self.client.set_window_size(to_u32(width), to_u32(height)).await.expect("resize back");
        path
    }

    /// Whether a JavaScript dialog (`alert`, `confirm`) is open.
    pub async fn dialog_is_open(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }

    /// Ends the test: says what did not show up, where, and what the page said instead.
    async fn fail(&self, what: &str) -> ! {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let text = match self
            .client
            .execute("return document.body ? document.body.innerText : document.documentElement.outerHTML;", vec![])
            .await
        {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(e) => format!("(unreadable: {e})"),
        };
        let snippet: String = text.chars().take(1500).collect();
        // Best effort, and never into OFFSIDE_SCREENSHOTS_DIR (the README's pictures).
        let shot = match self.client.screenshot().await {
            Ok(png) => {
                let path = screenshots_dir().join("failed-wait.png");
                match std::fs::create_dir_all(screenshots_dir())
                    .and_then(|()| std::fs::write(&path, png))
                {
                    Ok(()) => path.display().to_string(),
                    Err(e) => format!("(not saved: {e})"),
                }
            }
            Err(e) => format!("(not taken: {e})"),
        };
        panic!(
            "timed out after {WAIT:?} waiting for {what}\n  page: {url}\n  screenshot: {shot}\n  text:\n{snippet}"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session with a blocking request of our own: fantoccini ends it from a task
        // of the test's runtime, which a panicking test tears down before the task runs, and a
        // Chromium whose session never ends outlives its chromedriver.
        if let Some(id) = self.session_id.take() {
            delete_session(self.driver.port, &id);
        }
    }
}

/// Where every screenshot goes: `target/console-screenshots/`.
fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

/// `DELETE /session/{id}` to the chromedriver on `port`: it quits Chromium, then answers.
fn delete_session(port: u16, id: &str) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    // chromedriver answers once Chromium has quit, and may keep the connection open after
    // that: the first bytes of the answer are all there is to wait for.
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read(&mut [0; 512]);
    }
}

/// The sign-in page's selectors (`templates/console/login.html`, `base.html`).
pub mod selectors {
    /// The login form's API key field.
    pub const LOGIN_KEY: &str = "#login-key";
    /// The login form's submit button.
    pub const LOGIN_SUBMIT: &str = "#login-submit";
    /// Present on every page of a signed-in session (the sign-out form).
    pub const SIGNED_IN: &str = "#logout-form";
}
