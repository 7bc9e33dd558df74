//! The browser-test harness shared by `tests/browser.rs` and
//! `tests/browser_portal.rs`: finding Chromium and chromedriver, one
//! chromedriver and headless browser per test, serving a router on
//! `127.0.0.1:<free port>`, waits, screenshots under `target/e2e/`, and
//! reading mail from an outbox.
//!
//! Without `chromedriver` or Chromium a test prints a notice and passes,
//! unless `GUESTPASS_E2E=1` is set: then it fails naming what is missing.
//! `GUESTPASS_CHROMIUM` and `GUESTPASS_CHROMEDRIVER` name other binaries
//! than `/usr/bin/chromium` and the `chromedriver` on `PATH`.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use guestpass::mail::{Message, MessageKind, Outbox};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use url::Url;

// ---------------------------------------------------------------------------
// The harness: binaries, chromedriver, browser sessions, the server, mail.
// ---------------------------------------------------------------------------

/// How long a wait for an element, a URL or a mail may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// How long one test's browser part may take in all.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long chromedriver may take to listen.
pub const DRIVER_START: Duration = Duration::from_secs(20);

/// The flags headless Chromium needs on a machine without a display, a GPU
/// or a sandbox, whose network refuses every connection but to loopback:
/// background networking, component updates and sync are off so Chromium
/// makes no connections of its own.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Whether the browser tests must run (`GUESTPASS_E2E=1`, as in CI).
pub fn e2e_required() -> bool {
    std::env::var("GUESTPASS_E2E").is_ok_and(|v| v == "1")
}

/// The binaries the tests drive.
#[derive(Debug, Clone)]
pub struct Binaries {
    chromedriver: PathBuf,
    chromium: PathBuf,
}

/// The first executable file named `name` on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds chromedriver and Chromium. `None` (after a notice) when one is
/// missing and the tests may be skipped; a panic naming the missing binary
/// when `GUESTPASS_E2E=1`.
pub fn binaries(test: &str) -> Option<Binaries> {
    let (chromedriver, driver_missing) = match std::env::var_os("GUESTPASS_CHROMEDRIVER") {
        Some(p) => {
            let p = PathBuf::from(p);
            let missing = format!(
                "chromedriver (`{}` of GUESTPASS_CHROMEDRIVER is not an executable file)",
                p.display()
            );
            (Some(p).filter(|p| is_executable(p)), missing)
        }
        None => (
            on_path("chromedriver").or_else(|| {
                let p = PathBuf::from("/usr/bin/chromedriver");
                is_executable(&p).then_some(p)
            }),
            "chromedriver (not on PATH nor at /usr/bin/chromedriver)".to_owned(),
        ),
    };
    let chromium =
        PathBuf::from(std::env::var_os("GUESTPASS_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    let missing = match (&chromedriver, is_executable(&chromium)) {
        (Some(_), true) => None,
        (None, _) => Some(driver_missing),
        (Some(_), false) => Some(format!(
            "Chromium (`{}` is not an executable file)",
            chromium.display()
        )),
    };
    match (missing, chromedriver) {
        (None, Some(chromedriver)) => Some(Binaries {
            chromedriver,
            chromium,
        }),
        (missing, _) => {
            let missing = missing.unwrap_or_default();
            if e2e_required() {
                panic!(
                    "GUESTPASS_E2E=1 but {missing} is missing; install Chromium and ChromeDriver \
                     with `apt-get install chromium chromium-driver`"
                );
            }
            // Straight to the process's stderr, past the test harness's
            // capture, so that a skip shows in every run.
            let _ = writeln!(
                std::io::stderr(),
                "skipping browser test {test}: {missing} is missing (set GUESTPASS_E2E=1 to require it)"
            );
            None
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; chromedriver binds it
/// a moment later, see [`ChromeDriver::start`] for the retry).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// The directory of the tests' artifacts: `<target dir>/e2e`, created.
pub fn artifacts_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| manifest.join("target"), |t| manifest.join(t));
    let dir = target.join("e2e");
    std::fs::create_dir_all(&dir).expect("cannot create the e2e artifacts directory");
    dir
}

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("cannot create a temporary directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A chromedriver child process in its own process group, killed with
/// every browser it started when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts `chromedriver --port=<free port>` and waits until it listens;
    /// its output goes to `log`. Tries three ports before giving up.
    pub async fn start(binary: &Path, log: &Path) -> ChromeDriver {
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(log).expect("cannot create the chromedriver log");
            let err = out.try_clone().expect("cannot share the chromedriver log");
            let child = {
                use std::os::unix::process::CommandExt as _;
                Command::new(binary)
                    .arg(format!("--port={port}"))
                    .arg("--log-level=WARNING")
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .process_group(0)
                    .spawn()
            };
            let child = match child {
                Ok(c) => c,
                Err(e) => panic!("cannot start {}: {e}", binary.display()),
            };
            let mut driver = ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + DRIVER_START;
            loop {
                if let Ok(Some(status)) = driver.child.try_wait() {
                    last_error = format!("chromedriver exited with {status} (port {port})");
                    break;
                }
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return driver;
                }
                if Instant::now() > deadline {
                    last_error =
                        format!("chromedriver did not listen on port {port} within {DRIVER_START:?}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{last_error}; its log:\n{log_text}");
    }

    /// The WebDriver URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The process group holds chromedriver and the browsers it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a test's browser is set up.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The UI language and `Accept-Language` (`--lang` and the
    /// `intl.accept_languages` preference), such as `de-DE`; Chromium's
    /// default (en-US) when `None`.
    pub lang: Option<&'static str>,
    /// The window size in CSS pixels.
    pub window: (u32, u32),
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            lang: None,
            window: (1024, 768),
        }
    }
}

/// The WebDriver capabilities of headless Chromium at `chromium` with the
/// profile `profile`.
pub fn capabilities(
    chromium: &Path,
    profile: &Path,
    options: &BrowserOptions,
) -> fantoccini::wd::Capabilities {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!("--window-size={},{}", options.window.0, options.window.1));
    let mut prefs = serde_json::Map::new();
    if let Some(lang) = options.lang {
        args.push(format!("--lang={lang}"));
        let primary = lang.split('-').next().unwrap_or(lang);
        prefs.insert("intl.accept_languages".into(), json!(format!("{lang},{primary}")));
    }
    let caps = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 10_000 },
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": args,
            "prefs": prefs,
        },
    });
    caps.as_object().cloned().expect("capabilities are an object")
}

/// A headless Chromium session of one test: its chromedriver, its profile
/// and the WebDriver client.
#[derive(Debug)]
pub struct Browser {
    name: String,
    pub client: Client,
    // Dropped in this order: the driver (and its browsers), then the profile.
    driver: ChromeDriver,
    profile: TempDir,
}

impl Browser {
    /// A fresh browser for the test `name`, or `None` when the binaries are
    /// missing and the test may be skipped (see [`binaries`]).
    pub async fn start(name: &str, options: BrowserOptions) -> Option<Browser> {
        let bins = binaries(name)?;
        let dir = artifacts_dir();
        let driver =
            ChromeDriver::start(&bins.chromedriver, &dir.join(format!("{name}.chromedriver.log"))).await;
        let profile = TempDir::new("guestpass-e2e-profile");
        let caps = capabilities(&bins.chromium, profile.path(), &options);
        let connector = HttpConnector::new();
        let connected = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(driver.url()),
        )
        .await;
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("cannot start a Chromium session: {e} (see {name}.chromedriver.log)"),
            Err(_) => panic!("no Chromium session within 60 s (see {name}.chromedriver.log)"),
        };
        Some(Browser {
            name: name.to_owned(),
            client,
            driver,
            profile,
        })
    }

    /// Runs `body` with the session's client, within [`TEST_TIMEOUT`]; then
    /// saves a screenshot of the final page (also when `body` failed),
    /// ends the session and fails the test if `body` did.
    pub async fn run<F, Fut>(self, body: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(tokio::time::timeout(TEST_TIMEOUT, body(self.client.clone())));
        let outcome = task.await;
        let shot = save_screenshot(&self.client, &self.name).await;
        let Browser {
            client,
            driver,
            profile,
            name,
        } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        drop(driver);
        drop(profile);
        match outcome {
            Ok(Ok(())) => {
                shot.unwrap_or_else(|e| panic!("{name}: no screenshot: {e}"));
            }
            Ok(Err(_)) => panic!("{name}: timed out after {TEST_TIMEOUT:?} (last page: {shot:?})"),
            Err(e) => {
                eprintln!("{name}: the final page is {shot:?}");
                match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    Err(e) => panic!("{name}: {e}"),
                }
            }
        }
    }
}

/// Saves a PNG screenshot of `client`'s page as `target/e2e/<name>.png`.
pub async fn save_screenshot(client: &Client, name: &str) -> Result<PathBuf, String> {
    let png = tokio::time::timeout(Duration::from_secs(10), client.screenshot())
        .await
        .map_err(|_| "the screenshot timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let path = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// An HTTP server of the application under test on `127.0.0.1:<free
/// port>`, with the peer address as `ConnectInfo`; stopped on drop.
#[derive(Debug)]
pub struct TestServer {
    pub base: Url,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Serves the router `app` builds for the server's base URL
    /// (`http://127.0.0.1:<port>/`).
    pub async fn start(app: impl FnOnce(&Url) -> Router) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = Url::parse(&format!("http://{addr}/")).unwrap();
        let router = app(&base);
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        TestServer { base, task }
    }

    /// The absolute URL of `path` on this server.
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The newest message of `kind` to `to` in `outbox`, once there are more
/// than `seen` of them; waits up to [`WAIT`].
pub async fn wait_for_mail(outbox: &Outbox, to: &str, kind: MessageKind, seen: usize) -> Message {
    let deadline = Instant::now() + WAIT;
    loop {
        let mails: Vec<Message> = outbox
            .messages()
            .into_iter()
            .filter(|m| m.kind == kind && m.to.address.comparison_key() == to)
            .collect();
        if mails.len() > seen
            && let Some(m) = mails.into_iter().last()
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no new {kind:?} mail to {to} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many messages of `kind` to `to` are in `outbox`.
pub fn mail_count(outbox: &Outbox, to: &str, kind: MessageKind) -> usize {
    outbox
        .messages()
        .iter()
        .filter(|m| m.kind == kind && m.to.address.comparison_key() == to)
        .count()
}

/// The link in `mail` that starts with `prefix`.
pub fn link_in(mail: &Message, prefix: &str) -> String {
    mail.link_starting_with(prefix)
        .unwrap_or_else(|| panic!("no link starting with {prefix} in the mail {:?}", mail.subject))
        .to_owned()
}

/// Waits up to [`WAIT`] for the element `css`.
pub async fn wait_css(c: &Client, css: &str) -> Element {
    match c.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!("no element `{css}` on {}: {e}", page_summary(c).await),
    }
}

/// Waits up to [`WAIT`] for the button whose text is `label`.
pub async fn wait_button(c: &Client, label: &str) -> Element {
    let xpath = format!("//button[normalize-space(.)='{label}']");
    match c.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await {
        Ok(e) => e,
        Err(e) => panic!("no button `{label}` on {}: {e}", page_summary(c).await),
    }
}

/// Waits up to [`WAIT`] until the page is at `url`.
pub async fn wait_url(c: &Client, url: &Url) {
    if let Err(e) = c.wait().at_most(WAIT).for_url(url).await {
        panic!(
            "the browser did not reach {url}; it is at {}: {e}",
            page_summary(c).await
        );
    }
}

/// The current URL and the start of the page text, for failure messages.
pub async fn page_summary(c: &Client) -> String {
    // Without the query, which may hold a ticket.
    let url = c
        .current_url()
        .await
        .map(|mut u| {
            u.set_query(None);
            u.to_string()
        })
        .unwrap_or_default();
    let text = match c.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let text: String = text.chars().take(600).collect();
    format!("{url} showing {text:?}")
}

/// The `lang` attribute of the page's `<html>` element.
pub async fn page_lang(c: &Client) -> String {
    wait_css(c, "html")
        .await
        .attr("lang")
        .await
        .unwrap()
        .unwrap_or_default()
}
